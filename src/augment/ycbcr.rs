//! Sampling a JPEG's YCbCr planes through the inverse map (the
//! [`ycbcr`](super::AugmentBuilder::ycbcr) path). The decoder skips its colour conversion and
//! chroma upsampling; the warp reads one byte per luma pixel, and chroma once per 2×2 output
//! pixels, instead of three bytes per pixel.
//!
//! - Luma is sampled bilinearly at each output pixel; chroma at half the output resolution
//!   (sample `(i, j)` at output position `(2i + 0.5, 2j + 0.5)`), then upsampled with the
//!   triangle filter: output `2i` takes `3/4 c[i] + 1/4 c[i - 1]`, output `2i + 1`
//!   `3/4 c[i] + 1/4 c[i + 1]`, across and down, the edges repeated (libjpeg's "fancy"
//!   upsampling). At the identity map this is libjpeg-turbo's RGB decode up to its rounding.
//! - Positions: sample `x` of a row reads plane position `q = base(y) + x * step` on each
//!   axis, in 1/65536 of a plane sample (16.16 fixed point, `i64`), with `base` and `step`
//!   from the inverse map and the plane's subsampling `(hs, vs)`: a chroma position is
//!   `(X + 0.5) / hs - 0.5` for luma position `X` (JPEG's centred siting). The vector loops
//!   use `i32` where a whole row fits, with the same values.
//! - Bilinear in integers: the left tap is `q >> 16` and the weight `w = (q >> 10) & 63`
//!   (1/64 of a sample); `v = (p00 (64 - wx) + p01 wx) (64 - wy) + (p10 (64 - wx) + p11 wx) wy`
//!   is exact, in 1/4096 of a level (chroma, after the upsampling, in 1/65536). Outside the
//!   plane the [`FillMode`] decides each tap; a constant fill is `cval` rounded to a whole
//!   level in luma and 128 (grey) in chroma.
//! - Colour (JFIF, as libjpeg): `r = y + 1.402 cr'`, `g = y - 0.34414 cb' - 0.71414 cr'`,
//!   `b = y + 1.772 cb'` with `cb' = cb - 128`, in `f32` with fused multiply-adds, clamped to
//!   `[0, 255]`; then the photometric pass and the store, as on the RGB path.
//!
//! Every loop (portable, AVX2, AVX-512) gives the same bits. Against the RGB path (libjpeg's
//! RGB decode, then the `f32` warp) the values differ by the chroma resampling, the
//! 1/64-sample weights and the rounding: the tests bound the difference.

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
    /// The widest loops at most at `level` on this CPU; the VBMI ones only with `vbmi` (the
    /// AVX2 ones give the same bits).
    pub(super) fn pick(level: crate::simd::SimdLevel, vbmi: bool) -> Taps {
        use crate::simd::SimdLevel;
        #[cfg(target_arch = "x86_64")]
        {
            if vbmi && level >= SimdLevel::Avx512 && crate::simd::Vbmi::available() {
                return Taps::Avx512;
            }
            if level >= SimdLevel::Avx2 && SimdLevel::Avx2.is_available() {
                return Taps::Avx2;
            }
        }
        let _ = (level, vbmi, SimdLevel::Scalar);
        Taps::Portable
    }
}

