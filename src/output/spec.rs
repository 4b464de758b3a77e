//! What a batch slot holds: [`DType`], [`Layout`], [`Normalize`] and the [`OutputSpec`] that
//! combines them with the sample size, the source pixel type [`SrcType`], and the per-channel
//! `(scale, bias)` the store applies (the table in the [`output`](super) docs).

use std::str::FromStr;

use crate::{Error, Pixels, Result};

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
        if v.len() == 1 { v[0] } else { v[c] }
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

/// The element type of the source pixels a [`Store`](super::Store) is prepared for.
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
