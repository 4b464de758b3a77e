//! Resizing decoded pixels: the [`Filter`] and [`Decoder::resize`].

use fast_image_resize as fr;
use fast_image_resize::images::{Image as FrImage, ImageRef as FrImageRef};

use super::{Decoder, MAX_PIXELS, check_channels, check_pixels, scratch, view};
use crate::{Error, ErrorKind, ImageView, Pixels, Result};

/// The resampling filter used when the decoded size differs from the requested one.
///
/// ```
/// use stoker::decode::Filter;
/// assert_eq!(Filter::default(), Filter::Bilinear);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Nearest neighbour: fastest, aliases when downscaling.
    Nearest,
    /// Antialiased bilinear (triangle filter widened by the scale factor), like torchvision's
    /// `resize(..., antialias=True)` and Pillow's `BILINEAR`.
    #[default]
    Bilinear,
    /// Antialiased Lanczos3: sharpest, about 3× the cost of bilinear.
    Lanczos3,
}

impl Filter {
    pub(super) fn options(self) -> fr::ResizeOptions {
        let alg = match self {
            Filter::Nearest => fr::ResizeAlg::Nearest,
            Filter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
            Filter::Lanczos3 => fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3),
        };
        fr::ResizeOptions::new().resize_alg(alg).use_alpha(false)
    }
}

impl Decoder {
    /// Resizes decoded pixels (u8 or f32, 1 or 3 channels) to `(width, height)` with the
    /// decoder's [`Filter`], into the decoder's own buffer.
    ///
    /// ```
    /// use stoker::{ImageView, Pixels};
    /// let px: Vec<f32> = (0..4 * 4).map(|i| i as f32).collect();
    /// let src = ImageView::new(4, 4, 1, Pixels::F32(&px)).unwrap();
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let out = decoder.resize(src, 2, 2)?;
    /// assert_eq!((out.width, out.height, out.channels), (2, 2, 1));
    /// assert!(matches!(out.pixels, Pixels::F32(p) if p.len() == 4));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn resize(
        &mut self,
        src: ImageView<'_>,
        width: usize,
        height: usize,
    ) -> Result<ImageView<'_>> {
        let ImageView {
            width: sw,
            height: sh,
            channels,
            pixels,
        } = src;
        check_channels(channels)?;
        if sw == 0 || sh == 0 || width == 0 || height == 0 {
            return Err(Error::usage(format!(
                "cannot resize {sw}x{sh} to {width}x{height}: empty image"
            )));
        }
        let too_large = |_| Error::usage(format!("image size exceeds {MAX_PIXELS} pixels"));
        let n = check_pixels(sw, sh, channels).map_err(too_large)?;
        let out_n = check_pixels(width, height, channels).map_err(too_large)?;
        let len = match pixels {
            Pixels::U8(p) => p.len(),
            Pixels::F32(p) => p.len(),
        };
        if len != n {
            return Err(Error::usage(format!(
                "{len} values do not make a {sw}x{sh}x{channels} image"
            )));
        }
        match pixels {
            Pixels::U8(p) => {
                let pixel = if channels == 1 {
                    fr::PixelType::U8
                } else {
                    fr::PixelType::U8x3
                };
                let out = scratch(&mut self.resized, out_n);
                resize_bytes(
                    &mut self.resizer,
                    &self.options,
                    pixel,
                    (p, sw, sh),
                    (&mut *out, width, height),
                )?;
                Ok(view(width, height, channels, Pixels::U8(out)))
            }
            Pixels::F32(p) => {
                let pixel = if channels == 1 {
                    fr::PixelType::F32
                } else {
                    fr::PixelType::F32x3
                };
                let out = scratch(&mut self.resized_f32, out_n);
                resize_bytes(
                    &mut self.resizer,
                    &self.options,
                    pixel,
                    (bytemuck::cast_slice(p), sw, sh),
                    (bytemuck::cast_slice_mut(&mut *out), width, height),
                )?;
                Ok(view(width, height, channels, Pixels::F32(out)))
            }
        }
    }
}

/// Resizes `src` (bytes, width, height) into `dst`, both of `pixel` type, tightly packed.
pub(super) fn resize_bytes(
    resizer: &mut fr::Resizer,
    options: &fr::ResizeOptions,
    pixel: fr::PixelType,
    src: (&[u8], usize, usize),
    dst: (&mut [u8], usize, usize),
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Decode,
            format!("resize: {}", e.to_string().to_lowercase()),
        )
    };
    // Sizes were checked against MAX_PIXELS, so they fit in u32.
    let src = FrImageRef::new(src.1 as u32, src.2 as u32, src.0, pixel).map_err(|e| fail(&e))?;
    let mut dst =
        FrImage::from_slice_u8(dst.1 as u32, dst.2 as u32, dst.0, pixel).map_err(|e| fail(&e))?;
    resizer
        .resize(&src, &mut dst, options)
        .map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::*;

    #[test]
    fn resize_u8_and_f32() {
        let mut d = Decoder::new().unwrap();
        // A constant image stays constant under every filter.
        let px = vec![77u8; 40 * 30 * 3];
        let fpx = vec![0.25f32; 40 * 30];
        for filter in [Filter::Nearest, Filter::Bilinear, Filter::Lanczos3] {
            d.set_filter(filter);
            let src = ImageView::new(40, 30, 3, Pixels::U8(&px)).unwrap();
            let out = u8_pixels(d.resize(src, 13, 9).unwrap());
            assert_eq!(out, vec![77u8; 13 * 9 * 3], "{filter:?}");
            let src = ImageView::new(40, 30, 1, Pixels::F32(&fpx)).unwrap();
            let out = d.resize(src, 61, 7).unwrap();
            assert_eq!((out.width, out.height, out.channels), (61, 7, 1));
            let Pixels::F32(out) = out.pixels else {
                panic!("expected f32 pixels")
            };
            assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-5), "{filter:?}");
        }
        // f32 RGB: a horizontal ramp stays a ramp (monotonic) after downscaling.
        let ramp: Vec<f32> = (0..32 * 4)
            .flat_map(|i| [(i % 32) as f32, 0.0, -((i % 32) as f32)])
            .collect();
        d.set_filter(Filter::Bilinear);
        let src = ImageView::new(32, 4, 3, Pixels::F32(&ramp)).unwrap();
        let out = d.resize(src, 8, 2).unwrap();
        let Pixels::F32(out) = out.pixels else {
            panic!("expected f32 pixels")
        };
        assert_eq!(out.len(), 8 * 2 * 3);
        for x in 1..8 {
            assert!(out[x * 3] > out[(x - 1) * 3]);
            assert!((out[x * 3] + out[x * 3 + 2]).abs() < 1e-4);
        }
    }

    #[test]
    fn filter_choice_changes_the_output() {
        let jpeg = photo(7);
        let mut d = Decoder::new().unwrap();
        let bilinear = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        d.set_filter(Filter::Nearest);
        let nearest = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        d.set_filter(Filter::Lanczos3);
        let lanczos = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        assert_ne!(bilinear, nearest);
        assert_ne!(bilinear, lanczos);
        // All three are the same picture.
        assert!(mean_abs_diff(&bilinear, &lanczos) < 8.0);
    }
}
