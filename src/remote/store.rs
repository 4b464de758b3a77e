//! The client: one S3-compatible bucket behind `object_store`, on a small tokio runtime that
//! only fetches. Callers are plain threads; every call blocks until its request is done.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, RetryConfig,
};

use super::S3Url;
use crate::source::OpenOptions;
use crate::{Error, ErrorKind, Result};

/// One object as a listing gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object {
    /// The key in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The store's ETag, when it gives one (quotes removed).
    pub etag: Option<String>,
}

/// A bucket, with the retry and timeout settings of [`OpenOptions`].
pub(crate) struct Store {
    rt: tokio::runtime::Runtime,
    s3: Arc<AmazonS3>,
    bucket: String,
    /// Whole-object attempts after the client's own retries (a body cut short, a size or
    /// checksum that does not match).
    attempts: usize,
    backoff: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// `e` as a [`ErrorKind::Remote`] error naming `url`, its message saying what to check.
pub(crate) fn remote_error(url: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let text = e.to_string();
    let what = match &e {
        E::NotFound { .. } if text.contains("NoSuchBucket") => "no such bucket".to_string(),
        E::NotFound { .. } => "no such object".to_string(),
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => {
            "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string()
        }
        _ if text.contains("NoSuchBucket") => "no such bucket".to_string(),
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied") =>
        {
            "access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string()
        }
        _ => format!("object storage failed after retries ({})", short(&text)),
    };
    Error::new(ErrorKind::Remote, what).file(url).with_source(e)
}

/// The first line of a long client error, at most 200 characters.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    line.chars().take(200).collect()
}

