//! The label check: which labels are valid, and the error for one that is not, naming where
//! the source keeps it ([`Source::label_site`]).

use super::worker::locate;
use crate::source::Source;
use crate::{Error, ErrorKind, Result};

/// Which labels are valid: not negative, below `num_classes` when given, or `ignore`.
#[derive(Clone, Copy, Debug)]
pub(super) struct LabelCheck {
    pub num_classes: Option<usize>,
    pub ignore: Option<i64>,
}

impl LabelCheck {
    /// Why `label` is not valid, if it is not.
    fn problem(&self, label: i64) -> Option<String> {
        if Some(label) == self.ignore {
            return None;
        }
        let hint = "(set ignore_label to let one such value through)";
        match self.num_classes {
            _ if label < 0 => Some(format!("label {label} is negative {hint}")),
            Some(n) if label as u64 >= n as u64 => {
                Some(format!("label {label} is not below num_classes {n} {hint}"))
            }
            _ => None,
        }
    }

    /// Checks `label`, sample `index`'s: a bad one is a format error that names the sample
    /// and, where the source says ([`Source::label_site`]), the labels file and the row, line
    /// or member in it; otherwise the sample's file. Allocates only for the error.
    pub fn check<S: Source>(&self, source: &S, index: usize, label: i64) -> Result<()> {
        let Some(problem) = self.problem(label) else {
            return Ok(());
        };
        Err(match source.label_site(index) {
            Some(site) => Error::new(ErrorKind::Format, format!("{site}: {problem}"))
                .file(site.path())
                .at(index),
            None => locate(source, Error::new(ErrorKind::Format, problem), index),
        })
    }

    /// Checks every label the source holds without reading samples: the first bad one is an
    /// error as [`check`](Self::check) makes it.
    pub fn check_source<S: Source>(&self, source: &S) -> Result<()> {
        if !source.has_labels() {
            return Ok(());
        }
        for i in 0..source.len() {
            if let Some(label) = source.label(i) {
                self.check(source, i, label)?;
            }
        }
        Ok(())
    }
}
