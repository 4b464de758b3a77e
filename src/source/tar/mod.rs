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
