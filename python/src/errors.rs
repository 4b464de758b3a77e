//! stoker's typed errors as Python exceptions: the classes live in `stoker.errors` (so that
//! they can inherit from both `StokerError` and a builtin, and carry docstrings); this raises
//! the one that matches an error's kind, with its `kind`, `path` and `index` as attributes and
//! the Rust message as its text.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use stoker::{Error, ErrorKind};

/// `kind`'s name as a Python identifier (`"skip_limit"`, `"pool_exhausted"`, `"decode"`).
pub fn kind_name(kind: ErrorKind) -> String {
    kind.as_str().replace(' ', "_")
}

/// The exception class for `kind` in `stoker.errors`.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Io | ErrorKind::Format | ErrorKind::Decode => "DataError",
        ErrorKind::SkipLimit => "SkipLimitError",
        ErrorKind::PoolExhausted => "PoolExhaustedError",
        ErrorKind::Usage | ErrorKind::DTypeMismatch => "UsageError",
        ErrorKind::NoDevice | ErrorKind::Device => "DeviceError",
        ErrorKind::Cancelled | ErrorKind::Panic => "StokerError",
        _ => "StokerError",
    }
}

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || Ok(py.import("stoker.errors")?.unbind()))
        .map(|m| m.bind(py))
}

/// `e` as the `stoker.errors` exception of its kind, with `message` as its text (the Rust
/// message unless the caller words it for Python) and `extra` attributes.
pub fn raise_with(
    py: Python<'_>,
    e: &Error,
    message: Option<String>,
    extra: &[(&str, Py<PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = errors_module(py)?.getattr(class_name(e.kind()))?;
        let text = message.clone().unwrap_or_else(|| e.to_string());
        let exc = class.call1((text,))?;
        exc.setattr("kind", kind_name(e.kind()))?;
        exc.setattr("path", e.path().map(|p| p.to_string_lossy().into_owned()))?;
        exc.setattr("index", e.index())?;
        for (k, v) in extra {
            exc.setattr(*k, v.bind(py))?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|import_error| {
        // Only when the Python half of the package is missing: still say what failed.
        PyRuntimeError::new_err(format!("stoker: {e} (and: {import_error})"))
    })
}

/// `e` as the `stoker.errors` exception of its kind.
pub fn raise(py: Python<'_>, e: &Error) -> PyErr {
    raise_with(py, e, None, &[])
}

/// `Result<T>` to `PyResult<T>` through [`raise`].
pub trait IntoPy<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for stoker::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| raise(py, &e))
    }
}

/// A usage error (`stoker.errors.UsageError`, a `ValueError`) with `message`.
pub fn usage(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &Error::usage(message.into()))
}
