//! [`Store`]: an output spec and a source type prepared once (the kernel [`Plan`] and the row
//! kernel picked for the [`SimdLevel`]), then rows or whole images written into slots without
//! allocating; [`store`], the one-shot convenience.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use super::kernels::{Plan, RowFn, Scratch, pick_f32, pick_u8};
use super::spec::{DType, Layout, OutputSpec, SrcType, scale_bias};
use crate::simd::{OUT_BF16, OUT_F16, OUT_F32, OUT_U8, SimdLevel};
use crate::{Error, ErrorKind, ImageView, Pixels, Result};

/// The row kernel, by source type.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    U8(RowFn<u8>),
    F32(RowFn<f32>),
}

/// A prepared store: output spec, source type and kernels fixed once, then rows or whole images
/// written into slots without allocating.
///
/// ```
/// use stoker::{DType, ImageView, Layout, OutputSpec, Pixels};
/// use stoker::output::{SrcType, Store};
///
/// let spec = OutputSpec::new(2, 1, 3).with_dtype(DType::U8); // NCHW
/// let mut store = Store::new(&spec, SrcType::U8)?;
/// let px = [1u8, 2, 3, 4, 5, 6];
/// let mut slot = vec![0u8; spec.sample_bytes()];
/// store.store_image(&ImageView::new(2, 1, 3, Pixels::U8(&px)).unwrap(), &mut slot)?;
/// assert_eq!(slot, [1, 4, 2, 5, 3, 6]);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Store {
    spec: OutputSpec,
    src: SrcType,
    level: SimdLevel,
    plan: Plan,
    /// `plan` with `scale` 1 and `bias` -0.0: rows that are already normalised.
    raw: Plan,
    scratch: Scratch,
    kernel: Kernel,
}

impl Store {
    /// A store for `spec` and `src` pixels with the best kernels of this CPU.
    ///
    /// ```
    /// use stoker::{DType, OutputSpec};
    /// use stoker::output::{SrcType, Store};
    /// assert!(Store::new(&OutputSpec::new(8, 8, 3), SrcType::F32).is_ok());
    /// assert!(Store::new(&OutputSpec::new(8, 8, 2), SrcType::U8).is_err());
    /// ```
    pub fn new(spec: &OutputSpec, src: SrcType) -> Result<Store> {
        Store::with_level(spec, src, SimdLevel::detect())
    }

