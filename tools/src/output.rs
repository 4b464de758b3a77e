//! Where `stoker resize --to tar|npy` writes: a local directory, or an `s3://bucket/prefix`
//! (the `s3` feature) reached through a local staging directory one file at a time: each
//! shard is written there, uploaded as a multipart upload (the object appears only when
//! whole) and removed, so the local disk holds one shard at a time, never the data set.

use std::path::{Path, PathBuf};

use stoker::source::OpenOptions;
use stoker::{Error, Result};

#[cfg(feature = "s3")]
use stoker::remote::{delete, exists, upload_file};

// Without the feature `Output::new` refuses an s3:// destination: these are never reached.
#[cfg(not(feature = "s3"))]
fn exists(url: &str, _: &OpenOptions) -> Result<bool> {
    Err(Error::usage(stoker::remote::WITHOUT_S3).file(url))
}
#[cfg(not(feature = "s3"))]
fn upload_file(_: &Path, url: &str, _: &OpenOptions) -> Result<u64> {
    Err(Error::usage(stoker::remote::WITHOUT_S3).file(url))
}
#[cfg(not(feature = "s3"))]
fn delete(url: &str, _: &OpenOptions) -> Result<()> {
    Err(Error::usage(stoker::remote::WITHOUT_S3).file(url))
}

/// The output directory of a run.
pub struct Output {
    /// Where files are written first: the destination itself when it is local.
    dir: PathBuf,
    /// The `s3://bucket/prefix` (no trailing `/`) the files go to, when remote.
    remote: Option<String>,
}

impl Output {
    /// The output `dst`: a local directory, or an `s3://` prefix staged under the system's
    /// temporary directory.
    pub fn new(dst: &Path) -> Result<Output> {
        let text = dst.to_string_lossy();
        if !stoker::remote::is_remote(&text) {
            return Ok(Output {
                dir: dst.to_path_buf(),
                remote: None,
            });
        }
        if !cfg!(feature = "s3") {
            return Err(Error::usage(stoker::remote::WITHOUT_S3).file(dst));
        }
        let dir = std::env::temp_dir().join(format!("stoker-upload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Output {
            dir,
            remote: Some(text.trim_end_matches('/').to_string()),
        })
    }

    /// Whether the output is in object storage.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The local directory files are written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of output file `name` (remote), or its path.
    pub fn location(&self, name: &str) -> PathBuf {
        match &self.remote {
            Some(url) => PathBuf::from(format!("{url}/{name}")),
            None => self.dir.join(name),
        }
    }

    /// Remote: whether object `name` exists (a rerun skips it).
    pub fn exists(&self, name: &str) -> Result<bool> {
        match &self.remote {
            Some(url) => exists(&format!("{url}/{name}"), &OpenOptions::new()),
            None => Ok(self.dir.join(name).exists()),
        }
    }

    /// The file `path` (in [`dir`](Self::dir)) is finished: remote, it is uploaded whole and
    /// removed from the staging directory; local, nothing to do.
    pub fn publish(&self, path: &Path) -> Result<()> {
        let Some(url) = &self.remote else {
            return Ok(());
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        upload_file(path, &format!("{url}/{name}"), &OpenOptions::new())?;
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))
    }

    /// Remote: removes the objects `names` if they are there (a stale index).
    pub fn remove(&self, names: &[String]) -> Result<()> {
        if let Some(url) = &self.remote {
            for n in names {
                delete(&format!("{url}/{n}"), &OpenOptions::new())?;
            }
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.remote.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
