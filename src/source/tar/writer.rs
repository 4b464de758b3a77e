//! [`TarWriter`]: writes tar shards that `tar`, Python's `tarfile` and `webdataset` read.

use std::io::{self, Write};

use super::ustar::{BLOCK, header};

/// Writes a tar file member by member: ustar headers, GNU `L` entries for names longer than
/// 100 bytes, then the end-of-archive marker on [`finish`](Self::finish). Readable by `tar`,
/// Python's `tarfile` and `webdataset`, and [`TarSource`](super::TarSource). Modes are 0644,
/// owners 0, times 0, so the same members give the same bytes.
///
/// ```
/// use stoker::source::TarWriter;
/// let mut w = TarWriter::new(Vec::new());
/// w.append("x/hello.txt", b"hi").unwrap();
/// let bytes = w.finish().unwrap();
/// assert_eq!(bytes.len(), 512 + 512 + 1024); // header, padded data, two zero blocks
/// assert_eq!(&bytes[..11], b"x/hello.txt");
/// ```
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    w: W,
}

impl<W: Write> TarWriter<W> {
    /// A writer that appends to `w` (wrap a file in a `BufWriter` for many small members).
    pub fn new(w: W) -> Self {
        TarWriter { w }
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.w.write_all(data)?;
        let pad = data.len().next_multiple_of(BLOCK) - data.len();
        self.w.write_all(&[0u8; BLOCK][..pad])
    }

    /// Appends a regular file member `name` (a relative path, `/`-separated) with `data`.
    ///
    /// ```
    /// let mut w = stoker::source::TarWriter::new(Vec::new());
    /// let long = format!("{}/a.jpg", "d".repeat(150));
    /// w.append(&long, b"x").unwrap(); // a GNU long-name entry precedes it
    /// assert_eq!(w.finish().unwrap().len(), 512 * 4 + 1024);
    /// ```
    pub fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let name = name.as_bytes();
        if name.is_empty() || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tar member names must be non-empty and without NUL",
            ));
        }
        if name.len() > 100 {
            let mut long = name.to_vec();
            long.push(0);
            self.w
                .write_all(&header(b"././@LongLink", long.len() as u64, b'L'))?;
            self.write_data(&long)?;
        }
        self.w.write_all(&header(name, data.len() as u64, b'0'))?;
        self.write_data(data)
    }

    /// Appends one WebDataset sample: `KEY.EXT` with the image bytes, then `KEY.cls` with the
    /// label in ASCII when there is one.
    ///
    /// ```
    /// let mut w = stoker::source::TarWriter::new(Vec::new());
    /// w.append_sample("000001", "jpg", b"..", Some(7)).unwrap();
    /// let bytes = w.finish().unwrap();
    /// assert_eq!(&bytes[1024..1034], b"000001.cls");
    /// assert_eq!(bytes[1536], b'7');
    /// ```
    pub fn append_sample(
        &mut self,
        key: &str,
        ext: &str,
        image: &[u8],
        label: Option<i64>,
    ) -> io::Result<()> {
        self.append(&format!("{key}.{ext}"), image)?;
        if let Some(l) = label {
            self.append(&format!("{key}.cls"), l.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks), flushes, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        self.w.flush()?;
        Ok(self.w)
    }
}
