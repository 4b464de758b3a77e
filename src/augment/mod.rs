//! Augmentation: rotation, shift, zoom, flips and random resized crop as one inverse affine
//! map, sampled once per output pixel straight from the decoded image, with brightness,
//! contrast, gaussian and salt-and-pepper noise, normalisation, dtype and layout in the same
//! pass that writes the batch slot.
//!
//! # Conventions
//! - Coordinates: pixel centres sit at `i + 0.5`; rotation and zoom are about the centre of
//!   the output image. A positive `rotation` turns the content counter-clockwise as displayed.
//! - Shift moves the content right / down by `tx` / `ty` output pixels (Keras's
//!   `width_shift_range` / `height_shift_range`: a value below 1 is a fraction of the output
//!   width or height, drawn uniformly in `[-r, r]`; an integer of at least 1 is a whole number
//!   of pixels drawn uniformly in `-r..=r`).
//! - Zoom `z` (Keras's convention) samples a region `z` times the frame: `z < 1` magnifies.
//!   `zoom_range(lo, hi)` draws the two axes independently, as Keras does, unless
//!   [`AugmentBuilder::isotropic_zoom`] is set.
//! - The frame is the whole source image stretched to the output size, or the random resized
//!   crop (torchvision's `RandomResizedCrop`) when one is configured; the forward order is
//!   crop → flip → zoom → rotate → shift.
//! - Outside the source, [`FillMode`] decides (Keras's names): `constant` (`cval`, in source
//!   pixel units: 0..255 for 8-bit images), `nearest`, `reflect` (`dcba|abcd|dcba`), `wrap`.
//! - Photometric, in source units and before normalisation: contrast about mid-grey (127.5, or
//!   0.5 for f32 sources), then brightness (a factor), then gaussian noise (`noise_std` is a
//!   fraction of the full range: 0.03 is 7.65 levels of an 8-bit image; drawn by a per-pixel
//!   hash from 1024 values whose CDF is within 0.003 of the normal's and that end at ±3.2σ),
//!   then salt and pepper (each value independently, with probability `p`, becomes 0 or the
//!   full range). Values are not clipped except by a `u8` output.
//! - Arithmetic: the photometric steps and the normalisation fold into one affine map per
//!   sample and channel, `v * g + (noise * s + b)`, and the bilinear weights apply as
//!   `a + f * (b - a)`; both use fused multiply-adds (rounded once), in every loop.
//! - Speed: 8-bit RGB with bilinear sampling into NCHW output of any dtype, or NHWC in f32 or
//!   u8, runs one fused kernel from source to slot (AVX-512 where the CPU has it, else AVX2 with
//!   FMA); other combinations warp a row, then adjust and store it. All give the same bits (tested), as
//!   do the portable loops ([`AugmentBuilder::simd`]`(false)`).
//! - [`AugmentBuilder::ycbcr`] (opt-in) takes JPEGs as their YCbCr planes: faster decode and
//!   warp, chroma sampled at half resolution; not the same bits as the RGB path.
//!
//! Each sample's parameters come from the loader's [`SampleRng`] (seed, epoch, index); they
//! can be recomputed with [`Augment::params_for`].
//!
//! ```
//! use std::sync::Arc;
//! use stoker::{Loader, augment::Augment};
//! use stoker::source::ImageFolder;
//! let aug = Augment::builder().rotation_range(15.0).horizontal_flip(true).noise_std(0.03).build()?;
//! let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
//!     .batch_size(8).seed(1).num_workers(0).transform(Arc::new(aug)).build()?;
//! let batch = loader.epoch(0).next().unwrap()?;
//! assert_eq!(batch.images::<f32>()?.shape(), &[8, 3, 144, 256]);
//! # Ok::<(), stoker::Error>(())
//! ```

mod affine;
mod fused;
mod params;
pub(crate) mod photometric;
mod preview;
mod settings;
mod warp;
mod ycbcr;

use std::any::Any;
use std::fmt;
use std::str::FromStr;

pub use affine::inverse_map;
pub use params::AugmentParams;
pub use preview::png_grid;

use crate::output::{DType, SimdLevel, SrcType, Store};
use crate::rng::SampleRng;
use crate::simd::{Race, Split, Vbmi};
use crate::transform::{SampleInfo, SlotWriter, Transform};
use crate::{Error, ErrorKind, ImageView, Pixels, Result, YCbCrView};

/// What the warp reads outside the source image (Keras's `fill_mode`).
///
/// ```
/// use stoker::augment::FillMode;
/// assert_eq!("reflect".parse::<FillMode>()?, FillMode::Reflect);
/// assert!("mirror".parse::<FillMode>().is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FillMode {
    /// The constant `cval` (`kkkk|abcd|kkkk`).
    Constant,
    /// The nearest edge pixel (`aaaa|abcd|dddd`), Keras's default.
    #[default]
    Nearest,
    /// Mirror with the edge repeated (`dcba|abcd|dcba`).
    Reflect,
    /// Periodic (`abcd|abcd|abcd`).
    Wrap,
}

