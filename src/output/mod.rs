//! Output format of a batch slot (dtype, layout, normalisation) and the fused store kernels.
//!
//! A worker holds a decoded image (interleaved HWC, `u8` or `f32`, already at the output
//! width, height and channels) and writes it straight into its slot of a batch buffer: dtype
//! conversion, layout change and normalisation happen in one pass, row by row. [`Store`] is
//! prepared once per worker ([`Store::new`]) and then called in the hot loop without allocating;
//! [`store`] is the one-shot convenience.
//!
//! # Semantics
//!
//! Float outputs (`F32`, `F16`, `BF16`) are `x * scale[c] + bias[c]` in `f32`, computed as a
//! multiply then a separate add (never a fused multiply-add), so every code path — scalar, AVX2,
//! row or whole image — gives the same bits. `scale` and `bias` are computed once, in `f32`:
//!
//! | source | normalisation | `scale[c]`            | `bias[c]`            |
//! |--------|---------------|-----------------------|----------------------|
//! | `u8`   | none          | `1 / 255`             | `0`                  |
//! | `u8`   | mean, std     | `1 / (255 * std[c])`  | `-mean[c] / std[c]`  |
//! | `f32`  | none          | `1`                   | `-0.0` (identity)    |
//! | `f32`  | mean, std     | `1 / std[c]`          | `-mean[c] / std[c]`  |
//!
//! So a `u8` source without normalisation is torchvision's `ToTensor` (`x * (1/255)`, which can
//! differ from `x / 255` in the last bit), and an `f32` source without normalisation is copied
//! unchanged (adding `-0.0` keeps every value, `-0.0` included; a NaN stays a NaN, made quiet). A
//! one-element mean/std applies to every channel.
//!
//! `F16` and `BF16` are the `f32` result rounded to nearest, ties to even — exactly
//! `half::f16::from_f32` and `half::bf16::from_f32`.
//!
//! `U8` output takes no normalisation: a `u8` source is copied exactly; an `f32` source is rounded
//! to nearest with ties to even (`0.5 → 0`, `1.5 → 2`, `2.5 → 2`, like `numpy.round`) and then
//! clamped to `0..=255`; NaN becomes 0.
//!
//! `Layout::Nchw` de-interleaves the channels into planes (`[C, H, W]`); `Layout::Nhwc` keeps them
//! interleaved (`[H, W, C]`). Elements are written in native byte order, with unaligned stores: a
//! slot may start at any address.
//!
//! # SIMD
//!
//! [`SimdLevel::detect`] (from [`crate::simd`]) picks, once, the best kernel set the CPU has;
//! [`Store::new`] stores the chosen row function as a function pointer, so the hot loop never
//! branches on configuration. `Scalar` is portable code and exists on every target; `Avx2`
//! (x86-64 with AVX2 and F16C) uses explicit intrinsics for the float kernels and the `u8` NCHW
//! de-interleave. All levels produce the same bits.
//!
//! The module is layered: `spec` (the types), `kernels` (the row kernels, one file per ISA, and
//! the choice of one), `store` (the prepared [`Store`]).
//!
//! ```
//! use stoker::{Normalize, OutputSpec};
//! use stoker::output::{SrcType, Store};
//!
//! let spec = OutputSpec::new(2, 1, 3).with_normalize(Normalize::imagenet());
//! let mut store = Store::new(&spec, SrcType::U8)?;
//! let mut slot = vec![0u8; spec.sample_bytes()];
//! store.row_u8(0, &[255, 0, 128, 10, 20, 30], &mut slot)?;
//! let first = f32::from_ne_bytes(slot[0..4].try_into().unwrap()); // red of pixel 0
//! assert!((first - (1.0 - 0.485) / 0.229).abs() < 1e-5);
//! # Ok::<(), stoker::Error>(())
//! ```

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

mod kernels;
mod spec;
mod store;

pub use crate::simd::SimdLevel;
pub use spec::{DType, Layout, Normalize, OutputSpec, SrcType};
pub use store::{Store, store};

pub(crate) use crate::simd::out_size;
pub(crate) use spec::scale_bias;
