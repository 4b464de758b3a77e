//! The sampling loop: one output row from the source through the inverse map, with the fill
//! mode, interpolation, channel count and pixel type fixed at compile time (the loop is
//! chosen once per sample, so nothing in it branches on configuration).

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use super::photometric::fmadd;
use super::{FillMode, Interpolation};

/// A source pixel value.
pub(super) trait Px: Copy {
    fn f(self) -> f32;
}

impl Px for u8 {
    #[inline(always)]
    fn f(self) -> f32 {
        self as f32
    }
}

impl Px for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}

/// Maps an index outside `0..n` into it, or `None` for the constant.
pub(super) trait Fill {
    /// The mode is a clamp of each index (`nearest`): the SIMD loop handles it in lanes.
    const CLAMP: bool = false;
    fn index(i: i64, n: i64) -> Option<usize>;
}

pub(super) struct Constant;
pub(super) struct Nearest;
pub(super) struct Reflect;
pub(super) struct Wrap;

impl Fill for Constant {
    #[inline(always)]
    fn index(i: i64, n: i64) -> Option<usize> {
        (0..n).contains(&i).then_some(i as usize)
    }
}

impl Fill for Nearest {
    const CLAMP: bool = true;
    #[inline(always)]
    fn index(i: i64, n: i64) -> Option<usize> {
        Some(i.clamp(0, n - 1) as usize)
    }
}

impl Fill for Reflect {
    #[inline(always)]
    fn index(i: i64, n: i64) -> Option<usize> {
        let m = i.rem_euclid(2 * n);
        Some(if m >= n { 2 * n - 1 - m } else { m } as usize)
    }
}

impl Fill for Wrap {
    #[inline(always)]
    fn index(i: i64, n: i64) -> Option<usize> {
        Some(i.rem_euclid(n) as usize)
    }
}

/// The source and the map of one sample.
///
/// `src` holds `sw * sh * channels` values: the augmentation checks the image before it makes
/// a warp, and the SIMD blocks (whose gathers are unchecked) rely on it.
pub(super) struct Warp<'a, T> {
    pub(super) src: &'a [T],
    pub(super) sw: usize,
    pub(super) sh: usize,
    pub(super) m: [f64; 6],
    pub(super) cval: f32,
    /// The AVX-512 blocks take their taps with VBMI byte permutes (only where the CPU has
    /// them: see [`Warp::set_vbmi`]).
    vbmi: bool,
}

impl<'a, T: Px> Warp<'a, T> {
    pub(super) fn new(src: &'a [T], sw: usize, sh: usize, m: [f64; 6], cval: f32) -> Self {
        Warp {
            src,
            sw,
            sh,
            m,
            cval,
            vbmi: false,
        }
    }

    /// Whether the AVX-512 blocks use VBMI byte permutes instead of gathers (the same bits);
    /// `true` counts only where the CPU has them.
    pub(super) fn set_vbmi(&mut self, on: bool) {
        self.vbmi = on && crate::simd::Vbmi::available();
    }
}

