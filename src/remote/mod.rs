//! Object storage: data sets at `s3://bucket/prefix/…` (the `s3` feature).
//!
//! A layer below the sources. [`open`](crate::source::open) takes an `s3://` path as it takes
//! a local one: a glob of shards (`s3://b/train/shard-*.tar`), NPY shards with their labels
//! (`s3://b/npy/images-*.npy`), or a directory written by `stoker convert` or `stoker resize`
//! (`s3://b/train/` or `s3://b/train/stoker.json`).
//!
//! - **Endpoint and keys** come from the standard AWS environment: `AWS_ENDPOINT_URL`,
//!   `AWS_REGION` (default `us-east-1`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_SESSION_TOKEN`, and `AWS_ALLOW_HTTP=true` for a server without TLS.
//! - **Download once, then map.** Each shard is downloaded whole into a node-local cache
//!   ([`OpenOptions::cache_dir`](crate::source::OpenOptions::cache_dir), default
//!   `default_cache_dir()`) under a lock per object, to a temporary name, checked (size, and
//!   the MD5 a single-part ETag gives) and renamed; then its format maps it as a local shard.
//!   The processes of a node share the cache: one downloads, the others wait and map.
//! - **Ahead of need.** Fetch threads download the shards in the order the loader will read
//!   them ([`Source::will_read`](crate::source::Source::will_read)), up to
//!   [`fetch_ahead`](crate::source::OpenOptions::fetch_ahead) bytes ahead. With a
//!   [`cache_limit`](crate::source::OpenOptions::cache_limit), the shard whose next use is
//!   furthest away is evicted, never one in use.
//! - **Faults.** Requests are retried with backoff; a body cut short or an object shorter than
//!   its listing is fetched again; after the retries the error is an
//!   [`ErrorKind::Remote`](crate::ErrorKind::Remote) naming the URL, which no skip policy
//!   skips. A missing object, bucket or wrong key is an error at open.
//!
//! The async client runs on one small tokio runtime that only fetches; the workers stay
//! threads and read files.

mod url;
pub use url::{S3Url, is_remote};

#[cfg(feature = "s3")]
mod cache;
#[cfg(feature = "s3")]
mod count;
#[cfg(feature = "s3")]
mod fetcher;
#[cfg(feature = "s3")]
mod loose;
#[cfg(feature = "s3")]
mod open;
#[cfg(feature = "s3")]
mod plan;
#[cfg(feature = "s3")]
mod shards;
#[cfg(feature = "s3")]
mod store;
#[cfg(feature = "s3")]
pub use cache::default_cache_dir;
#[cfg(feature = "s3")]
pub(crate) use fetcher::Counters;
#[cfg(feature = "s3")]
pub use loose::RemoteFolder;
#[cfg(feature = "s3")]
pub(crate) use open::open;
#[cfg(feature = "s3")]
pub use shards::RemoteShards;
#[cfg(feature = "s3")]
mod upload;
#[cfg(feature = "s3")]
pub use upload::{delete, exists, upload_file};

/// What a build without the `s3` feature says of an `s3://` path (a usage error naming it).
pub const WITHOUT_S3: &str = "this build of stoker has no object storage support (the s3 \
     feature): rebuild with it (Rust: features = [\"s3\"]; the stoker command: cargo install \
     stoker-tools --features s3; Python: MATURIN_PEP517_ARGS=\"--features s3\" pip install ./python)";

/// What the fetcher of an `s3://` data set has done: bytes and objects downloaded, objects
/// found in the cache already, shards evicted, and the most bytes held in the cache at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FetchStats {
    /// Bytes received, over every attempt (a retried object counts twice).
    pub bytes_downloaded: u64,
    /// Objects downloaded.
    pub downloads: u64,
    /// Objects found whole in the cache (fetched earlier, or by another process).
    pub cache_hits: u64,
    /// Shards evicted to stay within the cache limit.
    pub evictions: u64,
    /// The most bytes of shards held in the cache at once by this source.
    pub peak_cached_bytes: u64,
}
