//! A hash over batches (bytes, labels, indices, in order), to compare two runs bit for bit.

use xxhash_rust::xxh3::Xxh3;

use crate::Batch;

/// Hashes every batch it is given, in order: image bytes, shape, dtype, labels and indices.
///
/// Two runs give the same digest exactly when they yielded the same batches in the same order.
///
/// ```
/// use stoker::{Loader, digest::Digest};
/// use stoker::source::NpySource;
/// let run = |workers| {
///     let src = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy")).unwrap();
///     let mut l = Loader::builder(src).batch_size(5).shuffle(true).seed(3).num_workers(workers).build().unwrap();
///     let mut d = Digest::new();
///     for b in l.epoch(0) { d.update(&b.unwrap()); }
///     d.hex()
/// };
/// assert_eq!(run(0), run(2));
/// ```
#[derive(Clone)]
pub struct Digest {
    h: Xxh3,
    batches: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

impl Digest {
    /// An empty digest.
    pub fn new() -> Self {
        Digest {
            h: Xxh3::new(),
            batches: 0,
        }
    }

    /// Adds one batch.
    pub fn update(&mut self, batch: &Batch) {
        for d in batch.shape() {
            self.h.update(&(d as u64).to_le_bytes());
        }
        self.h.update(batch.dtype().as_str().as_bytes());
        self.h.update(batch.as_bytes());
        if let Some(labels) = batch.labels() {
            for l in labels {
                self.h.update(&l.to_le_bytes());
            }
        }
        for i in batch.indices() {
            self.h.update(&(*i as u64).to_le_bytes());
        }
        self.batches += 1;
    }

    /// Batches added so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// The 64-bit digest.
    pub fn value(&self) -> u64 {
        self.h.digest()
    }

    /// The digest as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.value())
    }
}
