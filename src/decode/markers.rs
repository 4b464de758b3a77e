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

/// Whether a scan of `bytes` uses a quantization or Huffman table that the file does not
/// define before it (a segment lost to damage, or a Motion-JPEG frame with no Huffman
/// tables). Every scan counts: a progressive file defines the Huffman tables of its later
/// scans between them, and a baseline file whose first scan leaves out components has more
/// scans (the walk goes on through the scan data only for these two kinds). libjpeg keeps the tables of the last image a handle decoded, so such a file
/// would decode with another file's tables on a used handle: what it gives would depend on
/// the sample decoded before it. On a fresh handle it decodes as Pillow's (always fresh)
/// decoder does: the standard Huffman tables, or an error for a missing quantization table.
pub(crate) fn borrows_tables(bytes: &[u8]) -> bool {
    // Bit t of quant, bit 4 * class + t of huff: table t defined (or used).
    let (mut quant, mut huff) = (0u32, 0u32);
    let mut used_quant = 0u32;
    let (mut sof, mut components) = (0u8, 0usize);
    let mut i = 2; // after SOI
    loop {
        let Some(at) = next_marker(bytes, i) else {
            return false; // no (further) scan: nothing more is decoded
        };
        let marker = bytes[at + 1];
        if marker == 0xD9 {
            return false; // EOI: every scan checked
        }
        if matches!(marker, 0xD0..=0xD8 | 0x01) {
            i = at + 2;
            continue;
        }
        let Some(len) = bytes.get(at + 2..at + 4) else {
            return false;
        };
        let len = (u16::from_be_bytes([len[0], len[1]]) as usize).max(2);
        let body = &bytes[(at + 4).min(bytes.len())..(at + 2 + len).min(bytes.len())];
        match marker {
            0xDB => {
                let mut t = body;
                while let Some(&pq_tq) = t.first() {
                    quant |= 1 << (pq_tq & 3);
                    let n = if pq_tq >> 4 == 0 { 64 } else { 128 };
                    t = t.get(1 + n..).unwrap_or(&[]);
                }
            }
            0xC4 => {
                let mut t = body;
                while let (Some(&tc_th), Some(counts)) = (t.first(), t.get(1..17)) {
                    huff |= 1 << (4 * (tc_th >> 4 & 1) + (tc_th & 3));
                    let n: usize = counts.iter().map(|&c| c as usize).sum();
                    t = t.get(17 + n..).unwrap_or(&[]);
                }
            }
            // SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC): each component's quant table.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                sof = marker;
                components = body.get(5).map_or(0, |&n| n as usize);
                if let Some(comps) = body.get(6..) {
                    for c in comps.chunks_exact(3) {
                        used_quant |= 1 << (c[2] & 3);
                    }
                }
            }
            0xDA => {
                let lossless = matches!(sof, 0xC3 | 0xC7 | 0xCB | 0xCF);
                let arithmetic = sof >= 0xC9;
                let progressive = matches!(sof, 0xC2 | 0xC6 | 0xCA | 0xCE);
                let n = body.first().map_or(0, |&n| n as usize);
                // Ss and Ah, after the component selectors.
                let ss = body.get(1 + 2 * n).copied().unwrap_or(0);
                let ah = body.get(3 + 2 * n).map_or(0, |b| b >> 4);
                // Which tables this scan decodes with: a progressive DC scan (its first pass)
                // the DC ones, an AC scan the AC ones; a lossless one the DC ones only.
                let (dc, ac) = match () {
                    _ if arithmetic => (false, false),
                    _ if lossless => (true, false),
                    _ if progressive => (ss == 0 && ah == 0, ss > 0),
                    _ => (true, true),
                };
                let mut used_huff = 0u32;
                for c in body.get(1..).unwrap_or(&[]).chunks_exact(2).take(n) {
                    if dc {
                        used_huff |= 1 << (c[1] >> 4 & 3);
                    }
                    if ac {
                        used_huff |= 1 << (4 + (c[1] & 3));
                    }
                }
                if lossless {
                    used_quant = 0; // lossless JPEGs have no quantization
                }
                if used_quant & !quant != 0 || used_huff & !huff != 0 {
                    return true;
                }
                // One interleaved scan of every component is the whole image: the common
                // baseline file ends here, without a walk through its scan data.
                if !progressive && n >= components {
                    return false;
                }
            }
            _ => {}
        }
        i = at + 2 + len;
    }
}

