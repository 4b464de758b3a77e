//! A PNG contact sheet of u8 HWC images, for looking at augmentations.

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::{Error, ErrorKind, Result};

/// Encodes `images` (`n` images of `w × h × c` u8 values, HWC, back to back: a u8 NHWC batch)
/// as one PNG, `cols` images per row, 2-pixel grey gaps. `c` is 1 or 3.
///
/// ```
/// let px = vec![200u8; 3 * 4 * 2 * 3];
/// let png = stoker::augment::png_grid(&px, 3, 4, 2, 3, 2)?;
/// assert_eq!(&png[1..4], b"PNG");
/// assert!(stoker::augment::png_grid(&px, 4, 4, 2, 3, 2).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
pub fn png_grid(
    images: &[u8],
    n: usize,
    w: usize,
    h: usize,
    c: usize,
    cols: usize,
) -> Result<Vec<u8>> {
    if n == 0 || w == 0 || h == 0 || cols == 0 || !(c == 1 || c == 3) {
        return Err(Error::usage(format!(
            "preview: cannot lay out {n} images of {w}x{h}x{c} in {cols} columns"
        )));
    }
    let each = w * h * c;
    if images.len() != n * each {
        return Err(Error::usage(format!(
            "preview: {} values are not {n} images of {w}x{h}x{c}",
            images.len()
        )));
    }
    let gap = 2;
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    if gw > u32::MAX as usize / 4 || gh > u32::MAX as usize / 4 {
        return Err(Error::usage("preview: grid too large"));
    }
    let mut grid = vec![96u8; gw * gh * c];
    for (k, img) in images.chunks_exact(each).enumerate() {
        let (gx, gy) = (gap + (k % cols) * (w + gap), gap + (k / cols) * (h + gap));
        for y in 0..h {
            let dst = ((gy + y) * gw + gx) * c;
            grid[dst..dst + w * c].copy_from_slice(&img[y * w * c..(y + 1) * w * c]);
        }
    }
    let color = if c == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&grid, gw as u32, gh as u32, color)
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("png: {}", e.to_string().to_lowercase()),
            )
            .with_source(e)
        })?;
    Ok(out)
}
