//! Sampling a JPEG's YCbCr planes through the inverse map (the
//! [`ycbcr`](super::AugmentBuilder::ycbcr) path): each plane is sampled bilinearly at the
//! point the map gives it, then the three values become RGB. The decoder skips its colour
//! conversion and chroma upsampling, and the warp reads one byte per luma pixel and a quarter
//! as many chroma samples (4:2:0) instead of three bytes per pixel.
//!
//! - Positions: output pixel `(x, y)` reads plane position `q = base(y) + x * step` on each
//!   axis, in 1/65536 of a plane sample (16.16 fixed point, `i64`), where `base` and `step`
//!   come from the inverse map with the plane's subsampling `(hs, vs)`: a chroma position is
//!   `(X + 0.5) / hs - 0.5` for luma position `X` (JPEG's centred siting). The vector loops
//!   use `i32` where a whole row fits, with the same values.
//! - Bilinear in integers: the left tap is `q >> 16` and the weight `w = (q >> 10) & 63`
//!   (1/64 of a sample); `v = (p00 (64 - wx) + p01 wx) (64 - wy) + (p10 (64 - wx) + p11 wx) wy`
//!   is exact, in 1/4096 of a level. Outside the plane the [`FillMode`] decides each tap; a
//!   constant fill is `cval` rounded to a whole level in luma and 128 (grey) in chroma.
//! - Colour (JFIF, as libjpeg): `r = y + 1.402 cr'`, `g = y - 0.34414 cb' - 0.71414 cr'`,
//!   `b = y + 1.772 cb'` with `cb' = cb - 128`, in `f32` with fused multiply-adds, clamped to
//!   `[0, 255]`; then the photometric pass and the store, as on the RGB path.
//!
//! Every loop (portable, AVX2, AVX-512) gives the same bits. Against the RGB path (libjpeg's
//! RGB decode, then the `f32` warp) the values differ by the chroma interpolation (one
//! bilinear step on the chroma plane instead of libjpeg's upsampling followed by the warp's),
//! the 1/64-sample weights and the rounding: the tests bound the difference.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use super::FillMode;
use super::photometric::fmadd;
use super::warp::{Constant, Fill, Nearest, Reflect, Wrap};
use crate::image::{Plane, YCbCrView};

/// Positions and steps are kept within ±2^46 and ±2^30 (far outside any image), so that
/// `base + x * step` cannot overflow for any row of at most 2^27 pixels.
const BASE_LIMIT: f64 = (1u64 << 46) as f64;
const STEP_LIMIT: f64 = (1u64 << 30) as f64;

/// 16.16 fixed point of `v`, saturated at `limit` (NaN gives 0).
fn fix(v: f64, limit: f64) -> i64 {
    (v * 65536.0).round().clamp(-limit, limit) as i64
}

/// One plane's inverse map in fixed point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct PlaneMap {
    /// Per output pixel along a row: the plane position's step across and down.
    pub(super) step: (i64, i64),
    /// `base(y)`: across `row[0] * y + row[1]`, down `row[2] * y + row[3]`, in samples.
    row: [f64; 4],
}

impl PlaneMap {
    /// The map of a plane subsampled by `(hs, vs)` under the luma map `m` (see
    /// [`inverse_map`](super::inverse_map)).
    pub(super) fn new(m: [f64; 6], (hs, vs): (usize, usize)) -> Self {
        let (h, v) = (hs as f64, vs as f64);
        PlaneMap {
            step: (fix(m[0] / h, STEP_LIMIT), fix(m[3] / v, STEP_LIMIT)),
            row: [
                m[1] / h,
                (m[2] + 0.5) / h - 0.5,
                m[4] / v,
                (m[5] + 0.5) / v - 0.5,
            ],
        }
    }

    /// The positions of pixel 0 of output row `y`.
    pub(super) fn row(&self, y: usize) -> (i64, i64) {
        let y = y as f64;
        (
            fix(self.row[0] * y + self.row[1], BASE_LIMIT),
            fix(self.row[2] * y + self.row[3], BASE_LIMIT),
        )
    }
}

/// Which loops compute a row's plane values (the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Taps {
    Portable,
    /// Eight pixels at a time with AVX2 gathers.
    Avx2,
    /// Sixteen pixels at a time with AVX-512 VBMI byte permutes (AVX2 at the edges).
    Avx512,
}

impl Taps {
    /// The fastest loops at most at `level` on this CPU.
    pub(super) fn pick(level: crate::simd::SimdLevel) -> Taps {
        use crate::simd::SimdLevel;
        #[cfg(target_arch = "x86_64")]
        {
            let vbmi = std::arch::is_x86_feature_detected!("avx512vbmi")
                && std::arch::is_x86_feature_detected!("avx512vl");
            if level >= SimdLevel::Avx512 && SimdLevel::Avx512.is_available() && vbmi {
                return Taps::Avx512;
            }
            if level >= SimdLevel::Avx2 && SimdLevel::Avx2.is_available() {
                return Taps::Avx2;
            }
        }
        let _ = (level, SimdLevel::Scalar);
        Taps::Portable
    }
}

