//! Outputs appear whole or not at all: written to a hidden temporary beside the final path,
//! renamed into place once complete.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The hidden temporary beside `path`: `.NAME.stoker-tmp`.
fn temporary(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    dir.join(format!(".{name}.stoker-tmp"))
}

/// Creates `path`'s folder, lets `f` write the temporary file it is given, then renames that
/// to `path` (nothing is renamed when `f` fails, and the temporary is removed): a killed run
/// never leaves a truncated output under its final name, and a failed write (a full disk, say)
/// leaves nothing behind. The one atomic write of the crate and its tools.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let out = dir.path().join("sub/a.npy");
/// stoker::source::write_with(&out, |tmp| stoker::source::save_npy(tmp, "|u1", &[1], &[7])).unwrap();
/// assert!(out.is_file());
/// ```
pub fn write_with(path: &Path, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = temporary(path);
    let r = f(&tmp).and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if r.is_err() {
        // What `f` wrote is incomplete: never leave it (a rerun would rewrite it anyway).
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// [`write_with`] over an open file: `data` writes into the created temporary.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let out = dir.path().join("a.txt");
/// stoker::source::write_file(&out, |f| f.write_all(b"hi")).unwrap();
/// assert_eq!(std::fs::read(&out).unwrap(), b"hi");
/// ```
pub fn write_file(
    path: &Path,
    data: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    write_with(path, |tmp| {
        let mut f = fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        data(&mut f).map_err(|e| Error::io(tmp, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn renamed_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/a.bin");
        write_file(&out, |f| f.write_all(b"abc")).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"abc");
        assert!(!dir.path().join("sub/.a.bin.stoker-tmp").exists());
        let bad = dir.path().join("sub/b.bin");
        let r = write_file(&bad, |_| Err(std::io::Error::other("disk full")));
        assert!(r.unwrap_err().to_string().contains(".b.bin.stoker-tmp"));
        assert!(!bad.exists());
        // The failed write removed its temporary, after writing part of it.
        let r = write_file(&bad, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        });
        assert_eq!(r.unwrap_err().kind(), crate::ErrorKind::Io);
        assert!(!bad.exists());
        assert!(!dir.path().join("sub/.b.bin.stoker-tmp").exists());
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
