//! Writing to object storage: a local file uploaded whole, in parts, so that the object
//! appears only once every part has arrived.

use std::io::Read;
use std::path::Path;

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::S3Url;
use super::store::{Store, remote_error};
use crate::source::OpenOptions;
use crate::{Error, ErrorKind, Result};

/// Parts of this size (S3 wants at least 5 MiB for every part but the last).
const PART: usize = 16 << 20;

/// Uploads the local file `path` to `url` (`s3://bucket/key`) as a multipart upload: the
/// object appears only when the upload completes, and an upload that fails is aborted, so
/// the bucket never holds a partial object under `key`. Returns the bytes written.
///
/// Endpoint and keys come from the AWS environment, as for reading
/// ([`remote`](crate::remote)); retries from `opts`.
pub fn upload_file(path: &Path, url: &str, opts: &OpenOptions) -> Result<u64> {
    let u = S3Url::parse(url)?;
    let store = Store::connect(u.bucket(), opts)?;
    store.upload(path, u.key())
}

/// Whether the object `url` exists (what a rerun checks to skip work already written).
pub fn exists(url: &str, opts: &OpenOptions) -> Result<bool> {
    let u = S3Url::parse(url)?;
    let store = Store::connect(u.bucket(), opts)?;
    Ok(store.head(u.key())?.is_some())
}

/// Deletes the object `url`, if there is one (a stale index a rerun replaces).
pub fn delete(url: &str, opts: &OpenOptions) -> Result<()> {
    let u = S3Url::parse(url)?;
    let store = Store::connect(u.bucket(), opts)?;
    let (rt, s3) = store.client();
    let k = Key::from(u.key());
    let s3 = s3.clone();
    match rt.block_on(async move { s3.delete(&k).await }) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(remote_error(url, e)),
    }
}

impl Store {
    /// Uploads the local file `path` to `key`, in parts.
    pub(crate) fn upload(&self, path: &Path, key: &str) -> Result<u64> {
        let url = self.url(key);
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let (rt, s3) = self.client();
        let k = Key::from(key);
        let s3 = s3.clone();
        rt.block_on(async move {
            let upload = s3
                .put_multipart(&k)
                .await
                .map_err(|e| remote_error(&url, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(Error::io(path, e));
                    }
                };
                if let Err(e) = w.wait_for_capacity(4).await {
                    // No partial upload left behind in the bucket (`finish` aborts too).
                    let _ = w.abort().await;
                    return Err(remote_error(&url, e));
                }
                w.write(&buf[..n]);
                total += n as u64;
            }
            w.finish().await.map_err(|e| {
                Error::new(ErrorKind::Remote, "upload failed after retries")
                    .file(&url)
                    .with_source(e)
            })?;
            Ok(total)
        })
    }
}
