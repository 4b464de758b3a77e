//! Output format of a batch slot (dtype, layout, normalisation) and the fused store kernels.
//!
//! A worker holds a decoded image (interleaved HWC, `u8` or `f32`, already at the output
//! width, height and channels) and writes it straight into its slot of a batch buffer: dtype
//! conversion, layout change and normalisation happen in one pass, row by row. [`Store`] is
//! prepared once per worker ([`Store::new`]) and then called in the hot loop without allocating;
//! [`store`] is the one-shot convenience.
//!
//! # Semantics
//!
//! Float outputs (`F32`, `F16`, `BF16`) are `x * scale[c] + bias[c]` in `f32`, computed as a
//! multiply then a separate add (never a fused multiply-add), so every code path — scalar, AVX2,
//! row or whole image — gives the same bits. `scale` and `bias` are computed once, in `f32`:
//!
//! | source | normalisation | `scale[c]`            | `bias[c]`            |
//! |--------|---------------|-----------------------|----------------------|
//! | `u8`   | none          | `1 / 255`             | `0`                  |
//! | `u8`   | mean, std     | `1 / (255 * std[c])`  | `-mean[c] / std[c]`  |
//! | `f32`  | none          | `1`                   | `-0.0` (identity)    |
//! | `f32`  | mean, std     | `1 / std[c]`          | `-mean[c] / std[c]`  |
//!
//! So a `u8` source without normalisation is torchvision's `ToTensor` (`x * (1/255)`, which can
//! differ from `x / 255` in the last bit), and an `f32` source without normalisation is copied
//! unchanged (adding `-0.0` keeps every value, `-0.0` included; a NaN stays a NaN, made quiet). A
//! one-element mean/std applies to every channel.
//!
//! `F16` and `BF16` are the `f32` result rounded to nearest, ties to even — exactly
//! `half::f16::from_f32` and `half::bf16::from_f32`.
//!
//! `U8` output takes no normalisation: a `u8` source is copied exactly; an `f32` source is rounded
//! to nearest with ties to even (`0.5 → 0`, `1.5 → 2`, `2.5 → 2`, like `numpy.round`) and then
//! clamped to `0..=255`; NaN becomes 0.
//!
//! `Layout::Nchw` de-interleaves the channels into planes (`[C, H, W]`); `Layout::Nhwc` keeps them
//! interleaved (`[H, W, C]`). Elements are written in native byte order, with unaligned stores: a
//! slot may start at any address.
//!
//! # SIMD
//!
//! [`SimdLevel::detect`] picks, once, the best kernel set the CPU has; [`Store::new`] stores the
//! chosen row function as a function pointer, so the hot loop never branches on configuration.
//! `Scalar` is portable code and exists on every target; `Avx2` (x86-64 with AVX2 and F16C) uses
//! explicit intrinsics for the float kernels and the `u8` NCHW de-interleave. All levels produce
//! the same bits.
//!
//! ```
//! use stoker::{Normalize, OutputSpec};
//! use stoker::output::{SrcType, Store};
//!
//! let spec = OutputSpec::new(2, 1, 3).with_normalize(Normalize::imagenet());
//! let mut store = Store::new(&spec, SrcType::U8)?;
//! let mut slot = vec![0u8; spec.sample_bytes()];
//! store.row_u8(0, &[255, 0, 128, 10, 20, 30], &mut slot)?;
//! let first = f32::from_ne_bytes(slot[0..4].try_into().unwrap()); // red of pixel 0
//! assert!((first - (1.0 - 0.485) / 0.229).abs() < 1e-5);
//! # Ok::<(), stoker::Error>(())
//! ```

use std::str::FromStr;

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use crate::{Error, ErrorKind, ImageView, Pixels, Result};

/// Element type of the batch tensor.
///
/// ```
/// use stoker::DType;
/// assert_eq!("bfloat16".parse::<DType>().unwrap(), DType::BF16);
/// assert!("f64".parse::<DType>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 8-bit unsigned, pixel values as stored (no normalisation).
    U8,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
}