/// The planes, their maps and the fill of one sample, and the values of the output row
/// being made: luma at the output's resolution; chroma sampled at half of it (one sample per
/// 2×2 output pixels, at their centre) and upsampled with the triangle filter (weights 3/4
/// and 1/4, as libjpeg's "fancy" upsampling).
pub(super) struct Ycc<'a> {
    /// Y, Cb, Cr.
    pub(super) planes: [Plane<'a>; 3],
    /// Luma's map (per output pixel), then the chroma planes' (per half-resolution sample).
    pub(super) maps: [PlaneMap; 2],
    pub(super) fill: FillMode,
    /// What a constant fill reads, per plane.
    pub(super) cval: [u8; 3],
    /// Output width, and the half-resolution chroma grid's width and height.
    width: usize,
    half: (usize, usize),
    /// The values (1/4096 levels): the luma row; two slots of a half-resolution chroma row
    /// upsampled across (`3 c[i] + c[i ± 1]`, Cb then Cr); the raw half-resolution row being
    /// made, each plane with its edge samples repeated on both sides.
    buf: Vec<i32>,
    pitch: usize,
    raw_pitch: usize,
    /// The half-resolution row each slot holds.
    slots: [Option<usize>; 2],
    /// The current output row's nearer and farther half-resolution rows' slots.
    near_far: (usize, usize),
    taps: Taps,
    /// The vector blocks' lane offsets.
    #[cfg(target_arch = "x86_64")]
    lanes: x86::Lanes,
}

/// The start (pixel 0) of a row under one map: positions across and down.
pub(super) type RowBase = (i64, i64);

impl<'a> Ycc<'a> {
    /// The sample's planes under the luma map `m`, for output rows of `width`, computed with
    /// `taps`; `buf` is reused for the values (see [`Ycc::into_buf`]).
    pub(super) fn new(
        src: &YCbCrView<'a>,
        m: [f64; 6],
        (fill, cval): (FillMode, f32),
        (width, height): (usize, usize),
        taps: Taps,
        mut buf: Vec<i32>,
    ) -> Self {
        let luma = cval.round().clamp(0.0, 255.0) as u8;
        // Half-resolution sample (i, j) sits at output position (2i + 0.5, 2j + 0.5).
        let half = [
            2.0 * m[0],
            2.0 * m[1],
            m[2] + 0.5 * (m[0] + m[1]),
            2.0 * m[3],
            2.0 * m[4],
            m[5] + 0.5 * (m[3] + m[4]),
        ];
        let maps = [
            PlaneMap::new(m, (1, 1)),
            PlaneMap::new(half, src.subsampling),
        ];
        let pitch = width.next_multiple_of(16);
        let hw = width.div_ceil(2);
        // Room for the repeated edges and a 16-value load from any sample.
        let raw_pitch = hw + 2 + 16;
        let len = 5 * pitch + 2 * raw_pitch;
        if buf.len() < len {
            buf = vec![0; len];
        }
        Ycc {
            planes: [src.y, src.cb, src.cr],
            maps,
            fill,
            cval: [luma, 128, 128],
            width,
            half: (hw, height.div_ceil(2)),
            buf,
            pitch,
            raw_pitch,
            slots: [None; 2],
            near_far: (0, 0),
            taps,
            #[cfg(target_arch = "x86_64")]
            lanes: x86::Lanes::new(&maps, &[src.y, src.cb, src.cr]),
        }
    }

    /// The loops the next rows are computed with (the same bits whichever).
    pub(super) fn set_taps(&mut self, taps: Taps) {
        self.taps = taps;
    }

    /// The values' buffer, to keep for the next sample.
    pub(super) fn into_buf(self) -> Vec<i32> {
        self.buf
    }

    /// Where slot `s`'s upsampled row of chroma plane `p` (0 Cb, 1 Cr) starts in `buf`.
    fn slot_at(&self, s: usize, p: usize) -> usize {
        self.pitch * (1 + 2 * s + p)
    }

    /// Where the raw half-resolution row of chroma plane `p` starts in `buf` (its first
    /// sample is at `+ 1`).
    fn raw_at(&self, p: usize) -> usize {
        5 * self.pitch + p * self.raw_pitch
    }

    /// Computes the values of output row `y`, which [`Ycc::rgb`] then reads.
    pub(super) fn fill_row(&mut self, y: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        let base = self.maps[0].row(y);
        let luma = self.pitch;
        self.fill_group(0, base, self.width, &mut buf[..luma], None);
        // Output row y sits at half-resolution row (y - 0.5) / 2: its nearer row j gets 3/4,
        // the farther one (above for an even y, below for an odd one) 1/4, at the edges the
        // same row.
        let j = y / 2;
        let far = if y.is_multiple_of(2) {
            j.saturating_sub(1)
        } else {
            (j + 1).min(self.half.1 - 1)
        };
        let near = self.ensure_half(j, far, &mut buf);
        let far = self.ensure_half(far, j, &mut buf);
        self.near_far = (near, far);
        self.buf = buf;
    }