impl FillMode {
    /// Every mode, as [`as_str`](Self::as_str) spells them.
    pub const ALL: [FillMode; 4] = [
        FillMode::Constant,
        FillMode::Nearest,
        FillMode::Reflect,
        FillMode::Wrap,
    ];

    /// The name Keras and specs use, e.g. `"reflect"`.
    ///
    /// ```
    /// assert_eq!(stoker::augment::FillMode::Wrap.as_str(), "wrap");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            FillMode::Constant => "constant",
            FillMode::Nearest => "nearest",
            FillMode::Reflect => "reflect",
            FillMode::Wrap => "wrap",
        }
    }
}

impl FromStr for FillMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match FillMode::ALL.into_iter().find(|m| m.as_str() == s) {
            Some(m) => Ok(m),
            None => Err(Error::usage(format!(
                "unknown fill mode {s:?} (constant, nearest, reflect, wrap)"
            ))),
        }
    }
}

/// How the warp samples between source pixels.
///
/// ```
/// use stoker::augment::Interpolation;
/// assert_eq!(Interpolation::default(), Interpolation::Bilinear);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// The nearest source pixel.
    Nearest,
    /// Bilinear between the four nearest source pixels.
    #[default]
    Bilinear,
}

/// Per-worker scratch of [`Augment`]: one output row of `f32` (and of YCbCr values), grown
/// once.
///
/// ```
/// let s = stoker::augment::AugmentScratch::new();
/// assert_eq!(s.capacity(), 0);
/// ```
#[derive(Debug, Default)]
pub struct AugmentScratch {
    row: Vec<f32>,
    ycc: Vec<i32>,
}

impl AugmentScratch {
    /// Empty scratch.
    pub fn new() -> Self {
        AugmentScratch::default()
    }
    /// Values the row buffer holds.
    pub fn capacity(&self) -> usize {
        self.row.len()
    }
}

/// Augmentation settings, checked: see the [module docs](self). Build with
/// [`Augment::builder`]; use as a loader [`Transform`].
///
/// ```
/// use stoker::augment::Augment;
/// let a = Augment::keras_default();
/// let p = a.params_for(0, 0, 5, (256, 144), (256, 144));
/// assert!(p.rotation.abs() <= 15.0);
/// assert_eq!(p, a.params_for(0, 0, 5, (256, 144), (256, 144)));
/// ```
#[derive(Clone, Debug)]
pub struct Augment {
    cfg: Config,
    /// The gaussian draw's tables (see [`photometric`]).
    gauss: Box<photometric::Gauss>,
    /// Under [`Vbmi::Auto`], whether the VBMI loops are faster than the gathers here: for the
    /// RGB kernel and for the YCbCr one (shared by clones, which run the same kernels).
    races: std::sync::Arc<[Race; 2]>,
}

/// The kernels a [`Race`] is kept for.
const RGB: usize = 0;
const YCBCR: usize = 1;

#[derive(Clone, Debug, PartialEq)]
struct Config {
    rotation: f64,
    width_shift: f64,
    height_shift: f64,
    zoom: (f64, f64),
    isotropic: bool,
    hflip: bool,
    vflip: bool,
    fill: FillMode,
    cval: f32,
    interpolation: Interpolation,
    noise_std: f32,
    brightness: (f32, f32),
    contrast: (f32, f32),
    salt_pepper: f32,
    crop: Option<((f64, f64), (f64, f64))>,
    /// Take JPEGs as YCbCr planes (see [`AugmentBuilder::ycbcr`]).
    ycbcr: bool,
    /// The highest kernel set to use (capped by the CPU at run time).
    simd: SimdLevel,
    /// VBMI permutes or gathers (`None`: as `STOKER_VBMI` says, else timed).
    vbmi: Option<Vbmi>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rotation: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            zoom: (1.0, 1.0),
            isotropic: false,
            hflip: false,
            vflip: false,
            fill: FillMode::Nearest,
            cval: 0.0,
            interpolation: Interpolation::Bilinear,
            noise_std: 0.0,
            brightness: (1.0, 1.0),
            contrast: (1.0, 1.0),
            salt_pepper: 0.0,
            crop: None,
            ycbcr: false,
            simd: SimdLevel::Avx512,
            vbmi: None,
        }
    }
}

/// Builder of [`Augment`], with Keras's `ImageDataGenerator` names; every setting defaults
/// to "off", and [`AugmentBuilder::build`] checks them all.
///
/// ```
/// use stoker::augment::{Augment, FillMode};
/// let a = Augment::builder()
///     .rotation_range(20.0).width_shift_range(0.1).height_shift_range(8.0)
///     .zoom_range(0.8, 1.2).horizontal_flip(true).fill_mode(FillMode::Constant).cval(0.0)
///     .brightness_range(0.9, 1.1).contrast_range(0.9, 1.1).noise_std(0.02).salt_pepper(0.001)
///     .build()?;
/// assert_eq!(a.fill_mode(), FillMode::Constant);
/// assert!(Augment::builder().zoom_range(1.2, 0.8).build().is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct AugmentBuilder {
    cfg: Config,
}

