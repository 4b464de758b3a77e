//! What the GPU does to 8-bit batches uploaded as they are: normalise, convert to f32, f16 or
//! bf16, lay out as NCHW or NHWC, and optionally add gaussian noise — one kernel, compiled at
//! run time by NVRTC (feature `cuda`: `cuda::DeviceFeeder::with_convert`).
//!
//! Uploading `u8` NHWC moves a quarter of the bytes of `f32` over PCIe and takes the
//! conversion off the CPU workers. This module is the specification of that kernel, and its
//! CPU reference ([`GpuConvert::convert_sample`]), built and tested on every machine:
//!
//! - each value is `x * scale[c] + bias[c]` with the same `scale` and `bias` as the CPU store
//!   (see [`crate::output`]), a multiply then an add, never fused (NVRTC runs with
//!   `--fmad=false`): **without noise the device batch is bit-identical to the batch the CPU
//!   loader writes for the same output spec**;
//! - with noise, `sigma[c] * g` is then added, where `sigma[c] = noise_std * 255 * scale[c]`
//!   (`noise_std` is a fraction of the 8-bit range, so it means the same with or without
//!   normalisation) and `g` is a standard normal value drawn like the augmentation's noise:
//!   entry `(h >> 10c) & 1023` of the augmentation's 1024 noise values, `h` the hash of the
//!   pixel's index and the sample's key, the key a pure function of `(seed, epoch, sample
//!   index)`, so the noise does not depend on workers, batch boundaries or the GPU's thread
//!   order;
//! - f16 and bf16 are the f32 value rounded to nearest, ties to even.
//!
//! So device results equal [`GpuConvert::convert_sample`] bit for bit (tolerance 0); the
//! kernel text itself is also compiled as C on the host by the tests and checked against it.
//!
//! ```
//! use stoker::{DType, GpuConvert, Normalize, OutputSpec};
//! let out = OutputSpec::new(2, 1, 3).with_dtype(DType::F32).with_normalize(Normalize::imagenet());
//! let conv = GpuConvert::new(&out)?;
//! assert_eq!(conv.input_spec().dtype, DType::U8); // what the loader should produce
//! let mut dst = vec![0u8; out.sample_bytes()];
//! conv.convert_sample(&[0, 128, 255, 10, 20, 30], 0, &mut dst)?;
//! let v: &[f32] = bytemuck::cast_slice(&dst);
//! assert!((v[0] - (0.0 - 0.485) / 0.229).abs() < 1e-6); // NCHW: red of pixel 0 first
//! # Ok::<(), stoker::Error>(())
//! ```

use half::{bf16, f16};

use crate::noise::{TABLE, gaussian_table, hash32, noise_key};
use crate::output::{SrcType, scale_bias};
use crate::rng::seed_of;
use crate::{Batch, DType, Error, ErrorKind, Layout, OutputSpec, Result};

/// The kernel's CUDA C source (also valid C with a host prelude: see the file's header).
pub const KERNEL_SOURCE: &str = include_str!("kernels/convert.cu");

/// The kernel's entry point in [`KERNEL_SOURCE`].
pub const KERNEL_NAME: &str = "stoker_convert_u8";

/// Floats in [`GpuConvert::params`]: the gaussian table, then scale, bias and sigma for 3
/// channels.
pub const PARAMS_LEN: usize = TABLE + 9;

/// The conversion of 8-bit NHWC samples into an output spec, on the GPU or (as a reference)
/// on the CPU.
///
/// ```
/// use stoker::{DType, GpuConvert, OutputSpec};
/// let conv = GpuConvert::new(&OutputSpec::new(256, 144, 3).with_dtype(DType::F16))?
///     .with_noise(0.03, 7)?;
/// assert_eq!(conv.noise_std(), 0.03);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GpuConvert {
    out: OutputSpec,
    noise_std: f32,
    seed: u64,
    params: Vec<f32>,
}