/// Memory layout of one sample in the batch tensor.
///
/// ```
/// use stoker::Layout;
/// assert_eq!("NHWC".parse::<Layout>().unwrap(), Layout::Nhwc);
/// assert!("chw".parse::<Layout>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Channels first: `[N, C, H, W]` (PyTorch).
    Nchw,
    /// Channels last: `[N, H, W, C]` (TensorFlow, JAX).
    Nhwc,
}

/// Per-channel normalisation `(x - mean) / std`, with `x` in `[0, 1]` for 8-bit sources
/// (torchvision's convention) and as stored for f32 sources.
///
/// ```
/// use stoker::Normalize;
/// let n = Normalize::new(vec![0.5], vec![0.25])?; // one value: every channel
/// assert_eq!(n.mean, vec![0.5]);
/// assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

/// The shape and encoding of every sample slot in a batch.
///
/// ```
/// use stoker::{DType, Layout, OutputSpec};
/// let spec = OutputSpec::new(224, 224, 3).with_dtype(DType::F16).with_layout(Layout::Nhwc);
/// assert_eq!(spec.sample_shape(), [224, 224, 3]);
/// assert_eq!(spec.sample_bytes(), 224 * 224 * 3 * 2);
/// spec.validate()?;
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSpec {
    /// Output width in pixels.
    pub width: usize,
    /// Output height in pixels.
    pub height: usize,
    /// Output channels (1 or 3).
    pub channels: usize,
    /// Element type.
    pub dtype: DType,
    /// Layout.
    pub layout: Layout,
    /// Normalisation; `None` maps 8-bit sources to `[0, 1]` for float dtypes.
    pub normalize: Option<Normalize>,
}

impl DType {
    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(stoker::DType::BF16.size(), 2);
    /// ```
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    /// Lowercase name: `u8`, `f16`, `bf16`, `f32`.
    ///
    /// ```
    /// assert_eq!(stoker::DType::F16.as_str(), "f16");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
        }
    }
}

impl FromStr for DType {
    type Err = Error;

    /// Parses `u8`/`uint8`, `f16`/`float16`/`half`, `bf16`/`bfloat16`, `f32`/`float32`/`float`.
    ///
    /// ```
    /// assert_eq!("half".parse::<stoker::DType>().unwrap(), stoker::DType::F16);
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "u8" | "uint8" => Ok(DType::U8),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f32" | "float32" | "float" => Ok(DType::F32),
            _ => Err(Error::usage(format!(
                "unknown dtype {s:?} (u8, f16, bf16, f32)"
            ))),
        }
    }
}

impl FromStr for Layout {
    type Err = Error;

    /// Parses `nchw` or `nhwc` (any case).
    ///
    /// ```
    /// assert_eq!("nchw".parse::<stoker::Layout>().unwrap(), stoker::Layout::Nchw);
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => Err(Error::usage(format!("unknown layout {s:?} (nchw, nhwc)"))),
        }
    }
}

impl Normalize {
    /// A normalisation; `mean` and `std` have the same non-zero length (1 applies to every
    /// channel), every value is finite and every std is > 0.
    ///
    /// ```
    /// use stoker::Normalize;
    /// assert!(Normalize::new(vec![0.5, 0.5, 0.5], vec![0.5, 0.5, 0.5]).is_ok());
    /// assert!(Normalize::new(vec![0.5, 0.5], vec![0.5]).is_err());
    /// assert!(Normalize::new(vec![], vec![]).is_err());
    /// assert!(Normalize::new(vec![0.0], vec![f32::NAN]).is_err());
    /// ```
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Normalize> {
        let n = Normalize { mean, std };
        n.check()?;
        Ok(n)
    }

