//! NPY source, memory-mapped: `(N, H, W, C)` or `(N, H, W)` arrays of `u8` or `f32`,
//! with optional 1-D integer labels, one file or many shards.
//!
//! The header parser is our own (versions 1.0, 2.0 and 3.0); pixels are borrowed straight
//! from the memory map, so `get` copies nothing.

mod format;
mod header;
mod source;
mod write;

pub(crate) use format::NPY;
pub use source::NpySource;
pub use write::{save_npy, write_npy};