impl GpuConvert {
    /// Converts into `out` (a float dtype, 1 or 3 channels), without noise.
    ///
    /// ```
    /// use stoker::{DType, GpuConvert, OutputSpec};
    /// assert!(GpuConvert::new(&OutputSpec::new(8, 8, 3).with_dtype(DType::U8)).is_err());
    /// assert!(GpuConvert::new(&OutputSpec::new(8, 8, 3)).is_ok());
    /// ```
    pub fn new(out: &OutputSpec) -> Result<GpuConvert> {
        out.validate()?;
        if out.dtype == DType::U8 {
            return Err(Error::usage(
                "gpu convert: the output dtype must be f32, f16 or bf16 (u8 needs no conversion)",
            ));
        }
        let (scale, bias) = scale_bias(out, SrcType::U8);
        let mut params = Vec::with_capacity(PARAMS_LEN);
        params.extend_from_slice(&gaussian_table()[..]);
        params.extend_from_slice(&scale);
        params.extend_from_slice(&bias);
        params.extend_from_slice(&[0.0; 3]);
        Ok(GpuConvert {
            out: out.clone(),
            noise_std: 0.0,
            seed: 0,
            params,
        })
    }

    /// Adds gaussian noise of standard deviation `sigma` (a fraction of the 8-bit range:
    /// 0.03 is about 7.7 levels), keyed by `seed`, epoch and sample index. 0 turns it off.
    ///
    /// ```
    /// use stoker::{GpuConvert, OutputSpec};
    /// let c = GpuConvert::new(&OutputSpec::new(8, 8, 3))?;
    /// assert!(c.clone().with_noise(-1.0, 0).is_err());
    /// assert!(c.with_noise(0.05, 0)?.has_noise());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn with_noise(mut self, sigma: f32, seed: u64) -> Result<GpuConvert> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::usage(format!(
                "gpu convert: noise std must be finite and >= 0, got {sigma}"
            )));
        }
        self.noise_std = sigma;
        self.seed = seed;
        for c in 0..3 {
            self.params[TABLE + 6 + c] = sigma * 255.0 * self.params[TABLE + c];
        }
        Ok(self)
    }

    /// The output spec (what a device batch holds).
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?;
    /// assert_eq!(c.output_spec().height, 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn output_spec(&self) -> &OutputSpec {
        &self.out
    }

    /// The spec of the host batches to upload: `u8`, NHWC, the output's size and channels.
    ///
    /// ```
    /// use stoker::{GpuConvert, Layout, OutputSpec};
    /// let c = GpuConvert::new(&OutputSpec::new(8, 4, 3))?;
    /// assert_eq!(c.input_spec().layout, Layout::Nhwc);
    /// assert_eq!(c.input_spec().sample_bytes(), 8 * 4 * 3);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn input_spec(&self) -> OutputSpec {
        OutputSpec::new(self.out.width, self.out.height, self.out.channels)
            .with_dtype(DType::U8)
            .with_layout(Layout::Nhwc)
    }

    /// The noise's standard deviation (fraction of the 8-bit range).
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?;
    /// assert_eq!(c.noise_std(), 0.0);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn noise_std(&self) -> f32 {
        self.noise_std
    }

    /// Whether noise is added.
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?;
    /// assert!(!c.has_noise());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn has_noise(&self) -> bool {
        self.noise_std > 0.0
    }

    /// The noise key of sample `index` in `epoch`: a pure function of the seed, the epoch and
    /// the index.
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?.with_noise(0.1, 1)?;
    /// assert_eq!(c.sample_key(0, 5), c.sample_key(0, 5));
    /// assert_ne!(c.sample_key(0, 5), c.sample_key(1, 5));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn sample_key(&self, epoch: u64, index: usize) -> u32 {
        noise_key((seed_of(&[self.seed, 0x6770_7563, epoch, index as u64]) >> 32) as u32)
    }

    /// What the kernel reads: the gaussian table, scale, bias and sigma ([`PARAMS_LEN`]).
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?;
    /// assert_eq!(c.params().len(), stoker::gpu_convert::PARAMS_LEN);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The kernel's `dtype` argument: 0 f32, 1 f16, 2 bf16.
    ///
    /// ```
    /// use stoker::{DType, GpuConvert, OutputSpec};
    /// let c = GpuConvert::new(&OutputSpec::new(8, 4, 3).with_dtype(DType::BF16))?;
    /// assert_eq!(c.dtype_code(), 2);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn dtype_code(&self) -> i32 {
        match self.out.dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            _ => 2,
        }
    }

    /// The kernel's `planar` argument: 1 for NCHW with more than one channel.
    ///
    /// ```
    /// # let c = stoker::GpuConvert::new(&stoker::OutputSpec::new(8, 4, 3))?;
    /// assert_eq!(c.planar(), 1);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn planar(&self) -> i32 {
        i32::from(self.out.layout == Layout::Nchw && self.out.channels > 1)
    }

    /// Converts one sample on the CPU, exactly as the kernel does: `src` is
    /// `input_spec().sample_bytes()` bytes, `key` its [`GpuConvert::sample_key`] (ignored
    /// without noise), `dst` `output_spec().sample_bytes()` bytes.
    ///
    /// ```
    /// use stoker::{GpuConvert, OutputSpec};
    /// let c = GpuConvert::new(&OutputSpec::new(1, 1, 3))?;
    /// let mut out = [0u8; 12];
    /// c.convert_sample(&[255, 0, 51], 0, &mut out)?;
    /// assert_eq!(bytemuck::cast_slice::<u8, f32>(&out), &[1.0, 0.0, 51.0 * (1.0 / 255.0)]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn convert_sample(&self, src: &[u8], key: u32, dst: &mut [u8]) -> Result<()> {
        let (inb, outb) = (self.input_spec().sample_bytes(), self.out.sample_bytes());
        if src.len() != inb || dst.len() != outb {
            return Err(Error::usage(format!(
                "gpu convert: a sample is {inb} bytes in and {outb} out, got {} and {}",
                src.len(),
                dst.len()
            )));
        }
        let c = self.out.channels;
        let hw = self.out.width * self.out.height;
        let p = &self.params;
        let planar = self.planar() == 1;
        let size = self.out.dtype.size();
        for (j, px) in src.chunks_exact(c).enumerate() {
            let h = if self.has_noise() {
                hash32(j as u32 ^ key)
            } else {
                0
            };
            for (ch, &v) in px.iter().enumerate() {
                let mut x = v as f32 * p[TABLE + ch];
                x += p[TABLE + 3 + ch];
                if self.has_noise() {
                    x += p[TABLE + 6 + ch] * p[((h >> (10 * ch)) & 1023) as usize];
                }
                let o = if planar { ch * hw + j } else { j * c + ch } * size;
                let d = &mut dst[o..o + size];
                match self.out.dtype {
                    DType::F32 => d.copy_from_slice(&x.to_ne_bytes()),
                    DType::F16 => d.copy_from_slice(&f16::from_f32(x).to_bits().to_ne_bytes()),
                    _ => d.copy_from_slice(&bf16::from_f32(x).to_bits().to_ne_bytes()),
                }
            }
        }
        Ok(())
    }

    /// Converts a host batch of [`GpuConvert::input_spec`] samples on the CPU into `dst`
    /// (`batch.len() * output_spec().sample_bytes()` bytes): the device result to compare with.
    ///
    /// ```
    /// use stoker::{GpuConvert, Loader, OutputSpec, DType, Layout, ImageFolder};
    /// let conv = GpuConvert::new(&OutputSpec::new(256, 144, 3))?;
    /// let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
    ///     .batch_size(4).dtype(DType::U8).layout(Layout::Nhwc).build()?;
    /// let batch = loader.epoch(0).next().unwrap()?;
    /// let mut out = vec![0u8; 4 * conv.output_spec().sample_bytes()];
    /// conv.convert_batch(&batch, &mut out)?;
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn convert_batch(&self, batch: &Batch, dst: &mut [u8]) -> Result<()> {
        if batch.spec() != &self.input_spec() {
            let kind = if batch.dtype() != DType::U8 {
                ErrorKind::DTypeMismatch
            } else {
                ErrorKind::Usage
            };
            return Err(Error::new(
                kind,
                format!(
                    "gpu convert: the batch is {} {:?}, expected u8 NHWC {:?}",
                    batch.dtype().as_str(),
                    batch.spec().sample_shape(),
                    self.input_spec().sample_shape()
                ),
            ));
        }
        let (inb, outb) = (self.input_spec().sample_bytes(), self.out.sample_bytes());
        if dst.len() != batch.len() * outb {
            return Err(Error::usage(format!(
                "gpu convert: {} samples need {} bytes, got {}",
                batch.len(),
                batch.len() * outb,
                dst.len()
            )));
        }
        let src = &batch.as_bytes()[..batch.len() * inb];
        for ((s, d), &index) in src
            .chunks_exact(inb)
            .zip(dst.chunks_exact_mut(outb))
            .zip(batch.indices())
        {
            self.convert_sample(s, self.sample_key(batch.epoch(), index), d)?;
        }
        Ok(())
    }
}