    /// The slot that holds half-resolution row `j`, made now if no slot does (in the slot
    /// that does not hold row `keep`).
    fn ensure_half(&mut self, j: usize, keep: usize, buf: &mut [i32]) -> usize {
        if let Some(s) = self.slots.iter().position(|&h| h == Some(j)) {
            return s;
        }
        let s = if self.slots[0] == Some(keep) { 1 } else { 0 };
        let hw = self.half.0;
        let base = self.maps[1].row(j);
        let (cb, cr) = (self.raw_at(0), self.raw_at(1));
        let (a, b) = buf[cb..].split_at_mut(self.raw_pitch);
        self.fill_group(1, base, hw, &mut a[1..1 + hw], Some(&mut b[1..1 + hw]));
        for at in [cb, cr] {
            buf[at] = buf[at + 1];
            buf[at + 1 + hw] = buf[at + hw];
        }
        for p in 0..2 {
            let (raw, out) = (self.raw_at(p), self.slot_at(s, p));
            self.upsample(buf, raw, out);
        }
        self.slots[s] = Some(j);
        s
    }

    /// Plane group `m`'s values (luma; or Cb and Cr) of the row at `base`, `width` of them.
    fn fill_group(
        &self,
        m: usize,
        base: RowBase,
        width: usize,
        first: &mut [i32],
        second: Option<&mut [i32]>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.taps != Taps::Portable && x86::row_fits(self, m, base, width) {
            let outs = [first, second.unwrap_or_default()];
            // SAFETY: `Taps::pick` checked the CPU; the row fits the blocks' arithmetic; each
            // output holds `width` values (or none: the luma group has one output).
            unsafe {
                match self.taps {
                    Taps::Avx512 => x86::fill16(self, m, base, width, outs),
                    _ => x86::fill8(self, m, base, width, outs, 0),
                }
            }
            return;
        }
        self.fill_portable(m, base, width, first, second);
    }

    fn fill_portable(
        &self,
        m: usize,
        base: RowBase,
        width: usize,
        first: &mut [i32],
        second: Option<&mut [i32]>,
    ) {
        // Luma is plane 0; chroma planes 1 and 2 share map 1.
        for (x, v) in first[..width].iter_mut().enumerate() {
            *v = self.value(m, base, x);
        }
        if let Some(second) = second {
            for (x, v) in second[..width].iter_mut().enumerate() {
                *v = self.value(2, base, x);
            }
        }
    }

    /// `buf[out + x] = 3 c[x / 2] + c[x / 2 ± 1]` for the output row (`-` for an even `x`),
    /// from the raw row at `raw` (edges repeated).
    fn upsample(&self, buf: &mut [i32], raw: usize, out: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.taps != Taps::Portable {
            // SAFETY: `Taps::pick` checked the CPU; the raw row has `raw_pitch` values, of
            // which the loads read at most `width / 2 + 17`; the output row has `pitch`.
            return unsafe { x86::upsample(self.taps, buf, raw, out, self.width) };
        }
        for x in 0..self.width {
            let i = raw + 1 + x / 2;
            let n = if x.is_multiple_of(2) { i - 1 } else { i + 1 };
            buf[out + x] = 3 * buf[i] + buf[n];
        }
    }

    /// Output pixel `x` of the row [`Ycc::fill_row`] made, RGB in source units: what every
    /// loop computes.
    #[inline]
    pub(super) fn rgb(&self, x: usize) -> [f32; 3] {
        let (near, far) = self.near_far;
        let chroma =
            |p: usize| 3 * self.buf[self.slot_at(near, p) + x] + self.buf[self.slot_at(far, p) + x];
        to_rgb([self.buf[x], chroma(0), chroma(1)])
    }

