//! `stoker._stoker`: the compiled core of the `stoker` Python package. It holds the Rust loader
//! ([`core::Core`]), batches as DLPack tensors over their buffer ([`dlpack::Tensor`]), the
//! augmentation settings ([`augment::Augment`]), the command line and the planner. The Python
//! package (`python/stoker/`) is a small typed layer over it: no sample passes through Python.

mod augment;
mod batch;
mod core;
mod dlpack;
mod errors;

use pyo3::prelude::*;

use crate::errors::IntoPy;

/// Runs the `stoker` command line with `argv` (the program name first) and returns its exit
/// status, as the Rust `stoker` binary would.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| stoker_tools::run(argv))
}

/// The report of `stoker plan ARGS --json`, as a JSON string (`args` without `plan`).
#[pyfunction]
fn plan_json(py: Python<'_>, args: Vec<String>) -> PyResult<String> {
    stoker_tools::plan_json(args).py(py)
}

/// Whether this build reads HDF5 (the `hdf5` feature).
#[pyfunction]
fn has_hdf5() -> bool {
    cfg!(feature = "hdf5")
}

#[pymodule]
fn _stoker(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<core::Core>()?;
    m.add_class::<batch::PyBatch>()?;
    m.add_class::<batch::Digest>()?;
    m.add_class::<dlpack::Tensor>()?;
    m.add_class::<augment::Augment>()?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add_function(wrap_pyfunction!(plan_json, m)?)?;
    m.add_function(wrap_pyfunction!(has_hdf5, m)?)?;
    m.add_function(wrap_pyfunction!(core::merge_checkpoints, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