/// Fills `row` (`width * C` values) with output row `y`.
pub(super) type RowFn<T> = fn(&Warp<'_, T>, usize, &mut [f32]);

/// Clamps a coordinate into the range where `as i64` is exact and the index arithmetic
/// cannot overflow.
#[inline(always)]
fn sane(v: f32) -> f32 {
    v.clamp(-1e9, 1e9)
}

#[inline(always)]
fn tap<T: Px, F: Fill, const C: usize>(w: &Warp<'_, T>, x: i64, y: i64, out: &mut [f32; C]) {
    match (F::index(x, w.sw as i64), F::index(y, w.sh as i64)) {
        (Some(x), Some(y)) => {
            let p = (y * w.sw + x) * C;
            for (ch, o) in out.iter_mut().enumerate() {
                *o = w.src[p + ch].f();
            }
        }
        _ => *out = [w.cval; C],
    }
}

/// Floor without a libm call (the x86-64 baseline has no `roundss`): `v` is within ±1e9.
#[inline(always)]
fn floor(v: f32) -> f32 {
    let t = v as i32 as f32;
    if t > v { t - 1.0 } else { t }
}

/// Output pixel `x` of the row whose map starts at `(bx, by)` with steps `(a, d)`.
#[inline(always)]
pub(super) fn pixel<T: Px, F: Fill, const C: usize, const BILINEAR: bool>(
    w: &Warp<'_, T>,
    (a, bx, d, by): (f32, f32, f32, f32),
    x: usize,
    o: &mut [f32],
) {
    let (sw, sh) = (w.sw, w.sh);
    let stride = sw * C;
    let src = w.src;
    let xf = x as f32;
    let sx = sane(fmadd(a, xf, bx));
    let sy = sane(fmadd(d, xf, by));
    if BILINEAR {
        let (x0f, y0f) = (floor(sx), floor(sy));
        let (fx, fy) = (sx - x0f, sy - y0f);
        let (x0, y0) = (x0f as i64, y0f as i64);
        if (x0 as u64) < (sw - 1) as u64 && (y0 as u64) < (sh - 1) as u64 {
            let p = (y0 as usize) * stride + (x0 as usize) * C;
            let (r0, r1) = (&src[p..p + 2 * C], &src[p + stride..p + stride + 2 * C]);
            for ch in 0..C {
                let (t00, t01) = (r0[ch].f(), r0[C + ch].f());
                let (t10, t11) = (r1[ch].f(), r1[C + ch].f());
                let top = fmadd(fx, t01 - t00, t00);
                let bot = fmadd(fx, t11 - t10, t10);
                o[ch] = fmadd(fy, bot - top, top);
            }
        } else {
            let mut t = [[0f32; C]; 4];
            tap::<T, F, C>(w, x0, y0, &mut t[0]);
            tap::<T, F, C>(w, x0 + 1, y0, &mut t[1]);
            tap::<T, F, C>(w, x0, y0 + 1, &mut t[2]);
            tap::<T, F, C>(w, x0 + 1, y0 + 1, &mut t[3]);
            for ch in 0..C {
                let top = fmadd(fx, t[1][ch] - t[0][ch], t[0][ch]);
                let bot = fmadd(fx, t[3][ch] - t[2][ch], t[2][ch]);
                o[ch] = fmadd(fy, bot - top, top);
            }
        }
    } else {
        let (xi, yi) = (floor(sx + 0.5) as i64, floor(sy + 0.5) as i64);
        if (xi as u64) < sw as u64 && (yi as u64) < sh as u64 {
            let p = (yi as usize) * stride + (xi as usize) * C;
            for ch in 0..C {
                o[ch] = src[p + ch].f();
            }
        } else {
            let mut t = [0f32; C];
            tap::<T, F, C>(w, xi, yi, &mut t);
            o.copy_from_slice(&t);
        }
    }
}

/// The map of row `y`: `(a, bx, d, by)` with source `x = a·x + bx`, `y = d·x + by`.
#[inline(always)]
pub(super) fn row_map<T>(w: &Warp<'_, T>, y: usize) -> (f32, f32, f32, f32) {
    let [a, b, c, d, e, f] = w.m;
    let yf = y as f64;
    (a as f32, (b * yf + c) as f32, d as f32, (e * yf + f) as f32)
}

fn row<T: Px, F: Fill, const C: usize, const BILINEAR: bool>(
    w: &Warp<'_, T>,
    y: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_fma() {
        // SAFETY: the CPU has FMA.
        return unsafe { row_fma::<T, F, C, BILINEAR>(w, y, out) };
    }
    row_any::<T, F, C, BILINEAR>(w, y, out)
}

/// [`row`] with hardware fused multiply-adds (without them, `mul_add` is a call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn row_fma<T: Px, F: Fill, const C: usize, const BILINEAR: bool>(
    w: &Warp<'_, T>,
    y: usize,
    out: &mut [f32],
) {
    row_any::<T, F, C, BILINEAR>(w, y, out)
}

#[inline(always)]
fn row_any<T: Px, F: Fill, const C: usize, const BILINEAR: bool>(
    w: &Warp<'_, T>,
    y: usize,
    out: &mut [f32],
) {
    let m = row_map(w, y);
    for (x, o) in out.chunks_exact_mut(C).enumerate() {
        pixel::<T, F, C, BILINEAR>(w, m, x, o);
    }
}

