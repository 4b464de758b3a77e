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

/// Whether `bytes` holds the start of a scan (an SOS marker) after its header.
pub(crate) fn has_scan(bytes: &[u8]) -> bool {
    first_scan(bytes).is_some()
}

/// The offset of the first SOS marker, walking the marker segments from the start as libjpeg
/// does: a segment's length field says where the next marker is, and whatever is not a marker
/// there (junk between two segments, the rest of a segment whose length field is too short)
/// is skipped up to the next one, with libjpeg's warning "extraneous bytes before marker".
fn first_scan(bytes: &[u8]) -> Option<usize> {
    let mut i = 2; // after SOI
    loop {
        let at = next_marker(bytes, i)?;
        let marker = bytes[at + 1];
        if marker == 0xDA {
            return Some(at);
        }
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            i = at + 2; // standalone markers carry no length
            continue;
        }
        let len = u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]) as usize;
        // A length below 2 (it counts its own two bytes) skips nothing, as in libjpeg.
        i = at + 2 + len.max(2);
    }
}

/// The offset of the `FF` that starts the first marker at or after `i`, found as libjpeg's
/// `next_marker` finds it: bytes before an `FF` are skipped, `FF` fill bytes are swallowed,
/// and `FF 00` (a stuffed zero, not a marker) is skipped too.
fn next_marker(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        while bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        match *bytes.get(i + 1)? {
            0 => i += 2,
            _ => return Some(i),
        }
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

    /// `jpeg` with `extra` inserted after its first segment (APP0).
    fn after_app0(jpeg: &[u8], extra: &[u8]) -> Vec<u8> {
        assert_eq!(jpeg[2..4], [0xFF, 0xE0]);
        let at = 4 + u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
        [&jpeg[..at], extra, &jpeg[at..]].concat()
    }

    #[test]
    fn the_walk_resynchronises_on_the_next_marker_as_libjpeg_does() {
        let jpeg = photo();
        let scan = first_scan(&jpeg).unwrap();
        assert_eq!(jpeg[scan..scan + 2], [0xFF, 0xDA]);
        let damaged = [
            // Junk between two segments, with a stuffed zero and fill bytes in it.
            &b"\x00junk\xFF\x00more\x7F\xFF\xFF"[..],
            // An APP14 whose length field (9) is 5 bytes short of its data.
            b"\xFF\xEE\x00\x09Adobe\x00\x64\x00\x00\x00\x00\x01",
            // A segment whose length field (0) is below its own two bytes.
            b"\xFF\xED\x00\x00Photoshop 3.0\x00",
        ];
        for extra in damaged {
            let bytes = after_app0(&jpeg, extra);
            assert_eq!(first_scan(&bytes), Some(scan + extra.len()), "{extra:?}");
            assert!(!is_truncated(&bytes), "{extra:?}");
            // Still cut short when the scan data is.
            assert!(is_truncated(&bytes[..bytes.len() - 100]), "{extra:?}");
        }
        // A file that stops in its junk, or in a segment, has no scan.
        assert_eq!(first_scan(&after_app0(&jpeg, b"junk")[..30]), None);
        assert_eq!(first_scan(&jpeg[..scan + 1]), None);
    }
}