    /// A store that uses the kernels of `level`; a usage error when the CPU lacks it.
    ///
    /// ```
    /// use stoker::OutputSpec;
    /// use stoker::output::{SimdLevel, SrcType, Store};
    /// let spec = OutputSpec::new(8, 8, 3);
    /// let s = Store::with_level(&spec, SrcType::U8, SimdLevel::Scalar)?;
    /// assert_eq!(s.level(), SimdLevel::Scalar);
    /// // A level the CPU lacks is an error.
    /// let avx512 = Store::with_level(&spec, SrcType::U8, SimdLevel::Avx512);
    /// assert_eq!(avx512.is_ok(), SimdLevel::Avx512.is_available());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn with_level(spec: &OutputSpec, src: SrcType, level: SimdLevel) -> Result<Store> {
        spec.validate()?;
        if !level.is_available() {
            return Err(Error::usage(format!(
                "simd level {} is not available on this cpu or build",
                level.as_str()
            )));
        }
        let (w, h, c) = (spec.width, spec.height, spec.channels);
        let (scale, bias) = scale_bias(spec, src);
        let n = w * c;
        let plan_for = |scale: [f32; 3], bias: [f32; 3]| Plan {
            w,
            h,
            c,
            planar: spec.layout == Layout::Nchw && c == 3,
            scale,
            bias,
            scale_row: (0..n).map(|i| scale[i % c]).collect(),
            bias_row: (0..n).map(|i| bias[i % c]).collect(),
        };
        let plan = plan_for(scale, bias);
        let raw = plan_for([1.0; 3], [-0.0; 3]);
        let scratch = Scratch {
            f: vec![0.0; n],
            h: vec![0; n],
        };
        let kernel = match src {
            SrcType::U8 => Kernel::U8(pick_u8(level, spec.dtype, plan.planar)),
            SrcType::F32 => Kernel::F32(pick_f32(level, spec.dtype)),
        };
        Ok(Store {
            spec: spec.clone(),
            src,
            level,
            plan,
            raw,
            scratch,
            kernel,
        })
    }

    /// The output spec.
    ///
    /// ```
    /// use stoker::{OutputSpec, output::{SrcType, Store}};
    /// let s = Store::new(&OutputSpec::new(3, 2, 1), SrcType::U8)?;
    /// assert_eq!(s.spec().width, 3);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn spec(&self) -> &OutputSpec {
        &self.spec
    }

    /// The source pixel type.
    ///
    /// ```
    /// use stoker::{OutputSpec, output::{SrcType, Store}};
    /// assert_eq!(Store::new(&OutputSpec::new(3, 2, 1), SrcType::F32)?.src(), SrcType::F32);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn src(&self) -> SrcType {
        self.src
    }

    /// The kernel set in use.
    ///
    /// ```
    /// use stoker::{OutputSpec, output::{SimdLevel, SrcType, Store}};
    /// assert_eq!(Store::new(&OutputSpec::new(3, 2, 1), SrcType::U8)?.level(), SimdLevel::detect());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// The target of a fused augmentation kernel: the output code of the dtype and whether the
    /// layout is planar, when this store takes `f32` rows at AVX2 or above.
    pub(crate) fn fused_target(&self) -> Option<(u8, bool)> {
        let d = match self.spec.dtype {
            DType::F32 => OUT_F32,
            DType::F16 => OUT_F16,
            DType::BF16 => OUT_BF16,
            DType::U8 => OUT_U8,
        };
        (self.src == SrcType::F32 && self.level >= SimdLevel::Avx2).then_some((d, self.plan.planar))
    }

    /// Writes output row `y` from `src_row` (`width * channels` interleaved `u8` values) into
    /// `slot` (`spec.sample_bytes()` bytes); a usage error on any size mismatch.
    ///
    /// ```
    /// use stoker::{DType, Layout, OutputSpec, output::{SrcType, Store}};
    /// let spec = OutputSpec::new(2, 2, 1).with_dtype(DType::U8).with_layout(Layout::Nhwc);
    /// let mut store = Store::new(&spec, SrcType::U8)?;
    /// let mut slot = [0u8; 4];
    /// store.row_u8(1, &[7, 9], &mut slot)?;
    /// assert_eq!(slot, [0, 0, 7, 9]);
    /// assert!(store.row_u8(2, &[7, 9], &mut slot).is_err());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn row_u8(&mut self, y: usize, src_row: &[u8], slot: &mut [u8]) -> Result<()> {
        let Kernel::U8(f) = self.kernel else {
            return Err(self.src_mismatch(SrcType::U8));
        };
        self.check_row(y, src_row.len(), slot.len())?;
        // SAFETY: sizes checked above; the level was checked in `with_level`.
        unsafe { f(&self.plan, &mut self.scratch, y, src_row, slot) };
        Ok(())
    }

    /// Writes output row `y` from `src_row` (`width * channels` interleaved `f32` values) into
    /// `slot` (`spec.sample_bytes()` bytes); a usage error on any size mismatch.
    ///
    /// ```
    /// use stoker::{Layout, OutputSpec, output::{SrcType, Store}};
    /// let spec = OutputSpec::new(1, 1, 3).with_layout(Layout::Nhwc); // f32, no normalisation
    /// let mut store = Store::new(&spec, SrcType::F32)?;
    /// let mut slot = [0u8; 12];
    /// store.row_f32(0, &[0.5, -1.0, 2.0], &mut slot)?;
    /// assert_eq!(f32::from_ne_bytes(slot[4..8].try_into().unwrap()), -1.0);
    /// assert!(store.row_f32(0, &[0.5], &mut slot).is_err());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn row_f32(&mut self, y: usize, src_row: &[f32], slot: &mut [u8]) -> Result<()> {
        self.row_f32_with(false, y, src_row, slot)
    }

    /// [`Store::row_f32`] for a row that is already normalised (values are converted to the
    /// dtype unchanged: `scale` 1, `bias` -0.0). The augmentation folds the normalisation into
    /// its own pass and stores through this.
    pub(crate) fn row_f32_normalised(
        &mut self,
        y: usize,
        src_row: &[f32],
        slot: &mut [u8],
    ) -> Result<()> {
        self.row_f32_with(true, y, src_row, slot)
    }

    /// A row of `f32` values through the store's plan, or through `raw` (no normalisation).
    fn row_f32_with(
        &mut self,
        raw: bool,
        y: usize,
        src_row: &[f32],
        slot: &mut [u8],
    ) -> Result<()> {
        let Kernel::F32(f) = self.kernel else {
            return Err(self.src_mismatch(SrcType::F32));
        };
        self.check_row(y, src_row.len(), slot.len())?;
        let plan = if raw { &self.raw } else { &self.plan };
        // SAFETY: sizes checked above; the level was checked in `with_level`.
        unsafe { f(plan, &mut self.scratch, y, src_row, slot) };
        Ok(())
    }

    /// The per-channel `(scale, bias)` of this store (channels past `spec.channels` are 0).
    pub(crate) fn scale_bias(&self) -> ([f32; 3], [f32; 3]) {
        (self.plan.scale, self.plan.bias)
    }

    /// Writes a whole image (same width, height and channels as the spec, same pixel type as the
    /// store) into `slot`; a usage error on any mismatch (a dtype mismatch when the pixels are
    /// not of the type the store was prepared for).
    ///
    /// ```
    /// use stoker::{ImageView, Layout, OutputSpec, Pixels, output::{SrcType, Store}};
    /// let spec = OutputSpec::new(2, 1, 1).with_layout(Layout::Nhwc);
    /// let mut store = Store::new(&spec, SrcType::U8)?;
    /// let mut slot = [0u8; 8];
    /// store.store_image(&ImageView::new(2, 1, 1, Pixels::U8(&[0, 255])).unwrap(), &mut slot)?;
    /// assert_eq!(f32::from_ne_bytes(slot[4..8].try_into().unwrap()), 1.0);
    /// let wrong = ImageView::new(1, 2, 1, Pixels::U8(&[0, 255])).unwrap();
    /// assert!(store.store_image(&wrong, &mut slot).is_err());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn store_image(&mut self, img: &ImageView, slot: &mut [u8]) -> Result<()> {
        let p = &self.plan;
        if (img.width, img.height, img.channels) != (p.w, p.h, p.c) {
            return Err(Error::usage(format!(
                "image is {}x{}x{}, output expects {}x{}x{} (resize first)",
                img.width, img.height, img.channels, p.w, p.h, p.c
            )));
        }
        let n = p.w * p.c;
        let len = match img.pixels {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        };
        if len != n * p.h {
            return Err(Error::usage(format!(
                "image has {len} values, expected {}",
                n * p.h
            )));
        }
        self.check_slot(slot.len())?;
        match (img.pixels, self.kernel) {
            (Pixels::U8(px), Kernel::U8(f)) => {
                if self.spec.dtype == DType::U8 && !p.planar {
                    slot.copy_from_slice(px);
                    return Ok(());
                }
                for (y, row) in px.chunks_exact(n).enumerate() {
                    // SAFETY: image and slot sizes checked above; level checked in `with_level`.
                    unsafe { f(&self.plan, &mut self.scratch, y, row, slot) };
                }
                Ok(())
            }
            (Pixels::F32(px), Kernel::F32(f)) => {
                for (y, row) in px.chunks_exact(n).enumerate() {
                    // SAFETY: as above.
                    unsafe { f(&self.plan, &mut self.scratch, y, row, slot) };
                }
                Ok(())
            }
            (px, _) => Err(self.src_mismatch(SrcType::of(&px))),
        }
    }

    fn src_mismatch(&self, got: SrcType) -> Error {
        Error::new(
            ErrorKind::DTypeMismatch,
            format!(
                "store was prepared for {} pixels, got {}",
                self.src.as_str(),
                got.as_str()
            ),
        )
    }

    fn check_slot(&self, len: usize) -> Result<()> {
        let want = self.spec.sample_bytes();
        if len != want {
            return Err(Error::usage(format!(
                "slot has {len} bytes, expected {want}"
            )));
        }
        Ok(())
    }

    fn check_row(&self, y: usize, src_len: usize, slot_len: usize) -> Result<()> {
        let p = &self.plan;
        if y >= p.h {
            return Err(Error::usage(format!(
                "row {y} is out of range (height {})",
                p.h
            )));
        }
        if src_len != p.w * p.c {
            return Err(Error::usage(format!(
                "row has {src_len} values, expected {}",
                p.w * p.c
            )));
        }
        self.check_slot(slot_len)
    }
}