impl AugmentBuilder {
    /// A builder holding [`Augment::keras_default`]'s settings, to change some of them.
    ///
    /// ```
    /// use stoker::augment::{AugmentBuilder, FillMode};
    /// let a = AugmentBuilder::keras_default().fill_mode(FillMode::Reflect).build()?;
    /// assert!(a.to_string().starts_with("rotation=15,"));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn keras_default() -> AugmentBuilder {
        Augment::builder()
            .rotation_range(15.0)
            .width_shift_range(0.1)
            .height_shift_range(0.1)
            .zoom_range(0.9, 1.1)
            .horizontal_flip(true)
            .noise_std(0.03)
    }

    /// Rotation drawn uniformly in `[-degrees, degrees]`.
    pub fn rotation_range(mut self, degrees: f64) -> Self {
        self.cfg.rotation = degrees;
        self
    }
    /// Horizontal shift: a fraction of the width (< 1) or whole pixels (an integer ≥ 1).
    pub fn width_shift_range(mut self, r: f64) -> Self {
        self.cfg.width_shift = r;
        self
    }
    /// Vertical shift: a fraction of the height (< 1) or whole pixels (an integer ≥ 1).
    pub fn height_shift_range(mut self, r: f64) -> Self {
        self.cfg.height_shift = r;
        self
    }
    /// Zoom factors drawn uniformly in `[lo, hi]` (per axis unless isotropic); `< 1` magnifies.
    pub fn zoom_range(mut self, lo: f64, hi: f64) -> Self {
        self.cfg.zoom = (lo, hi);
        self
    }
    /// One zoom factor for both axes (default false: per axis, as Keras).
    pub fn isotropic_zoom(mut self, on: bool) -> Self {
        self.cfg.isotropic = on;
        self
    }
    /// Mirror left-right with probability 1/2.
    pub fn horizontal_flip(mut self, on: bool) -> Self {
        self.cfg.hflip = on;
        self
    }
    /// Mirror top-bottom with probability 1/2.
    pub fn vertical_flip(mut self, on: bool) -> Self {
        self.cfg.vflip = on;
        self
    }
    /// What is read outside the source (default [`FillMode::Nearest`]).
    pub fn fill_mode(mut self, mode: FillMode) -> Self {
        self.cfg.fill = mode;
        self
    }
    /// The constant of [`FillMode::Constant`], in source pixel units (default 0).
    pub fn cval(mut self, v: f32) -> Self {
        self.cfg.cval = v;
        self
    }
    /// Bilinear (default) or nearest sampling.
    pub fn interpolation(mut self, i: Interpolation) -> Self {
        self.cfg.interpolation = i;
        self
    }
    /// Additive gaussian noise, std as a fraction of the full range (1.0 = 255 levels).
    pub fn noise_std(mut self, sigma: f32) -> Self {
        self.cfg.noise_std = sigma;
        self
    }
    /// Brightness factor drawn uniformly in `[lo, hi]`.
    pub fn brightness_range(mut self, lo: f32, hi: f32) -> Self {
        self.cfg.brightness = (lo, hi);
        self
    }
    /// Contrast factor (about mid-grey) drawn uniformly in `[lo, hi]`.
    pub fn contrast_range(mut self, lo: f32, hi: f32) -> Self {
        self.cfg.contrast = (lo, hi);
        self
    }
    /// Probability that a value becomes 0 or full range (half each).
    pub fn salt_pepper(mut self, p: f32) -> Self {
        self.cfg.salt_pepper = p;
        self
    }
    /// torchvision's random resized crop: area fraction in `scale`, aspect ratio (w/h) in
    /// `ratio` (drawn log-uniformly), e.g. `((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0))`.
    pub fn random_resized_crop(mut self, scale: (f64, f64), ratio: (f64, f64)) -> Self {
        self.cfg.crop = Some((scale, ratio));
        self
    }

    /// Take JPEGs as their YCbCr planes (default false): the loader decodes them without
    /// libjpeg-turbo's colour conversion and chroma upsampling, and the warp samples luma at
    /// every output pixel and chroma once per 2×2 output pixels (upsampled with libjpeg's
    /// triangle filter), and converts to RGB in the same pass. Faster (about 1.5× the
    /// images/s on 256×144 photos) and a different resampling: within one level of
    /// libjpeg-turbo's RGB decode at the identity map, under one level from the RGB path on
    /// average under augmentation, more at sharp colour edges (`tests/augment/ycbcr.rs` holds the
    /// bounds). Other sources (PNG, pixel arrays, gray or CMYK JPEGs) take the RGB path. Needs
    /// bilinear interpolation and three output channels; a constant fill is rounded to a whole
    /// level.
    ///
    /// ```
    /// use stoker::augment::{Augment, AugmentBuilder};
    /// use stoker::transform::Transform;
    /// let a = AugmentBuilder::keras_default().ycbcr(true).build()?;
    /// assert!(a.takes_ycbcr());
    /// assert_eq!(a.to_string(), "rotation=15,wshift=0.1,hshift=0.1,zoom=0.9:1.1,hflip,noise=0.03,ycbcr");
    /// assert!(Augment::from_spec("ycbcr,nearest").is_err());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn ycbcr(mut self, on: bool) -> Self {
        self.cfg.ycbcr = on;
        self
    }

    /// Use the SIMD loops where the CPU has them (default true); false forces the portable
    /// loops, which give the same bits.
    ///
    /// ```
    /// let a = stoker::augment::Augment::builder().rotation_range(10.0).simd(false).build()?;
    /// # let _ = a;
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn simd(mut self, on: bool) -> Self {
        self.cfg.simd = if on {
            SimdLevel::Avx512
        } else {
            SimdLevel::Scalar
        };
        self
    }

    /// The highest kernel set to use: `Scalar` (portable loops), `Avx2`, or `Avx512` (the
    /// default; the CPU caps it at run time). Every level gives the same bits.
    ///
    /// ```
    /// use stoker::{augment::Augment, output::SimdLevel};
    /// let a = Augment::builder().rotation_range(10.0).simd_level(SimdLevel::Avx2).build()?;
    /// # let _ = a;
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn simd_level(mut self, level: SimdLevel) -> Self {
        self.cfg.simd = level;
        self
    }

    /// Whether the AVX-512 kernels take their taps with VBMI byte permutes or with gathers:
    /// the same bits, and which is faster depends on the CPU. Unset, the environment variable
    /// `STOKER_VBMI` (`auto`, `on`, `off`) decides, and without it [`Vbmi::Auto`]: both are
    /// timed on the first samples and the faster is kept (see [`crate::simd::Vbmi`]).
    ///
    /// ```
    /// use stoker::{augment::AugmentBuilder, simd::Vbmi};
    /// let a = AugmentBuilder::keras_default().vbmi(Vbmi::Off).build()?;
    /// assert_eq!(a.vbmi_choice(), (Some(false), Some(false)));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn vbmi(mut self, v: Vbmi) -> Self {
        self.cfg.vbmi = Some(v);
        self
    }

    /// Checks every setting: a usage error names the first bad one.
    pub fn build(self) -> Result<Augment> {
        if let Some(what) = settings::SETTINGS.iter().find_map(|s| (s.check)(&self.cfg)) {
            return Err(Error::usage(format!("augment: {what}")));
        }
        let mut cfg = self.cfg;
        cfg.cval += 0.0; // -0.0 becomes +0.0: every loop then gives the same bits
        Ok(Augment {
            cfg,
            gauss: photometric::Gauss::new(),
            races: std::sync::Arc::new([Race::new(), Race::new()]),
        })
    }
}