/// The planes, their maps and the fill of one sample, and the values of the output row
/// being made.
pub(super) struct Ycc<'a> {
    /// Y, Cb, Cr.
    pub(super) planes: [Plane<'a>; 3],
    /// Luma's map, then the chroma planes' (one map for both).
    pub(super) maps: [PlaneMap; 2],
    pub(super) fill: FillMode,
    /// What a constant fill reads, per plane.
    pub(super) cval: [u8; 3],
    /// Output width.
    width: usize,
    /// The current row's values (1/4096 levels): Y, Cb, Cr, `pitch` apart.
    vals: Vec<i32>,
    pitch: usize,
    taps: Taps,
    /// The vector blocks' lane offsets.
    #[cfg(target_arch = "x86_64")]
    lanes: x86::Lanes,
}

/// The positions of pixel 0 of one output row: luma, then chroma.
pub(super) type RowBase = [(i64, i64); 2];

impl<'a> Ycc<'a> {
    /// The sample's planes under the luma map `m`, for output rows of `width`, computed with
    /// `taps`; `vals` is reused for the row values (see [`Ycc::into_vals`]).
    pub(super) fn new(
        src: &YCbCrView<'a>,
        m: [f64; 6],
        (fill, cval): (FillMode, f32),
        width: usize,
        taps: Taps,
        mut vals: Vec<i32>,
    ) -> Self {
        let luma = cval.round().clamp(0.0, 255.0) as u8;
        let maps = [PlaneMap::new(m, (1, 1)), PlaneMap::new(m, src.subsampling)];
        let pitch = width.next_multiple_of(16);
        if vals.len() < 3 * pitch {
            vals = vec![0; 3 * pitch];
        }
        Ycc {
            planes: [src.y, src.cb, src.cr],
            maps,
            fill,
            cval: [luma, 128, 128],
            width,
            vals,
            pitch,
            taps,
            #[cfg(target_arch = "x86_64")]
            lanes: x86::Lanes::new(&maps, &[src.y, src.cb, src.cr]),
        }
    }

    /// The row values' buffer, to keep for the next sample.
    pub(super) fn into_vals(self) -> Vec<i32> {
        self.vals
    }

    /// Computes the values of output row `y`, which [`Ycc::rgb`] then reads.
    pub(super) fn fill_row(&mut self, y: usize) {
        let base = self.row(y);
        let mut vals = std::mem::take(&mut self.vals);
        #[cfg(target_arch = "x86_64")]
        let done = x86::row_fits(self, base, self.width)
            // SAFETY: `Taps::pick` checked the CPU; the row fits the blocks' arithmetic.
            && unsafe {
                match self.taps {
                    Taps::Avx512 => x86::fill16(self, base, &mut vals),
                    Taps::Avx2 => x86::fill8(self, base, &mut vals, 0),
                    Taps::Portable => false,
                }
            };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        if !done {
            for c in 0..3 {
                for x in 0..self.width {
                    vals[c * self.pitch + x] = self.value(c, base, x);
                }
            }
        }
        self.vals = vals;
    }

    /// Output pixel `x` of the row [`Ycc::fill_row`] made, RGB in source units.
    #[inline]
    pub(super) fn rgb(&self, x: usize) -> [f32; 3] {
        to_rgb([0, 1, 2].map(|c| self.vals[c * self.pitch + x]))
    }

    pub(super) fn row(&self, y: usize) -> RowBase {
        [self.maps[0].row(y), self.maps[1].row(y)]
    }

    /// Plane `c`'s value (1/4096 levels) of output pixel `x` of the row at `base`: what
    /// every loop computes.
    #[inline]
    pub(super) fn value(&self, c: usize, base: RowBase, x: usize) -> i32 {
        let map = &self.maps[(c > 0) as usize];
        let (bx, by) = base[(c > 0) as usize];
        let x = x as i64;
        sample(
            &self.planes[c],
            (bx + x * map.step.0, by + x * map.step.1),
            self.fill,
            self.cval[c],
        )
    }
}

