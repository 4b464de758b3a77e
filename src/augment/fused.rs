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
    use super::super::warp::avx2::block_rgb8;
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

    #[target_feature(enable = "avx2,f16c")]
    unsafe fn row<F: Fill, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        let w = &k.warp;
        let m = row_map(w, y);
        let width = k.width;
        let sz = out_size(D);
        let first = (y * width) as u32;
        let mut x = 0;
        while x + 8 <= width {
            let [r, g, b] = block_rgb8::<F>(w, m, x);
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
