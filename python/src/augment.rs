//! `stoker.Augment`: the Rust `AugmentBuilder` with Keras 2's `ImageDataGenerator` keyword
//! names where one exists (`rotation_range`, `width_shift_range`, `zoom_range`,
//! `horizontal_flip`, `fill_mode`, ...) and the Rust names elsewhere (`noise_std`, ...). Each
//! value keeps the builder's meaning; an unknown keyword is a `TypeError` and a bad value a
//! `ValueError` (`stoker.UsageError`), each naming the argument.

use pyo3::prelude::*;
use stoker::augment::{AugmentBuilder, FillMode, Interpolation};

use crate::errors::{IntoPy, usage};

/// A range given as one number or as two.
#[derive(FromPyObject)]
pub enum Spread {
    One(f64),
    Two((f64, f64)),
}

/// Augmentation settings (see the module docs of `stoker.augment` in Rust): rotation, shift,
/// zoom, flips and random resized crop as one inverse affine map per sample, then contrast,
/// brightness, gaussian and salt-and-pepper noise, all in the pass that writes the batch.
/// Each sample's parameters come from (seed, epoch, index): the same for any worker count.
#[pyclass(frozen, module = "stoker._stoker", name = "Augment")]
pub struct Augment {
    pub inner: stoker::Augment,
}

#[pymethods]
impl Augment {
    /// Keyword names as Keras 2's `ImageDataGenerator`: `rotation_range` (degrees,
    /// counter-clockwise), `width_shift_range` / `height_shift_range` (below 1 a fraction of
    /// the size, an integer >= 1 whole pixels), `zoom_range` (`z` for `[1 - z, 1 + z]`, or
    /// `(lo, hi)`; below 1 magnifies), `horizontal_flip`, `vertical_flip`, `fill_mode`
    /// (`"nearest"`, `"constant"`, `"reflect"`, `"wrap"`), `cval` (source units: 0..255),
    /// `brightness_range` (`(lo, hi)`, factors). stoker's own: `contrast_range`,
    /// `noise_std` (gaussian noise, a fraction of the full range), `salt_pepper`,
    /// `random_resized_crop` (`(scale, ratio)` pairs, torchvision's `RandomResizedCrop`),
    /// `isotropic_zoom`, `interpolation` (`"bilinear"`, `"nearest"`), `ycbcr` (take JPEGs
    /// as their YCbCr planes: faster, not the same bits).
    #[new]
    #[pyo3(signature = (
        *,
        rotation_range = 0.0,
        width_shift_range = 0.0,
        height_shift_range = 0.0,
        zoom_range = None,
        horizontal_flip = false,
        vertical_flip = false,
        fill_mode = "nearest",
        cval = 0.0,
        brightness_range = None,
        contrast_range = None,
        noise_std = 0.0,
        salt_pepper = 0.0,
        random_resized_crop = None,
        isotropic_zoom = false,
        interpolation = "bilinear",
        ycbcr = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        rotation_range: f64,
        width_shift_range: f64,
        height_shift_range: f64,
        zoom_range: Option<Spread>,
        horizontal_flip: bool,
        vertical_flip: bool,
        fill_mode: &str,
        cval: f32,
        brightness_range: Option<(f32, f32)>,
        contrast_range: Option<(f32, f32)>,
        noise_std: f32,
        salt_pepper: f32,
        random_resized_crop: Option<((f64, f64), (f64, f64))>,
        isotropic_zoom: bool,
        interpolation: &str,
        ycbcr: bool,
    ) -> PyResult<Augment> {
        let fill: FillMode = fill_mode.parse().map_err(|_| {
            usage(
                py,
                format!("fill_mode {fill_mode:?}: expected nearest, constant, reflect or wrap"),
            )
        })?;
        let interp = match interpolation {
            "bilinear" => Interpolation::Bilinear,
            "nearest" => Interpolation::Nearest,
            other => {
                return Err(usage(
                    py,
                    format!("interpolation {other:?}: expected bilinear or nearest"),
                ));
            }
        };
        let mut b = AugmentBuilder::default()
            .rotation_range(rotation_range)
            .width_shift_range(width_shift_range)
            .height_shift_range(height_shift_range)
            .horizontal_flip(horizontal_flip)
            .vertical_flip(vertical_flip)
            .fill_mode(fill)
            .cval(cval)
            .noise_std(noise_std)
            .salt_pepper(salt_pepper)
            .isotropic_zoom(isotropic_zoom)
            .interpolation(interp)
            .ycbcr(ycbcr);
        b = match zoom_range {
            None => b,
            Some(Spread::One(z)) => b.zoom_range(1.0 - z, 1.0 + z),
            Some(Spread::Two((lo, hi))) => b.zoom_range(lo, hi),
        };
        if let Some((lo, hi)) = brightness_range {
            b = b.brightness_range(lo, hi);
        }
        if let Some((lo, hi)) = contrast_range {
            b = b.contrast_range(lo, hi);
        }
        if let Some((scale, ratio)) = random_resized_crop {
            b = b.random_resized_crop(scale, ratio);
        }
        Ok(Augment {
            inner: b.build().py(py)?,
        })
    }

    /// The Keras-style preset: rotation 15°, shift 0.1, zoom 0.9–1.1, horizontal flip,
    /// gaussian noise 0.03 (`augment="default"`).
    #[staticmethod]
    fn default() -> Augment {
        Augment {
            inner: stoker::Augment::keras_default(),
        }
    }

    /// An augmentation from a spec such as `"rotation=15,shift=0.1,zoom=0.9:1.1,hflip"`
    /// (the `--augment` of the command line).
    #[staticmethod]
    fn from_spec(py: Python<'_>, spec: &str) -> PyResult<Augment> {
        Ok(Augment {
            inner: stoker::Augment::from_spec(spec).py(py)?,
        })
    }

    /// The spec that `Augment.from_spec` parses back (`"none"` when nothing is on).
    fn spec(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("stoker.Augment.from_spec({:?})", self.inner.to_string())
    }
}
