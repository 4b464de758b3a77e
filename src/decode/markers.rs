//! stoker's own walk over a JPEG's marker segments: what the file itself shows (where its
//! first scan starts, whether it was cut short), independent of what libjpeg-turbo reports.

/// Whether `bytes` is a JPEG cut short: no EOI marker (`FF D9`) after the start of its first
/// scan. Trailing bytes after an EOI do not count; an EOI made by a corrupt byte inside the
/// scan does (libjpeg-turbo stops there, as Pillow's decoder does), so this is the cut that
/// the file itself shows, not the damage.
pub(crate) fn is_truncated(bytes: &[u8]) -> bool {
    let Some(scan) = first_scan(bytes) else {
        return true; // no scan at all: the file stops in its header
    };
    !bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The offset of the first SOS marker, walking the marker segments from the start.
fn first_scan(bytes: &[u8]) -> Option<usize> {
    let mut i = 2; // after SOI
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if bytes.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        if marker == 0xDA {
            return Some(i);
        }
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            i += 2; // standalone markers carry no length
            continue;
        }
        let len = u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]) as usize;
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/photos-256x144/class-a/photo-00.jpg"
        ))
        .unwrap()
    }

    #[test]
    fn truncation_is_told_from_the_file() {
        let jpeg = photo();
        assert!(!is_truncated(&jpeg));
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"trailing bytes");
        assert!(!is_truncated(&trailing));
        assert!(is_truncated(&jpeg[..jpeg.len() - 2]));
        assert!(is_truncated(&jpeg[..jpeg.len() / 2]));
        assert!(is_truncated(&jpeg[..100]));
        assert!(is_truncated(&jpeg[..3]));
    }
}
