//! Output format of a batch slot: dtype, layout, normalisation, and the fused store kernels.
// STUB: filled in by the output helper.

use std::str::FromStr;

use crate::{Error, ImageView, Result};

/// Element type of the batch tensor.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Channels first: `[N, C, H, W]` (PyTorch).
    Nchw,
    /// Channels last: `[N, H, W, C]` (TensorFlow, JAX).
    Nhwc,
}

/// Per-channel normalisation `(x - mean) / std`, with `x` in `[0, 1]` for 8-bit sources
/// (torchvision's convention) and as stored for f32 sources.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

/// The shape and encoding of every sample slot in a batch.
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
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }
    /// Lowercase name: `u8`, `f16`, `bf16`, `f32`.
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
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "u8" | "uint8" => Ok(DType::U8),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f32" | "float32" | "float" => Ok(DType::F32),
            _ => Err(Error::config(format!("unknown dtype {s:?} (u8, f16, bf16, f32)"))),
        }
    }
}

impl FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => Err(Error::config(format!("unknown layout {s:?} (nchw, nhwc)"))),
        }
    }
}

impl OutputSpec {
    /// Bytes of one sample slot.
    pub fn sample_bytes(&self) -> usize {
        self.width * self.height * self.channels * self.dtype.size()
    }
    /// Shape of one sample: `[C, H, W]` or `[H, W, C]`.
    pub fn sample_shape(&self) -> [usize; 3] {
        match self.layout {
            Layout::Nchw => [self.channels, self.height, self.width],
            Layout::Nhwc => [self.height, self.width, self.channels],
        }
    }
}

/// Writes `src` (already at the output size and channels) into `slot` (`sample_bytes()` long).
pub fn store(spec: &OutputSpec, src: &ImageView, slot: &mut [u8]) -> Result<()> {
    let _ = (spec, src, slot);
    todo!("output helper")
}