    /// torchvision's ImageNet statistics: mean `[0.485, 0.456, 0.406]`, std `[0.229, 0.224, 0.225]`.
    ///
    /// ```
    /// let n = stoker::Normalize::imagenet();
    /// assert_eq!(n.std, vec![0.229, 0.224, 0.225]);
    /// ```
    pub fn imagenet() -> Normalize {
        Normalize {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    fn check(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(Error::usage(format!(
                "normalize needs as many means as stds, at least one (got {} and {})",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::usage(format!("normalize mean {m} is not finite")));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::usage(format!(
                "normalize std {s} must be finite and > 0"
            )));
        }
        Ok(())
    }

    /// The value for channel `c` of a vector that is either per-channel or a single value.
    fn at(v: &[f32], c: usize) -> f32 {
        if v.len() == 1 {
            v[0]
        } else {
            v[c]
        }
    }
}

impl OutputSpec {
    /// A spec of `width`×`height`×`channels`, `F32`, NCHW, no normalisation (not yet validated).
    ///
    /// ```
    /// let spec = stoker::OutputSpec::new(4, 2, 1);
    /// assert_eq!(spec.sample_shape(), [1, 2, 4]);
    /// ```
    pub fn new(width: usize, height: usize, channels: usize) -> OutputSpec {
        OutputSpec {
            width,
            height,
            channels,
            dtype: DType::F32,
            layout: Layout::Nchw,
            normalize: None,
        }
    }

    /// The same spec with element type `dtype`.
    ///
    /// ```
    /// let spec = stoker::OutputSpec::new(4, 2, 3).with_dtype(stoker::DType::U8);
    /// assert_eq!(spec.sample_bytes(), 24);
    /// ```
    pub fn with_dtype(mut self, dtype: DType) -> OutputSpec {
        self.dtype = dtype;
        self
    }

    /// The same spec with `layout`.
    ///
    /// ```
    /// let spec = stoker::OutputSpec::new(4, 2, 3).with_layout(stoker::Layout::Nhwc);
    /// assert_eq!(spec.sample_shape(), [2, 4, 3]);
    /// ```
    pub fn with_layout(mut self, layout: Layout) -> OutputSpec {
        self.layout = layout;
        self
    }

    /// The same spec with normalisation `n`.
    ///
    /// ```
    /// use stoker::{Normalize, OutputSpec};
    /// let spec = OutputSpec::new(4, 2, 3).with_normalize(Normalize::imagenet());
    /// assert!(spec.validate().is_ok());
    /// ```
    pub fn with_normalize(mut self, n: Normalize) -> OutputSpec {
        self.normalize = Some(n);
        self
    }

    /// Checks that the spec can be stored: width, height > 0, 1 or 3 channels, no normalisation
    /// with `U8`, a normalisation of 1 or `channels` values, and a slot size that fits `usize`.
    ///
    /// ```
    /// use stoker::{DType, Normalize, OutputSpec};
    /// assert!(OutputSpec::new(0, 2, 3).validate().is_err());
    /// assert!(OutputSpec::new(4, 2, 2).validate().is_err());
    /// let u8_norm = OutputSpec::new(4, 2, 3).with_dtype(DType::U8).with_normalize(Normalize::imagenet());
    /// assert!(u8_norm.validate().is_err());
    /// assert!(OutputSpec::new(4, 2, 1).with_normalize(Normalize::imagenet()).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::usage(format!(
                "output size {}x{} must be > 0",
                self.width, self.height
            )));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(Error::usage(format!(
                "output channels must be 1 or 3, got {}",
                self.channels
            )));
        }
        if let Some(n) = &self.normalize {
            if self.dtype == DType::U8 {
                return Err(Error::usage(
                    "u8 output cannot be normalised (use f32, f16 or bf16)",
                ));
            }
            n.check()?;
            if n.mean.len() != 1 && n.mean.len() != self.channels {
                return Err(Error::usage(format!(
                    "normalize has {} values for {} channels (use 1 or {})",
                    n.mean.len(),
                    self.channels,
                    self.channels
                )));
            }
        }
        self.width
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.channels))
            .and_then(|v| v.checked_mul(self.dtype.size()))
            .ok_or_else(|| Error::usage("output sample size overflows"))?;
        Ok(())
    }

    /// Bytes of one sample slot.
    ///
    /// ```
    /// assert_eq!(stoker::OutputSpec::new(4, 2, 3).sample_bytes(), 4 * 2 * 3 * 4);
    /// ```
    pub fn sample_bytes(&self) -> usize {
        self.width * self.height * self.channels * self.dtype.size()
    }

    /// Shape of one sample: `[C, H, W]` or `[H, W, C]`.
    ///
    /// ```
    /// assert_eq!(stoker::OutputSpec::new(4, 2, 3).sample_shape(), [3, 2, 4]);
    /// ```
    pub fn sample_shape(&self) -> [usize; 3] {
        match self.layout {
            Layout::Nchw => [self.channels, self.height, self.width],
            Layout::Nhwc => [self.height, self.width, self.channels],
        }
    }
}