/// Writes `src` (already at the output size and channels) into `slot` (`sample_bytes()` long).
///
/// Prepares a [`Store`] on every call (it allocates one row of scratch); a worker that stores
/// many images keeps a `Store` instead.
///
/// ```
/// use stoker::{DType, ImageView, Layout, OutputSpec, Pixels, output::store};
/// let spec = OutputSpec::new(2, 1, 3).with_dtype(DType::U8).with_layout(Layout::Nhwc);
/// let px = [1u8, 2, 3, 4, 5, 6];
/// let mut slot = [0u8; 6];
/// store(&spec, &ImageView::new(2, 1, 3, Pixels::U8(&px)).unwrap(), &mut slot)?;
/// assert_eq!(slot, px);
/// assert!(store(&spec, &ImageView::new(1, 2, 3, Pixels::U8(&px)).unwrap(), &mut slot).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
pub fn store(spec: &OutputSpec, src: &ImageView, slot: &mut [u8]) -> Result<()> {
    Store::new(spec, SrcType::of(&src.pixels))?.store_image(src, slot)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Normalize;
    use crate::rng::SampleRng;

    const DTYPES: [DType; 4] = [DType::U8, DType::F16, DType::BF16, DType::F32];
    const LAYOUTS: [Layout; 2] = [Layout::Nchw, Layout::Nhwc];

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn u16s(bytes: &[u8]) -> Vec<u16> {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_ne_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn rand_u8(rng: &mut SampleRng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.below(256) as u8).collect()
    }

    /// Mostly pixel-like values, with awkward ones mixed in: ties, signed zeros, subnormals,
    /// values past the f16 range, NaN and infinities, arbitrary bit patterns.
    fn rand_f32(rng: &mut SampleRng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.below(16) {
                0 => f32::from_bits(rng.next_u64() as u32),
                1 => [-0.0, 0.0, 0.5, 2.5, 254.5, 255.5, -1.5][rng.below(7) as usize],
                2 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, 70000.0]
                    [rng.below(5) as usize],
                3 => rng.below(256) as f32,
                _ => rng.next_f32() * 300.0 - 20.0,
            })
            .collect()
    }

    fn spec(w: usize, h: usize, c: usize, dtype: DType, layout: Layout, norm: bool) -> OutputSpec {
        let mut s = OutputSpec::new(w, h, c)
            .with_dtype(dtype)
            .with_layout(layout);
        if norm {
            s.normalize = Some(if c == 3 {
                Normalize::imagenet()
            } else {
                Normalize::new(vec![0.45], vec![0.23]).unwrap()
            });
        }
        s
    }

    enum Img {
        U8(Vec<u8>),
        F32(Vec<f32>),
    }

    impl Img {
        fn view(&self, s: &OutputSpec) -> ImageView<'_> {
            let px = match self {
                Img::U8(v) => Pixels::U8(v),
                Img::F32(v) => Pixels::F32(v),
            };
            ImageView::new(s.width, s.height, s.channels, px).unwrap()
        }
    }

    /// Stores `img` at `level` three ways (whole image; rows in reverse order; into a slot at an
    /// odd address), checks they agree, and returns the bytes.
    fn run(s: &OutputSpec, img: &Img, level: SimdLevel) -> Vec<u8> {
        let src = match img {
            Img::U8(_) => SrcType::U8,
            Img::F32(_) => SrcType::F32,
        };
        let mut st = Store::with_level(s, src, level).unwrap();
        let nb = s.sample_bytes();
        let mut whole = vec![0xa5u8; nb];
        st.store_image(&img.view(s), &mut whole).unwrap();
        let mut rows = vec![0x5au8; nb + 1];
        let n = s.width * s.channels;
        for y in (0..s.height).rev() {
            let slot = &mut rows[1..];
            match img {
                Img::U8(v) => st.row_u8(y, &v[y * n..(y + 1) * n], slot).unwrap(),
                Img::F32(v) => st.row_f32(y, &v[y * n..(y + 1) * n], slot).unwrap(),
            }
        }
        assert_eq!(
            whole,
            rows[1..],
            "rows vs whole image at {level:?} for {s:?}"
        );
        whole
    }

    #[test]
    fn imagenet_u8_pixel_exact() {
        let s = spec(1, 1, 3, DType::F32, Layout::Nchw, true);
        let out = f32s(&run(&s, &Img::U8(vec![255, 0, 128]), SimdLevel::Scalar));
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        for (c, &x) in [255u8, 0, 128].iter().enumerate() {
            let want = x as f32 * (1.0 / (255.0 * std[c])) + (-mean[c] / std[c]);
            assert_eq!(out[c].to_bits(), want.to_bits(), "channel {c}");
            let exact = (x as f64 / 255.0 - mean[c] as f64) / std[c] as f64;
            assert!(
                (out[c] as f64 - exact).abs() < 1e-5,
                "{} vs {exact}",
                out[c]
            );
        }
    }

    #[test]
    fn u8_without_normalisation_is_to_tensor() {
        let s = spec(4, 1, 1, DType::F32, Layout::Nhwc, false);
        for level in SimdLevel::available() {
            let out = f32s(&run(&s, &Img::U8(vec![0, 255, 51, 1]), level));
            assert_eq!(out[0], 0.0);
            assert_eq!(out[1], 1.0);
            assert_eq!(out[2], 51.0 * (1.0f32 / 255.0));
            assert!((out[3] - 1.0 / 255.0).abs() < 1e-9);
        }
    }

    #[test]
    fn f32_normalisation_and_identity() {
        let mut s = spec(2, 1, 1, DType::F32, Layout::Nchw, false);
        s.normalize = Some(Normalize::new(vec![0.5], vec![0.25]).unwrap());
        let out = f32s(&run(&s, &Img::F32(vec![1.0, 0.5]), SimdLevel::Scalar));
        assert_eq!(out, [2.0, 0.0]);

        let vals = vec![
            -0.0,
            0.0,
            1e-40,
            -3.5,
            f32::MAX,
            f32::NEG_INFINITY,
            1234.567,
            0.1,
        ];
        for level in SimdLevel::available() {
            for layout in LAYOUTS {
                let s = spec(vals.len(), 1, 1, DType::F32, layout, false);
                let out = f32s(&run(&s, &Img::F32(vals.clone()), level));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out), bits(&vals), "{level:?}");
            }
        }
    }

    #[test]
    fn one_value_normalisation_applies_to_every_channel() {
        let mut rng = SampleRng::new(3);
        let img = Img::U8(rand_u8(&mut rng, 5 * 3 * 3));
        let mut one = spec(5, 3, 3, DType::F32, Layout::Nchw, false);
        let mut three = one.clone();
        one.normalize = Some(Normalize::new(vec![0.3], vec![0.7]).unwrap());
        three.normalize = Some(Normalize::new(vec![0.3; 3], vec![0.7; 3]).unwrap());
        assert_eq!(
            run(&one, &img, SimdLevel::Scalar),
            run(&three, &img, SimdLevel::Scalar)
        );
    }

    #[test]
    fn nchw_is_the_permutation_of_nhwc() {
        let mut rng = SampleRng::new(11);
        let (w, h, c) = (13, 4, 3);
        for img in [
            Img::U8(rand_u8(&mut rng, w * h * c)),
            Img::F32(rand_f32(&mut rng, w * h * c)),
        ] {
            for dtype in DTYPES {
                for norm in [false, true] {
                    if dtype == DType::U8 && norm {
                        continue;
                    }
                    for level in SimdLevel::available() {
                        let sz = dtype.size();
                        let a = run(&spec(w, h, c, dtype, Layout::Nchw, norm), &img, level);
                        let b = run(&spec(w, h, c, dtype, Layout::Nhwc, norm), &img, level);
                        for ch in 0..c {
                            for y in 0..h {
                                for x in 0..w {
                                    let i = ((ch * h + y) * w + x) * sz;
                                    let j = ((y * w + x) * c + ch) * sz;
                                    assert_eq!(a[i..i + sz], b[j..j + sz], "{dtype:?} {level:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn u8_to_u8_is_exact() {
        let mut rng = SampleRng::new(5);
        let (w, h) = (37, 3);
        let px = rand_u8(&mut rng, w * h * 3);
        let mut planes = vec![0u8; px.len()];
        for (i, &v) in px.iter().enumerate() {
            let (pix, ch) = (i / 3, i % 3);
            planes[ch * w * h + pix] = v;
        }
        for level in SimdLevel::available() {
            let img = Img::U8(px.clone());
            assert_eq!(
                run(&spec(w, h, 3, DType::U8, Layout::Nhwc, false), &img, level),
                px
            );
            assert_eq!(
                run(&spec(w, h, 3, DType::U8, Layout::Nchw, false), &img, level),
                planes
            );
            assert_eq!(
                run(
                    &spec(w * 3, h, 1, DType::U8, Layout::Nchw, false),
                    &img,
                    level
                ),
                px
            );
        }
    }

    #[test]
    fn f32_to_u8_rounds_ties_to_even_and_clamps() {
        let vals = vec![
            -3.0,
            -0.4,
            0.5,
            1.5,
            2.5,
            127.49,
            127.5,
            254.5,
            255.4,
            300.0,
            f32::NAN,
        ];
        let want = [0u8, 0, 0, 2, 2, 127, 128, 254, 255, 255, 0];
        for level in SimdLevel::available() {
            let s = spec(vals.len(), 1, 1, DType::U8, Layout::Nhwc, false);
            assert_eq!(run(&s, &Img::F32(vals.clone()), level), want);
        }
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let mut rng = SampleRng::new(9);
        // The edge cases first, so that they land in vector lanes, not in the scalar tail.
        let mut vals = vec![
            f32::from_bits(0x3f80_8000), // tie, even below
            f32::from_bits(0x3f81_8000), // tie, odd below
            f32::from_bits(0x7f7f_ffff), // rounds to infinity
            f32::from_bits(0x7f80_0001), // signalling NaN
            f32::from_bits(0xffc0_0000),
        ];
        vals.extend((0..4096).map(|_| f32::from_bits(rng.next_u64() as u32)));
        for level in SimdLevel::available() {
            let s = spec(vals.len(), 1, 1, DType::BF16, Layout::Nhwc, false);
            let out = u16s(&run(&s, &Img::F32(vals.clone()), level));
            for (o, v) in out.iter().zip(&vals) {
                assert_eq!(*o, half::bf16::from_f32(*v).to_bits(), "{v:e} at {level:?}");
            }
        }
    }

    /// Every configuration, every available level: bit-identical to the scalar kernels, and the
    /// half-precision outputs are `half`'s conversion of the scalar `f32` output.
    #[test]
    fn every_level_matches_scalar() {
        let levels = SimdLevel::available();
        let mut rng = SampleRng::new(2024);
        let mut checked = 0;
        for c in [1, 3] {
            for w in 1..=67 {
                for h in [1, 2, 5] {
                    let n = w * h * c;
                    for img in [
                        Img::U8(rand_u8(&mut rng, n)),
                        Img::F32(rand_f32(&mut rng, n)),
                    ] {
                        for layout in LAYOUTS {
                            for norm in [false, true] {
                                let f32_out = f32s(&run(
                                    &spec(w, h, c, DType::F32, layout, norm),
                                    &img,
                                    SimdLevel::Scalar,
                                ));
                                for dtype in DTYPES {
                                    if dtype == DType::U8 && norm {
                                        continue;
                                    }
                                    let s = spec(w, h, c, dtype, layout, norm);
                                    let scalar = run(&s, &img, SimdLevel::Scalar);
                                    match dtype {
                                        DType::F16 => {
                                            let want: Vec<u16> = f32_out
                                                .iter()
                                                .map(|&v| half::f16::from_f32(v).to_bits())
                                                .collect();
                                            assert_eq!(u16s(&scalar), want, "{s:?}");
                                        }
                                        DType::BF16 => {
                                            let want: Vec<u16> = f32_out
                                                .iter()
                                                .map(|&v| half::bf16::from_f32(v).to_bits())
                                                .collect();
                                            assert_eq!(u16s(&scalar), want, "{s:?}");
                                        }
                                        _ => {}
                                    }
                                    for &level in &levels[1..] {
                                        assert_eq!(run(&s, &img, level), scalar, "{level:?} {s:?}");
                                        checked += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Without a SIMD level there is nothing to compare, but the scalar checks above ran.
        assert!(levels.len() == 1 || checked > 10_000, "{checked}");
    }

    #[test]
    fn validation_errors() {
        let bad = [
            spec(0, 2, 3, DType::F32, Layout::Nchw, false),
            spec(2, 0, 3, DType::F32, Layout::Nchw, false),
            spec(2, 2, 2, DType::F32, Layout::Nchw, false),
            spec(2, 2, 4, DType::F32, Layout::Nchw, false),
            spec(2, 2, 3, DType::U8, Layout::Nchw, true),
            OutputSpec::new(2, 2, 1).with_normalize(Normalize::imagenet()),
            OutputSpec::new(2, 2, 3).with_normalize(Normalize {
                mean: vec![0.5, 0.5],
                std: vec![0.5, 0.5],
            }),
            OutputSpec::new(2, 2, 3).with_normalize(Normalize {
                mean: vec![0.5],
                std: vec![-1.0],
            }),
            OutputSpec::new(usize::MAX / 2, 3, 3),
        ];
        for s in &bad {
            let e = s.validate().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{s:?}");
            assert!(Store::new(s, SrcType::U8).is_err(), "{s:?}");
        }
        assert!(
            spec(2, 2, 3, DType::BF16, Layout::Nhwc, true)
                .validate()
                .is_ok()
        );
        assert!(
            spec(2, 2, 1, DType::F16, Layout::Nhwc, true)
                .validate()
                .is_ok()
        );

        assert!(Normalize::new(vec![0.1], vec![0.2, 0.3]).is_err());
        assert!(Normalize::new(vec![], vec![]).is_err());
        for sd in [0.0, -0.1, f32::NAN, f32::INFINITY] {
            assert!(Normalize::new(vec![0.1], vec![sd]).is_err(), "{sd}");
        }
        assert!(Normalize::new(vec![f32::NAN], vec![1.0]).is_err());
        assert!(Normalize::new(vec![0.1, 0.2], vec![0.3, 0.4]).is_ok());
    }

    #[test]
    fn levels_are_checked() {
        let s = spec(4, 4, 3, DType::F32, Layout::Nchw, false);
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            let r = Store::with_level(&s, SrcType::U8, level);
            assert_eq!(r.is_ok(), level.is_available(), "{level:?}");
        }
        assert!(SimdLevel::detect().is_available());
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        let s = spec(4, 3, 3, DType::F16, Layout::Nchw, true);
        let mut st = Store::new(&s, SrcType::U8).unwrap();
        let nb = s.sample_bytes();
        let px = vec![7u8; 4 * 3 * 3];
        let fx = vec![0.5f32; 4 * 3 * 3];
        let mut slot = vec![0u8; nb];
        let is_usage = |r: Result<()>| r.unwrap_err().kind() == crate::ErrorKind::Usage;
        let is_dtype = |r: Result<()>| r.unwrap_err().kind() == crate::ErrorKind::DTypeMismatch;

        assert!(is_usage(st.row_u8(3, &px[..12], &mut slot)));
        assert!(is_usage(st.row_u8(0, &px[..11], &mut slot)));
        assert!(is_usage(st.row_u8(0, &px[..12], &mut slot[..nb - 1])));
        assert!(is_usage(st.row_u8(0, &px[..12], &mut vec![0u8; nb + 2])));
        assert!(is_dtype(st.row_f32(0, &fx[..12], &mut slot)));

        let wrong_w = ImageView::new(3, 3, 4, Pixels::U8(&px)).unwrap();
        assert!(is_usage(st.store_image(&wrong_w, &mut slot)));
        let wrong_type = ImageView::new(4, 3, 3, Pixels::F32(&fx)).unwrap();
        assert!(is_dtype(st.store_image(&wrong_type, &mut slot)));
        let inconsistent = ImageView {
            width: 4,
            height: 3,
            channels: 3,
            pixels: Pixels::U8(&px[..30]),
        };
        assert!(is_usage(st.store_image(&inconsistent, &mut slot)));
        assert!(is_usage(store(&s, &wrong_w, &mut slot)));
        assert!(is_usage(store(&s, &wrong_type.clone(), &mut slot[1..])));
        assert!(
            slot.iter().all(|&b| b == 0),
            "a failed call wrote into the slot"
        );

        let ok = ImageView::new(4, 3, 3, Pixels::U8(&px)).unwrap();
        assert!(store(&s, &ok, &mut slot).is_ok());
        assert!(slot.iter().any(|&b| b != 0));
    }
}
