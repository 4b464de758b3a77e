//! Writing NPY files: [`write_npy`] to any writer, [`save_npy`] to a file.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::header::{descr_size, format_header, shape_str};
use crate::{Error, Result};

/// Writes an NPY v1.0 array: `descr` such as `"|u1"` or `"<f4"`, C order, the header padded
/// with spaces so that the data starts at a multiple of 64 bytes (as numpy does).
/// `data` must hold exactly the shape's elements (else `InvalidInput`).
///
/// ```
/// let mut out = Vec::new();
/// stoker::source::write_npy(&mut out, "|u1", &[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
/// assert!(out.starts_with(b"\x93NUMPY\x01\x00"));
/// assert_eq!(out.len(), 128 + 6); // data starts at 128, like numpy
/// assert_eq!(&out[128..], &[1, 2, 3, 4, 5, 6]);
/// ```
pub fn write_npy<W: Write>(w: &mut W, descr: &str, shape: &[usize], data: &[u8]) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let size =
        descr_size(descr).ok_or_else(|| invalid(format!("descr {descr:?} is not like \"<f4\"")))?;
    let need = shape
        .iter()
        .try_fold(size, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid("shape is too large".into()))?;
    if need != data.len() {
        return Err(invalid(format!(
            "shape {} of {descr} needs {need} bytes, data has {}",
            shape_str(shape),
            data.len()
        )));
    }
    let header = format_header(descr, shape).ok_or_else(|| invalid("header is too long".into()))?;
    w.write_all(&header)?;
    w.write_all(data)
}

/// [`write_npy`] to a new file at `path` (replaced if it exists).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.npy");
/// stoker::source::save_npy(&p, "<f4", &[1], &1.5f32.to_le_bytes()).unwrap();
/// assert_eq!(std::fs::metadata(&p).unwrap().len(), 128 + 4);
/// assert!(stoker::source::save_npy(&p, "<f4", &[2], &[0; 4]).is_err());
/// ```
pub fn save_npy(path: impl AsRef<Path>, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let err = |e: io::Error| {
        if e.kind() == io::ErrorKind::InvalidInput {
            Error::usage(e.to_string()).file(path).with_source(e)
        } else {
            Error::io(path, e)
        }
    };
    // Check the arguments before touching the file.
    write_npy(&mut io::sink(), descr, shape, data).map_err(err)?;
    let mut f = io::BufWriter::new(File::create(path).map_err(err)?);
    write_npy(&mut f, descr, shape, data).map_err(err)?;
    f.into_inner()
        .map_err(|e| err(e.into_error()))?
        .sync_all()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::super::header::parse_header;
    use super::*;

    #[test]
    fn writer_pads_to_64_and_round_trips_header() {
        for shape in [&[1usize][..], &[3, 2], &[1000, 144, 256, 3]] {
            let n: usize = shape.iter().product();
            let mut out = Vec::new();
            write_npy(&mut out, "|u1", shape, &vec![0; n]).unwrap();
            let h = parse_header(&out).unwrap();
            assert_eq!(h.data_offset % 64, 0);
            assert_eq!(h.shape, shape);
            assert_eq!(h.descr, "|u1");
            assert!(!h.fortran_order);
            assert_eq!(out[h.data_offset - 1], b'\n');
        }
        let e = write_npy(&mut Vec::new(), "|u1", &[2], &[0]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(write_npy(&mut Vec::new(), "float", &[1], &[0]).is_err());
    }
}