/// AVX2 bilinear for 8-bit RGB: eight output pixels at a time with gathers where all four
/// taps are inside the image (or clamped into it, for `nearest`), the scalar pixel elsewhere.
/// Same operations in the same order as the scalar loop (the same fused multiply-adds), so the
/// same bits.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{Fill, Warp, pixel, row_map};
    use std::arch::x86_64::*;

    /// Output row `y` into `out` (`width * 3` values).
    pub(super) fn row_rgb8<F: Fill>(w: &Warp<'_, u8>, y: usize, out: &mut [f32]) {
        // Once per row: what the unchecked gathers rely on.
        assert!(w.src.len() >= w.sw * w.sh * 3, "warp source is too short");
        // SAFETY: `pick` returns this function only when the CPU has AVX2 and FMA; the source
        // length is checked above.
        unsafe { row_rgb8_avx2::<F>(w, y, out) }
    }

    /// [`row_rgb8`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    ///
    /// `w.src` holds `w.sw * w.sh * 3` bytes, and the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_rgb8_avx2<F: Fill>(w: &Warp<'_, u8>, y: usize, out: &mut [f32]) {
        let m = row_map(w, y);
        let width = out.len() / 3;
        let mut v = [[0f32; 8]; 3];
        let mut x = 0;
        while x + 8 <= width {
            // SAFETY: the caller's precondition on `w.src`.
            let [r, g, b] = unsafe { block_rgb8::<F>(w, m, x) };
            // SAFETY: each `v[c]` holds 8 values; the stores are unaligned.
            unsafe {
                _mm256_storeu_ps(v[0].as_mut_ptr(), r);
                _mm256_storeu_ps(v[1].as_mut_ptr(), g);
                _mm256_storeu_ps(v[2].as_mut_ptr(), b);
            }
            for (i, o) in out[x * 3..(x + 8) * 3].chunks_exact_mut(3).enumerate() {
                o[0] = v[0][i];
                o[1] = v[1][i];
                o[2] = v[2][i];
            }
            x += 8;
        }
        for (i, o) in out[x * 3..].chunks_exact_mut(3).enumerate() {
            pixel::<u8, F, 3, true>(w, m, x + i, o);
        }
    }

    /// One channel of the three in a gathered tap: byte `b` of every 32-bit lane, as floats.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn byte(g: __m256i, b: i32) -> __m256 {
        // pshufb indexes within each 16-byte half: dword j's byte b sits at 4j + b.
        let k = 0x8080_8000_u32 as i32 + b;
        let m = _mm256_setr_epi32(k, k + 4, k + 8, k + 12, k, k + 4, k + 8, k + 12);
        _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g, m))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lerp(t00: __m256, t01: __m256, t10: __m256, t11: __m256, fx: __m256, fy: __m256) -> __m256 {
        let top = _mm256_fmadd_ps(fx, _mm256_sub_ps(t01, t00), t00);
        let bot = _mm256_fmadd_ps(fx, _mm256_sub_ps(t11, t10), t10);
        _mm256_fmadd_ps(fy, _mm256_sub_ps(bot, top), top)
    }

    /// The three channels of eight pixels, bilinear, from the byte offsets of their left taps
    /// in the top row (`pa`) and the bottom row (`pb`); every right tap is the next pixel.
    /// Left taps: the 4 bytes at the pixel (R, G, B, next R). Right taps: the 4 bytes ending
    /// with the next pixel (B, R, G, B), never past the image. (Gathering 8 bytes per row
    /// instead, half the loads, measured slower with eight lanes.)
    ///
    /// # Safety
    ///
    /// `pa` and `pb` are offsets from `base` of pixels that are not the last of their row of an
    /// RGB image at `base` (so the 6 bytes from each are in it), and the CPU has AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn taps(
        base: *const i32,
        pa: __m256i,
        pb: __m256i,
        fx: __m256,
        fy: __m256,
    ) -> [__m256; 3] {
        let two = _mm256_set1_epi32(2);
        // SAFETY: the 4 bytes at `p` and at `p + 2` for each offset in `pa` and `pb` are in
        // the image (the caller's precondition); the gathers are unaligned.
        let g = |p: __m256i| unsafe { _mm256_i32gather_epi32::<1>(base, p) };
        let (g00, g01) = (g(pa), g(_mm256_add_epi32(pa, two)));
        let (g10, g11) = (g(pb), g(_mm256_add_epi32(pb, two)));
        let channel = |c: i32| {
            lerp(
                byte(g00, c),
                byte(g01, c + 1),
                byte(g10, c),
                byte(g11, c + 1),
                fx,
                fy,
            )
        };
        [channel(0), channel(1), channel(2)]
    }

    /// Channels 0, 1, 2 of output pixels `x..x + 8` of the row whose map is `m`, bilinear
    /// from the 8-bit RGB source: what [`pixel`] gives, eight at a time.
    ///
    /// # Safety
    ///
    /// `w.src` holds `w.sw * w.sh * 3` bytes, and the CPU has AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn block_rgb8<F: Fill>(
        w: &Warp<'_, u8>,
        m: (f32, f32, f32, f32),
        x: usize,
    ) -> [__m256; 3] {
        let (a, bx, d, by) = m;
        let (sw, sh) = (w.sw as i32, w.sh as i32);
        let stride = sw * 3;
        // Sizes are below MAX_PIXELS (2^27), so byte offsets fit in i32.
        let base = w.src.as_ptr() as *const i32;
        let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let (va, vbx, vd, vby) = (
            _mm256_set1_ps(a),
            _mm256_set1_ps(bx),
            _mm256_set1_ps(d),
            _mm256_set1_ps(by),
        );
        let (lo, hi) = (_mm256_set1_ps(-1e9), _mm256_set1_ps(1e9));
        let (swm1, shm1) = (_mm256_set1_epi32(sw - 1), _mm256_set1_epi32(sh - 1));
        let neg1 = _mm256_set1_epi32(-1);
        let vstride = _mm256_set1_epi32(stride);
        let xf = _mm256_add_ps(_mm256_set1_ps(x as f32), lane);
        let sx = _mm256_max_ps(_mm256_min_ps(_mm256_fmadd_ps(va, xf, vbx), hi), lo);
        let sy = _mm256_max_ps(_mm256_min_ps(_mm256_fmadd_ps(vd, xf, vby), hi), lo);
        let (x0f, y0f) = (_mm256_floor_ps(sx), _mm256_floor_ps(sy));
        let (x0, y0) = (_mm256_cvttps_epi32(x0f), _mm256_cvttps_epi32(y0f));
        let (fx, fy) = (_mm256_sub_ps(sx, x0f), _mm256_sub_ps(sy, y0f));
        let inside = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpgt_epi32(swm1, x0), _mm256_cmpgt_epi32(x0, neg1)),
            _mm256_and_si256(_mm256_cmpgt_epi32(shm1, y0), _mm256_cmpgt_epi32(y0, neg1)),
        );
        let all_in = _mm256_movemask_ps(_mm256_castsi256_ps(inside)) == 0xff;
        let x3 = |x: __m256i| _mm256_add_epi32(x, _mm256_add_epi32(x, x));
        if all_in {
            let pa = _mm256_add_epi32(_mm256_mullo_epi32(y0, vstride), x3(x0));
            // SAFETY: `0 <= x0 < sw - 1` and `0 <= y0 < sh - 1` in every lane: the left taps of
            // rows `y0` and `y0 + 1`, none the last of its row, in the caller's image.
            unsafe { taps(base, pa, _mm256_add_epi32(pa, vstride), fx, fy) }
        } else if F::CLAMP && sw >= 2 {
            // `nearest`: each row index is clamped into the image (what `Nearest::index`
            // does). Across, the pair (x0, x0 + 1) becomes (xq, xq + 1) with xq in
            // 0..=sw - 2 and the weight 0 left of the image (both taps were pixel 0) or 1
            // right of it (both were pixel sw - 1): the same value, exactly, as the taps are
            // integers.
            let zero = _mm256_setzero_si256();
            let swm2 = _mm256_set1_epi32(sw - 2);
            let xq = _mm256_max_epi32(_mm256_min_epi32(x0, swm2), zero);
            let fx = _mm256_blendv_ps(
                fx,
                _mm256_setzero_ps(),
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(zero, x0)),
            );
            let fx = _mm256_blendv_ps(
                fx,
                _mm256_set1_ps(1.0),
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(x0, swm2)),
            );
            let row = |y: __m256i| {
                _mm256_mullo_epi32(_mm256_max_epi32(_mm256_min_epi32(y, shm1), zero), vstride)
            };
            let (ya, yb) = (row(y0), row(_mm256_add_epi32(y0, _mm256_set1_epi32(1))));
            let xq3 = x3(xq);
            // SAFETY: rows clamped into `0..sh` and `0 <= xq <= sw - 2`: left taps in the
            // image, none the last of its row.
            unsafe {
                taps(
                    base,
                    _mm256_add_epi32(ya, xq3),
                    _mm256_add_epi32(yb, xq3),
                    fx,
                    fy,
                )
            }
        } else {
            let mut t = [[0f32; 8]; 3];
            for i in 0..8 {
                let mut o = [0f32; 3];
                pixel::<u8, F, 3, true>(w, m, x + i, &mut o);
                for (tc, oc) in t.iter_mut().zip(o) {
                    tc[i] = oc;
                }
            }
            // SAFETY: each `t[c]` holds 8 values; the loads are unaligned.
            unsafe {
                [
                    _mm256_loadu_ps(t[0].as_ptr()),
                    _mm256_loadu_ps(t[1].as_ptr()),
                    _mm256_loadu_ps(t[2].as_ptr()),
                ]
            }
        }
    }
}

