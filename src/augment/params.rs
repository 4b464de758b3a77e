//! One sample's drawn augmentation parameters, and how they are drawn.

use std::fmt;

use super::Config;
use crate::rng::SampleRng;

/// The parameters of one sample: recordable (Debug, Display) and replayable with
/// [`Augment::apply_params`](super::Augment::apply_params). Conventions: see the
/// [module docs](super).
///
/// ```
/// use stoker::augment::AugmentParams;
/// let p = AugmentParams::identity((256, 144), (128, 72));
/// assert!(p.is_identity());
/// assert_eq!(p.crop, [0.0, 0.0, 256.0, 144.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentParams {
    /// Decoded image size (width, height).
    pub src_size: (usize, usize),
    /// Output size (width, height).
    pub out_size: (usize, usize),
    /// The frame in source pixels: x, y, width, height (the whole image without a crop).
    pub crop: [f64; 4],
    /// Counter-clockwise rotation about the output centre, in degrees.
    pub rotation: f64,
    /// Content shift right and down, in output pixels.
    pub shift: (f64, f64),
    /// Zoom factors (x, y); `< 1` magnifies.
    pub zoom: (f64, f64),
    /// Mirror left-right.
    pub hflip: bool,
    /// Mirror top-bottom.
    pub vflip: bool,
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor about mid-grey.
    pub contrast: f32,
    /// Gaussian noise std, as a fraction of the full range.
    pub noise_std: f32,
    /// Salt-and-pepper probability per value.
    pub salt_pepper: f32,
    /// Seed of the per-value noise.
    pub noise_seed: u32,
}

impl AugmentParams {
    /// No change: the whole source stretched to the output.
    pub fn identity(src_size: (usize, usize), out_size: (usize, usize)) -> AugmentParams {
        AugmentParams {
            src_size,
            out_size,
            crop: [0.0, 0.0, src_size.0 as f64, src_size.1 as f64],
            rotation: 0.0,
            shift: (0.0, 0.0),
            zoom: (1.0, 1.0),
            hflip: false,
            vflip: false,
            brightness: 1.0,
            contrast: 1.0,
            noise_std: 0.0,
            salt_pepper: 0.0,
            noise_seed: 0,
        }
    }

    /// Whether these parameters change nothing beyond the stretch to the output size.
    ///
    /// ```
    /// let mut p = stoker::augment::AugmentParams::identity((4, 4), (4, 4));
    /// p.vflip = true;
    /// assert!(!p.is_identity());
    /// ```
    pub fn is_identity(&self) -> bool {
        AugmentParams {
            noise_seed: 0,
            ..self.clone()
        } == AugmentParams::identity(self.src_size, self.out_size)
    }
}

impl fmt::Display for AugmentParams {
    /// One line: `rot=+3.20° shift=(+1.0,-2.5) zoom=(0.950,1.020) flip=h- crop=... ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rot={:+.2}° shift=({:+.1},{:+.1}) zoom=({:.3},{:.3}) flip={}{} crop=({:.1},{:.1},{:.1}x{:.1}) \
             brightness={:.3} contrast={:.3} noise={:.3} sp={:.4} src={}x{} out={}x{}",
            self.rotation,
            self.shift.0,
            self.shift.1,
            self.zoom.0,
            self.zoom.1,
            if self.hflip { 'h' } else { '-' },
            if self.vflip { 'v' } else { '-' },
            self.crop[0],
            self.crop[1],
            self.crop[2],
            self.crop[3],
            self.brightness,
            self.contrast,
            self.noise_std,
            self.salt_pepper,
            self.src_size.0,
            self.src_size.1,
            self.out_size.0,
            self.out_size.1,
        )
    }
}

fn uniform(rng: &mut SampleRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

/// A shift in output pixels: fraction of `size` (r < 1) or whole pixels in `-r..=r`.
fn shift(rng: &mut SampleRng, r: f64, size: usize) -> f64 {
    if r == 0.0 {
        0.0
    } else if r < 1.0 {
        uniform(rng, -r, r) * size as f64
    } else {
        rng.below(2 * r as u64 + 1) as f64 - r
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and log-uniform
/// ratio, else a central crop at the clamped ratio.
fn crop(rng: &mut SampleRng, scale: (f64, f64), ratio: (f64, f64), w: f64, h: f64) -> [f64; 4] {
    let area = w * h;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let r = uniform(rng, lr0, lr1).exp();
        let cw = (target * r).sqrt().round();
        let ch = (target / r).sqrt().round();
        if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
            let x = rng.below((w - cw) as u64 + 1) as f64;
            let y = rng.below((h - ch) as u64 + 1) as f64;
            return [x, y, cw, ch];
        }
    }
    let in_ratio = w / h;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, (w / ratio.0).round())
    } else if in_ratio > ratio.1 {
        ((h * ratio.1).round(), h)
    } else {
        (w, h)
    };
    [((w - cw) / 2.0).floor(), ((h - ch) / 2.0).floor(), cw, ch]
}

/// Draws in a fixed order: crop, rotation, shifts, zoom, flips, brightness, contrast, noise
/// seed. Disabled settings draw nothing.
pub(super) fn draw(
    c: &Config,
    rng: &mut SampleRng,
    src_size: (usize, usize),
    out_size: (usize, usize),
) -> AugmentParams {
    let mut p = AugmentParams::identity(src_size, out_size);
    if let Some((scale, ratio)) = c.crop {
        p.crop = crop(rng, scale, ratio, src_size.0 as f64, src_size.1 as f64);
    }
    if c.rotation > 0.0 {
        p.rotation = uniform(rng, -c.rotation, c.rotation);
    }
    p.shift = (
        shift(rng, c.width_shift, out_size.0),
        shift(rng, c.height_shift, out_size.1),
    );
    if c.zoom != (1.0, 1.0) {
        let zx = uniform(rng, c.zoom.0, c.zoom.1);
        let zy = if c.isotropic {
            zx
        } else {
            uniform(rng, c.zoom.0, c.zoom.1)
        };
        p.zoom = (zx, zy);
    }
    if c.hflip {
        p.hflip = rng.next_u64() >> 63 == 1;
    }
    if c.vflip {
        p.vflip = rng.next_u64() >> 63 == 1;
    }
    if c.brightness != (1.0, 1.0) {
        let (lo, hi) = c.brightness;
        p.brightness = uniform(rng, lo as f64, hi as f64) as f32;
    }
    if c.contrast != (1.0, 1.0) {
        let (lo, hi) = c.contrast;
        p.contrast = uniform(rng, lo as f64, hi as f64) as f32;
    }
    p.noise_std = c.noise_std;
    p.salt_pepper = c.salt_pepper;
    if c.noise_std > 0.0 || c.salt_pepper > 0.0 {
        p.noise_seed = (rng.next_u64() >> 32) as u32;
    }
    p
}
