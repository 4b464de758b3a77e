//! The SIMD kernel sets and their one dispatch point: [`SimdLevel`], detected at run time, and
//! the per-ISA helpers that both the output store ([`crate::output`]) and the augmentation
//! kernels ([`crate::augment`]) build on.
//!
//! - [`SimdLevel::detect`] is where the CPU is asked what it has; a kernel is picked once per
//!   store or sample from a level, never per row or pixel.
//! - [`Vbmi`]: where two AVX-512 variants write the same bits (VBMI byte permutes or gathers),
//!   the faster on this CPU, timed on the first samples (`calibrate`).
//! - `avx2` and `avx512` (x86-64 only, crate-internal) hold the store helpers that write eight
//!   or sixteen `f32` lanes as `f32`, `f16` or `bf16` (round to nearest, ties to even), with the
//!   bits of the portable conversions in `half`; `store1` is the scalar tail of both.
//!
//! ```
//! use stoker::simd::SimdLevel;
//! assert_eq!(SimdLevel::available()[0], SimdLevel::Scalar);
//! assert_eq!(stoker::output::SimdLevel::detect(), SimdLevel::detect());
//! ```

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
mod calibrate;

pub(crate) use calibrate::{Race, Split};
pub use calibrate::{TRIALS, VBMI_ENV, Vbmi};

/// A kernel set: every level writes the same bits, faster ones need CPU support.
///
/// ```
/// use stoker::simd::SimdLevel;
/// let best = SimdLevel::detect();
/// assert!(best.is_available());
/// assert!(SimdLevel::Scalar.is_available());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable code, every target.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (the augmentation kernels use fused multiply-adds).
    Avx2,
    /// x86-64 with AVX-512 F and BW (and AVX2, FMA, F16C): the fused augmentation kernel has an
    /// AVX-512 version; every other kernel uses its AVX2 version at this level.
    Avx512,
}

impl SimdLevel {
    /// The best level this CPU supports.
    ///
    /// ```
    /// let level = stoker::simd::SimdLevel::detect();
    /// assert!(stoker::simd::SimdLevel::available().contains(&level));
    /// ```
    pub fn detect() -> SimdLevel {
        if SimdLevel::Avx512.is_available() {
            SimdLevel::Avx512
        } else if SimdLevel::Avx2.is_available() {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        }
    }

    /// Whether this level's kernels are built and the CPU can run them.
    ///
    /// ```
    /// use stoker::simd::SimdLevel;
    /// // Each level needs the one below it.
    /// assert!(!SimdLevel::Avx512.is_available() || SimdLevel::Avx2.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                SimdLevel::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            SimdLevel::Avx2 | SimdLevel::Avx512 => false,
        }
    }

    /// Every available level, slowest first (`Scalar` always).
    ///
    /// ```
    /// let levels = stoker::simd::SimdLevel::available();
    /// assert_eq!(levels[0], stoker::simd::SimdLevel::Scalar);
    /// ```
    pub fn available() -> Vec<SimdLevel> {
        [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|l| l.is_available())
            .collect()
    }

    /// Lowercase name: `scalar`, `avx2`, `avx512`.
    ///
    /// ```
    /// assert_eq!(stoker::simd::SimdLevel::Avx2.as_str(), "avx2");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// Whether the CPU has FMA: the portable loops that use `mul_add` get a copy compiled with it
/// (without it, `mul_add` is a call).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
pub(crate) fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AVX2 and FMA: what the augmentation's AVX2 warp and noise loops need
/// (a subset of [`SimdLevel::Avx2`], which adds F16C for the stores).
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

// ---------------------------------------------------------------------------------------------
// Float output dtype codes, the const generic of every store helper and float kernel.

/// `f32` output.
pub(crate) const OUT_F32: u8 = 0;
/// `f16` output.
pub(crate) const OUT_F16: u8 = 1;
/// `bf16` output.
pub(crate) const OUT_BF16: u8 = 2;
/// `u8` output: rounded to nearest (ties to even) and saturated to `0..=255`, NaN as 0, as
/// the output store's `f32 → u8` row (the fused augmentation kernel's 8-bit target).
pub(crate) const OUT_U8: u8 = 3;

/// Bytes per element of output code `d`.
pub(crate) const fn out_size(d: u8) -> usize {
    match d {
        OUT_F32 => 4,
        OUT_U8 => 1,
        _ => 2,
    }
}

