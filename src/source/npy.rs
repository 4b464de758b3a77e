//! NPY source, memory-mapped.
// STUB: filled in by the sources helper.
