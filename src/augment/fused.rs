//! The fused pass of the common case, 8-bit RGB source, bilinear, float NCHW output: eight
//! output pixels at a time go from the source through the inverse map, brightness, contrast,
//! noise and normalisation into the slot's three planes, with no intermediate row.
//!
//! The operations and their order are those of the portable path (warp row, then
//! [`Photo::apply`], then the store's `x * scale + bias`), without fused multiply-adds, so the
//! bits are the same; the tests hold the two equal.

#[cfg(target_arch = "x86_64")]
pub(super) use x86::pick;

/// Without x86-64 there is no fused kernel: the portable path runs.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn pick(_: super::FillMode, _: u8, _: super::photometric::Kind) -> Option<RowFn> {
    None
}

/// Writes output row `y` into the three planes of the slot.
///
/// Safety: the CPU has AVX2 and F16C, `planes` point at `width` writable elements of the
/// dtype the function was picked for, and `y` is below the output height.
pub(super) type RowFn = unsafe fn(&Fused<'_>, usize, [*mut u8; 3]);

/// One sample's fused pass, prepared.
pub(super) struct Fused<'a> {
    pub(super) warp: super::warp::Warp<'a, u8>,
    pub(super) photo: super::photometric::Photo<'a>,
    /// Output width.
    pub(super) width: usize,
    /// The store's per-channel `x * scale + bias`.
    pub(super) scale: [f32; 3],
    pub(super) bias: [f32; 3],
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::photometric::avx2::{noise8, pixel_hash8};
    use super::super::photometric::Kind;
    use super::super::warp::{self, pixel, row_map, Fill};
    use super::super::FillMode;
    use super::{Fused, RowFn};
    use crate::output::x86::{store1, store8};
    use crate::output::{out_size, OUT_BF16, OUT_F16, OUT_F32};

    /// The kernel for `fill`, dtype code `d` and photometric `kind`.
    pub(in super::super) fn pick(fill: FillMode, d: u8, kind: Kind) -> Option<RowFn> {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")) {
            return None;
        }
        Some(match fill {
            FillMode::Constant => by_dtype::<warp::Constant>(d, kind),
            FillMode::Nearest => by_dtype::<warp::Nearest>(d, kind),
            FillMode::Reflect => by_dtype::<warp::Reflect>(d, kind),
            FillMode::Wrap => by_dtype::<warp::Wrap>(d, kind),
        })
    }

    fn by_dtype<F: Fill>(d: u8, kind: Kind) -> RowFn {
        match d {
            OUT_F32 => by_kind::<F, OUT_F32>(kind),
            OUT_F16 => by_kind::<F, OUT_F16>(kind),
            _ => by_kind::<F, OUT_BF16>(kind),
        }
    }

    fn by_kind<F: Fill, const D: u8>(kind: Kind) -> RowFn {
        match kind {
            Kind::Affine => row::<F, D, false, false>,
            Kind::Gauss => row::<F, D, true, false>,
            Kind::SaltPepper => row::<F, D, false, true>,
            Kind::Both => row::<F, D, true, true>,
        }
    }

    /// Photometric pass, normalisation and store of channel `C / 10` of eight pixels whose
    /// noise hashes are `h`.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn finish<const C: i32, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        v: __m256,
        h: __m256i,
        dst: *mut u8,
    ) {
        let p = &k.photo;
        let mut x = _mm256_add_ps(
            _mm256_mul_ps(v, _mm256_set1_ps(p.gain)),
            _mm256_set1_ps(p.offset),
        );
        if GAUSS || SP {
            x = noise8::<C, GAUSS, SP>(p, x, h);
        }
        let ch = (C / 10) as usize;
        let o = _mm256_add_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(k.scale[ch])),
            _mm256_set1_ps(k.bias[ch]),
        );
        store8::<D>(dst, o);
    }

    /// One channel of the three in a gathered tap: byte `b` of every 32-bit lane, as floats.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn byte(g: __m256i, b: i32) -> __m256 {
        // pshufb indexes within each 16-byte half: dword j's byte b sits at 4j + b.
        let k = 0x8080_8000_u32 as i32 + b;
        let m = _mm256_setr_epi32(k, k + 4, k + 8, k + 12, k, k + 4, k + 8, k + 12);
        _mm256_cvtepi32_ps(_mm256_shuffle_epi8(g, m))
    }

    /// The 4 bytes at each offset `p`, or, past `last` (the image's last 4 bytes), the bytes
    /// ending there shifted down so that the tap's byte comes first.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn gather_tail(base: *const i32, p: __m256i, last: __m256i) -> __m256i {
        let q = _mm256_min_epi32(p, last);
        let s = _mm256_slli_epi32::<3>(_mm256_sub_epi32(p, q));
        _mm256_srlv_epi32(_mm256_i32gather_epi32::<1>(base, q), s)
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn lerp(
        t00: __m256,
        t01: __m256,
        t10: __m256,
        t11: __m256,
        fx: __m256,
        fy: __m256,
    ) -> __m256 {
        let top = _mm256_add_ps(t00, _mm256_mul_ps(fx, _mm256_sub_ps(t01, t00)));
        let bot = _mm256_add_ps(t10, _mm256_mul_ps(fx, _mm256_sub_ps(t11, t10)));
        _mm256_add_ps(top, _mm256_mul_ps(fy, _mm256_sub_ps(bot, top)))
    }

    #[target_feature(enable = "avx2,f16c")]
    unsafe fn row<F: Fill, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        let w = &k.warp;
        let m = row_map(w, y);
        let (a, bx, d, by) = m;
        let width = k.width;
        let sz = out_size(D);
        let (sw, sh) = (w.sw as i32, w.sh as i32);
        let stride = sw * 3;
        // Sizes are below MAX_PIXELS (2^27), so byte offsets fit in i32.
        let base = w.src.as_ptr() as *const i32;
        let len = w.src.len().min(i32::MAX as usize) as i32;
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
        let first = (y * width) as u32;
        let mut x = 0;
        while x + 8 <= width {
            let xf = _mm256_add_ps(_mm256_set1_ps(x as f32), lane);
            let sx = _mm256_max_ps(
                _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(va, xf), vbx), hi),
                lo,
            );
            let sy = _mm256_max_ps(
                _mm256_min_ps(_mm256_add_ps(_mm256_mul_ps(vd, xf), vby), hi),
                lo,
            );
            let (x0f, y0f) = (_mm256_floor_ps(sx), _mm256_floor_ps(sy));
            let (x0, y0) = (_mm256_cvttps_epi32(x0f), _mm256_cvttps_epi32(y0f));
            let (fx, fy) = (_mm256_sub_ps(sx, x0f), _mm256_sub_ps(sy, y0f));
            let inside = _mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(swm1, x0), _mm256_cmpgt_epi32(x0, neg1)),
                _mm256_and_si256(_mm256_cmpgt_epi32(shm1, y0), _mm256_cmpgt_epi32(y0, neg1)),
            );
            let all_in = _mm256_movemask_ps(_mm256_castsi256_ps(inside)) == 0xff;
            let [r, g, b] = if all_in {
                let p = _mm256_add_epi32(
                    _mm256_mullo_epi32(y0, vstride),
                    _mm256_add_epi32(x0, _mm256_add_epi32(x0, x0)),
                );
                // Left taps: the 4 bytes at the pixel (R, G, B, next R). Right taps: the 4
                // bytes ending with the next pixel (B, R, G, B), never past the image.
                // (Gathering 8 bytes per row instead, half the loads, measured slower.)
                let p1 = _mm256_add_epi32(p, _mm256_set1_epi32(2));
                let g00 = _mm256_i32gather_epi32::<1>(base, p);
                let g01 = _mm256_i32gather_epi32::<1>(base, p1);
                let g10 = _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(p, vstride));
                let g11 = _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(p1, vstride));
                [
                    lerp(
                        byte(g00, 0),
                        byte(g01, 1),
                        byte(g10, 0),
                        byte(g11, 1),
                        fx,
                        fy,
                    ),
                    lerp(
                        byte(g00, 1),
                        byte(g01, 2),
                        byte(g10, 1),
                        byte(g11, 2),
                        fx,
                        fy,
                    ),
                    lerp(
                        byte(g00, 2),
                        byte(g01, 3),
                        byte(g10, 2),
                        byte(g11, 3),
                        fx,
                        fy,
                    ),
                ]
            } else if F::CLAMP && len >= 4 {
                // Clamp every tap's indices (what `Nearest::index` does), gather 4 bytes at
                // the tap, or ending at it for the image's last pixel, and shift into place.
                let zero = _mm256_setzero_si256();
                let one = _mm256_set1_epi32(1);
                let (xa, xb) = (
                    _mm256_max_epi32(_mm256_min_epi32(x0, swm1), zero),
                    _mm256_max_epi32(_mm256_min_epi32(_mm256_add_epi32(x0, one), swm1), zero),
                );
                let (ya, yb) = (
                    _mm256_mullo_epi32(_mm256_max_epi32(_mm256_min_epi32(y0, shm1), zero), vstride),
                    _mm256_mullo_epi32(
                        _mm256_max_epi32(_mm256_min_epi32(_mm256_add_epi32(y0, one), shm1), zero),
                        vstride,
                    ),
                );
                let (xa, xb) = (
                    _mm256_add_epi32(xa, _mm256_add_epi32(xa, xa)),
                    _mm256_add_epi32(xb, _mm256_add_epi32(xb, xb)),
                );
                let last = _mm256_set1_epi32(len - 4);
                let g00 = gather_tail(base, _mm256_add_epi32(ya, xa), last);
                let g01 = gather_tail(base, _mm256_add_epi32(ya, xb), last);
                let g10 = gather_tail(base, _mm256_add_epi32(yb, xa), last);
                let g11 = gather_tail(base, _mm256_add_epi32(yb, xb), last);
                [
                    lerp(
                        byte(g00, 0),
                        byte(g01, 0),
                        byte(g10, 0),
                        byte(g11, 0),
                        fx,
                        fy,
                    ),
                    lerp(
                        byte(g00, 1),
                        byte(g01, 1),
                        byte(g10, 1),
                        byte(g11, 1),
                        fx,
                        fy,
                    ),
                    lerp(
                        byte(g00, 2),
                        byte(g01, 2),
                        byte(g10, 2),
                        byte(g11, 2),
                        fx,
                        fy,
                    ),
                ]
            } else {
                let mut t = [[0f32; 8]; 3];
                for i in 0..8 {
                    let mut o = [0f32; 3];
                    pixel::<u8, F, 3, true>(w, m, x + i, &mut o);
                    for (tc, oc) in t.iter_mut().zip(o) {
                        tc[i] = oc;
                    }
                }
                [
                    _mm256_loadu_ps(t[0].as_ptr()),
                    _mm256_loadu_ps(t[1].as_ptr()),
                    _mm256_loadu_ps(t[2].as_ptr()),
                ]
            };
            let h = if GAUSS || SP {
                pixel_hash8(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm256_setzero_si256()
            };
            finish::<0, D, GAUSS, SP>(k, r, h, planes[0].add(x * sz));
            finish::<10, D, GAUSS, SP>(k, g, h, planes[1].add(x * sz));
            finish::<20, D, GAUSS, SP>(k, b, h, planes[2].add(x * sz));
            x += 8;
        }
        while x < width {
            let mut o = [0f32; 3];
            pixel::<u8, F, 3, true>(w, m, x, &mut o);
            let h = k.photo.pixel_hash(first.wrapping_add(x as u32));
            for (c, v) in o.into_iter().enumerate() {
                let v = k.photo.value::<GAUSS, SP>(v, h, c);
                store1::<D>(planes[c].add(x * sz), v * k.scale[c] + k.bias[c]);
            }
            x += 1;
        }
    }
}