    /// Plane `c`'s value (1/4096 levels) at sample `x` of the row at `base` under its map
    /// (luma: an output pixel; chroma: a half-resolution sample).
    #[inline]
    pub(super) fn value(&self, c: usize, (bx, by): RowBase, x: usize) -> i32 {
        let map = &self.maps[(c > 0) as usize];
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

/// JFIF's YCbCr to RGB of luma in 1/4096 levels and chroma in 1/65536 (upsampled),
/// clamped to `[0, 255]`.
#[inline]
pub(super) fn to_rgb([y, cb, cr]: [i32; 3]) -> [f32; 3] {
    let y = y as f32 * LUMA_UNIT;
    let cb = fmadd(cb as f32, CHROMA_UNIT, -128.0);
    let cr = fmadd(cr as f32, CHROMA_UNIT, -128.0);
    let clamp = |v: f32| v.clamp(0.0, 255.0);
    [
        clamp(fmadd(RCR, cr, y)),
        clamp(fmadd(GCR, cr, fmadd(GCB, cb, y))),
        clamp(fmadd(BCB, cb, y)),
    ]
}

const LUMA_UNIT: f32 = 1.0 / 4096.0;
const CHROMA_UNIT: f32 = 1.0 / 65536.0;
const RCR: f32 = 1.402;
const GCB: f32 = -0.34414;
const GCR: f32 = -0.71414;
const BCB: f32 = 1.772;

/// The vector blocks: eight pixels with AVX2 gathers (any position, every fill mode), sixteen
/// with AVX-512 VBMI byte permutes (every tap inside the planes).
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{BCB, CHROMA_UNIT, GCB, GCR, LUMA_UNIT, PlaneMap, RCR, RowBase, Taps, Ycc};
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

    /// Whether every position of a row of `width` samples at `base` under map `m` fits the
    /// blocks' `i32` arithmetic (positions are affine in x: the ends bound the row).
    pub(super) fn row_fits(k: &Ycc<'_>, m: usize, (bx, by): RowBase, width: usize) -> bool {
        let last = width as i64 + 16;
        let map = &k.maps[m];
        k.lanes.steps_fit
            && fits(bx)
            && fits(by)
            && fits(bx + last * map.step.0)
            && fits(by + last * map.step.1)
    }

    /// A block's first position on each axis under map `m` (the row fits `i32`).
    #[inline]
    fn starts(k: &Ycc<'_>, m: usize, (bx, by): RowBase, x: usize) -> (i32, i32) {
        let x = x as i64;
        let (sx, sy) = k.maps[m].step;
        ((bx + x * sx) as i32, (by + x * sy) as i32)
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
        let (k, kc) = (_mm256_set1_ps(LUMA_UNIT), _mm256_set1_ps(CHROMA_UNIT));
        let m128 = _mm256_set1_ps(-128.0);
        let y = _mm256_mul_ps(_mm256_cvtepi32_ps(y), k);
        let cb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cb), kc, m128);
        let cr = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cr), kc, m128);
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
        let (k, kc) = (_mm512_set1_ps(LUMA_UNIT), _mm512_set1_ps(CHROMA_UNIT));
        let m128 = _mm512_set1_ps(-128.0);
        let y = _mm512_mul_ps(_mm512_cvtepi32_ps(y), k);
        let cb = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cb), kc, m128);
        let cr = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cr), kc, m128);
        let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let clamp = |v: __m512| _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        let s = _mm512_set1_ps;
        [
            clamp(_mm512_fmadd_ps(s(RCR), cr, y)),
            clamp(_mm512_fmadd_ps(s(GCR), cr, _mm512_fmadd_ps(s(GCB), cb, y))),
            clamp(_mm512_fmadd_ps(s(BCB), cb, y)),
        ]
    }

    /// Plane `c`'s values at samples `x..x + 8` of the row at `base` under its map (which
    /// [`row_fits`]): AVX2 gathers, or one by one where they cannot go.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn values8(k: &Ycc<'_>, c: usize, base: RowBase, x: usize) -> __m256i {
        let m = (c > 0) as usize;
        let (q0x, q0y) = starts(k, m, base, x);
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

    /// Fills `outs` (plane 0, or planes 1 and 2: the group of map `m`) with the `width`
    /// samples of the row at `base` (which [`row_fits`]) from sample `from` on: eight at a
    /// time, then one at a time.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill8(
        k: &Ycc<'_>,
        m: usize,
        base: RowBase,
        width: usize,
        outs: [&mut [i32]; 2],
        from: usize,
    ) {
        for (i, out) in outs.into_iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let c = m + i;
            let out = &mut out[..width];
            let mut x = from;
            while x + 8 <= width {
                // SAFETY: AVX2; 8 values are written, `x + 8 <= width`.
                unsafe {
                    let v = values8(k, c, base, x);
                    _mm256_storeu_si256(out.as_mut_ptr().add(x) as *mut _, v);
                }
                x += 8;
            }
            for (x, v) in out.iter_mut().enumerate().skip(x) {
                *v = k.value(c, base, x);
            }
        }
    }

    /// [`fill8`], sixteen samples at a time with [`rows16`] (both chroma planes together),
    /// else two [`values8`] per plane; the rest as [`fill8`].
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512 F, BW, VL and VBMI, and AVX2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
    pub(super) unsafe fn fill16(
        k: &Ycc<'_>,
        m: usize,
        base: RowBase,
        width: usize,
        [a, b]: [&mut [i32]; 2],
    ) {
        let l = &k.lanes;
        // SAFETY: 16 values are read from each.
        let lanes = l.sixteen[m].map(|v| unsafe { _mm512_loadu_si512(v.as_ptr() as *const _) });
        let step = (k.maps[m].step.0 as i32, k.maps[m].step.1 as i32);
        let end = width - width % 16;
        let mut x = 0;
        while x < end {
            let q = starts(k, m, base, x);
            // SAFETY: the CPU features; `x + 16 <= width`, and each output holds `width`
            // values: 16 written to each.
            unsafe {
                if m == 0 {
                    let at = a.as_mut_ptr().add(x);
                    match rows16(
                        [&k.planes[0]],
                        [k.cval[0]],
                        k.fill,
                        lanes,
                        q,
                        step,
                        l.rows16[0],
                    ) {
                        Some([v]) => _mm512_storeu_si512(at as *mut _, v),
                        None => {
                            _mm256_storeu_si256(at as *mut _, values8(k, 0, base, x));
                            _mm256_storeu_si256(at.add(8) as *mut _, values8(k, 0, base, x + 8));
                        }
                    }
                } else {
                    let at = [a.as_mut_ptr().add(x), b.as_mut_ptr().add(x)];
                    let planes = [&k.planes[1], &k.planes[2]];
                    let cval = [k.cval[1], k.cval[2]];
                    match rows16(planes, cval, k.fill, lanes, q, step, l.rows16[1]) {
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
            }
            x += 16;
        }
        // SAFETY: AVX2.
        unsafe { fill8(k, m, base, width, [a, b], end) }
    }

    /// [`Ycc::upsample`](super::Ycc::upsample) with `taps`' vectors: sixteen or eight
    /// outputs at a time from one load of the raw row, by permutes.
    ///
    /// # Safety
    ///
    /// The CPU has what `taps` needs; the raw row at `raw` holds `width / 2 + 17` values and
    /// the output row at `out` `width` rounded up to 16.
    pub(super) unsafe fn upsample(
        taps: Taps,
        buf: &mut [i32],
        raw: usize,
        out: usize,
        width: usize,
    ) {
        assert!(
            raw + 1 + width / 2 + 16 <= buf.len() && out + width.next_multiple_of(16) <= buf.len()
        );
        // SAFETY: the CPU features (the caller's precondition); the lengths (asserted).
        unsafe {
            match taps {
                Taps::Avx512 => upsample16(buf, raw, out, width),
                _ => upsample8(buf, raw, out, width),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn upsample16(buf: &mut [i32], raw: usize, out: usize, width: usize) {
        // Output 2i takes c[i] and c[i - 1], output 2i + 1 c[i] and c[i + 1]; the load at
        // c[x / 2 - 1] puts c[x / 2 + i] in lane i + 1.
        let near = _mm512_setr_epi32(1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8);
        let far = _mm512_setr_epi32(0, 2, 1, 3, 2, 4, 3, 5, 4, 6, 5, 7, 6, 8, 7, 9);
        let p = buf.as_mut_ptr();
        let mut x = 0;
        while x < width {
            // SAFETY: the load reads `raw + x / 2 .. + 16`, the store `out + x .. + 16`
            // (`x < width`, lengths asserted by the caller's caller).
            unsafe {
                let v = _mm512_loadu_si512(p.add(raw + x / 2) as *const _);
                let n = _mm512_permutexvar_epi32(near, v);
                let f = _mm512_permutexvar_epi32(far, v);
                let h = _mm512_add_epi32(_mm512_add_epi32(n, _mm512_slli_epi32::<1>(n)), f);
                _mm512_storeu_si512(p.add(out + x) as *mut _, h);
            }
            x += 16;
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn upsample8(buf: &mut [i32], raw: usize, out: usize, width: usize) {
        let near = _mm256_setr_epi32(1, 1, 2, 2, 3, 3, 4, 4);
        let far = _mm256_setr_epi32(0, 2, 1, 3, 2, 4, 3, 5);
        let p = buf.as_mut_ptr();
        let mut x = 0;
        while x < width {
            // SAFETY: as in `upsample16`, 8 values each.
            unsafe {
                let v = _mm256_loadu_si256(p.add(raw + x / 2) as *const _);
                let n = _mm256_permutevar8x32_epi32(v, near);
                let f = _mm256_permutevar8x32_epi32(v, far);
                let h = _mm256_add_epi32(_mm256_add_epi32(n, _mm256_slli_epi32::<1>(n)), f);
                _mm256_storeu_si256(p.add(out + x) as *mut _, h);
            }
            x += 8;
        }
    }

    /// RGB of pixels `x..x + 8` of the row [`Ycc::fill_row`] made.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2 and FMA, and `x + 8` is at most the width rounded up to 16.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn rgb8_at(k: &Ycc<'_>, x: usize) -> [__m256; 3] {
        let (near, far) = k.near_far;
        // SAFETY: each row in `buf` holds `pitch` values.
        let load =
            |at: usize| unsafe { _mm256_loadu_si256(k.buf.as_ptr().add(at + x) as *const _) };
        let chroma = |p: usize| {
            let n = load(k.slot_at(near, p));
            _mm256_add_epi32(
                _mm256_add_epi32(n, _mm256_slli_epi32::<1>(n)),
                load(k.slot_at(far, p)),
            )
        };
        rgb8([load(0), chroma(0), chroma(1)])
    }

    /// RGB of pixels `x..x + 16` of the row [`Ycc::fill_row`] made.
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512 F, and `x + 16` is at most the width rounded up to 16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn rgb16_at(k: &Ycc<'_>, x: usize) -> [__m512; 3] {
        let (near, far) = k.near_far;
        // SAFETY: each row in `buf` holds `pitch` values.
        let load =
            |at: usize| unsafe { _mm512_loadu_si512(k.buf.as_ptr().add(at + x) as *const _) };
        let chroma = |p: usize| {
            let n = load(k.slot_at(near, p));
            _mm512_add_epi32(
                _mm512_add_epi32(n, _mm512_slli_epi32::<1>(n)),
                load(k.slot_at(far, p)),
            )
        };
        rgb16([load(0), chroma(0), chroma(1)])
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
