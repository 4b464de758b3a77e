//! stoker keeps a GPU fed: image datasets on disk to augmented, batched tensors.

pub mod decode;
mod error;
mod image;
pub mod output;
pub mod rng;
pub mod sampler;
pub mod source;

pub use error::{Error, ErrorKind, Result};
pub use image::{ImageView, Pixels};
pub use output::{DType, Layout, Normalize, OutputSpec};
pub use sampler::{Partition, Sampler};