/// AVX-512 bilinear for 8-bit RGB, sixteen output pixels at a time: the AVX2 block's
/// operations in the same order, where all sixteen pixels' taps are inside the image (or
/// clamped into it, for `nearest`).
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{Fill, Warp, fmadd, row_map};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    fn byte(g: __m512i, b: i32) -> __m512 {
        // vpshufb indexes within each 16-byte lane: dword j's byte b sits at 4j + b.
        let k = 0x8080_8000_u32 as i32 + b;
        let m = _mm512_setr_epi32(
            k,
            k + 4,
            k + 8,
            k + 12,
            k,
            k + 4,
            k + 8,
            k + 12,
            k,
            k + 4,
            k + 8,
            k + 12,
            k,
            k + 4,
            k + 8,
            k + 12,
        );
        _mm512_cvtepi32_ps(_mm512_shuffle_epi8(g, m))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lerp(t00: __m512, t01: __m512, t10: __m512, t11: __m512, fx: __m512, fy: __m512) -> __m512 {
        let top = _mm512_fmadd_ps(fx, _mm512_sub_ps(t01, t00), t00);
        let bot = _mm512_fmadd_ps(fx, _mm512_sub_ps(t11, t10), t10);
        _mm512_fmadd_ps(fy, _mm512_sub_ps(bot, top), top)
    }

    /// The inverse map of one output row, broadcast.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Row16 {
        a: __m512,
        bx: __m512,
        d: __m512,
        by: __m512,
    }

    /// Whether every source coordinate of output row `y` (pixels `0..width`) is within the
    /// ±1e9 the blocks clamp to, so that the clamp can be left out: the coordinates are affine
    /// in x and rounding is monotonic, so the two ends bound the row.
    pub(in super::super) fn row_in_range(w: &Warp<'_, u8>, y: usize, width: usize) -> bool {
        let (a, bx, d, by) = row_map(w, y);
        let last = width.saturating_sub(1) as f32;
        [
            fmadd(a, 0.0, bx),
            fmadd(a, last, bx),
            fmadd(d, 0.0, by),
            fmadd(d, last, by),
        ]
        .iter()
        .all(|v| (-1e9..=1e9).contains(v))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) fn row16(w: &Warp<'_, u8>, y: usize) -> Row16 {
        let (a, bx, d, by) = row_map(w, y);
        Row16 {
            a: _mm512_set1_ps(a),
            bx: _mm512_set1_ps(bx),
            d: _mm512_set1_ps(d),
            by: _mm512_set1_ps(by),
        }
    }

    /// The three channels of sixteen pixels, bilinear, from the byte offsets of their left
    /// taps in the top row (`pa`) and the bottom row (`pb`); every right tap is the next pixel.
    ///
    /// # Safety
    ///
    /// `pa` and `pb` are byte offsets in `w.src` of pixels that are not the last of their row
    /// (so the 6 bytes from each are in it), and the CPU has AVX-512 F and BW and AVX2.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    unsafe fn taps(
        w: &Warp<'_, u8>,
        pa: __m512i,
        pb: __m512i,
        fx: __m512,
        fy: __m512,
    ) -> [__m512; 3] {
        let base = w.src.as_ptr();
        // Sizes are below MAX_PIXELS (2^27), so byte offsets fit in i32.
        let len = w.src.len().min(i32::MAX as usize) as i32;
        let limit = _mm512_set1_epi32(len - 8);
        if _mm512_cmpgt_epi32_mask(pa, limit) | _mm512_cmpgt_epi32_mask(pb, limit) == 0 {
            // 8 bytes per row and pixel, left and right tap together (R G B R' G' B' . .):
            // half the loads of two 4-byte gathers. Dwords 2j and 2j + 1 of the two
            // registers are pixel j's low and high halves.
            let b = base as *const i64;
            let gather = |p: __m512i| {
                // SAFETY: every offset is at most `len - 8` (checked above): the 8 bytes from
                // each are in the source; the gathers are unaligned.
                let (lo, hi) = unsafe {
                    (
                        _mm512_i32gather_epi64::<1>(_mm512_castsi512_si256(p), b),
                        _mm512_i32gather_epi64::<1>(_mm512_extracti64x4_epi64::<1>(p), b),
                    )
                };
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                (
                    _mm512_permutex2var_epi32(lo, even, hi),
                    _mm512_permutex2var_epi32(lo, _mm512_add_epi32(even, _mm512_set1_epi32(1)), hi),
                )
            };
            let (l0, h0) = gather(pa);
            let (l1, h1) = gather(pb);
            return [
                lerp(byte(l0, 0), byte(l0, 3), byte(l1, 0), byte(l1, 3), fx, fy),
                lerp(byte(l0, 1), byte(h0, 0), byte(l1, 1), byte(h1, 0), fx, fy),
                lerp(byte(l0, 2), byte(h0, 1), byte(l1, 2), byte(h1, 1), fx, fy),
            ];
        }
        // Near the end of the image: 4 bytes at the left tap (R G B R') and 4 bytes ending
        // with the right one (B R' G' B'), never past the image.
        let two = _mm512_set1_epi32(2);
        // SAFETY: the 4 bytes at `p` and at `p + 2` for each offset in `pa` and `pb` are in the
        // source (the caller's precondition); the gathers are unaligned.
        let g = |p: __m512i| unsafe { _mm512_i32gather_epi32::<1>(p, base as *const _) };
        let (g00, g01) = (g(pa), g(_mm512_add_epi32(pa, two)));
        let (g10, g11) = (g(pb), g(_mm512_add_epi32(pb, two)));
        let lerp_c = |c: i32| {
            lerp(
                byte(g00, c),
                byte(g01, c + 1),
                byte(g10, c),
                byte(g11, c + 1),
                fx,
                fy,
            )
        };
        [lerp_c(0), lerp_c(1), lerp_c(2)]
    }

    /// Lane 0 and lane 15 of `v`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn ends(v: __m512i) -> (i32, i32) {
        (
            _mm_cvtsi128_si32(_mm512_castsi512_si128(v)),
            _mm_extract_epi32::<3>(_mm512_extracti32x4_epi32::<3>(v)),
        )
    }

    /// [`taps`] without gathers: the sixteen pixels' left taps `(x0, y0)` lie in a few rows
    /// and a narrow span of columns (the map is affine, so lanes 0 and 15 bound them); each of
    /// those rows is loaded once (64 bytes from the leftmost tap) and every lane takes its 8
    /// bytes with two byte permutes. `None` when the span is wider than one load, the block
    /// covers more than 8 rows, or a load would pass the end of the image.
    ///
    /// # Safety
    ///
    /// Every lane's taps are inside the image (`0 <= x0 < sw - 1`, `0 <= y0 < sh - 1`), and
    /// the CPU has AVX-512 F, BW and VBMI.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx2")]
    unsafe fn rows_taps(
        w: &Warp<'_, u8>,
        x0: __m512i,
        y0: __m512i,
        fx: __m512,
        fy: __m512,
    ) -> Option<[__m512; 3]> {
        let ((xa, xb), (ya, yb)) = (ends(x0), ends(y0));
        let (xmin, xmax, ymin, ymax) = (xa.min(xb), xa.max(xb), ya.min(yb), ya.max(yb));
        let stride = w.sw * 3;
        let first = ymin as usize * stride + xmin as usize * 3;
        let rows = (ymax - ymin) as usize + 2;
        if (xmax - xmin) * 3 + 8 > 64 || rows > 8 || first + (rows - 1) * stride + 64 > w.src.len()
        {
            return None;
        }
        // Byte j of lane l's low dword: its left tap's offset in the load, plus j.
        let o = _mm512_mullo_epi32(
            _mm512_sub_epi32(x0, _mm512_set1_epi32(xmin)),
            _mm512_set1_epi32(3 * 0x0101_0101),
        );
        let lo_idx = _mm512_add_epi32(o, _mm512_set1_epi32(0x0302_0100));
        let hi_idx = _mm512_add_epi32(o, _mm512_set1_epi32(0x0706_0504));
        let z = _mm512_setzero_si512();
        let (mut l0, mut h0, mut l1, mut h1) = (z, z, z, z);
        for r in 0..rows {
            // SAFETY: `first + r * stride + 64 <= len` (checked above); the load is unaligned.
            let v =
                unsafe { _mm512_loadu_si512(w.src.as_ptr().add(first + r * stride) as *const _) };
            let (lo, hi) = (
                _mm512_permutexvar_epi8(lo_idx, v),
                _mm512_permutexvar_epi8(hi_idx, v),
            );
            let y = _mm512_set1_epi32(ymin + r as i32);
            let top = _mm512_cmpeq_epi32_mask(y0, y);
            let bot = _mm512_cmpeq_epi32_mask(_mm512_add_epi32(y0, _mm512_set1_epi32(1)), y);
            l0 = _mm512_mask_mov_epi32(l0, top, lo);
            h0 = _mm512_mask_mov_epi32(h0, top, hi);
            l1 = _mm512_mask_mov_epi32(l1, bot, lo);
            h1 = _mm512_mask_mov_epi32(h1, bot, hi);
        }
        Some([
            lerp(byte(l0, 0), byte(l0, 3), byte(l1, 0), byte(l1, 3), fx, fy),
            lerp(byte(l0, 1), byte(h0, 0), byte(l1, 1), byte(h1, 0), fx, fy),
            lerp(byte(l0, 2), byte(h0, 1), byte(l1, 2), byte(h1, 1), fx, fy),
        ])
    }

    /// Channels 0, 1, 2 of output pixels `x..x + 16`, bilinear from the 8-bit RGB source,
    /// when every tap of the sixteen is inside the image or the fill mode is `nearest`; `None`
    /// otherwise (the caller takes two AVX2 blocks, which handle the other fill modes).
    /// `CLAMP` clamps the coordinates to ±1e9 (not needed where [`row_in_range`]).
    ///
    /// # Safety
    ///
    /// `w.src` holds `w.sw * w.sh * 3` bytes, and the CPU has AVX-512 F and BW and AVX2.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    pub(in super::super) unsafe fn block_rgb8<F: Fill, const CLAMP: bool>(
        w: &Warp<'_, u8>,
        m: Row16,
        x: usize,
    ) -> Option<[__m512; 3]> {
        let (sw, sh) = (w.sw as i32, w.sh as i32);
        let stride = _mm512_set1_epi32(sw * 3);
        let lane = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        let xf = _mm512_add_ps(_mm512_set1_ps(x as f32), lane);
        let (mut sx, mut sy) = (
            _mm512_fmadd_ps(m.a, xf, m.bx),
            _mm512_fmadd_ps(m.d, xf, m.by),
        );
        if CLAMP {
            let (lo, hi) = (_mm512_set1_ps(-1e9), _mm512_set1_ps(1e9));
            sx = _mm512_max_ps(_mm512_min_ps(sx, hi), lo);
            sy = _mm512_max_ps(_mm512_min_ps(sy, hi), lo);
        }
        const FLOOR: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
        let (x0f, y0f) = (
            _mm512_roundscale_ps::<FLOOR>(sx),
            _mm512_roundscale_ps::<FLOOR>(sy),
        );
        let (x0, y0) = (_mm512_cvttps_epi32(x0f), _mm512_cvttps_epi32(y0f));
        let (fx, fy) = (_mm512_sub_ps(sx, x0f), _mm512_sub_ps(sy, y0f));
        let x3 = |x: __m512i| _mm512_add_epi32(x, _mm512_add_epi32(x, x));
        // 0 <= x0 < sw - 1 and 0 <= y0 < sh - 1, as unsigned compares.
        let inside = _mm512_cmplt_epu32_mask(x0, _mm512_set1_epi32(sw - 1))
            & _mm512_cmplt_epu32_mask(y0, _mm512_set1_epi32(sh - 1));
        if inside == 0xffff {
            if w.vbmi {
                // SAFETY: VBMI checked (`Warp::set_vbmi`); every tap is inside the image
                // (checked above).
                if let Some(v) = unsafe { rows_taps(w, x0, y0, fx, fy) } {
                    return Some(v);
                }
            }
            let pa = _mm512_add_epi32(_mm512_mullo_epi32(y0, stride), x3(x0));
            // SAFETY: `0 <= x0 < sw - 1` and `0 <= y0 < sh - 1` in every lane: the left taps of
            // rows `y0` and `y0 + 1`, none the last of its row, in the caller's image.
            return Some(unsafe { taps(w, pa, _mm512_add_epi32(pa, stride), fx, fy) });
        }
        if !(F::CLAMP && sw >= 2) {
            return None;
        }
        // `nearest`: each row index is clamped into the image (what `Nearest::index` does).
        // Across, the pair (x0, x0 + 1) becomes (xq, xq + 1) with xq in 0..=sw - 2 and the
        // weight 0 left of the image (both taps were pixel 0) or 1 right of it (both were
        // pixel sw - 1): the same value, exactly, as the taps are integers.
        let zero = _mm512_setzero_si512();
        let xq = _mm512_max_epi32(_mm512_min_epi32(x0, _mm512_set1_epi32(sw - 2)), zero);
        let fx = _mm512_mask_mov_ps(fx, _mm512_cmplt_epi32_mask(x0, zero), _mm512_setzero_ps());
        let fx = _mm512_mask_mov_ps(
            fx,
            _mm512_cmpgt_epi32_mask(x0, _mm512_set1_epi32(sw - 2)),
            _mm512_set1_ps(1.0),
        );
        let shm1 = _mm512_set1_epi32(sh - 1);
        let row = |y: __m512i| {
            _mm512_mullo_epi32(_mm512_max_epi32(_mm512_min_epi32(y, shm1), zero), stride)
        };
        let (ya, yb) = (row(y0), row(_mm512_add_epi32(y0, _mm512_set1_epi32(1))));
        let xq3 = x3(xq);
        // SAFETY: rows clamped into `0..sh` and `0 <= xq <= sw - 2`: left taps in the image,
        // none the last of its row.
        Some(unsafe {
            taps(
                w,
                _mm512_add_epi32(ya, xq3),
                _mm512_add_epi32(yb, xq3),
                fx,
                fy,
            )
        })
    }
}

