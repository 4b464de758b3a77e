//! The inverse affine map: output pixel → source pixel, composed once per sample.

use super::AugmentParams;

/// `(cos, sin)` of `degrees`, exact at multiples of 90° (so quarter turns permute pixels
/// exactly).
fn cos_sin(degrees: f64) -> (f64, f64) {
    let r = degrees.rem_euclid(360.0);
    if r == 0.0 {
        (1.0, 0.0)
    } else if r == 90.0 {
        (0.0, 1.0)
    } else if r == 180.0 {
        (-1.0, 0.0)
    } else if r == 270.0 {
        (0.0, -1.0)
    } else {
        let (s, c) = degrees.to_radians().sin_cos();
        (c, s)
    }
}

/// The inverse map `[a, b, c, d, e, f]` of `p`: output pixel `(x, y)` (integer indices) reads
/// source position `(a·x + b·y + c, d·x + e·y + f)`, in source pixel indices (pixel centres at
/// integers). Composition, output to source: undo the shift, the rotation (about the output
/// centre), the zoom, the flips, then scale the output frame onto the crop.
///
/// ```
/// use stoker::augment::{inverse_map, AugmentParams};
/// let mut p = AugmentParams::identity((4, 4), (4, 4));
/// assert_eq!(inverse_map(&p), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
/// p.hflip = true;
/// assert_eq!(inverse_map(&p), [-1.0, 0.0, 3.0, 0.0, 1.0, 0.0]); // x -> 3 - x
/// ```
pub fn inverse_map(p: &AugmentParams) -> [f64; 6] {
    let (w, h) = (p.out_size.0 as f64, p.out_size.1 as f64);
    let [x0, y0, cw, ch] = p.crop;
    let (cos, sin) = cos_sin(p.rotation);
    let fx = if p.hflip { -1.0 } else { 1.0 };
    let fy = if p.vflip { -1.0 } else { 1.0 };
    let ax = cw / w * fx * p.zoom.0;
    let ay = ch / h * fy * p.zoom.1;
    // Centred output coordinates of pixel (0, 0), with the shift undone.
    let u0 = 0.5 - w / 2.0 - p.shift.0;
    let v0 = 0.5 - h / 2.0 - p.shift.1;
    let (cx, cy) = (x0 + cw / 2.0 - 0.5, y0 + ch / 2.0 - 0.5);
    [
        ax * cos,
        -ax * sin,
        ax * (cos * u0 - sin * v0) + cx,
        ay * sin,
        ay * cos,
        ay * (sin * u0 + cos * v0) + cy,
    ]
}
