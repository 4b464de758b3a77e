//! `s3://bucket/key` URLs: parsing, joining, and the glob a key may hold.

use std::fmt;

use crate::{Error, Result};

/// The scheme prefix of an object storage path.
pub const SCHEME: &str = "s3://";

/// Whether `path` names object storage (`s3://…`) rather than a local file.
///
/// ```
/// assert!(stoker::remote::is_remote("s3://bucket/shards/shard-*.tar"));
/// assert!(!stoker::remote::is_remote("data/s3/shard-000.tar"));
/// ```
pub fn is_remote(path: &str) -> bool {
    path.starts_with(SCHEME)
}

/// An object (or a prefix, or a glob of keys) in an S3-compatible bucket.
///
/// ```
/// use stoker::remote::S3Url;
/// let u = S3Url::parse("s3://shards/train/shard-*.tar")?;
/// assert_eq!((u.bucket(), u.key()), ("shards", "train/shard-*.tar"));
/// assert_eq!(u.list_prefix(), "train/");
/// assert_eq!(u.with_key("train/stoker.json").to_string(), "s3://shards/train/stoker.json");
/// assert!(S3Url::parse("s3:///key").is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    bucket: String,
    key: String,
}

impl S3Url {
    /// Parses `s3://bucket/key` (the key may be empty, a prefix ending in `/`, or a glob).
    pub fn parse(url: &str) -> Result<S3Url> {
        let rest = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| Error::usage(format!("{url}: not an s3:// URL")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::usage(format!("{url}: no bucket (s3://BUCKET/KEY)")));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key (an object, a prefix or a glob), without a leading `/`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The same bucket, another key.
    pub fn with_key(&self, key: impl Into<String>) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.into(),
        }
    }

    /// Whether the key holds glob characters (`*`, `?`, `[`).
    pub fn is_glob(&self) -> bool {
        self.key.contains(['*', '?', '['])
    }

    /// The literal prefix to list for this key: up to the last `/` before the first glob
    /// character (the whole key when it has none).
    pub fn list_prefix(&self) -> &str {
        match self.key.find(['*', '?', '[']) {
            None => &self.key,
            Some(g) => &self.key[..self.key[..g].rfind('/').map_or(0, |s| s + 1)],
        }
    }

    /// The key as a prefix of a "directory": ends with `/` (empty for the bucket's root).
    pub fn dir_prefix(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.bucket, self.key)
    }
}

#[cfg(feature = "s3")]
/// Whether `key` matches the glob `pattern` as a shell matches paths (`*` stays within one
/// `/`-separated level).
pub(crate) fn glob_matches(pattern: &glob::Pattern, key: &str) -> bool {
    pattern.matches_with(
        key,
        glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let u = S3Url::parse("s3://b/a/b/c-*.tar").unwrap();
        assert_eq!(u.list_prefix(), "a/b/");
        assert!(u.is_glob());
        let u = S3Url::parse("s3://b/x*.tar").unwrap();
        assert_eq!(u.list_prefix(), "");
        let u = S3Url::parse("s3://b").unwrap();
        assert_eq!((u.key(), u.dir_prefix().as_str()), ("", ""));
        let u = S3Url::parse("s3://b/data").unwrap();
        assert_eq!(u.dir_prefix(), "data/");
        assert!(S3Url::parse("/local/path").is_err());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn globs_stay_within_one_level() {
        let p = glob::Pattern::new("a/shard-*.tar").unwrap();
        assert!(glob_matches(&p, "a/shard-000.tar"));
        assert!(!glob_matches(&p, "a/shard-0/x.tar"));
    }
}
