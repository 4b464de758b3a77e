//! The SIMD kernel sets and their one dispatch point: [`SimdLevel`], detected at run time, and
//! the per-ISA helpers that both the output store ([`crate::output`]) and the augmentation
//! kernels ([`crate::augment`]) build on.
//!
//! - [`SimdLevel::detect`] is where the CPU is asked what it has; a kernel is picked once per
//!   store or sample from a level, never per row or pixel.
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

/// Bytes per element of float output code `d`.
pub(crate) const fn out_size(d: u8) -> usize {
    if d == OUT_F32 { 4 } else { 2 }
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
    } else {
        // SAFETY: as for f16.
        unsafe { (p as *mut u16).write_unaligned(half::bf16::from_f32(v).to_bits()) };
    }
}
