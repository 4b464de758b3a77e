//! NPY source, memory-mapped: `(N, H, W, C)` or `(N, H, W)` arrays of `u8` or `f32`,
//! with optional 1-D integer labels, one file or many shards.
//!
//! The header parser is our own (versions 1.0, 2.0 and 3.0); pixels are borrowed straight
//! from the memory map, so `get` copies nothing.

mod format;
mod header;
mod source;
mod write;

pub(crate) use format::NPY;
// Object storage counts NPY shards from their headers (`crate::remote`).
#[cfg(feature = "s3")]
pub(crate) use header::header_end;
pub use source::NpySource;
#[cfg(feature = "s3")]
pub(crate) use source::{image_rows, label_rows};
pub use write::{save_npy, write_npy};

/// Fuzzing ([`crate::fuzz::npy`]): `data` as a whole images file and as a labels file, and a
/// header written for a shape read from `data`, parsed back. Panics only on a broken invariant.
pub(crate) fn fuzz(data: &[u8]) {
    if let Ok(l) = source::image_layout(data) {
        let elem = if l.f32 { 4 } else { 1 };
        assert_eq!(l.sample_bytes, l.shape[1] * l.shape[2] * l.shape[3] * elem);
        let end = l.shape[0]
            .checked_mul(l.sample_bytes)
            .and_then(|b| b.checked_add(l.data_offset));
        assert!(
            end.is_some_and(|e| e <= data.len()),
            "{l:?}: samples past the end of {} bytes",
            data.len()
        );
        assert!(!l.f32 || l.data_offset % 4 == 0, "{l:?}: unaligned f32");
        // Its header alone, with the file's length, counts the same images (object storage
        // counts shards so, from ranged requests).
        let end = header::header_end(data).expect("a parsed header is 12 bytes or more");
        let head = &data[..end.min(data.len())];
        assert_eq!(source::image_rows(head, data.len() as u64), Ok(l.shape[0]));
    }
    if let Ok(labels) = source::parse_labels(data) {
        std::hint::black_box(labels);
    }
    // What `write_npy` writes for any shape parses back to that shape.
    let rank = data.first().map_or(0, |b| usize::from(b % 5));
    let shape: Vec<usize> = data
        .get(1..)
        .unwrap_or(&[])
        .chunks_exact(3)
        .take(rank)
        .map(|c| c.iter().fold(0usize, |a, &b| a << 8 | usize::from(b)))
        .collect();
    if shape.len() == rank
        && let Some(h) = header::format_header("|u1", &shape)
    {
        let back = header::parse_header(&h).expect("a header stoker wrote parses");
        assert_eq!(
            (back.descr.as_str(), back.fortran_order, &back.shape[..]),
            ("|u1", false, &shape[..])
        );
        assert_eq!((back.data_offset, h.len() % 64), (h.len(), 0));
    }
}
