//! The fused pass of the common cases, bilinear from 8-bit RGB pixels or from a JPEG's YCbCr
//! planes: sixteen (AVX-512) or eight (AVX2) output pixels at a time go from the source
//! through the inverse map, brightness, contrast, noise and normalisation into the slot, with
//! no intermediate row. Targets: the three planes of NCHW in any dtype (f32, f16, bf16, u8),
//! or interleaved NHWC rows in f32 or u8 (the three channel vectors interleaved in registers
//! before the store). The sources differ only in how a block's RGB values are sampled (a
//! `Kernel`); the rows, the photometric pass and the stores are shared.
//!
//! The operations and their order are those of the portable path (warp row, then
//! [`Photo::apply`], then the store's dtype conversion), with the same fused multiply-adds, so
//! the bits are the same; the tests hold the two equal.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{pick, pick_ycbcr};

/// Without x86-64 there is no fused kernel: the portable path runs.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn pick<'a>(
    _: super::FillMode,
    _: u8,
    _: bool,
    _: super::photometric::Kind,
    _: crate::simd::SimdLevel,
) -> Option<RowFn<super::warp::Warp<'a, u8>>> {
    None
}

/// Without x86-64 there is no fused kernel: the portable path runs.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn pick_ycbcr<'a>(
    _: u8,
    _: bool,
    _: super::photometric::Kind,
    _: crate::simd::SimdLevel,
) -> Option<RowFn<super::ycbcr::Ycc<'a>>> {
    None
}