impl Default for Augment {
    /// No augmentation: every parameter at identity.
    fn default() -> Self {
        AugmentBuilder::default()
            .build()
            .expect("defaults are valid")
    }
}

impl Augment {
    /// A builder with every augmentation off.
    ///
    /// ```
    /// let a = stoker::augment::Augment::builder().build()?;
    /// assert!(a.params_for(1, 2, 3, (8, 8), (8, 8)).is_identity());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn builder() -> AugmentBuilder {
        AugmentBuilder::default()
    }

    /// Keras-style default: rotation 15°, shift 0.1, zoom 0.9–1.1, horizontal flip, noise 0.03,
    /// fill `nearest`, bilinear.
    ///
    /// ```
    /// let a = stoker::augment::Augment::keras_default();
    /// assert_eq!(a.to_string(), "rotation=15,wshift=0.1,hshift=0.1,zoom=0.9:1.1,hflip,noise=0.03");
    /// ```
    pub fn keras_default() -> Augment {
        AugmentBuilder::keras_default()
            .build()
            .expect("preset is valid")
    }

    /// Parses a spec: `none`, or comma-separated items applied in order: `default`
    /// ([`Augment::keras_default`]'s settings), `rotation=DEG`, `shift=R` (both axes),
    /// `wshift=R`, `hshift=R`, `zoom=LO:HI` or `zoom=R` (`1-R:1+R`), `isozoom`, `hflip`,
    /// `vflip`, `fill=MODE`, `cval=V`, `nearest`, `noise=SIGMA`, `brightness=LO:HI`,
    /// `contrast=LO:HI`, `saltpepper=P`, `crop=SLO:SHI[/RLO:RHI]`, `ycbcr`.
    ///
    /// ```
    /// use stoker::augment::Augment;
    /// let a = Augment::from_spec("rotation=15,shift=0.1,zoom=0.9:1.1,hflip,noise=0.03")?;
    /// assert_eq!(a.to_string(), Augment::keras_default().to_string());
    /// let b = Augment::from_spec("default,noise=0.05,ycbcr")?;
    /// assert_eq!(b.to_string(), "rotation=15,wshift=0.1,hshift=0.1,zoom=0.9:1.1,hflip,noise=0.05,ycbcr");
    /// assert!(Augment::from_spec("rotation=abc").is_err());
    /// assert!(Augment::from_spec("spin=3").is_err());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn from_spec(spec: &str) -> Result<Augment> {
        match spec.trim() {
            "default" | "keras" => return Ok(Augment::keras_default()),
            "none" | "" => return Augment::builder().build(),
            _ => {}
        }
        let mut b = Augment::builder();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if matches!(item, "default" | "keras") {
                b.cfg = AugmentBuilder::keras_default().cfg;
                continue;
            }
            let (key, val) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let need = || val.ok_or_else(|| Error::usage(format!("augment: {key} needs a value")));
            let num = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| Error::usage(format!("augment: {key}: {v:?} is not a number")))
            };
            let range = |v: &str| -> Result<(f64, f64)> {
                match v.split_once(':') {
                    Some((lo, hi)) => Ok((num(lo)?, num(hi)?)),
                    None => Err(Error::usage(format!("augment: {key}: {v:?} is not LO:HI"))),
                }
            };
            let setting = settings::find(key).ok_or_else(|| {
                Error::usage(format!(
                    "augment: unknown setting {key:?} (default, {})",
                    settings::known_keys()
                ))
            })?;
            let value = match setting.arg {
                settings::Arg::Flag => settings::Value::Flag,
                settings::Arg::Num => settings::Value::Num(num(need()?)?),
                settings::Arg::Range => {
                    let (lo, hi) = range(need()?)?;
                    settings::Value::Range(lo, hi)
                }
                settings::Arg::Spread => {
                    let v = need()?;
                    let (lo, hi) = if v.contains(':') {
                        range(v)?
                    } else {
                        let r = num(v)?;
                        (1.0 - r, 1.0 + r)
                    };
                    settings::Value::Range(lo, hi)
                }
                settings::Arg::Fill => settings::Value::Fill(need()?.parse()?),
                settings::Arg::Crop => {
                    let v = need()?;
                    let (s, r) = match v.split_once('/') {
                        Some((s, r)) => (range(s)?, range(r)?),
                        None => (range(v)?, (3.0 / 4.0, 4.0 / 3.0)),
                    };
                    settings::Value::Crop(s, r)
                }
            };
            (setting.set)(&mut b.cfg, value);
        }
        b.build()
    }

    /// The fill mode.
    ///
    /// ```
    /// assert_eq!(stoker::augment::Augment::keras_default().fill_mode(), stoker::augment::FillMode::Nearest);
    /// ```
    pub fn fill_mode(&self) -> FillMode {
        self.cfg.fill
    }

    /// Whether every sample is left as it is (apart from a stretch to the output size).
    ///
    /// ```
    /// use stoker::augment::Augment;
    /// assert!(Augment::default().is_identity());
    /// assert!(!Augment::keras_default().is_identity());
    /// ```
    pub fn is_identity(&self) -> bool {
        Config {
            fill: self.cfg.fill,
            cval: self.cfg.cval,
            interpolation: self.cfg.interpolation,
            isotropic: self.cfg.isotropic,
            ycbcr: self.cfg.ycbcr,
            simd: self.cfg.simd,
            vbmi: self.cfg.vbmi,
            ..Config::default()
        } == self.cfg
    }

    /// The parameters the loader draws for sample `index` of `epoch` under `seed`, for a
    /// decoded image of `src_size` and an output of `out_size` (width, height).
    ///
    /// ```
    /// use stoker::augment::Augment;
    /// let a = Augment::keras_default();
    /// let p0 = a.params_for(0, 0, 1, (256, 144), (256, 144));
    /// let p1 = a.params_for(0, 1, 1, (256, 144), (256, 144));
    /// assert_ne!(p0, p1);
    /// assert!(p0.to_string().starts_with("rot="));
    /// ```
    pub fn params_for(
        &self,
        seed: u64,
        epoch: u64,
        index: usize,
        src_size: (usize, usize),
        out_size: (usize, usize),
    ) -> AugmentParams {
        self.draw(
            &mut SampleRng::for_sample(seed, epoch, index),
            src_size,
            out_size,
        )
    }

    /// Draws one sample's parameters from `rng` (what [`Transform::apply`] does).
    ///
    /// ```
    /// use stoker::{augment::Augment, rng::SampleRng};
    /// let a = Augment::keras_default();
    /// let p = a.draw(&mut SampleRng::for_sample(3, 0, 9), (64, 48), (32, 24));
    /// assert_eq!(p, a.params_for(3, 0, 9, (64, 48), (32, 24)));
    /// ```
    pub fn draw(
        &self,
        rng: &mut SampleRng,
        src_size: (usize, usize),
        out_size: (usize, usize),
    ) -> AugmentParams {
        params::draw(&self.cfg, rng, src_size, out_size)
    }

    /// Warps, adjusts and stores `src` into `slot` with the parameters `p`, through `store`
    /// (prepared for [`SrcType::F32`] and the output spec): the fused pass the loader runs.
    /// A usage error when sizes or channels do not match; a dtype mismatch when the store does
    /// not take f32 rows.
    ///
    /// ```
    /// use stoker::{DType, ImageView, Layout, OutputSpec, Pixels};
    /// use stoker::augment::{Augment, AugmentParams, AugmentScratch};
    /// use stoker::output::{SrcType, Store};
    /// let spec = OutputSpec::new(2, 1, 1).with_dtype(DType::U8).with_layout(Layout::Nhwc);
    /// let mut store = Store::new(&spec, SrcType::F32)?;
    /// let mut p = AugmentParams::identity((2, 1), (2, 1));
    /// p.hflip = true;
    /// let mut slot = [0u8; 2];
    /// let src = ImageView::new(2, 1, 1, Pixels::U8(&[10, 20])).unwrap();
    /// Augment::default().apply_params(&p, &src, &mut store, &mut AugmentScratch::new(), &mut slot)?;
    /// assert_eq!(slot, [20, 10]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn apply_params(
        &self,
        p: &AugmentParams,
        src: &ImageView<'_>,
        store: &mut Store,
        scratch: &mut AugmentScratch,
        slot: &mut [u8],
    ) -> Result<()> {
        check_store(store)?;
        let spec = store.spec();
        let (w, h, c) = (spec.width, spec.height, spec.channels);
        if src.channels != c {
            return Err(Error::usage(format!(
                "augment: image has {} channel(s), output has {c}",
                src.channels
            )));
        }
        let (len, full) = match src.pixels {
            Pixels::U8(v) => (v.len(), 255.0f32),
            Pixels::F32(v) => (v.len(), 1.0f32),
        };
        if src.width == 0 || src.height == 0 || len != src.width * src.height * c {
            return Err(Error::usage(format!(
                "augment: {len} values do not make a {}x{}x{c} image",
                src.width, src.height
            )));
        }
        check_params(p, (src.width, src.height), (w, h))?;
        // 8-bit sources written as floats go through the f32 store: scale them to [0, 1]
        // here, as the u8 store would.
        let unit = match (src.pixels, spec.dtype) {
            (Pixels::U8(_), d) if d != DType::U8 => 1.0 / 255.0,
            _ => 1.0,
        };
        let simd = self.cfg.simd >= SimdLevel::Avx2;
        let photo = photometric::Photo::new(p, (full, unit), store.scale_bias(), &self.gauss, simd);
        let m = inverse_map(p);
        let n = w * c;
        if scratch.row.len() < n {
            scratch.row = vec![0.0; n];
        }
        let row = &mut scratch.row[..n];
        let cval = self.cfg.cval;
        let (fill, interp) = (self.cfg.fill, self.cfg.interpolation);
        match src.pixels {
            Pixels::U8(px) if c == 3 && interp == Interpolation::Bilinear && simd => {
                let wp = warp::Warp::new(px, src.width, src.height, m, cval);
                let fused = store.fused_target().and_then(|(d, planar)| {
                    let f = fused::pick(fill, d, planar, photo.kind, self.cfg.simd)?;
                    Some((f, d, planar))
                });
                if let Some((f, d, planar)) = fused {
                    let mut k = fused::Fused {
                        source: wp,
                        photo,
                        width: w,
                    };
                    // Only the AVX-512 blocks have a VBMI variant.
                    let wide = self.cfg.simd >= SimdLevel::Avx512;
                    let mut split = self.vbmi_split(RGB, wide, h)?;
                    let result = run_fused(f, &mut k, (d, planar), (w, h), slot, |k, y| {
                        if let Some(on) = split.at_row(y) {
                            k.source.set_vbmi(on);
                        }
                    });
                    split.finish(result.is_ok());
                    return result;
                }
                let f = warp::pick_rgb8(fill, true)
                    .unwrap_or_else(|| warp::pick::<u8>(c, fill, interp));
                for y in 0..h {
                    f(&wp, y, row);
                    photo.apply(row, c, y * w);
                    store.row_f32_normalised(y, row, slot)?;
                }
            }
            Pixels::U8(px) => {
                let wp = warp::Warp::new(px, src.width, src.height, m, cval);
                let simd = (c == 3 && interp == Interpolation::Bilinear)
                    .then(|| warp::pick_rgb8(fill, simd))
                    .flatten();
                let f = simd.unwrap_or_else(|| warp::pick::<u8>(c, fill, interp));
                for y in 0..h {
                    f(&wp, y, row);
                    photo.apply(row, c, y * w);
                    store.row_f32_normalised(y, row, slot)?;
                }
            }
            Pixels::F32(px) => {
                let wp = warp::Warp::new(px, src.width, src.height, m, cval);
                let f = warp::pick::<f32>(c, fill, interp);
                for y in 0..h {
                    f(&wp, y, row);
                    photo.apply(row, c, y * w);
                    store.row_f32_normalised(y, row, slot)?;
                }
            }
        }
        Ok(())
    }

    /// [`apply_params`](Self::apply_params) for a JPEG's YCbCr planes (the
    /// [`ycbcr`](AugmentBuilder::ycbcr) path, whatever this augmentation's setting): `p` is
    /// drawn for the luma plane's size, the output has three channels.
    ///
    /// ```
    /// use stoker::augment::{Augment, AugmentParams, AugmentScratch};
    /// use stoker::output::{SrcType, Store};
    /// use stoker::{DType, Layout, OutputSpec};
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let planes = decoder.decode_ycbcr(&bytes, (256, 144))?.unwrap();
    /// let spec = OutputSpec::new(256, 144, 3).with_dtype(DType::U8).with_layout(Layout::Nhwc);
    /// let mut store = Store::new(&spec, SrcType::F32)?;
    /// let mut slot = vec![0u8; spec.sample_bytes()];
    /// let p = AugmentParams::identity((256, 144), (256, 144));
    /// let a = Augment::default();
    /// a.apply_ycbcr_params(&p, &planes, &mut store, &mut AugmentScratch::new(), &mut slot)?;
    /// // Within rounding of libjpeg-turbo's own RGB decode.
    /// let rgb = decoder.decode(&bytes, 3, None)?;
    /// let stoker::Pixels::U8(rgb) = rgb.pixels else { unreachable!() };
    /// assert!(slot.iter().zip(rgb).all(|(&a, &b)| a.abs_diff(b) <= 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_ycbcr_params(
        &self,
        p: &AugmentParams,
        src: &YCbCrView<'_>,
        store: &mut Store,
        scratch: &mut AugmentScratch,
        slot: &mut [u8],
    ) -> Result<()> {
        check_store(store)?;
        let spec = store.spec();
        let (w, h, c) = (spec.width, spec.height, spec.channels);
        if c != 3 {
            return Err(Error::usage(format!(
                "augment: YCbCr planes give 3 channels, the output has {c}"
            )));
        }
        if self.cfg.interpolation != Interpolation::Bilinear {
            return Err(Error::usage(
                "augment: YCbCr planes are sampled bilinearly only",
            ));
        }
        check_params(p, (src.width(), src.height()), (w, h))?;
        let unit = if spec.dtype == DType::U8 {
            1.0
        } else {
            1.0 / 255.0
        };
        let simd = self.cfg.simd >= SimdLevel::Avx2;
        let photo =
            photometric::Photo::new(p, (255.0, unit), store.scale_bias(), &self.gauss, simd);
        let m = inverse_map(p);
        let wide = ycbcr::Taps::pick(self.cfg.simd, true) == ycbcr::Taps::Avx512;
        let fused = store.fused_target().and_then(|(d, planar)| {
            Some((
                fused::pick_ycbcr(d, planar, photo.kind, self.cfg.simd)?,
                d,
                planar,
            ))
        });
        let mut split = self.vbmi_split(YCBCR, wide, h)?;
        let taps = |on: bool| ycbcr::Taps::pick(self.cfg.simd, on);
        let source = ycbcr::Ycc::new(
            src,
            m,
            (self.cfg.fill, self.cfg.cval),
            (w, h),
            taps(false),
            std::mem::take(&mut scratch.ycc),
        );
        let mut k = fused::Fused {
            source,
            photo,
            width: w,
        };
        let mut fill_row = |k: &mut fused::Fused<'_, ycbcr::Ycc<'_>>, y: usize| {
            if let Some(on) = split.at_row(y) {
                k.source.set_taps(taps(on));
            }
            k.source.fill_row(y)
        };
        let result = match fused {
            Some((f, d, planar)) => run_fused(f, &mut k, (d, planar), (w, h), slot, fill_row),
            None => {
                if scratch.row.len() < 3 * w {
                    scratch.row = vec![0.0; 3 * w];
                }
                let row = &mut scratch.row[..3 * w];
                (0..h).try_for_each(|y| {
                    fill_row(&mut k, y);
                    for (x, px) in row.chunks_exact_mut(3).enumerate() {
                        px.copy_from_slice(&k.source.rgb(x));
                    }
                    k.photo.apply(row, 3, y * w);
                    store.row_f32_normalised(y, row, slot)
                })
            }
        };
        split.finish(result.is_ok());
        scratch.ycc = k.source.into_buf();
        result
    }

    /// How the `rows` rows of a sample take the VBMI loops: never where `eligible` is false
    /// (no VBMI variant at this level) or the CPU lacks VBMI; else as the setting says, and
    /// under [`Vbmi::Auto`] as the kernel's race (`races[which]`) says: the gathers until it
    /// is decided, half of the rows each way in its trials.
    fn vbmi_split(&self, which: usize, eligible: bool, rows: usize) -> Result<Split<'_>> {
        if !eligible || !Vbmi::available() {
            return Ok(Split::always(false));
        }
        Ok(match self.cfg.vbmi.map_or_else(Vbmi::env, Ok)? {
            Vbmi::On => Split::always(true),
            Vbmi::Off => Split::always(false),
            Vbmi::Auto => self.races[which].split(false, rows),
        })
    }

    /// Which variants this augmentation runs, for the RGB kernel and the YCbCr one: `true` the
    /// VBMI permutes, `false` the gathers, `None` while [`Vbmi::Auto`] is still timing them.
    /// `Some(false)` where the CPU has no VBMI.
    ///
    /// ```
    /// use stoker::{augment::AugmentBuilder, simd::Vbmi};
    /// let a = AugmentBuilder::keras_default().vbmi(Vbmi::On).build()?;
    /// let on = Vbmi::available();
    /// assert_eq!(a.vbmi_choice(), (Some(on), Some(on)));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn vbmi_choice(&self) -> (Option<bool>, Option<bool>) {
        let pick = |which: usize| {
            if !Vbmi::available() {
                return Some(false);
            }
            match self.cfg.vbmi.map_or_else(Vbmi::env, Ok) {
                Ok(Vbmi::On) => Some(true),
                Ok(Vbmi::Off) | Err(_) => Some(false),
                Ok(Vbmi::Auto) => self.races[which].decided(),
            }
        };
        (pick(RGB), pick(YCBCR))
    }
}

