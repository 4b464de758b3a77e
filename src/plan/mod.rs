//! Planning a training run: GPU memory of a step, the largest batch that fits, gradient
//! accumulation and epoch time, computed layer by layer.
//!
//! A [`Model`] is a layer graph, parsed from the text format ([`Model::parse`]), built with a
//! [`Builder`], or a [`preset`]; [`Model::analyze`] gives each layer's shape, parameters, saved
//! activations and FLOPs; [`Memory`] turns them into bytes for a batch size, [`Precision`] and
//! [`Optimizer`]; [`plan`] adds the verdict and advice.
//!
//! ```
//! use stoker::plan::{plan, preset, Request, Shape};
//! let model = preset("cnn4-dense512", 10)?;
//! let mut req = Request::new(Shape::parse("256x144x3")?, 12 << 30);
//! req.batch_size = Some(64);
//! let p = plan(&model, &req)?;
//! assert!(p.fits);
//! # Ok::<(), stoker::Error>(())
//! ```

pub mod advice;
pub mod memory;
pub mod model;
pub mod presets;

pub use advice::{Accumulation, Dominant, EpochTime, Plan, Request, plan};
pub use memory::{
    CUDNN_WORKSPACE, DEFAULT_OVERHEAD, Memory, Optimizer, Precision, Settings, format_bytes,
    largest_batch, parse_bytes,
};
pub use model::{Analysis, Builder, LayerInfo, Model, Node, NodeId, Op, Padding, Shape};
pub use presets::{PRESETS, preset};

#[cfg(test)]
mod tests;
