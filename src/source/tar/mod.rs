//! Tar shards in the WebDataset layout, memory-mapped: `shard-000000.tar` holding members
//! `KEY.jpg` (or `.jpeg` / `.png`) and `KEY.cls` (the label as ASCII digits).
//!
//! A shard is indexed once at open by walking its 512-byte headers (ustar, GNU long names
//! (`L` entries) and pax `x` headers); no member is copied: [`get`](Source::get) returns the
//! encoded bytes as a slice of the map ([`Raw::Encoded`]). [`TarWriter`] writes shards that
//! `tar` and Python's `tarfile` (which `webdataset` reads through) read.

mod format;
mod source;
mod ustar;
mod webdataset;
mod writer;

pub(crate) use format::TAR;
pub use source::TarSource;
pub use writer::TarWriter;

/// Fuzzing ([`crate::fuzz::tar`]): `data` as a whole shard, indexed as `TarSource::open` does.
/// Panics only on a broken invariant (a member or sample outside the data, a sample without
/// its fault or label).
pub(crate) fn fuzz(data: &[u8]) {
    let Ok(members) = ustar::walk(data) else {
        return;
    };
    let inside = |start: usize, len: usize| start.checked_add(len).is_some_and(|e| e <= data.len());
    for m in &members {
        assert!(
            inside(m.start, m.len),
            "member {:?} outside {} bytes",
            m.name,
            data.len()
        );
    }
    let entries = webdataset::group(&members, data);
    let labelled = entries.iter().any(webdataset::Entry::has_cls);
    for e in &entries {
        assert!(
            inside(e.start, e.len),
            "sample {:?} outside the data",
            e.key
        );
        if e.fault.is_none() {
            assert_eq!(e.label.is_some(), labelled, "sample {:?}", e.key);
        }
    }
}
