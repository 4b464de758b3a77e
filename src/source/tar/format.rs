//! The tar [`Format`](crate::source::Format) for [`open`](crate::source::open).

use std::path::{Path, PathBuf};

use super::TarSource;
use crate::Result;
use crate::source::Source;

/// The tar shard format for [`open`](crate::source::open): `.tar` files (by extension or the ustar
/// magic at byte 257); in a directory, every `*.tar` file. Labels are the `.cls` members.
pub(crate) struct TarFormat;

/// The one [`TarFormat`] value, listed in [`FORMATS`](crate::source::FORMATS).
pub(crate) static TAR: TarFormat = TarFormat;

impl crate::source::Format for TarFormat {
    fn name(&self) -> &'static str {
        "tar"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        head.get(257..262) == Some(b"ustar") || crate::source::open::has_ext(path, &["tar"])
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        crate::source::open::files_in(dir, |n| n.to_ascii_lowercase().ends_with(".tar"))
    }

    fn open(
        &self,
        files: &[PathBuf],
        opts: &crate::source::OpenOptions,
    ) -> Result<Box<dyn Source>> {
        opts.no_labels("tar shards", "their labels are the .cls members")?;
        Ok(Box::new(TarSource::shards(files)?))
    }
}