/// The element type of the source pixels a [`Store`] is prepared for.
///
/// ```
/// use stoker::output::SrcType;
/// assert_eq!(SrcType::of(&stoker::Pixels::U8(&[1, 2, 3])), SrcType::U8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrcType {
    /// 8-bit pixels.
    U8,
    /// 32-bit float pixels.
    F32,
}

impl SrcType {
    /// The source type of `pixels`.
    ///
    /// ```
    /// use stoker::output::SrcType;
    /// assert_eq!(SrcType::of(&stoker::Pixels::F32(&[0.5])), SrcType::F32);
    /// ```
    pub fn of(pixels: &Pixels) -> SrcType {
        match pixels {
            Pixels::U8(_) => SrcType::U8,
            Pixels::F32(_) => SrcType::F32,
        }
    }

    /// Lowercase name: `u8` or `f32`.
    ///
    /// ```
    /// assert_eq!(stoker::output::SrcType::F32.as_str(), "f32");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SrcType::U8 => "u8",
            SrcType::F32 => "f32",
        }
    }
}

/// A kernel set: every level writes the same bits, faster ones need CPU support.
///
/// ```
/// use stoker::output::SimdLevel;
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
    /// let level = stoker::output::SimdLevel::detect();
    /// assert!(stoker::output::SimdLevel::available().contains(&level));
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
    /// use stoker::output::SimdLevel;
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
    /// let levels = stoker::output::SimdLevel::available();
    /// assert_eq!(levels[0], stoker::output::SimdLevel::Scalar);
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
    /// assert_eq!(stoker::output::SimdLevel::Avx2.as_str(), "avx2");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// Everything a row kernel reads, fixed in [`Store::with_level`].
#[derive(Clone, Debug)]
struct Plan {
    w: usize,
    h: usize,
    c: usize,
    /// NCHW with 3 channels: rows go to three planes. Otherwise a row is one contiguous run.
    planar: bool,
    scale: [f32; 3],
    bias: [f32; 3],
    /// `scale[i % c]` for `i < w * c`: the interleaved pattern of one row.
    scale_row: Vec<f32>,
    /// `bias[i % c]` for `i < w * c`.
    bias_row: Vec<f32>,
}

/// `(scale, bias)` per channel for `src` pixels into `spec` (the table in the module docs);
/// channels past `spec.channels` are 0.
pub(crate) fn scale_bias(spec: &OutputSpec, src: SrcType) -> ([f32; 3], [f32; 3]) {
    let mut scale = [0f32; 3];
    let mut bias = [0f32; 3];
    for ch in 0..spec.channels.min(3) {
        let (s, b) = match (&spec.normalize, src) {
            (None, SrcType::U8) => (1.0 / 255.0, 0.0),
            (None, SrcType::F32) => (1.0, -0.0),
            (Some(n), SrcType::U8) => {
                let (m, sd) = (Normalize::at(&n.mean, ch), Normalize::at(&n.std, ch));
                (1.0 / (255.0 * sd), -m / sd)
            }
            (Some(n), SrcType::F32) => {
                let (m, sd) = (Normalize::at(&n.mean, ch), Normalize::at(&n.std, ch));
                (1.0 / sd, -m / sd)
            }
        };
        scale[ch] = s;
        bias[ch] = b;
    }
    (scale, bias)
}