/// The offset of the `FF` that starts the first marker at or after `i`, found as libjpeg's
/// `next_marker` finds it: bytes before an `FF` are skipped, `FF` fill bytes are swallowed,
/// and `FF 00` (a stuffed zero, not a marker) is skipped too.
fn next_marker(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr(0xFF, bytes.get(i..)?)?;
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
        crate::decode::testutil::photo(0)
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

    /// `jpeg` without its segments of `marker`.
    fn without(jpeg: &[u8], marker: u8) -> Vec<u8> {
        let (mut out, mut i) = (jpeg[..2].to_vec(), 2);
        while jpeg[i + 1] != 0xDA {
            let end = i + 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if jpeg[i + 1] != marker {
                out.extend_from_slice(&jpeg[i..end]);
            }
            i = end;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn tables_the_file_does_not_define_are_found() {
        let jpeg = photo();
        assert!(!borrows_tables(&jpeg));
        // No Huffman tables (a Motion-JPEG frame), no quantization tables.
        assert!(borrows_tables(&without(&jpeg, 0xC4)));
        assert!(borrows_tables(&without(&jpeg, 0xDB)));
        // Junk over the APP0 and the first quantization table: libjpeg skips to the next one.
        let mut junk = jpeg.clone();
        junk[3..64].fill(0);
        assert!(borrows_tables(&junk));
        // Damage that loses no table borrows none.
        assert!(!borrows_tables(&after_app0(&jpeg, b"\x00junk\xFF\x00")));
        // Cut in its header: no scan, nothing decoded.
        assert!(!borrows_tables(&jpeg[..100]));
        // Whole progressive, lossless and arithmetic-coded files: a progressive first scan
        // (DC) needs no AC table, lossless no quantization, arithmetic no Huffman tables.
        let image = turbojpeg::Image {
            pixels: &[128u8; 16 * 8 * 3][..],
            width: 16,
            pitch: 16 * 3,
            height: 8,
            format: turbojpeg::PixelFormat::RGB,
        };
        type Set = fn(&mut turbojpeg::Compressor) -> turbojpeg::Result<()>;
        // (how, whether it has Huffman tables to lose)
        let settings: [(Set, bool); 3] = [
            (|c| c.set_progressive(true), true),
            (|c| c.set_lossless(true), true),
            (|c| c.set_arithmetic(true), false),
        ];
        for (i, (set, huffman)) in settings.into_iter().enumerate() {
            let mut c = turbojpeg::Compressor::new().unwrap();
            set(&mut c).unwrap();
            let bytes = c.compress_to_vec(image).unwrap();
            assert!(!borrows_tables(&bytes), "{i}");
            assert_eq!(borrows_tables(&without(&bytes, 0xC4)), huffman, "{i}");
        }
        // A progressive photo defines its AC scans' Huffman tables between the scans (its
        // first scan, DC, uses none): the first of them lost is found too, and the whole file
        // still borrows none. (A later one may redefine a table the file defined before: lost,
        // the file decodes with its own earlier table, not another file's.)
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_progressive(true).unwrap();
        let rgb = turbojpeg::decompress(&jpeg, turbojpeg::PixelFormat::RGB).unwrap();
        let progressive = c.compress_to_vec(rgb.as_deref()).unwrap();
        assert!(!borrows_tables(&progressive));
        let later = later_segments(&progressive, 0xC4);
        assert!(later.len() > 1, "tables between the scans");
        let (at, end) = later[0];
        let mut lost = progressive[..at].to_vec();
        lost.extend_from_slice(&progressive[end..]);
        assert!(borrows_tables(&lost));
    }

    /// Where the segments of `marker` after the first scan lie (start and end offsets).
    fn later_segments(jpeg: &[u8], marker: u8) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = first_scan(jpeg).unwrap() + 2;
        while let Some(at) = next_marker(jpeg, i) {
            let m = jpeg[at + 1];
            if matches!(m, 0xD0..=0xD9) {
                i = at + 2;
                continue;
            }
            let end = at + 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
            if m == marker {
                out.push((at, end));
            }
            i = end;
        }
        out
    }
}