/// The bilinear value (1/4096 levels) of plane `p` at position `(qx, qy)`.
#[inline]
fn sample(p: &Plane<'_>, (qx, qy): (i64, i64), fill: FillMode, cval: u8) -> i32 {
    let (x0, y0) = (qx >> 16, qy >> 16);
    let (wx, wy) = (((qx >> 10) & 63) as i32, ((qy >> 10) & 63) as i32);
    let (w, h) = (p.width as i64, p.height as i64);
    let (t00, t01, t10, t11) = if (0..w - 1).contains(&x0) && (0..h - 1).contains(&y0) {
        let at = y0 as usize * p.stride + x0 as usize;
        let (top, bot) = (
            &p.data[at..at + 2],
            &p.data[at + p.stride..at + p.stride + 2],
        );
        (top[0], top[1], bot[0], bot[1])
    } else {
        let t = |x: i64, y: i64| tap(p, x, y, fill, cval);
        (t(x0, y0), t(x0 + 1, y0), t(x0, y0 + 1), t(x0 + 1, y0 + 1))
    };
    let lerp = |a: u8, b: u8| a as i32 * (64 - wx) + b as i32 * wx;
    lerp(t00, t01) * (64 - wy) + lerp(t10, t11) * wy
}

/// The sample at `(x, y)`, or what the fill mode gives outside the plane.
fn tap(p: &Plane<'_>, x: i64, y: i64, fill: FillMode, cval: u8) -> u8 {
    fn index<F: Fill>(x: i64, y: i64, (w, h): (i64, i64)) -> Option<(usize, usize)> {
        Some((F::index(x, w)?, F::index(y, h)?))
    }
    let size = (p.width as i64, p.height as i64);
    let at = match fill {
        FillMode::Constant => index::<Constant>(x, y, size),
        FillMode::Nearest => index::<Nearest>(x, y, size),
        FillMode::Reflect => index::<Reflect>(x, y, size),
        FillMode::Wrap => index::<Wrap>(x, y, size),
    };
    at.map_or(cval, |(x, y)| p.at(x, y))
}

/// JFIF's YCbCr to RGB of values in 1/4096 levels, clamped to `[0, 255]`.
#[inline]
pub(super) fn to_rgb([y, cb, cr]: [i32; 3]) -> [f32; 3] {
    const K: f32 = 1.0 / 4096.0;
    let y = y as f32 * K;
    let cb = fmadd(cb as f32, K, -128.0);
    let cr = fmadd(cr as f32, K, -128.0);
    let clamp = |v: f32| v.clamp(0.0, 255.0);
    [
        clamp(fmadd(RCR, cr, y)),
        clamp(fmadd(GCR, cr, fmadd(GCB, cb, y))),
        clamp(fmadd(BCB, cb, y)),
    ]
}

const RCR: f32 = 1.402;
const GCB: f32 = -0.34414;
const GCR: f32 = -0.71414;
const BCB: f32 = 1.772;