/// Per-row scratch of the portable kernels, allocated once.
#[derive(Clone, Debug)]
struct Scratch {
    f: Vec<f32>,
    h: Vec<u16>,
}

/// Writes output row `y`.
///
/// Safety: `y < h`, `src.len() == w * c`, `slot.len()` is the sample size, and the CPU supports
/// the level the function was chosen for.
type RowFn<T> = unsafe fn(&Plan, &mut Scratch, usize, &[T], &mut [u8]);

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

    /// The planar float target of a fused kernel: the dtype code when this store
    /// takes f32 rows into 3-channel NCHW float output with the AVX2 kernels, else `None`.
    pub(crate) fn planar_float(&self) -> Option<u8> {
        let d = match self.spec.dtype {
            DType::F32 => OUT_F32,
            DType::F16 => OUT_F16,
            DType::BF16 => OUT_BF16,
            DType::U8 => return None,
        };
        (self.plan.planar && self.src == SrcType::F32 && self.level >= SimdLevel::Avx2).then_some(d)
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

// ---------------------------------------------------------------------------------------------
// Kernel choice.

/// Float output codes for the kernels' const generic.
pub(crate) const OUT_F32: u8 = 0;
pub(crate) const OUT_F16: u8 = 1;
pub(crate) const OUT_BF16: u8 = 2;

pub(crate) const fn out_size(d: u8) -> usize {
    if d == OUT_F32 {
        4
    } else {
        2
    }
}

fn pick_u8(level: SimdLevel, dtype: DType, planar: bool) -> RowFn<u8> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match dtype {
            DType::U8 if planar => x86::row_u8u8_avx2,
            DType::U8 => row_u8u8,
            DType::F32 => x86::row_float_avx2::<u8, OUT_F32>,
            DType::F16 => x86::row_float_avx2::<u8, OUT_F16>,
            DType::BF16 => x86::row_float_avx2::<u8, OUT_BF16>,
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

fn pick_f32(level: SimdLevel, dtype: DType) -> RowFn<f32> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match dtype {
            DType::U8 => row_f32u8,
            DType::F32 => x86::row_float_avx2::<f32, OUT_F32>,
            DType::F16 => x86::row_float_avx2::<f32, OUT_F16>,
            DType::BF16 => x86::row_float_avx2::<f32, OUT_BF16>,
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

// ---------------------------------------------------------------------------------------------
// Portable kernels. They index with checked slices: the `RowFn` preconditions make every index
// valid, and a violated one panics instead of writing out of bounds.

/// A source pixel value.
trait Px: Copy {
    /// Whether the pixels are `f32` (read by the x86 loaders only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const IS_F32: bool;
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

/// The slot bytes of output row `y`, of channel plane `ch` when planar.
#[inline(always)]
fn row_range(p: &Plan, y: usize, ch: usize, elem: usize) -> std::ops::Range<usize> {
    if p.planar {
        let start = (ch * p.h + y) * p.w * elem;
        start..start + p.w * elem
    } else {
        let n = p.w * p.c;
        y * n * elem..(y + 1) * n * elem
    }
}

/// `f32` to `u8`: round to nearest, ties to even, then clamp to `0..=255`; NaN to 0.
#[inline(always)]
fn round_u8(x: f32) -> u8 {
    // `as` saturates (and maps NaN to 0).
    x.round_ties_even() as u8
}

/// u8 → u8: a copy, or a de-interleave into planes.
fn row_u8u8(p: &Plan, _: &mut Scratch, y: usize, src: &[u8], slot: &mut [u8]) {
    if !p.planar {
        slot[row_range(p, y, 0, 1)].copy_from_slice(src);
        return;
    }
    let (r0, r1, r2) = (
        row_range(p, y, 0, 1),
        row_range(p, y, 1, 1),
        row_range(p, y, 2, 1),
    );
    let (head, c2) = slot.split_at_mut(r2.start);
    let (c0, c1) = head.split_at_mut(r1.start);
    let (c0, c1, c2) = (&mut c0[r0], &mut c1[..p.w], &mut c2[..p.w]);
    for (((px, a), b), c) in src.chunks_exact(3).zip(c0).zip(c1).zip(c2) {
        *a = px[0];
        *b = px[1];
        *c = px[2];
    }
}

/// f32 → u8 (no normalisation): rounded and clamped.
fn row_f32u8(p: &Plan, _: &mut Scratch, y: usize, src: &[f32], slot: &mut [u8]) {
    if !p.planar {
        for (d, &x) in slot[row_range(p, y, 0, 1)].iter_mut().zip(src) {
            *d = round_u8(x);
        }
        return;
    }
    for ch in 0..3 {
        let dst = &mut slot[row_range(p, y, ch, 1)];
        for (d, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
            *d = round_u8(px[ch]);
        }
    }
}

/// Any source → float output: the affine map into scratch (output order), then the dtype.
fn row_float<T: Px, const D: u8>(p: &Plan, s: &mut Scratch, y: usize, src: &[T], slot: &mut [u8]) {
    let n = p.w * p.c;
    let f = &mut s.f[..n];
    if p.planar {
        let (f0, rest) = f.split_at_mut(p.w);
        let (f1, f2) = rest.split_at_mut(p.w);
        let ([s0, s1, s2], [b0, b1, b2]) = (p.scale, p.bias);
        for (((px, a), b), c) in src.chunks_exact(3).zip(f0).zip(f1).zip(f2) {
            *a = px[0].f() * s0 + b0;
            *b = px[1].f() * s1 + b1;
            *c = px[2].f() * s2 + b2;
        }
        for ch in 0..3 {
            let seg = &s.f[ch * p.w..(ch + 1) * p.w];
            emit::<D>(seg, &mut slot[row_range(p, y, ch, out_size(D))], &mut s.h);
        }
    } else {
        for (((d, &x), &sc), &b) in f.iter_mut().zip(src).zip(&p.scale_row).zip(&p.bias_row) {
            *d = x.f() * sc + b;
        }
        emit::<D>(f, &mut slot[row_range(p, y, 0, out_size(D))], &mut s.h);
    }
}

/// Writes `v` as dtype `D` into `dst` (`v.len() * size` bytes, any alignment).
#[inline(always)]
fn emit<const D: u8>(v: &[f32], dst: &mut [u8], h: &mut [u16]) {
    match D {
        OUT_F32 => {
            for (d, x) in dst.chunks_exact_mut(4).zip(v) {
                d.copy_from_slice(&x.to_ne_bytes());
            }
        }
        OUT_F16 => {
            let h = &mut h[..v.len()];
            h.reinterpret_cast_mut::<half::f16>()
                .convert_from_f32_slice(v);
            for (d, x) in dst.chunks_exact_mut(2).zip(h.iter()) {
                d.copy_from_slice(&x.to_ne_bytes());
            }
        }
        _ => {
            for (d, x) in dst.chunks_exact_mut(2).zip(v) {
                d.copy_from_slice(&half::bf16::from_f32(*x).to_bits().to_ne_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x86-64 kernels (AVX2 + F16C), explicit intrinsics. Tails fall back to the same scalar formula.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{out_size, Plan, Px, Scratch, OUT_F16, OUT_F32};

    /// Blend mask picking, in the blend of three 8-lane vectors, the lanes of vector `v` that
    /// hold channel `ch` of an interleaved 3-channel run (lane `l` of `v` is element `8v + l`).
    const fn blend8(ch: usize, v: usize) -> i32 {
        let mut m = 0;
        let mut l = 0;
        while l < 8 {
            if (8 * v + l) % 3 == ch {
                m |= 1 << l;
            }
            l += 1;
        }
        m
    }

    /// `pshufb` mask taking, from 16-byte vector `v` of a 48-byte interleaved run, the bytes of
    /// channel `ch` to their pixel position (others zeroed).
    const fn shuf16(ch: usize, v: usize) -> [u8; 16] {
        let mut m = [0x80u8; 16];
        let mut j = 0;
        while j < 16 {
            let g = 3 * j + ch;
            if g / 16 == v {
                m[j] = (g % 16) as u8;
            }
            j += 1;
        }
        m
    }

    const SHUF: [[[u8; 16]; 3]; 3] = [
        [shuf16(0, 0), shuf16(0, 1), shuf16(0, 2)],
        [shuf16(1, 0), shuf16(1, 1), shuf16(1, 2)],
        [shuf16(2, 0), shuf16(2, 1), shuf16(2, 2)],
    ];

    /// Eight source values at `p` as `f32`.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8<T: Px>(p: *const T) -> __m256 {
        if T::IS_F32 {
            _mm256_loadu_ps(p as *const f32)
        } else {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)))
        }
    }

    /// Eight `f32` stored as dtype `D` at `p` (unaligned).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn store8<const D: u8>(p: *mut u8, v: __m256) {
        if D == OUT_F32 {
            _mm256_storeu_ps(p as *mut f32, v);
        } else if D == OUT_F16 {
            _mm_storeu_si128(
                p as *mut __m128i,
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            );
        } else {
            // bf16, round to nearest even; NaN keeps its top bits and becomes quiet.
            let x = _mm256_castps_si256(v);
            let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
            let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(
                _mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)),
                lsb,
            ));
            let abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fff_ffff));
            let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
            let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(0x40));
            let r = _mm256_blendv_epi8(rounded, quiet, nan);
            let packed =
                _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
            _mm_storeu_si128(p as *mut __m128i, packed);
        }
    }

    /// Sixteen `f32` stored as dtype `D` at `p` (unaligned): [`store8`]'s bits, 16 at a time.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
    pub(crate) unsafe fn store16<const D: u8>(p: *mut u8, v: __m512) {
        if D == OUT_F32 {
            _mm512_storeu_ps(p as *mut f32, v);
        } else if D == OUT_F16 {
            _mm256_storeu_si256(
                p as *mut __m256i,
                _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            );
        } else {
            let x = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                _mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                lsb,
            ));
            let abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fff_ffff));
            let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
            let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(0x40));
            let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
            _mm256_storeu_si256(p as *mut __m256i, _mm512_cvtepi32_epi16(r));
        }
    }

    /// One `f32` stored as dtype `D` at `p` (unaligned): the tails.
    #[inline(always)]
    pub(crate) unsafe fn store1<const D: u8>(p: *mut u8, v: f32) {
        if D == OUT_F32 {
            (p as *mut f32).write_unaligned(v);
        } else if D == OUT_F16 {
            (p as *mut u16).write_unaligned(half::f16::from_f32(v).to_bits());
        } else {
            (p as *mut u16).write_unaligned(half::bf16::from_f32(v).to_bits());
        }
    }

    /// Splits three vectors holding 8 interleaved 3-channel pixels into one vector per channel.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn deinterleave3(a: __m256, b: __m256, c: __m256) -> [__m256; 3] {
        // After the blends, lane l holds the element of channel ch that sits at lane l of a, b
        // or c; the permutation puts pixel j at lane j (it sat at lane (3j + ch) % 8).
        let r = _mm256_blend_ps::<{ blend8(0, 2) }>(_mm256_blend_ps::<{ blend8(0, 1) }>(a, b), c);
        let g = _mm256_blend_ps::<{ blend8(1, 2) }>(_mm256_blend_ps::<{ blend8(1, 1) }>(a, b), c);
        let bl = _mm256_blend_ps::<{ blend8(2, 2) }>(_mm256_blend_ps::<{ blend8(2, 1) }>(a, b), c);
        [
            _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5)),
            _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6)),
            _mm256_permutevar8x32_ps(bl, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7)),
        ]
    }

    /// Float output row, AVX2. Safety: the `RowFn` preconditions, and AVX2 + F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn row_float_avx2<T: Px, const D: u8>(
        p: &Plan,
        _: &mut Scratch,
        y: usize,
        src: &[T],
        slot: &mut [u8],
    ) {
        let sz = out_size(D);
        let sp = src.as_ptr();
        let base = slot.as_mut_ptr();
        if p.planar {
            let w = p.w;
            let d = [
                base.add(y * w * sz),
                base.add((p.h + y) * w * sz),
                base.add((2 * p.h + y) * w * sz),
            ];
            let s = [
                _mm256_set1_ps(p.scale[0]),
                _mm256_set1_ps(p.scale[1]),
                _mm256_set1_ps(p.scale[2]),
            ];
            let b = [
                _mm256_set1_ps(p.bias[0]),
                _mm256_set1_ps(p.bias[1]),
                _mm256_set1_ps(p.bias[2]),
            ];
            let mut x = 0;
            while x + 8 <= w {
                let q = sp.add(3 * x);
                let v = deinterleave3(load8(q), load8(q.add(8)), load8(q.add(16)));
                for ch in 0..3 {
                    let o = _mm256_add_ps(_mm256_mul_ps(v[ch], s[ch]), b[ch]);
                    store8::<D>(d[ch].add(x * sz), o);
                }
                x += 8;
            }
            while x < w {
                for (ch, dc) in d.iter().enumerate() {
                    let v = (*sp.add(3 * x + ch)).f() * p.scale[ch] + p.bias[ch];
                    store1::<D>(dc.add(x * sz), v);
                }
                x += 1;
            }
        } else {
            let n = p.w * p.c;
            let d = base.add(y * n * sz);
            let (sr, br) = (p.scale_row.as_ptr(), p.bias_row.as_ptr());
            let mut i = 0;
            while i + 8 <= n {
                let v = load8(sp.add(i));
                let o = _mm256_add_ps(
                    _mm256_mul_ps(v, _mm256_loadu_ps(sr.add(i))),
                    _mm256_loadu_ps(br.add(i)),
                );
                store8::<D>(d.add(i * sz), o);
                i += 8;
            }
            while i < n {
                let v = (*sp.add(i)).f() * *sr.add(i) + *br.add(i);
                store1::<D>(d.add(i * sz), v);
                i += 1;
            }
        }
    }

    /// u8 → u8 NCHW de-interleave, 16 pixels per step with `pshufb`. Safety: the `RowFn`
    /// preconditions with a planar plan, and AVX2.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn row_u8u8_avx2(
        p: &Plan,
        _: &mut Scratch,
        y: usize,
        src: &[u8],
        slot: &mut [u8],
    ) {
        let w = p.w;
        let sp = src.as_ptr();
        let base = slot.as_mut_ptr();
        let d = [
            base.add(y * w),
            base.add((p.h + y) * w),
            base.add((2 * p.h + y) * w),
        ];
        let mut m = [[_mm_setzero_si128(); 3]; 3];
        for (mc, sc) in m.iter_mut().zip(&SHUF) {
            for (mv, sv) in mc.iter_mut().zip(sc) {
                *mv = _mm_loadu_si128(sv.as_ptr() as *const __m128i);
            }
        }
        let mut x = 0;
        while x + 16 <= w {
            let q = sp.add(3 * x);
            let a = _mm_loadu_si128(q as *const __m128i);
            let b = _mm_loadu_si128(q.add(16) as *const __m128i);
            let c = _mm_loadu_si128(q.add(32) as *const __m128i);
            for ch in 0..3 {
                let v = _mm_or_si128(
                    _mm_or_si128(_mm_shuffle_epi8(a, m[ch][0]), _mm_shuffle_epi8(b, m[ch][1])),
                    _mm_shuffle_epi8(c, m[ch][2]),
                );
                _mm_storeu_si128(d[ch].add(x) as *mut __m128i, v);
            }
            x += 16;
        }
        while x < w {
            for (ch, dc) in d.iter().enumerate() {
                *dc.add(x) = *sp.add(3 * x + ch);
            }
            x += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(spec(2, 2, 3, DType::BF16, Layout::Nhwc, true)
            .validate()
            .is_ok());
        assert!(spec(2, 2, 1, DType::F16, Layout::Nhwc, true)
            .validate()
            .is_ok());

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