/// Runs fused kernel `f` over every output row of `k` into `slot`, which must hold one
/// sample of `w`×`h` in dtype code `d`, planar (NCHW) or interleaved (NHWC).
fn run_fused<S>(
    f: fused::RowFn<S>,
    k: &mut fused::Fused<'_, S>,
    (d, planar): (u8, bool),
    (w, h): (usize, usize),
    slot: &mut [u8],
    mut before_row: impl FnMut(&mut fused::Fused<'_, S>, usize),
) -> Result<()> {
    let sz = crate::output::out_size(d);
    check_slot(slot.len(), 3 * w * h * sz)?;
    // Planar: three planes of `h` rows of `w` elements; interleaved: `h` rows of `3 * w`.
    let (plane, row) = if planar {
        (w * h * sz, w * sz)
    } else {
        (0, 3 * w * sz)
    };
    let base = slot.as_mut_ptr();
    for y in 0..h {
        before_row(k, y);
        // SAFETY: the kernel was picked for this CPU; the slot holds the sample (checked
        // above) in the layout the kernel was picked for.
        unsafe {
            let at = |ch: usize| base.add(ch * plane + y * row);
            f(k, y, [at(0), at(1), at(2)]);
        }
    }
    Ok(())
}

impl Augment {
    /// Draws the sample's parameters for a source of `src_size` from `rng` and runs `apply`
    /// with them and the slot writer's f32 store, slot and [`AugmentScratch`] (a fresh one if
    /// the worker's scratch is not ours): what both [`Transform`] entry points do.
    fn with_parts(
        &self,
        rng: &mut SampleRng,
        src_size: (usize, usize),
        out: &mut SlotWriter<'_>,
        apply: impl FnOnce(&AugmentParams, &mut Store, &mut AugmentScratch, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let (store, slot, scratch) = out.parts_with_scratch(SrcType::F32);
        let out_size = (store.spec().width, store.spec().height);
        let p = self.draw(rng, src_size, out_size);
        match scratch.downcast_mut::<AugmentScratch>() {
            Some(s) => apply(&p, store, s, slot),
            None => apply(&p, store, &mut AugmentScratch::new(), slot),
        }
    }
}

/// A dtype mismatch unless `store` takes f32 rows (what the augmentation writes).
fn check_store(store: &Store) -> Result<()> {
    if store.src() == SrcType::F32 {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::DTypeMismatch,
            "augment: the store must take f32 rows",
        ))
    }
}

