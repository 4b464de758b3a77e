//! The row kernels of the store and the one place that picks them from a [`SimdLevel`].
//!
//! A [`Plan`] is everything a kernel reads (sizes, layout, per-channel scale and bias), fixed
//! once per store; a kernel is a [`RowFn`] that writes one output row. `portable` runs on every
//! target; `avx2` (x86-64, AVX2 + F16C) has the float kernels and the `u8` NCHW de-interleave.
//! The AVX-512 level uses the AVX2 kernels here (only the fused augmentation kernel has a
//! sixteen-lane version). Every kernel writes the same bits.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;

use portable::{row_f32u8, row_float, row_u8u8};

use crate::output::DType;
use crate::simd::{OUT_BF16, OUT_F16, OUT_F32, SimdLevel};

/// Everything a row kernel reads, fixed in [`Store::with_level`](super::Store::with_level).
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) c: usize,
    /// NCHW with 3 channels: rows go to three planes. Otherwise a row is one contiguous run.
    pub(super) planar: bool,
    pub(super) scale: [f32; 3],
    pub(super) bias: [f32; 3],
    /// `scale[i % c]` for `i < w * c`: the interleaved pattern of one row.
    pub(super) scale_row: Vec<f32>,
    /// `bias[i % c]` for `i < w * c`.
    pub(super) bias_row: Vec<f32>,
}

/// Per-row scratch of the portable kernels, allocated once.
#[derive(Clone, Debug)]
pub(super) struct Scratch {
    pub(super) f: Vec<f32>,
    pub(super) h: Vec<u16>,
}

/// Writes output row `y`.
///
/// # Safety
///
/// `y < h`, `src.len() == w * c`, `slot.len()` is the sample size, and the CPU supports the
/// level the function was chosen for.
pub(super) type RowFn<T> = unsafe fn(&Plan, &mut Scratch, usize, &[T], &mut [u8]);

/// The `u8`-source row kernel for `dtype` at `level` (`planar`: NCHW with 3 channels).
pub(super) fn pick_u8(level: SimdLevel, dtype: DType, planar: bool) -> RowFn<u8> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match dtype {
            DType::U8 if planar => avx2::row_u8u8_avx2,
            DType::U8 => row_u8u8,
            DType::F32 => avx2::row_float_avx2::<u8, OUT_F32>,
            DType::F16 => avx2::row_float_avx2::<u8, OUT_F16>,
            DType::BF16 => avx2::row_float_avx2::<u8, OUT_BF16>,
        };
    }
    let _ = (level, planar);
    match dtype {
        DType::U8 => row_u8u8,
        DType::F32 => row_float::<u8, OUT_F32>,
        DType::F16 => row_float::<u8, OUT_F16>,
        DType::BF16 => row_float::<u8, OUT_BF16>,
    }
}

/// The `f32`-source row kernel for `dtype` at `level`.
pub(super) fn pick_f32(level: SimdLevel, dtype: DType) -> RowFn<f32> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match dtype {
            DType::U8 => row_f32u8,
            DType::F32 => avx2::row_float_avx2::<f32, OUT_F32>,
            DType::F16 => avx2::row_float_avx2::<f32, OUT_F16>,
            DType::BF16 => avx2::row_float_avx2::<f32, OUT_BF16>,
        };
    }
    let _ = level;
    match dtype {
        DType::U8 => row_f32u8,
        DType::F32 => row_float::<f32, OUT_F32>,
        DType::F16 => row_float::<f32, OUT_F16>,
        DType::BF16 => row_float::<f32, OUT_BF16>,
    }
}

/// A source pixel value.
pub(super) trait Px: Copy {
    /// Whether the pixels are `f32` (read by the x86 loaders only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const IS_F32: bool;
    /// The value as `f32`.
    fn f(self) -> f32;
}

impl Px for u8 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn f(self) -> f32 {
        self as f32
    }
}

impl Px for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}