impl Store {
    /// A client of `bucket`: endpoint, region and keys from the AWS environment
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`, ...), retries and timeouts from `opts`.
    pub fn connect(bucket: &str, opts: &OpenOptions) -> Result<Store> {
        let timeout = opts.remote_timeout_value();
        let retries = opts.remote_retries_value();
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        };
        let retry = RetryConfig {
            backoff,
            max_retries: retries,
            retry_timeout: timeout * (retries as u32 + 1) + Duration::from_secs(10),
        };
        // These client options replace those `from_env` read: `AWS_ALLOW_HTTP` is read here.
        let allow_http = std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(10).min(timeout))
            .with_read_timeout(timeout)
            .with_timeout_disabled();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_client_options(client);
        if let Some(e) = opts.endpoint_value() {
            builder = builder.with_endpoint(e);
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::Usage,
                format!("cannot configure the s3 client: {e}"),
            )
            .file(format!("{}{bucket}", super::url::SCHEME))
            .with_source(e)
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stoker-fetch-rt")
            .enable_all()
            .build()
            .map_err(|e| Error::io(format!("{}{bucket}", super::url::SCHEME), e))?;
        Ok(Store {
            rt,
            s3: Arc::new(s3),
            bucket: bucket.to_string(),
            attempts: retries + 1,
            backoff: Duration::from_millis(100),
        })
    }

    /// The URL of `key` in this bucket, as errors name it.
    pub fn url(&self, key: &str) -> String {
        S3Url::parse(&format!("{}{}/", super::url::SCHEME, self.bucket))
            .map(|u| u.with_key(key).to_string())
            .unwrap_or_else(|_| key.to_string())
    }

    /// Every object under `prefix` (all levels), sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let s3 = self.s3.clone();
        let p = (!prefix.is_empty()).then(|| Key::from(prefix.trim_end_matches('/')));
        let metas = self.rt.block_on(async move {
            let mut stream = s3.list(p.as_ref());
            let mut out = Vec::new();
            while let Some(m) = stream.next().await {
                out.push(m?);
            }
            Ok::<_, object_store::Error>(out)
        });
        let metas = metas.map_err(|e| remote_error(&self.url(prefix), e))?;
        let mut out: Vec<Object> = metas
            .into_iter()
            .map(|m| Object {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag.map(|t| t.trim_matches('"').to_string()),
            })
            .filter(|o| o.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The object `key`, or `None` when there is none.
    pub fn head(&self, key: &str) -> Result<Option<Object>> {
        let s3 = self.s3.clone();
        let k = Key::from(key);
        match self.rt.block_on(async move { s3.head(&k).await }) {
            Ok(m) => Ok(Some(Object {
                key: key.to_string(),
                size: m.size,
                etag: m.e_tag.map(|t| t.trim_matches('"').to_string()),
            })),
            Err(object_store::Error::NotFound { source, path }) => {
                let text = source.to_string();
                if text.contains("NoSuchBucket") {
                    Err(remote_error(
                        &self.url(key),
                        object_store::Error::NotFound { path, source },
                    ))
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(remote_error(&self.url(key), e)),
        }
    }

    /// Writes object `obj` into `file` (created empty by the caller), whole: the client
    /// retries a failed request with backoff, and a body that ends short or whose size or
    /// MD5 (from a single-part ETag) does not match is fetched again, up to the retry count.
    /// Returns the bytes received over all attempts.
    pub fn download(&self, obj: &Object, file: &Path) -> Result<u64> {
        let url = self.url(&obj.key);
        let mut received = 0u64;
        let mut last: Option<Error> = None;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(self.backoff * (1 << attempt.min(6)));
            }
            match self.download_once(obj, file, &url, &mut received) {
                Ok(()) => return Ok(received),
                Err(e) => {
                    tracing::debug!("{url}: attempt {} failed: {e}", attempt + 1);
                    // No object, no bucket, no access: another try answers the same.
                    if let Some(src) = std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<object_store::Error>())
                        && matches!(
                            src,
                            object_store::Error::NotFound { .. }
                                | object_store::Error::Unauthenticated { .. }
                                | object_store::Error::PermissionDenied { .. }
                        )
                    {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Remote, "no attempt made").file(&url)))
    }

    fn download_once(
        &self,
        obj: &Object,
        path: &Path,
        url: &str,
        received: &mut u64,
    ) -> Result<()> {
        let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
        let s3 = self.s3.clone();
        let key = Key::from(obj.key.as_str());
        let options = listed_version(obj);
        let mut md5 = Md5::new();
        let mut n = 0u64;
        let io_error: std::cell::Cell<Option<std::io::Error>> = std::cell::Cell::new(None);
        let got = self.rt.block_on(async {
            let r = s3.get_opts(&key, options).await?;
            let mut stream = r.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                md5.update(&chunk);
                n += chunk.len() as u64;
                if let Err(e) = file.write_all(&chunk) {
                    io_error.set(Some(e));
                    break;
                }
            }
            Ok::<(), object_store::Error>(())
        });
        *received += n;
        if let Some(e) = io_error.take() {
            return Err(Error::io(path, e));
        }
        got.map_err(|e| remote_error(url, e))?;
        check(obj, n, || md5.finalize().into(), url)?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    /// The whole object `obj` into `buf` (cleared first), with the retries of
    /// [`download`](Self::download): a body cut short, or of another size or MD5 than the
    /// listing's, is fetched again. Returns the bytes received over all attempts.
    pub fn read_into(&self, obj: &Object, buf: &mut Vec<u8>) -> Result<u64> {
        let url = self.url(&obj.key);
        let mut received = 0u64;
        let mut last: Option<Error> = None;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(self.backoff * (1 << attempt.min(6)));
            }
            buf.clear();
            let s3 = self.s3.clone();
            let key = Key::from(obj.key.as_str());
            let options = listed_version(obj);
            let got = self.rt.block_on(async {
                let mut stream = s3.get_opts(&key, options).await?.into_stream();
                while let Some(chunk) = stream.next().await {
                    buf.extend_from_slice(&chunk?);
                }
                Ok::<(), object_store::Error>(())
            });
            received += buf.len() as u64;
            let checked = got
                .map_err(|e| remote_error(&url, e))
                .and_then(|()| check(obj, buf.len() as u64, || Md5::digest(&buf[..]).into(), &url));
            match checked {
                Ok(()) => return Ok(received),
                Err(e) if is_final(&e) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Remote, "no attempt made").file(&url)))
    }

    /// The first bytes of each object: `starts[i]` is `(object, n)`, answered by its bytes
    /// `0..min(n, size)`. Up to 16 requests at once (a listing of many shards takes one round
    /// trip per 16), each of the version listed; the client retries failed requests.
    pub fn starts(&self, starts: &[(&Object, u64)]) -> Result<Vec<Vec<u8>>> {
        let requests = starts.iter().map(|&(obj, n)| {
            let s3 = self.s3.clone();
            let key = Key::from(obj.key.as_str());
            let end = n.min(obj.size);
            let options = GetOptions {
                range: (end > 0).then(|| (0..end).into()),
                ..listed_version(obj)
            };
            async move {
                let got = async { s3.get_opts(&key, options).await?.bytes().await }.await;
                got.map(|b| b.to_vec()).map_err(|e| (obj, e))
            }
        });
        let all: Vec<_> = self.rt.block_on(
            futures::stream::iter(requests)
                .buffered(16)
                .collect::<Vec<_>>(),
        );
        all.into_iter()
            .map(|r| r.map_err(|(obj, e)| remote_error(&self.url(&obj.key), e)))
            .collect()
    }

    /// The whole of a small object (an index) in memory.
    pub fn get_bytes(&self, obj: &Object) -> Result<Vec<u8>> {
        let s3 = self.s3.clone();
        let key = Key::from(obj.key.as_str());
        let url = self.url(&obj.key);
        self.rt
            .block_on(async move { s3.get(&key).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| remote_error(&url, e))
    }

    /// The client, for uploads ([`super::upload`]).
    pub(crate) fn client(&self) -> (&tokio::runtime::Runtime, &Arc<AmazonS3>) {
        (&self.rt, &self.s3)
    }
}

/// A GET of the version of `obj` listed, not one written since (`If-Match` its ETag).
fn listed_version(obj: &Object) -> GetOptions {
    GetOptions {
        if_match: obj.etag.as_ref().map(|t| format!("\"{t}\"")),
        ..GetOptions::default()
    }
}

/// Whether `e` is an answer another try gives again: no object, no bucket, no access.
fn is_final(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<object_store::Error>())
        .is_some_and(|src| {
            matches!(
                src,
                object_store::Error::NotFound { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::PermissionDenied { .. }
            )
        })
}

/// `n` bytes received of `obj`, whose MD5 `md5()` gives: an error naming `url` when the size
/// is not the listing's, or the MD5 not the single-part ETag.
fn check(obj: &Object, n: u64, md5: impl FnOnce() -> [u8; 16], url: &str) -> Result<()> {
    if n != obj.size {
        return Err(Error::new(
            ErrorKind::Remote,
            format!("received {n} bytes, the listing says {}", obj.size),
        )
        .file(url));
    }
    if let Some(etag) = obj.etag.as_deref().filter(|t| is_md5(t)) {
        let sum: String = md5().iter().map(|b| format!("{b:02x}")).collect();
        if !sum.eq_ignore_ascii_case(etag) {
            return Err(Error::new(
                ErrorKind::Remote,
                format!("md5 {sum} does not match the etag {etag}"),
            )
            .file(url));
        }
    }
    Ok(())
}

/// Whether an ETag is a plain MD5 (32 hex digits): S3 gives one for an object uploaded in one
/// part; a multipart upload's ETag (`…-N`) is not the content's MD5.
fn is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}