/// A usage error unless `p` was drawn for a source of `src` and an output of `out`.
fn check_params(p: &AugmentParams, src: (usize, usize), out: (usize, usize)) -> Result<()> {
    if p.src_size == src && p.out_size == out {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "augment: parameters are for {:?} -> {:?}, not {src:?} -> {out:?}",
            p.src_size, p.out_size
        )))
    }
}

/// A usage error unless the slot holds exactly one sample.
fn check_slot(len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "augment: slot of {len} bytes, the sample takes {want}"
        )))
    }
}

impl fmt::Display for Augment {
    /// The spec that [`Augment::from_spec`] parses back (`none` when nothing is on).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = settings::SETTINGS
            .iter()
            .filter_map(|s| (s.show)(&self.cfg))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl Transform for Augment {
    fn apply(
        &self,
        _info: SampleInfo,
        src: &ImageView<'_>,
        rng: &mut SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()> {
        self.with_parts(
            rng,
            (src.width, src.height),
            out,
            |p, store, scratch, slot| self.apply_params(p, src, store, scratch, slot),
        )
    }

    fn name(&self) -> &str {
        "augment"
    }

    fn samples_source(&self) -> bool {
        true
    }

    fn scratch(&self) -> Box<dyn Any + Send> {
        Box::new(AugmentScratch::new())
    }

    fn takes_ycbcr(&self) -> bool {
        self.cfg.ycbcr
    }

    fn apply_ycbcr(
        &self,
        _info: SampleInfo,
        src: &YCbCrView<'_>,
        rng: &mut SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()> {
        self.with_parts(
            rng,
            (src.width(), src.height()),
            out,
            |p, store, scratch, slot| self.apply_ycbcr_params(p, src, store, scratch, slot),
        )
    }
}