/// Writes output row `y` into the slot: planar, into the rows of the three planes at
/// `planes`; interleaved, into the row at `planes[0]` (the other two unused).
///
/// # Safety
///
/// The CPU has the features the function was picked for, `planes` point at `width` writable
/// elements of its dtype (interleaved: `planes[0]` at `3 * width`), and `y` is below the output
/// height.
pub(super) type RowFn<S> = unsafe fn(&Fused<'_, S>, usize, [*mut u8; 3]);

/// One sample's fused pass, prepared: the source `S` (8-bit RGB through a
/// [`Warp`](super::warp::Warp), or YCbCr planes through a [`Ycc`](super::ycbcr::Ycc)), the
/// photometric pass and the output width.
pub(super) struct Fused<'a, S> {
    pub(super) source: S,
    pub(super) photo: super::photometric::Photo<'a>,
    /// Output width.
    pub(super) width: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use std::marker::PhantomData;

    use super::super::FillMode;
    use super::super::photometric::Kind;
    use super::super::photometric::avx2::{pixel_hash8, value8};
    use super::super::photometric::avx512::{Tables, pixel_hash16, tables, value16};
    use super::super::warp::avx2::block_rgb8;
    use super::super::warp::avx512::{self as warp512, block_rgb8 as block16, row_in_range};
    use super::super::warp::{self, Fill, Warp, pixel, row_map};
    use super::super::ycbcr::{self, Ycc};
    use super::{Fused, RowFn};
    use crate::simd::avx2::{interleave3 as interleave8, store8};
    use crate::simd::avx512::{interleave3 as interleave16, store16};
    use crate::simd::{OUT_BF16, OUT_F16, OUT_F32, OUT_U8, SimdLevel, out_size, store1};

    /// How the fused rows read one kind of source: a row's prepared map, and the three
    /// channels (source units) of sixteen, eight or one output pixel(s) of it.
    pub(in super::super) trait Kernel {
        /// What is read, with the map.
        type Source<'a>;
        /// A row, prepared for the AVX-512 blocks.
        type Row16: Copy;
        /// A row, prepared for the AVX2 blocks and single pixels.
        type Row8: Copy;

        /// # Safety
        ///
        /// The CPU has AVX-512 F and BW, AVX2, FMA and F16C.
        unsafe fn row16(s: &Self::Source<'_>, y: usize, width: usize) -> Self::Row16;

        /// Output pixels `x..x + 16` of the row.
        ///
        /// # Safety
        ///
        /// As [`Kernel::row16`], and `x + 16` is at most the width.
        unsafe fn block16(s: &Self::Source<'_>, r: &Self::Row16, x: usize) -> [__m512; 3];

        fn row8(s: &Self::Source<'_>, y: usize, width: usize) -> Self::Row8;

        /// Output pixels `x..x + 8` of the row.
        ///
        /// # Safety
        ///
        /// The CPU has AVX2 and FMA, and `x + 8` is at most the width.
        unsafe fn block8(s: &Self::Source<'_>, r: &Self::Row8, x: usize) -> [__m256; 3];

        /// Output pixel `x` of the row.
        fn pixel(s: &Self::Source<'_>, r: &Self::Row8, x: usize) -> [f32; 3];
    }

    /// 8-bit RGB through the `f32` bilinear warp, fill mode `F`: sixteen pixels where every
    /// tap is inside the image (or clamped into it, for `nearest`), else two AVX2 blocks.
    struct RgbKernel<F>(PhantomData<F>);

    impl<F: Fill> Kernel for RgbKernel<F> {
        type Source<'a> = Warp<'a, u8>;
        /// The map broadcast, the map, and whether the row needs no clamp.
        type Row16 = (warp512::Row16, (f32, f32, f32, f32), bool);
        type Row8 = (f32, f32, f32, f32);

        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn row16(w: &Warp<'_, u8>, y: usize, width: usize) -> Self::Row16 {
            (
                warp512::row16(w, y),
                row_map(w, y),
                row_in_range(w, y, width),
            )
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn block16(
            w: &Warp<'_, u8>,
            &(m16, m, in_range): &Self::Row16,
            x: usize,
        ) -> [__m512; 3] {
            // SAFETY: the warp's source holds its `sw * sh * 3` bytes (checked before the
            // warp is made).
            let block = unsafe {
                if in_range {
                    block16::<F, false>(w, m16, x)
                } else {
                    block16::<F, true>(w, m16, x)
                }
            };
            match block {
                Some(v) => v,
                None => {
                    // SAFETY: as above.
                    let [r0, g0, b0] = unsafe { block_rgb8::<F>(w, m, x) };
                    // SAFETY: as above.
                    let [r1, g1, b1] = unsafe { block_rgb8::<F>(w, m, x + 8) };
                    [join(r0, r1), join(g0, g1), join(b0, b1)]
                }
            }
        }

        fn row8(w: &Warp<'_, u8>, y: usize, _: usize) -> Self::Row8 {
            row_map(w, y)
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn block8(w: &Warp<'_, u8>, &m: &Self::Row8, x: usize) -> [__m256; 3] {
            // SAFETY: the warp's source holds its `sw * sh * 3` bytes (checked before the
            // warp is made).
            unsafe { block_rgb8::<F>(w, m, x) }
        }

        #[inline]
        fn pixel(w: &Warp<'_, u8>, &m: &Self::Row8, x: usize) -> [f32; 3] {
            let mut o = [0f32; 3];
            pixel::<u8, F, 3, true>(w, m, x, &mut o);
            o
        }
    }

    /// A JPEG's YCbCr planes (see [`ycbcr`]): the row's plane values, made before the row
    /// runs ([`Ycc::fill_row`]), converted to RGB.
    struct YccKernel;

    impl Kernel for YccKernel {
        type Source<'a> = Ycc<'a>;
        type Row16 = ();
        type Row8 = ();

        unsafe fn row16(_: &Ycc<'_>, _: usize, _: usize) {}

        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn block16(k: &Ycc<'_>, _: &(), x: usize) -> [__m512; 3] {
            // SAFETY: AVX-512 F; `x + 16` is at most the width (the caller's precondition).
            unsafe { ycbcr::x86::rgb16_at(k, x) }
        }

        fn row8(_: &Ycc<'_>, _: usize, _: usize) {}

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn block8(k: &Ycc<'_>, _: &(), x: usize) -> [__m256; 3] {
            // SAFETY: AVX2 and FMA; `x + 8` is at most the width (the caller's precondition).
            unsafe { ycbcr::x86::rgb8_at(k, x) }
        }

        #[inline]
        fn pixel(k: &Ycc<'_>, _: &(), x: usize) -> [f32; 3] {
            k.rgb(x)
        }
    }

    /// Whether the AVX-512 rows may run at `level` (else the AVX2 ones, or `None` below
    /// AVX2).
    fn pick_wide(level: SimdLevel) -> Option<bool> {
        match level {
            SimdLevel::Avx512 if SimdLevel::Avx512.is_available() => Some(true),
            SimdLevel::Avx512 | SimdLevel::Avx2 if SimdLevel::Avx2.is_available() => Some(false),
            _ => None,
        }
    }

    /// The RGB kernel for `fill`, dtype code `d`, planar (NCHW) or interleaved output and
    /// photometric `kind`, at most at `level` (AVX-512 or AVX2; `None` below AVX2, on a CPU
    /// without it, or for interleaved f16 and bf16).
    pub(in super::super) fn pick<'a>(
        fill: FillMode,
        d: u8,
        planar: bool,
        kind: Kind,
        level: SimdLevel,
    ) -> Option<RowFn<Warp<'a, u8>>> {
        let wide = pick_wide(level)?;
        match fill {
            FillMode::Constant => by_dtype::<RgbKernel<warp::Constant>>(d, planar, kind, wide),
            FillMode::Nearest => by_dtype::<RgbKernel<warp::Nearest>>(d, planar, kind, wide),
            FillMode::Reflect => by_dtype::<RgbKernel<warp::Reflect>>(d, planar, kind, wide),
            FillMode::Wrap => by_dtype::<RgbKernel<warp::Wrap>>(d, planar, kind, wide),
        }
    }

    /// The YCbCr kernel, as [`pick`] (the fill mode is read per block at the image's edges).
    pub(in super::super) fn pick_ycbcr<'a>(
        d: u8,
        planar: bool,
        kind: Kind,
        level: SimdLevel,
    ) -> Option<RowFn<Ycc<'a>>> {
        by_dtype::<YccKernel>(d, planar, kind, pick_wide(level)?)
    }

    fn by_dtype<'a, K: Kernel>(
        d: u8,
        planar: bool,
        kind: Kind,
        wide: bool,
    ) -> Option<RowFn<K::Source<'a>>> {
        Some(match (d, planar) {
            (OUT_F32, true) => by_kind::<K, OUT_F32, true>(kind, wide),
            (OUT_F16, true) => by_kind::<K, OUT_F16, true>(kind, wide),
            (OUT_BF16, true) => by_kind::<K, OUT_BF16, true>(kind, wide),
            (OUT_U8, true) => by_kind::<K, OUT_U8, true>(kind, wide),
            (OUT_F32, false) => by_kind::<K, OUT_F32, false>(kind, wide),
            (OUT_U8, false) => by_kind::<K, OUT_U8, false>(kind, wide),
            _ => return None,
        })
    }

    fn by_kind<'a, K: Kernel, const D: u8, const P: bool>(
        kind: Kind,
        wide: bool,
    ) -> RowFn<K::Source<'a>> {
        match (kind, wide) {
            (Kind::Affine, false) => row::<K, D, P, false, false> as RowFn<_>,
            (Kind::Gauss, false) => row::<K, D, P, true, false> as RowFn<_>,
            (Kind::SaltPepper, false) => row::<K, D, P, false, true> as RowFn<_>,
            (Kind::Both, false) => row::<K, D, P, true, true> as RowFn<_>,
            (Kind::Affine, true) => row512::<K, D, P, false, false> as RowFn<_>,
            (Kind::Gauss, true) => row512::<K, D, P, true, false> as RowFn<_>,
            (Kind::SaltPepper, true) => row512::<K, D, P, false, true> as RowFn<_>,
            (Kind::Both, true) => row512::<K, D, P, true, true> as RowFn<_>,
        }
    }

    /// [`finish`], sixteen pixels at a time.
    ///
    /// # Safety
    ///
    /// `planes` hold 16 writable elements of dtype `D` from pixel `x` (planar: in each plane;
    /// interleaved: 48 in `planes[0]`), and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn finish16<S, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_, S>,
        t: Tables,
        [r, g, b]: [__m512; 3],
        h: __m512i,
        planes: [*mut u8; 3],
        x: usize,
    ) {
        let r = value16::<0, GAUSS, SP>(&k.photo, t, r, h);
        let g = value16::<10, GAUSS, SP>(&k.photo, t, g, h);
        let b = value16::<20, GAUSS, SP>(&k.photo, t, b, h);
        let sz = out_size(D);
        // SAFETY: the caller gives the elements written here.
        unsafe {
            if P {
                store16::<D>(planes[0].add(x * sz), r);
                store16::<D>(planes[1].add(x * sz), g);
                store16::<D>(planes[2].add(x * sz), b);
            } else {
                let at = planes[0].add(3 * x * sz);
                for (j, v) in interleave16(r, g, b).into_iter().enumerate() {
                    store16::<D>(at.add(16 * j * sz), v);
                }
            }
        }
    }

    /// Two AVX2 vectors as one AVX-512 vector (`lo` first).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn join(lo: __m256, hi: __m256) -> __m512 {
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
            _mm256_castps_pd(hi),
        ))
    }

    /// The AVX-512 row: sixteen pixels at a time, then the AVX2 row for the rest.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX-512 F and BW, AVX2, FMA and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn row512<K: Kernel, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_, K::Source<'_>>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        let width = k.width;
        // SAFETY: the CPU features (the caller's precondition).
        let r = unsafe { K::row16(&k.source, y, width) };
        let first = (y * width) as u32;
        let t = tables(&k.photo);
        let mut x = 0;
        while x + 16 <= width {
            // SAFETY: the CPU features; `x + 16 <= width`.
            let rgb = unsafe { K::block16(&k.source, &r, x) };
            let h = if GAUSS || SP {
                pixel_hash16(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm512_setzero_si512()
            };
            // SAFETY: each row has `width` pixels and `x + 16 <= width`.
            unsafe { finish16::<_, D, P, GAUSS, SP>(k, t, rgb, h, planes, x) };
            x += 16;
        }
        // SAFETY: the caller's preconditions; `x <= width`.
        unsafe { row_from::<K, D, P, GAUSS, SP>(k, y, planes, x) };
    }

    /// Photometric pass, normalisation and store of eight pixels from `x` whose warped
    /// channels are `rgb` and noise hashes `h`.
    ///
    /// # Safety
    ///
    /// `planes` hold 8 writable elements of dtype `D` from pixel `x` (planar: in each plane;
    /// interleaved: 24 in `planes[0]`), and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish<S, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_, S>,
        [r, g, b]: [__m256; 3],
        h: __m256i,
        planes: [*mut u8; 3],
        x: usize,
    ) {
        let r = value8::<0, GAUSS, SP>(&k.photo, r, h);
        let g = value8::<10, GAUSS, SP>(&k.photo, g, h);
        let b = value8::<20, GAUSS, SP>(&k.photo, b, h);
        let sz = out_size(D);
        // SAFETY: the caller gives the elements written here.
        unsafe {
            if P {
                store8::<D>(planes[0].add(x * sz), r);
                store8::<D>(planes[1].add(x * sz), g);
                store8::<D>(planes[2].add(x * sz), b);
            } else {
                let at = planes[0].add(3 * x * sz);
                for (j, v) in interleave8(r, g, b).into_iter().enumerate() {
                    store8::<D>(at.add(8 * j * sz), v);
                }
            }
        }
    }

    /// The AVX2 row.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row<K: Kernel, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_, K::Source<'_>>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        // SAFETY: the caller's preconditions.
        unsafe { row_from::<K, D, P, GAUSS, SP>(k, y, planes, 0) }
    }

    /// Output row `y` from pixel `x` on: eight pixels at a time, then one at a time.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_from<K: Kernel, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_, K::Source<'_>>,
        y: usize,
        planes: [*mut u8; 3],
        mut x: usize,
    ) {
        let width = k.width;
        let r = K::row8(&k.source, y, width);
        let sz = out_size(D);
        let first = (y * width) as u32;
        while x + 8 <= width {
            // SAFETY: AVX2 and FMA; `x + 8 <= width`.
            let rgb = unsafe { K::block8(&k.source, &r, x) };
            let h = if GAUSS || SP {
                pixel_hash8(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm256_setzero_si256()
            };
            // SAFETY: each row has `width` pixels and `x + 8 <= width`.
            unsafe { finish::<_, D, P, GAUSS, SP>(k, rgb, h, planes, x) };
            x += 8;
        }
        while x < width {
            let o = K::pixel(&k.source, &r, x);
            let h = k.photo.pixel_hash(first.wrapping_add(x as u32));
            for (c, v) in o.into_iter().enumerate() {
                let v = k.photo.value::<GAUSS, SP>(v, h, c);
                let at = if P { x * sz } else { (3 * x + c) * sz };
                let plane = if P { planes[c] } else { planes[0] };
                // SAFETY: each row has `width` pixels and `x < width`.
                unsafe { store1::<D>(plane.add(at), v) };
            }
            x += 1;
        }
    }
}