/// The vector blocks: eight pixels with AVX2 gathers (any position, every fill mode), sixteen
/// with AVX-512 VBMI byte permutes (every tap inside the planes).
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{BCB, GCB, GCR, PlaneMap, RCR, RowBase, Ycc};
    use crate::augment::FillMode;
    use crate::image::Plane;

    /// The lanes' offsets from a block's first position, per map and axis: `i * step` in
    /// lane `i` (eight lanes), and in the lane order [`rows16`] wants (sixteen lanes).
    pub(in super::super) struct Lanes {
        eight: [[[i32; 8]; 2]; 2],
        sixteen: [[[i32; 16]; 2]; 2],
        /// Per map, the most source rows a sixteen-pixel block's taps touch.
        rows16: [usize; 2],
        /// Whether `16 * step` fits the blocks' `i32` arithmetic on every axis, and every
        /// plane's byte offsets fit `i32` (the gathers' offsets).
        steps_fit: bool,
    }

    /// Pixel `ORDER[j]` of a sixteen-pixel block sits in 16-bit lane `j`: after the
    /// in-lane unpacks of the vertical step, the 32-bit results come out in pixel order.
    const ORDER: [i32; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];

    /// Whether `v` fits `i32` with room for the arithmetic of a block.
    fn fits(v: i64) -> bool {
        v.unsigned_abs() < 1 << 30
    }

    impl Lanes {
        pub(in super::super) fn new(maps: &[PlaneMap; 2], planes: &[Plane<'_>; 3]) -> Lanes {
            let steps_fit = maps
                .iter()
                .all(|m| fits(16 * m.step.0) && fits(16 * m.step.1))
                && planes.iter().all(|p| fits(p.data.len() as i64));
            let axes =
                |m: &PlaneMap| [m.step.0, m.step.1].map(|s| if steps_fit { s as i32 } else { 0 });
            Lanes {
                eight: maps.map(|m| axes(&m).map(|s| std::array::from_fn(|i| i as i32 * s))),
                sixteen: maps.map(|m| axes(&m).map(|s| std::array::from_fn(|j| ORDER[j] * s))),
                // Sixteen lanes' top taps span at most `15 |step| / 65536 + 1` rows, plus
                // the bottom taps' row.
                rows16: maps.map(|m| ((15 * m.step.1.unsigned_abs()) >> 16) as usize + 3),
                steps_fit,
            }
        }
    }

    /// Whether every position of a row of `width` pixels at `base` fits the blocks' `i32`
    /// arithmetic (positions are affine in x: the ends bound the row).
    pub(super) fn row_fits(k: &Ycc<'_>, base: RowBase, width: usize) -> bool {
        let last = width as i64 + 16;
        k.lanes.steps_fit
            && k.maps.iter().zip(base).all(|(m, (bx, by))| {
                fits(bx) && fits(by) && fits(bx + last * m.step.0) && fits(by + last * m.step.1)
            })
    }

    /// The block's first position on each axis, per map (the row fits `i32`).
    #[inline]
    fn starts(k: &Ycc<'_>, base: RowBase, x: usize) -> [(i32, i32); 2] {
        let x = x as i64;
        [0, 1].map(|i| {
            let (bx, by) = base[i];
            let (sx, sy) = k.maps[i].step;
            ((bx + x * sx) as i32, (by + x * sy) as i32)
        })
    }

    /// The tap range of `n` lanes from `q0` by `step`: (first left tap, last left tap).
    #[inline]
    fn ends(q0: i32, step: i32, n: i32) -> (i32, i32) {
        let q1 = q0 + (n - 1) * step;
        (q0.min(q1) >> 16, q0.max(q1) >> 16)
    }

    /// `(q >> 16, (q >> 10) & 63)` in each lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn split8(q: __m256i) -> (__m256i, __m256i) {
        (
            _mm256_srai_epi32::<16>(q),
            _mm256_and_si256(_mm256_srai_epi32::<10>(q), _mm256_set1_epi32(63)),
        )
    }

    /// Lanes `i` and `i + 1` of taps along one axis under the fill mode: the mapped indices
    /// and, for `constant`, which of them are inside (all ones) or not (zero). `None` when a
    /// tap lies further out than one period of `reflect` or `wrap` (positions are monotonic
    /// along a block: `lo`, `hi` bound it).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn axis8(
        i: __m256i,
        n: i32,
        fill: FillMode,
        (lo, hi): (i32, i32),
    ) -> Option<[(__m256i, __m256i); 2]> {
        let one = _mm256_set1_epi32(1);
        let nv = _mm256_set1_epi32(n);
        let z = _mm256_setzero_si256();
        let last = _mm256_set1_epi32(n - 1);
        let taps = [i, _mm256_add_epi32(i, one)];
        if matches!(fill, FillMode::Reflect | FillMode::Wrap) && (lo < -n || hi + 1 >= 2 * n) {
            return None;
        }
        Some(taps.map(|t| {
            let below = _mm256_cmpgt_epi32(z, t);
            let above = _mm256_cmpgt_epi32(t, last);
            let inside = _mm256_andnot_si256(_mm256_or_si256(below, above), _mm256_set1_epi32(-1));
            let mapped = match fill {
                FillMode::Nearest | FillMode::Constant => {
                    _mm256_max_epi32(_mm256_min_epi32(t, last), z)
                }
                FillMode::Reflect => {
                    // -1 - t below, 2n - 1 - t above.
                    let low = _mm256_sub_epi32(_mm256_set1_epi32(-1), t);
                    let high = _mm256_sub_epi32(_mm256_set1_epi32(2 * n - 1), t);
                    _mm256_blendv_epi8(_mm256_blendv_epi8(t, low, below), high, above)
                }
                FillMode::Wrap => {
                    let low = _mm256_add_epi32(t, nv);
                    let high = _mm256_sub_epi32(t, nv);
                    _mm256_blendv_epi8(_mm256_blendv_epi8(t, low, below), high, above)
                }
            };
            (mapped, inside)
        }))
    }

    /// Eight pixels of plane `p`, bilinear, in 1/4096 levels, from positions `qx`, `qy`
    /// whose left taps span `xs` and `ys`. `None` (the caller goes pixel by pixel) when a
    /// gather would read past the plane's data or a tap is beyond one period of the fill.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn plane8(
        p: &Plane<'_>,
        fill: FillMode,
        cval: u8,
        (qx, qy): (__m256i, __m256i),
        (xs, ys): ((i32, i32), (i32, i32)),
    ) -> Option<__m256i> {
        let (pw, ph) = (p.width as i32, p.height as i32);
        let (x0, wx) = split8(qx);
        let (y0, wy) = split8(qy);
        let stride = _mm256_set1_epi32(p.stride as i32);
        let base = p.data.as_ptr() as *const i32;
        let low16 = _mm256_set1_epi32(0xffff);
        let (top, bot) = if xs.0 >= 0 && xs.1 < pw - 1 && ys.0 >= 0 && ys.1 < ph - 1 {
            // Every tap inside: 4 bytes from each left tap (left, right, two unused).
            if (ys.1 as usize + 1) * p.stride + xs.1 as usize + 4 > p.data.len() {
                return None;
            }
            let at = _mm256_add_epi32(_mm256_mullo_epi32(y0, stride), x0);
            // SAFETY: every offset plus 4 is within the data (checked above: offsets are at
            // most (ys.1 + 1) * stride + xs.1); the gathers are unaligned.
            let (t, b) = unsafe {
                (
                    _mm256_i32gather_epi32::<1>(base, at),
                    _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(at, stride)),
                )
            };
            (_mm256_and_si256(t, low16), _mm256_and_si256(b, low16))
        } else {
            if (ph as usize - 1) * p.stride + pw as usize + 3 > p.data.len() {
                return None;
            }
            let [(xl, il), (xr, ir)] = axis8(x0, pw, fill, xs)?;
            let [(yt, it), (yb, ib)] = axis8(y0, ph, fill, ys)?;
            let byte = _mm256_set1_epi32(0xff);
            let cv = _mm256_set1_epi32(cval as i32);
            let tap = |y: __m256i, x: __m256i, inside: __m256i| {
                let at = _mm256_add_epi32(_mm256_mullo_epi32(y, stride), x);
                // SAFETY: mapped indices are inside the plane, so every offset is at most
                // (ph - 1) * stride + pw - 1 and 4 bytes from it are within the data (checked
                // above); the gather is unaligned.
                let v = unsafe { _mm256_i32gather_epi32::<1>(base, at) };
                let v = _mm256_and_si256(v, byte);
                if fill == FillMode::Constant {
                    _mm256_blendv_epi8(cv, v, inside)
                } else {
                    v
                }
            };
            let pair = |y: __m256i, iy: __m256i| {
                let l = tap(y, xl, _mm256_and_si256(iy, il));
                let r = tap(y, xr, _mm256_and_si256(iy, ir));
                _mm256_or_si256(l, _mm256_slli_epi32::<8>(r))
            };
            (pair(yt, it), pair(yb, ib))
        };
        // Across: left * (64 - wx) + right * wx in the low word of each lane (the high byte
        // pair is zero in both operands).
        let sixty4 = _mm256_set1_epi32(64);
        let wts = _mm256_or_si256(_mm256_sub_epi32(sixty4, wx), _mm256_slli_epi32::<8>(wx));
        let (ht, hb) = (
            _mm256_maddubs_epi16(top, wts),
            _mm256_maddubs_epi16(bot, wts),
        );
        // Down: top * (64 - wy) + bottom * wy.
        let pair = _mm256_or_si256(ht, _mm256_slli_epi32::<16>(hb));
        let vw = _mm256_or_si256(_mm256_sub_epi32(sixty4, wy), _mm256_slli_epi32::<16>(wy));
        Some(_mm256_madd_epi16(pair, vw))
    }

    /// [`super::to_rgb`], eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn rgb8([y, cb, cr]: [__m256i; 3]) -> [__m256; 3] {
        let k = _mm256_set1_ps(1.0 / 4096.0);
        let m128 = _mm256_set1_ps(-128.0);
        let y = _mm256_mul_ps(_mm256_cvtepi32_ps(y), k);
        let cb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cb), k, m128);
        let cr = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cr), k, m128);
        let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
        let clamp = |v: __m256| _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        let s = _mm256_set1_ps;
        [
            clamp(_mm256_fmadd_ps(s(RCR), cr, y)),
            clamp(_mm256_fmadd_ps(s(GCR), cr, _mm256_fmadd_ps(s(GCB), cb, y))),
            clamp(_mm256_fmadd_ps(s(BCB), cb, y)),
        ]
    }

    /// [`super::to_rgb`], sixteen lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn rgb16([y, cb, cr]: [__m512i; 3]) -> [__m512; 3] {
        let k = _mm512_set1_ps(1.0 / 4096.0);
        let m128 = _mm512_set1_ps(-128.0);
        let y = _mm512_mul_ps(_mm512_cvtepi32_ps(y), k);
        let cb = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cb), k, m128);
        let cr = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cr), k, m128);
        let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let clamp = |v: __m512| _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        let s = _mm512_set1_ps;
        [
            clamp(_mm512_fmadd_ps(s(RCR), cr, y)),
            clamp(_mm512_fmadd_ps(s(GCR), cr, _mm512_fmadd_ps(s(GCB), cb, y))),
            clamp(_mm512_fmadd_ps(s(BCB), cb, y)),
        ]
    }

    /// Plane `c`'s values of output pixels `x..x + 8` of the row at `base` (which
    /// [`row_fits`]): AVX2 gathers, or pixel by pixel where they cannot go.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn values8(k: &Ycc<'_>, c: usize, base: RowBase, x: usize) -> __m256i {
        let m = (c > 0) as usize;
        let (q0x, q0y) = starts(k, base, x)[m];
        let (sx, sy) = k.maps[m].step;
        // SAFETY: 8 values are read from each.
        let lanes = k.lanes.eight[m].map(|v| unsafe { _mm256_loadu_si256(v.as_ptr() as *const _) });
        let qv = (
            _mm256_add_epi32(_mm256_set1_epi32(q0x), lanes[0]),
            _mm256_add_epi32(_mm256_set1_epi32(q0y), lanes[1]),
        );
        let spans = (ends(q0x, sx as i32, 8), ends(q0y, sy as i32, 8));
        // SAFETY: AVX2 (the caller's precondition).
        let got = unsafe { plane8(&k.planes[c], k.fill, k.cval[c], qv, spans) };
        got.unwrap_or_else(|| {
            let px: [i32; 8] = std::array::from_fn(|i| k.value(c, base, x + i));
            // SAFETY: 8 values are read.
            unsafe { _mm256_loadu_si256(px.as_ptr() as *const _) }
        })
    }

    /// Fills `vals` with the row at `base` (which [`row_fits`]) from pixel `from` on: eight
    /// pixels at a time, then one at a time. Always true.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill8(k: &Ycc<'_>, base: RowBase, vals: &mut [i32], from: usize) -> bool {
        for c in 0..3 {
            let row = &mut vals[c * k.pitch..][..k.width];
            let mut x = from;
            while x + 8 <= k.width {
                // SAFETY: AVX2; 8 values are written, `x + 8 <= width`.
                unsafe {
                    let v = values8(k, c, base, x);
                    _mm256_storeu_si256(row.as_mut_ptr().add(x) as *mut _, v);
                }
                x += 8;
            }
            for (x, v) in row.iter_mut().enumerate().skip(x) {
                *v = k.value(c, base, x);
            }
        }
        true
    }

    /// Fills `vals` with the row at `base` (which [`row_fits`]): sixteen pixels at a time
    /// with [`rows16`] (luma, then both chroma planes together), else two [`values8`] per
    /// plane; the rest as [`fill8`]. Always true.
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512 F, BW, VL and VBMI, and AVX2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
    pub(super) unsafe fn fill16(k: &Ycc<'_>, base: RowBase, vals: &mut [i32]) -> bool {
        let l = &k.lanes;
        // SAFETY: 16 values are read from each.
        let lanes =
            |m: usize| l.sixteen[m].map(|v| unsafe { _mm512_loadu_si512(v.as_ptr() as *const _) });
        let step = |m: usize| (k.maps[m].step.0 as i32, k.maps[m].step.1 as i32);
        let (pitch, width) = (k.pitch, k.width);
        let [y, cb, cr] = &k.planes;
        let [cy, cb_, cr_] = k.cval;
        let end = width - width % 16;
        let (luma, chroma) = (lanes(0), lanes(1));
        let mut x = 0;
        while x < end {
            let q = starts(k, base, x)[0];
            // SAFETY: the CPU features; `x + 16 <= width <= pitch`: 16 values written.
            unsafe {
                let at = vals.as_mut_ptr().add(x);
                match rows16([y], [cy], k.fill, luma, q, step(0), l.rows16[0]) {
                    Some([v]) => _mm512_storeu_si512(at as *mut _, v),
                    None => {
                        _mm256_storeu_si256(at as *mut _, values8(k, 0, base, x));
                        _mm256_storeu_si256(at.add(8) as *mut _, values8(k, 0, base, x + 8));
                    }
                }
            }
            x += 16;
        }
        let mut x = 0;
        while x < end {
            let q = starts(k, base, x)[1];
            // SAFETY: as above, at `pitch + x` and `2 * pitch + x`.
            unsafe {
                let at = [1, 2].map(|c| vals.as_mut_ptr().add(c * pitch + x));
                match rows16(
                    [cb, cr],
                    [cb_, cr_],
                    k.fill,
                    chroma,
                    q,
                    step(1),
                    l.rows16[1],
                ) {
                    Some(v) => {
                        for (at, v) in at.into_iter().zip(v) {
                            _mm512_storeu_si512(at as *mut _, v);
                        }
                    }
                    None => {
                        for (c, at) in [1, 2].into_iter().zip(at) {
                            let (lo, hi) = (values8(k, c, base, x), values8(k, c, base, x + 8));
                            _mm256_storeu_si256(at as *mut _, lo);
                            _mm256_storeu_si256(at.add(8) as *mut _, hi);
                        }
                    }
                }
            }
            x += 16;
        }
        // SAFETY: AVX2.
        unsafe { fill8(k, base, vals, end) }
    }

    /// RGB of pixels `x..x + 8` of the row [`Ycc::fill_row`] made.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2 and FMA, and `x + 8` is at most the width.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn rgb8_at(k: &Ycc<'_>, x: usize) -> [__m256; 3] {
        // SAFETY: row `c` of the values holds `width` values from `c * pitch`.
        rgb8([0, 1, 2].map(|c| unsafe {
            _mm256_loadu_si256(k.vals.as_ptr().add(c * k.pitch + x) as *const _)
        }))
    }

    /// RGB of pixels `x..x + 16` of the row [`Ycc::fill_row`] made.
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512 F, and `x + 16` is at most the width.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn rgb16_at(k: &Ycc<'_>, x: usize) -> [__m512; 3] {
        // SAFETY: row `c` of the values holds `width` values from `c * pitch`.
        rgb16([0, 1, 2].map(|c| unsafe {
            _mm512_loadu_si512(k.vals.as_ptr().add(c * k.pitch + x) as *const _)
        }))
    }

    /// The values (1/4096 levels) of sixteen pixels of `N` planes that share a map, from
    /// positions `q0` by `step` with lane offsets `lanes`. Each source row the block touches
    /// is loaded once, and every lane takes its pair of taps with a byte permute, masked to
    /// the lanes whose top (or bottom) row it is. Taps outside the planes are clamped into
    /// them (`nearest`), and for `constant` then replaced by `cval`; `None` (the caller takes
    /// the AVX2 blocks) for the other fill modes at the edges, when the taps span more than 64
    /// bytes across or 64 rows down, or when a row's load would leave a plane's data.
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512 F, BW, VL and VBMI.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows16<const N: usize>(
        planes: [&Plane<'_>; N],
        cval: [u8; N],
        fill: FillMode,
        lanes: [__m512i; 2],
        (q0x, q0y): (i32, i32),
        (sx, sy): (i32, i32),
        most: usize,
    ) -> Option<[__m512i; N]> {
        let p = planes[0];
        let (xmin0, xmax0) = ends(q0x, sx, 16);
        let (ymin0, ymax0) = ends(q0y, sy, 16);
        let (pw, ph) = (p.width as i32, p.height as i32);
        let inside = xmin0 >= 0 && ymin0 >= 0 && xmax0 < pw - 1 && ymax0 < ph - 1;
        if !inside && !matches!(fill, FillMode::Nearest | FillMode::Constant) {
            return None;
        }
        // The taps' extent (clamped into the plane at the edges: a monotonic map).
        let (xmin, xmax) = (xmin0.clamp(0, pw - 1), (xmax0 + 1).clamp(0, pw - 1));
        let (ymin, ymax) = (ymin0.clamp(0, ph - 1), (ymax0 + 1).clamp(0, ph - 1));
        let span = (xmax - xmin + 1) as usize;
        let need = (ymax - ymin + 1) as usize;
        let wide = span > 32;
        let load = if wide { 64 } else { 32 };
        // Each plane's first load (the planes may have different strides).
        let first = planes.map(|q| ymin as usize * q.stride + xmin as usize);
        let fits = |rows: usize| {
            (0..N).all(|c| first[c] + (rows - 1) * planes[c].stride + load <= planes[c].data.len())
        };
        if span > 64 || need > 64 || !fits(need) {
            return None;
        }
        // The sample's most rows per block where the loads allow (rows past the block's
        // taps match no lane): the same count block after block, so that the loop's branch
        // is predicted.
        let rows = if most >= need && fits(most) {
            most
        } else {
            need
        };
        let qx = _mm512_add_epi32(_mm512_set1_epi32(q0x), lanes[0]);
        let qy = _mm512_add_epi32(_mm512_set1_epi32(q0y), lanes[1]);
        // Per lane, in 16 bits: the left and right taps' bytes in a row's load (low and high
        // byte), the top (and bottom) taps' rows from `ymin` in both bytes (for byte
        // compares), the weights, and for `constant` the bytes of taps outside the plane.
        let (idx, top_rows, bot_rows, wx, wy, out) = if inside {
            // Positions from the block's top-left tap as (sample << 6 | weight): 12 bits.
            let rel = |q: __m512i, min: i32| {
                _mm512_cvtepi32_epi16(_mm512_srli_epi32::<10>(_mm512_sub_epi32(
                    q,
                    _mm512_set1_epi32(min << 16),
                )))
            };
            let (ux, uy) = (rel(qx, xmin), rel(qy, ymin));
            let m63 = _mm256_set1_epi16(63);
            let (rx, ry) = (_mm256_srli_epi16::<6>(ux), _mm256_srli_epi16::<6>(uy));
            let idx = _mm256_or_si256(
                rx,
                _mm256_slli_epi16::<8>(_mm256_add_epi16(rx, _mm256_set1_epi16(1))),
            );
            let top = _mm256_or_si256(ry, _mm256_slli_epi16::<8>(ry));
            let (wx, wy) = (_mm256_and_si256(ux, m63), _mm256_and_si256(uy, m63));
            (idx, top, None, wx, wy, None)
        } else {
            let c63 = _mm512_set1_epi32(63);
            let (wx, wy) = (
                _mm512_and_si512(_mm512_srai_epi32::<10>(qx), c63),
                _mm512_and_si512(_mm512_srai_epi32::<10>(qy), c63),
            );
            let (x0, y0) = (_mm512_srai_epi32::<16>(qx), _mm512_srai_epi32::<16>(qy));
            let one = _mm512_set1_epi32(1);
            let z = _mm512_setzero_si512();
            let clamp = |v: __m512i, n: i32| {
                let c = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32(n - 1)), z);
                (c, _mm512_cmpneq_epi32_mask(c, v))
            };
            let (xl, ol) = clamp(x0, pw);
            let (xr, or) = clamp(_mm512_add_epi32(x0, one), pw);
            let (yt, ot) = clamp(y0, ph);
            let (yb, ob) = clamp(_mm512_add_epi32(y0, one), ph);
            let rel = |v: __m512i, min: i32| _mm512_sub_epi32(v, _mm512_set1_epi32(min));
            let dup =
                |v: __m512i| _mm512_cvtepi32_epi16(_mm512_or_si512(v, _mm512_slli_epi32::<8>(v)));
            let idx = _mm512_or_si512(rel(xl, xmin), _mm512_slli_epi32::<8>(rel(xr, xmin)));
            let out = (fill == FillMode::Constant).then(|| {
                let bytes = |k: __mmask16, v: i32| _mm512_maskz_mov_epi32(k, _mm512_set1_epi32(v));
                let row = |o: __mmask16| {
                    _mm512_cvtepi32_epi16(_mm512_or_si512(
                        bytes(ol | o, 0x00ff),
                        bytes(or | o, 0xff00),
                    ))
                };
                (row(ot), row(ob))
            });
            (
                _mm512_cvtepi32_epi16(idx),
                dup(rel(yt, ymin)),
                Some(dup(rel(yb, ymin))),
                _mm512_cvtepi32_epi16(wx),
                _mm512_cvtepi32_epi16(wy),
                out,
            )
        };
        let s64 = _mm256_set1_epi16(64);
        let wts = _mm256_or_si256(_mm256_sub_epi16(s64, wx), _mm256_slli_epi16::<8>(wx));
        let (vlo, vhi) = (
            _mm256_unpacklo_epi16(_mm256_sub_epi16(s64, wy), wy),
            _mm256_unpackhi_epi16(_mm256_sub_epi16(s64, wy), wy),
        );
        let z = _mm256_setzero_si256();
        let (mut top, mut bot) = ([z; N], [z; N]);
        let mut above: __mmask32 = 0;
        for r in 0..rows {
            let row = _mm256_set1_epi8(r as i8);
            let here = _mm256_cmpeq_epi8_mask(top_rows, row);
            // Inside, a lane's bottom row is the row below its top row.
            let down = match bot_rows {
                Some(b) => _mm256_cmpeq_epi8_mask(b, row),
                None => above,
            };
            for c in 0..N {
                // SAFETY: the load ends within the plane's data (checked above); it is
                // unaligned.
                unsafe {
                    let at = planes[c].data.as_ptr().add(first[c] + r * planes[c].stride);
                    if wide {
                        let row = _mm512_loadu_si512(at as *const _);
                        let i = _mm512_castsi256_si512(idx);
                        let pick = |into: __m256i, m: __mmask32| {
                            _mm512_castsi512_si256(_mm512_mask_permutexvar_epi8(
                                _mm512_castsi256_si512(into),
                                m as u64,
                                i,
                                row,
                            ))
                        };
                        top[c] = pick(top[c], here);
                        bot[c] = pick(bot[c], down);
                    } else {
                        let row = _mm256_loadu_si256(at as *const _);
                        top[c] = _mm256_mask_permutexvar_epi8(top[c], here, idx, row);
                        bot[c] = _mm256_mask_permutexvar_epi8(bot[c], down, idx, row);
                    }
                }
            }
            above = here;
        }
        if let Some((ot, ob)) = out {
            let (mt, mb) = (_mm256_movepi8_mask(ot), _mm256_movepi8_mask(ob));
            for c in 0..N {
                let k = _mm256_set1_epi8(cval[c] as i8);
                top[c] = _mm256_mask_mov_epi8(top[c], mt, k);
                bot[c] = _mm256_mask_mov_epi8(bot[c], mb, k);
            }
        }
        Some(std::array::from_fn(|c| {
            let (ht, hb) = (
                _mm256_maddubs_epi16(top[c], wts),
                _mm256_maddubs_epi16(bot[c], wts),
            );
            let lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(ht, hb), vlo);
            let hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(ht, hb), vhi);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        }))
    }
}
