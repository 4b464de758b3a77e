//! The node-local shard cache: each object downloaded once into a file that every process of
//! the node shares, under a lock per object, to a temporary name, checked, then renamed into
//! place; a file under its final name is always whole.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::store::{Object, Store};
use crate::{Error, Result};

/// The default cache directory: `$STOKER_CACHE_DIR`, else `$XDG_CACHE_HOME/stoker`, else
/// `~/.cache/stoker`, else `stoker-cache` in the system's temporary directory.
///
/// ```
/// let d = stoker::remote::default_cache_dir();
/// assert!(d.ends_with("stoker") || d.ends_with("stoker-cache") || std::env::var_os("STOKER_CACHE_DIR").is_some());
/// ```
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("STOKER_CACHE_DIR") {
        return d;
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return d.join("stoker");
    }
    if let Some(h) = var("HOME") {
        return h.join(".cache").join("stoker");
    }
    std::env::temp_dir().join("stoker-cache")
}

/// What [`Cache::ensure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The file was there already (this process or another fetched it).
    Hit,
    /// Downloaded now; the bytes received (more than the object's size after a retry).
    Downloaded(u64),
}

/// A cache directory: objects of bucket `B` and key `K` live at `DIR/s3/B/K`.
#[derive(Clone, Debug)]
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache in `dir` (the [`default_cache_dir`] when `None`), created if missing.
    pub fn new(dir: Option<&Path>) -> Result<Cache> {
        let root = dir.map_or_else(default_cache_dir, Path::to_path_buf);
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        Ok(Cache { root })
    }

    /// Where object `key` of `bucket` lives in the cache.
    pub fn path(&self, bucket: &str, key: &str) -> PathBuf {
        let mut p = self.root.join("s3").join(bucket);
        for part in key
            .split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        {
            p.push(part);
        }
        p
    }

    /// The file beside `path` that records the ETag of the version cached.
    fn etag_path(path: &Path) -> PathBuf {
        sibling(path, ".etag")
    }

    /// Whether `path` holds `obj` whole: its size, and its ETag when the store gives one.
    fn holds(path: &Path, obj: &Object) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        if meta.len() != obj.size {
            return false;
        }
        match &obj.etag {
            None => true,
            Some(t) => fs::read_to_string(Self::etag_path(path)).is_ok_and(|s| s.trim() == t),
        }
    }

    /// The local file of `obj`, downloading it first unless it is cached already. Two
    /// processes (or threads) asking for one object at once download it once: the second
    /// waits on the first's lock, then finds the file. The download goes to a temporary name,
    /// is checked (size, MD5 where the ETag is one) and renamed; a crash leaves at most a
    /// temporary file, never a partial file under the final name.
    pub fn ensure(&self, store: &Store, bucket: &str, obj: &Object) -> Result<(PathBuf, Fetched)> {
        let path = self.path(bucket, &obj.key);
        if Self::holds(&path, obj) {
            return Ok((path, Fetched::Hit));
        }
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = sibling(&path, ".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        if Self::holds(&path, obj) {
            return Ok((path, Fetched::Hit));
        }
        // A stale version (another ETag or size) goes first, so that the ETag file never
        // vouches for bytes it does not describe.
        remove_if_there(&path)?;
        let tmp = sibling(&path, &format!(".part-{}", std::process::id()));
        let got = store.download(obj, &tmp);
        let received = match got {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let etag_path = Self::etag_path(&path);
        match &obj.etag {
            Some(t) => crate::source::write_file(&etag_path, |f| {
                std::io::Write::write_all(f, t.as_bytes())
            })?,
            None => remove_if_there(&etag_path)?,
        }
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        drop(lock);
        Ok((path, Fetched::Downloaded(received)))
    }

    /// Removes the cached file of `key` (under its lock, so never one being written); a file
    /// another process has mapped stays readable there until it unmaps it.
    pub fn evict(&self, bucket: &str, key: &str) -> Result<()> {
        let path = self.path(bucket, key);
        let lock_path = sibling(&path, ".lock");
        if let Ok(lock) = File::options().write(true).open(&lock_path) {
            lock.lock().map_err(|e| Error::io(&lock_path, e))?;
            remove_if_there(&path)?;
            drop(lock);
        } else {
            remove_if_there(&path)?;
        }
        Ok(())
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_cache() {
        let c = Cache {
            root: PathBuf::from("/c"),
        };
        assert_eq!(
            c.path("b", "a/../../x//y.tar"),
            PathBuf::from("/c/s3/b/a/x/y.tar")
        );
        assert_eq!(
            sibling(Path::new("/c/x.tar"), ".lock"),
            PathBuf::from("/c/x.tar.lock")
        );
    }

    #[test]
    fn a_file_of_another_size_or_etag_is_not_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tar");
        std::fs::write(&p, b"12345").unwrap();
        let mut obj = Object {
            key: "x.tar".into(),
            size: 5,
            etag: None,
        };
        assert!(Cache::holds(&p, &obj));
        obj.size = 6;
        assert!(!Cache::holds(&p, &obj));
        obj.size = 5;
        obj.etag = Some("abc".into());
        assert!(!Cache::holds(&p, &obj));
        std::fs::write(Cache::etag_path(&p), "abc").unwrap();
        assert!(Cache::holds(&p, &obj));
    }
}
