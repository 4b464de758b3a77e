//! Samples per shard when no index says: NPY shards are counted from the first bytes of each
//! object (the header), fetched with ranged requests, not from whole downloads.

use super::fetcher::Shard;
use super::store::{Object, Store};
use crate::source::{npy_header_end, npy_image_rows, npy_label_rows};
use crate::{Error, Result};

/// Bytes asked for first: more than the header numpy writes for any image array (it pads the
/// header to 64 or 128 bytes); a longer one is asked for again, whole.
const FIRST: u64 = 4096;

/// The longest header read: past it, the file is called broken.
const MOST: u64 = 1 << 20;

/// The samples of each NPY shard (its images object, then its labels object if it has one),
/// read from the headers: the images' rows, checked as opening the file checks them, and as
/// many labels. Two requests per object at most, 16 at a time.
pub(crate) fn npy_counts(store: &Store, shards: &[Shard]) -> Result<Vec<usize>> {
    let objs: Vec<&Object> = shards.iter().flat_map(|s| s.objects.iter()).collect();
    let first: Vec<(&Object, u64)> = objs.iter().map(|&o| (o, FIRST)).collect();
    let mut heads = store.starts(&first)?;
    let longer: Vec<(usize, u64)> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let end = npy_header_end(h)? as u64;
            (end > h.len() as u64 && (h.len() as u64) < objs[i].size).then_some((i, end.min(MOST)))
        })
        .collect();
    if !longer.is_empty() {
        let again: Vec<(&Object, u64)> = longer.iter().map(|&(i, n)| (objs[i], n)).collect();
        for (&(i, _), h) in longer.iter().zip(store.starts(&again)?) {
            heads[i] = h;
        }
    }
    let mut counts = Vec::with_capacity(shards.len());
    let mut at = 0;
    for s in shards {
        let images =
            npy_image_rows(&heads[at], s.objects[0].size).map_err(|m| Error::format(&s.url, m))?;
        if let Some(lab) = s.objects.get(1) {
            let url = store.url(&lab.key);
            let labels =
                npy_label_rows(&heads[at + 1], lab.size).map_err(|m| Error::format(&url, m))?;
            if labels != images {
                return Err(Error::format(
                    &url,
                    format!("{labels} labels but {} has {images} images", s.url),
                ));
            }
        }
        at += s.objects.len();
        counts.push(images);
    }
    Ok(counts)
}
