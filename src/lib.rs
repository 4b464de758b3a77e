//! stoker keeps a GPU fed: image data sets on disk to batched tensors in host memory.
//!
//! A [`source`] gives the bytes or pixels of sample `i`; the [`sampler`] decides the order;
//! [`Loader`] workers [`decode`], [`transform`] and write each sample straight into its slot
//! of a pooled [`batch`] buffer in the [`output`] format; the consumer iterates [`Batch`]es.
//!
//! ```
//! use stoker::{Loader, Normalize};
//! use stoker::source::ImageFolder;
//! let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
//!     .batch_size(8).shuffle(true).seed(7).normalize(Normalize::imagenet())
//!     .build()?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.images::<f32>()?.shape(), &[8, 3, 144, 256]);
//! }
//! # Ok::<(), stoker::Error>(())
//! ```

#![warn(missing_docs)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod augment;
pub mod batch;
#[cfg(feature = "burn")]
#[cfg_attr(docsrs, doc(cfg(feature = "burn")))]
pub mod burn;
#[cfg(feature = "candle")]
#[cfg_attr(docsrs, doc(cfg(feature = "candle")))]
pub mod candle;
#[cfg(feature = "cuda")]
#[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
pub mod cuda;
pub mod decode;
pub mod digest;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod gpu_convert;
pub mod image;
pub mod launch;
pub mod loader;
mod noise;
pub mod output;
pub mod plan;
pub mod remote;
pub mod rng;
pub mod sampler;
pub mod simd;
pub mod source;
pub mod stats;
pub mod transform;

pub use augment::Augment;
pub use batch::Batch;
pub use error::{Error, ErrorKind, Result};
pub use gpu_convert::GpuConvert;
pub use image::{ImageView, Pixels, YCbCrView};
pub use loader::{Epoch, Loader, LoaderBuilder, OnError, SkipBound};
pub use output::{DType, Layout, Normalize, OutputSpec};
pub use sampler::{Checkpoint, EpochIter, EpochOrder, Partition, Permutation, Sampler};
#[cfg(feature = "hdf5")]
#[cfg_attr(docsrs, doc(cfg(feature = "hdf5")))]
pub use source::Hdf5Source;
pub use source::{ImageFolder, NpySource, TarSource};
pub use stats::{DecodeWarning, Stats};

/// The Rust blocks of the README and of the guide under `docs/`, compiled and run as doc tests
/// (from the repository's root, on the fixtures). A chapter whose blocks need a feature is
/// compiled with it; `tests/docs.rs` checks that every chapter with a Rust block is listed here.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../README.md")]
    mod readme {}
    #[doc = include_str!("../docs/getting-started.md")]
    mod getting_started {}
    #[cfg(feature = "hdf5")]
    #[doc = include_str!("../docs/data.md")]
    mod data {}
    #[doc = include_str!("../docs/augmentation.md")]
    mod augmentation {}
    #[doc = include_str!("../docs/bad-data.md")]
    mod bad_data {}
    #[cfg(feature = "burn")]
    #[doc = include_str!("../docs/burn.md")]
    mod burn {}
    #[cfg(feature = "candle")]
    #[doc = include_str!("../docs/candle.md")]
    mod candle {}
    #[cfg(feature = "cuda")]
    #[doc = include_str!("../docs/gpu.md")]
    mod gpu {}
    #[doc = include_str!("../docs/scaling.md")]
    mod scaling {}
}
