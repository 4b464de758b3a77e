//! [`RemoteFolder`]: a prefix in object storage that holds one object per image
//! (`s3://b/raw/<class>/<image>.jpg`), read as a [`Source`] without a copy to local disk:
//! each sample is one GET, into the caller's buffer, with the retries of a shard's download.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fetcher::Counters;
use super::store::{Object, Store};
use crate::source::{Access, Item, Raw, Source};
use crate::{Error, Result};

/// Images of one prefix in object storage, one object each: `.jpg`, `.jpeg` and `.png` keys
/// below the prefix (any depth; a path component starting with `.` is skipped), in
/// [`ImageFolder`](crate::source::ImageFolder)'s order: by class folder (the first component
/// below the prefix), then directory, then file name. When every image sits in a class
/// folder, the classes in byte order are the labels `0..`, as for a local folder; otherwise
/// the source has no labels.
///
/// [`get`](Source::get) fetches the object whole into the caller's buffer (the size the
/// listing gave is checked, and the MD5 a single-part ETag is); workers fetch in parallel,
/// one request each. Nothing is written to disk. Made by [`open`](crate::source::open) for an
/// `s3://…/prefix/` that holds images and no shards.
pub struct RemoteFolder {
    store: Store,
    prefix: String,
    objects: Vec<Object>,
    /// The URL of each object (what [`Source::path`] gives and errors name).
    urls: Vec<PathBuf>,
    labels: Option<Vec<i64>>,
    classes: Vec<String>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RemoteFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFolder")
            .field("prefix", &self.prefix)
            .field("images", &self.objects.len())
            .finish()
    }
}

/// Whether `key` (below the prefix) names an image stoker reads, in no hidden directory.
fn is_image(rel: &str) -> bool {
    let lower = rel.to_ascii_lowercase();
    let image = [".jpg", ".jpeg", ".png"].iter().any(|x| lower.ends_with(x));
    image && !rel.split('/').any(|c| c.starts_with('.') || c.is_empty())
}

impl RemoteFolder {
    /// The images below `prefix` (a key prefix ending in `/`, or empty) among `listing`; `None`
    /// when there are none.
    pub(crate) fn from_listing(
        store: Store,
        prefix: &str,
        listing: &[Object],
    ) -> Option<RemoteFolder> {
        let mut objects: Vec<Object> = listing
            .iter()
            .filter(|o| o.key.len() > prefix.len() && is_image(&o.key[prefix.len()..]))
            .cloned()
            .collect();
        if objects.is_empty() {
            return None;
        }
        let rel = |o: &Object| o.key[prefix.len()..].to_string();
        let class = |r: &str| r.split_once('/').map(|(c, _)| c.to_string());
        objects.sort_by_cached_key(|o| {
            let r = rel(o);
            let (dir, name) = r.rsplit_once('/').unwrap_or(("", &r));
            (class(&r), dir.to_string(), name.to_string())
        });
        let in_classes: Option<Vec<String>> = objects.iter().map(|o| class(&rel(o))).collect();
        let (labels, classes) = match in_classes {
            Some(per) => {
                let mut classes = per.clone();
                classes.dedup();
                let labels = per
                    .iter()
                    .map(|c| classes.binary_search(c).unwrap_or(0) as i64)
                    .collect();
                (Some(labels), classes)
            }
            None => (None, Vec::new()),
        };
        let urls = objects
            .iter()
            .map(|o| PathBuf::from(store.url(&o.key)))
            .collect();
        Some(RemoteFolder {
            store,
            prefix: prefix.to_string(),
            objects,
            urls,
            labels,
            classes,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Each image's key below the prefix (`class/name.jpg`), in the source's order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(|o| &o.key[self.prefix.len()..])
    }

    /// The class folders, in label order (empty without labels).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

impl Source for RemoteFolder {
    fn len(&self) -> usize {
        self.objects.len()
    }

    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let obj = self.objects.get(index).ok_or_else(|| {
            Error::usage(format!("index out of range (len {})", self.objects.len())).at(index)
        })?;
        let n = self.store.read_into(obj, buf).map_err(|e| e.at(index))?;
        self.counters.note_download(n);
        Ok(Item {
            raw: Raw::Encoded(&buf[..]),
            label: self.labels.as_ref().map(|l| l[index]),
        })
    }

    fn path(&self, index: usize) -> Option<&Path> {
        self.urls.get(index).map(PathBuf::as_path)
    }

    fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    fn label(&self, index: usize) -> Option<i64> {
        self.labels.as_ref()?.get(index).copied()
    }

    fn describe(&self) -> String {
        format!(
            "images in object storage: {} objects in {} classes ({})",
            self.objects.len(),
            self.classes.len(),
            self.store.url(&self.prefix)
        )
    }

    fn access(&self) -> Access {
        Access::slow(
            "one request per sample from object storage; `stoker convert --to tar` or \
             `stoker resize --to tar` to shards is faster",
        )
    }
}