/// One `f32` stored as dtype `D` at `p` (unaligned): the scalar tail of the vector stores,
/// with the same bits.
///
/// # Safety
///
/// `p` is valid for writing [`out_size`]`(D)` bytes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn store1<const D: u8>(p: *mut u8, v: f32) {
    if D == OUT_F32 {
        // SAFETY: the caller gives 4 writable bytes at `p`; the write is unaligned.
        unsafe { (p as *mut f32).write_unaligned(v) };
    } else if D == OUT_F16 {
        // SAFETY: the caller gives 2 writable bytes at `p`; the write is unaligned.
        unsafe { (p as *mut u16).write_unaligned(half::f16::from_f32(v).to_bits()) };
    } else if D == OUT_BF16 {
        // SAFETY: as for f16.
        unsafe { (p as *mut u16).write_unaligned(half::bf16::from_f32(v).to_bits()) };
    } else {
        // SAFETY: the caller gives 1 writable byte at `p`. `as` saturates and maps NaN to 0.
        unsafe { p.write(v.round_ties_even() as u8) };
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The vector `u8` stores give the scalar store's bytes on the edge values: ties, the ends
    /// of the range and past them, infinities, NaN and negative zero.
    #[test]
    fn vector_u8_stores_round_and_saturate_as_the_scalar_store() {
        let edges = [
            f32::NAN,
            f32::NEG_INFINITY,
            -1e10,
            -0.6,
            -0.5,
            -0.0,
            0.5,
            1.5,
            2.5,
            127.5,
            254.5,
            254.6,
            255.4,
            255.5,
            256.0,
            3e9,
            f32::INFINITY,
            -f32::NAN,
            0.49999997,
            128.0,
        ];
        let mut want = [0u8; 32];
        for (i, d) in want.iter_mut().enumerate() {
            // SAFETY: one writable byte.
            unsafe { store1::<OUT_U8>(d, edges[i % edges.len()]) };
        }
        assert_eq!(&want[..4], &[0, 0, 0, 0]);
        assert_eq!(&want[6..9], &[0, 2, 2]);
        assert_eq!(want[13], 255);
        let vals: Vec<f32> = (0..32).map(|i| edges[i % edges.len()]).collect();
        if SimdLevel::Avx2.is_available() {
            let mut got = [0u8; 32];
            for k in 0..4 {
                // SAFETY: AVX2 and F16C checked; 8 bytes at `8k` of 32.
                unsafe {
                    let v = std::arch::x86_64::_mm256_loadu_ps(vals.as_ptr().add(8 * k));
                    avx2::store8::<OUT_U8>(got.as_mut_ptr().add(8 * k), v);
                }
            }
            assert_eq!(got, want);
        }
        if SimdLevel::Avx512.is_available() {
            let mut got = [0u8; 32];
            for k in 0..2 {
                // SAFETY: AVX-512 checked; 16 bytes at `16k` of 32.
                unsafe {
                    let v = std::arch::x86_64::_mm512_loadu_ps(vals.as_ptr().add(16 * k));
                    avx512::store16::<OUT_U8>(got.as_mut_ptr().add(16 * k), v);
                }
            }
            assert_eq!(got, want);
        }
    }

    /// The interleaves put channel `c` of pixel `p` at `3p + c`.
    #[test]
    fn interleaves_put_each_pixel_s_channels_together() {
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|c| (0..16).map(|p| (3 * p + c) as f32).collect())
            .collect();
        let want: Vec<f32> = (0..48).map(|n| n as f32).collect();
        if SimdLevel::Avx2.is_available() {
            // SAFETY: AVX2 checked; each plane holds 16 values, 8 loaded.
            let out = unsafe {
                use std::arch::x86_64::*;
                let ld = |c: usize| _mm256_loadu_ps(planes[c].as_ptr());
                avx2::interleave3(ld(0), ld(1), ld(2))
            };
            let mut got = [0f32; 24];
            for (k, v) in out.into_iter().enumerate() {
                // SAFETY: 8 values at `8k` of 24.
                unsafe { std::arch::x86_64::_mm256_storeu_ps(got.as_mut_ptr().add(8 * k), v) };
            }
            assert_eq!(got[..], want[..24]);
        }
        if SimdLevel::Avx512.is_available() {
            // SAFETY: AVX-512 checked; each plane holds 16 values.
            let out = unsafe {
                use std::arch::x86_64::*;
                let ld = |c: usize| _mm512_loadu_ps(planes[c].as_ptr());
                avx512::interleave3(ld(0), ld(1), ld(2))
            };
            let mut got = [0f32; 48];
            for (k, v) in out.into_iter().enumerate() {
                // SAFETY: 16 values at `16k` of 48.
                unsafe { std::arch::x86_64::_mm512_storeu_ps(got.as_mut_ptr().add(16 * k), v) };
            }
            assert_eq!(got[..], want[..]);
        }
    }
}