fn pick_fill<T: Px, const C: usize, const B: bool>(fill: FillMode) -> RowFn<T> {
    match fill {
        FillMode::Constant => row::<T, Constant, C, B>,
        FillMode::Nearest => row::<T, Nearest, C, B>,
        FillMode::Reflect => row::<T, Reflect, C, B>,
        FillMode::Wrap => row::<T, Wrap, C, B>,
    }
}

/// The AVX2 loop for 8-bit RGB bilinear, when the CPU has it and `simd` is on.
pub(super) fn pick_rgb8(fill: FillMode, simd: bool) -> Option<RowFn<u8>> {
    #[cfg(target_arch = "x86_64")]
    if simd && crate::simd::has_avx2_fma() {
        return Some(match fill {
            FillMode::Constant => avx2::row_rgb8::<Constant>,
            FillMode::Nearest => avx2::row_rgb8::<Nearest>,
            FillMode::Reflect => avx2::row_rgb8::<Reflect>,
            FillMode::Wrap => avx2::row_rgb8::<Wrap>,
        });
    }
    let _ = (fill, simd);
    None
}

/// The specialised portable row loop for `channels` (1 or 3; anything else is treated as 3
/// and caught by the caller's checks), `fill` and `interp`.
pub(super) fn pick<T: Px>(channels: usize, fill: FillMode, interp: Interpolation) -> RowFn<T> {
    match (channels, interp) {
        (1, Interpolation::Bilinear) => pick_fill::<T, 1, true>(fill),
        (1, Interpolation::Nearest) => pick_fill::<T, 1, false>(fill),
        (_, Interpolation::Bilinear) => pick_fill::<T, 3, true>(fill),
        (_, Interpolation::Nearest) => pick_fill::<T, 3, false>(fill),
    }
}
