//! The two HDF5 filters stoker undoes itself, outside the library's lock: deflate (zlib
//! streams, as `H5Z_FILTER_DEFLATE` writes them) and byte shuffle (`H5Z_FILTER_SHUFFLE`).
//! Pure functions over bytes, so the fuzzer reaches them.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

/// One filter of a dataset's pipeline that stoker can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Byte shuffle of `usize`-byte elements.
    Shuffle(usize),
    /// Deflate (zlib format).
    Deflate,
}

thread_local! {
    /// One zlib state per worker thread, reset per chunk: no allocation per sample.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// Inflates the zlib stream `input` into `out`, which it must fill exactly.
///
/// Errors (short lowercase text): a corrupt stream, a stream that ends before `out` is full,
/// or one with more data than `out` holds.
pub(crate) fn inflate(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    INFLATE.with(|z| {
        let mut z = z.borrow_mut();
        z.reset(true);
        let status = z
            .decompress(input, out, FlushDecompress::Finish)
            .map_err(|e| format!("deflate: {}", e.to_string().to_lowercase()))?;
        let got = usize::try_from(z.total_out()).unwrap_or(usize::MAX);
        match status {
            Status::StreamEnd if got == out.len() => Ok(()),
            Status::StreamEnd => Err(format!(
                "deflate: the chunk inflates to {got} bytes, expected {}",
                out.len()
            )),
            // Output full and the stream not at its end: more data than the chunk holds, or
            // input cut short.
            _ if got == out.len() => Err(format!(
                "deflate: the chunk inflates past its {} bytes",
                out.len()
            )),
            _ => Err(format!(
                "deflate: the stream ends after {got} of {} bytes",
                out.len()
            )),
        }
    })
}

/// Undoes HDF5's byte shuffle of `elem`-byte elements: `input` holds byte 0 of every element,
/// then byte 1 of every element, and so on; bytes past the last whole element are copied as
/// they are. `out` has `input`'s length.
pub(crate) fn unshuffle(input: &[u8], elem: usize, out: &mut [u8]) {
    assert_eq!(input.len(), out.len(), "unshuffle: lengths differ");
    if elem <= 1 {
        out.copy_from_slice(input);
        return;
    }
    let n = input.len() / elem;
    for (b, plane) in input[..n * elem].chunks_exact(n).enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * elem + b] = v;
        }
    }
    out[n * elem..].copy_from_slice(&input[n * elem..]);
}

/// Undoes `pipeline` (in the order it was written, as `H5Pget_filter2` lists it) on one
/// chunk's stored bytes `raw`, skipping filter k when bit k of `mask` is set, into
/// `out` (the chunk's `out.len()` bytes). `tmp` is scratch of the same length.
pub(crate) fn undo(
    pipeline: &[Filter],
    mask: u32,
    raw: &[u8],
    out: &mut [u8],
    tmp: &mut [u8],
) -> Result<(), String> {
    // The filters to undo, last written first.
    let steps = || {
        pipeline
            .iter()
            .enumerate()
            .rev()
            .filter(move |(k, _)| *k >= 32 || mask & (1 << k) == 0)
            .map(|(_, f)| *f)
    };
    let n = steps().count();
    if n == 0 {
        if raw.len() != out.len() {
            return Err(format!(
                "the chunk holds {} bytes, expected {}",
                raw.len(),
                out.len()
            ));
        }
        out.copy_from_slice(raw);
        return Ok(());
    }
    // Steps alternate between `out` and `tmp` so that the last one writes `out`.
    for (k, f) in steps().enumerate() {
        let to_out = (n - k) % 2 == 1;
        let (src, dst): (&[u8], &mut [u8]) = match (k, to_out) {
            (0, true) => (raw, &mut *out),
            (0, false) => (raw, &mut *tmp),
            (_, true) => (&*tmp, &mut *out),
            (_, false) => (&*out, &mut *tmp),
        };
        match f {
            Filter::Deflate => inflate(src, dst)?,
            Filter::Shuffle(e) => {
                if src.len() != dst.len() {
                    return Err(format!(
                        "shuffle: the chunk holds {} bytes, expected {}",
                        src.len(),
                        dst.len()
                    ));
                }
                unshuffle(src, e, dst)
            }
        }
    }
    Ok(())
}
