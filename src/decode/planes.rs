//! A YCbCr JPEG decoded to its planes, without colour conversion or chroma upsampling
//! ([`Decoder::decode_ycbcr`]).

use super::jpeg::{jpeg_error, jpeg_scale};
use super::{Decoder, ImageFormat, check_pixels, scratch, sniff, turbo};
use crate::image::{Plane, YCbCrView};
use crate::{Error, ErrorKind, Result};

/// Where [`Decoder::decode_planes`] put a JPEG's planes in its buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlaneLayout {
    /// The (scaled) image size.
    size: (usize, usize),
    subsampling: (usize, usize),
    /// Per plane: offset, width, height (the image's, not TurboJPEG's padded ones), stride.
    planes: [(usize, usize, usize, usize); 3],
}

/// Bytes after each plane that [`Decoder::decode_ycbcr`] hands out: a 64-byte vector load
/// from any sample of the plane stays inside the slice.
pub const PLANE_PAD: usize = 64;

impl Decoder {
    /// Decodes a YCbCr JPEG to its planes without colour conversion or chroma upsampling,
    /// downscaled in the DCT domain as [`decode_reduced`](Self::decode_reduced) would (the luma
    /// plane has the size it would give). `Ok(None)`, having decoded nothing, when `bytes` is a
    /// PNG, or a JPEG whose components are not YCbCr (gray, RGB, CMYK, YCCK), lossless, or
    /// subsampled in a way TurboJPEG has no name for: decode those with `decode_reduced`.
    /// Damaged data follows the [`DecodePolicy`](super::DecodePolicy) as in `decode_reduced`.
    /// Each plane's slice runs [`PLANE_PAD`] bytes past its last row.
    ///
    /// ```
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let v = decoder.decode_ycbcr(&bytes, (100, 50))?.unwrap(); // 1/2 keeps 128x72
    /// assert_eq!((v.width(), v.height(), v.subsampling), (128, 72, (2, 2)));
    /// assert_eq!((v.cb.width, v.cb.height), (64, 36));
    /// // A PNG (told by its signature) is left to `decode_reduced`.
    /// assert!(decoder.decode_ycbcr(b"\x89PNG\r\n\x1a\n", (100, 50))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_ycbcr(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<YCbCrView<'_>>> {
        match self.decode_planes(bytes, min_size)? {
            Some(layout) => self.planes_view(&layout).map(Some),
            None => Ok(None),
        }
    }

    /// The view of the planes that [`Decoder::decode_planes`] laid out.
    pub(crate) fn planes_view(&self, l: &PlaneLayout) -> Result<YCbCrView<'_>> {
        let [y, cb, cr] = l.planes.map(|(at, width, height, stride)| {
            Plane::new(
                &self.planes[at..at + stride * height + PLANE_PAD],
                width,
                height,
                stride,
            )
        });
        match (y, cb, cr) {
            (Some(y), Some(cb), Some(cr)) => YCbCrView::new(y, cb, cr, l.subsampling),
            _ => None,
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "jpeg: unexpected plane sizes for a {}x{} image",
                    l.size.0, l.size.1
                ),
            )
        })
    }

    /// Decodes a YCbCr JPEG's planes into `self.planes` (see
    /// [`Decoder::decode_ycbcr`]), `None` when it has none to give; the view comes from
    /// [`Decoder::planes_view`].
    pub(crate) fn decode_planes(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<PlaneLayout>> {
        self.warned = false;
        if min_size.0 == 0 || min_size.1 == 0 {
            return Err(Error::usage(format!(
                "output size {}x{} is empty",
                min_size.0, min_size.1
            )));
        }
        if sniff(bytes)? != ImageFormat::Jpeg {
            return Ok(None);
        }
        let result = self.decode_planes_inner(bytes, min_size);
        if result.is_err() {
            self.fresh_handle();
        }
        result
    }

    fn decode_planes_inner(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<PlaneLayout>> {
        // Not another file's tables: see markers::borrows_tables.
        if super::markers::borrows_tables(bytes) {
            self.fresh_handle();
        }
        let (header, header_warning) = self.jpeg.header(bytes).map_err(jpeg_error)?;
        self.check_stored("jpeg", (header.width, header.height))?;
        let Some((hs, vs)) = header.ycbcr_subsampling() else {
            return Ok(None);
        };
        let denom = jpeg_scale((header.width, header.height), min_size);
        self.jpeg.set_scale(denom).map_err(jpeg_error)?;
        let (w, h) = (header.width.div_ceil(denom), header.height.div_ceil(denom));
        check_pixels(w, h, 1)?;
        let mut layout = [(0, 0, 0, 0); 3];
        let mut rows = [0; 3];
        let mut at = 0;
        for (c, (slot, rows)) in layout.iter_mut().zip(&mut rows).enumerate() {
            let (stride, height) = turbo::plane_size(c, (w, h), header.subsamp);
            let own = if c == 0 {
                (w, h)
            } else {
                (w.div_ceil(hs), h.div_ceil(vs))
            };
            *slot = (at, own.0, own.1, stride);
            *rows = height;
            at += stride * height + PLANE_PAD;
        }
        let buf = scratch(&mut self.planes, at);
        let (p0, rest) = buf.split_at_mut(layout[1].0);
        let (p1, p2) = rest.split_at_mut(layout[2].0 - layout[1].0);
        let strides = layout.map(|l| l.3);
        let warning = self
            .jpeg
            .decompress_planes(bytes, [p0, p1, p2], strides, rows)
            .map_err(jpeg_error)?;
        if let Some(w) = header_warning.or(warning) {
            self.accept_jpeg_warning(w, bytes)?;
        }
        Ok(Some(PlaneLayout {
            size: (w, h),
            subsampling: (hs, vs),
            planes: layout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodePolicy;
    use crate::decode::testutil::*;
    use image::ExtendedColorType;
    use turbojpeg::PixelFormat;

    #[test]
    fn ycbcr_planes_at_the_reduced_scale_for_every_subsampling() {
        let rgb = u8_pixels(Decoder::new().unwrap().decode(&photo(3), 3, None).unwrap());
        let mut d = Decoder::new().unwrap();
        for (subsamp, factors) in [
            (turbojpeg::Subsamp::None, (1, 1)),
            (turbojpeg::Subsamp::Sub2x1, (2, 1)),
            (turbojpeg::Subsamp::Sub2x2, (2, 2)),
            (turbojpeg::Subsamp::Sub1x2, (1, 2)),
            (turbojpeg::Subsamp::Sub4x1, (4, 1)),
        ] {
            let image = turbojpeg::Image {
                pixels: &rgb[..],
                width: 256,
                pitch: 256 * 3,
                height: 144,
                format: PixelFormat::RGB,
            };
            let bytes = turbojpeg::compress(image, 90, subsamp).unwrap().to_vec();
            // Full size, then the 1/2 scale that keeps 100x60.
            for (min, (w, h)) in [((256, 144), (256, 144)), ((100, 60), (128, 72))] {
                let v = d.decode_ycbcr(&bytes, min).unwrap().unwrap();
                assert_eq!((v.width(), v.height(), v.subsampling), (w, h, factors));
                let c = (w.div_ceil(factors.0), h.div_ceil(factors.1));
                assert_eq!(
                    ((v.cb.width, v.cb.height), (v.cr.width, v.cr.height)),
                    (c, c)
                );
                for p in [v.y, v.cb, v.cr] {
                    assert!(p.data.len() >= (p.height - 1) * p.stride + p.width + PLANE_PAD);
                }
                // The luma plane is libjpeg-turbo's gray decode, exactly.
                let gray = u8_pixels(
                    Decoder::new()
                        .unwrap()
                        .decode_reduced(&bytes, 1, min)
                        .unwrap(),
                );
                let y: Vec<u8> = (0..h)
                    .flat_map(|r| v.y.data[r * v.y.stride..][..w].to_vec())
                    .collect();
                assert_eq!(y, gray, "{factors:?} {min:?}");
            }
        }
        // 1920x1080 for a 256x144 output: the 1/4 scale, 480x270, chroma 240x135.
        let v = d
            .decode_ycbcr(&mosaic_1080p(), (256, 144))
            .unwrap()
            .unwrap();
        assert_eq!(
            (v.width(), v.height(), v.cb.width, v.cb.height),
            (480, 270, 240, 135)
        );
    }

    #[test]
    fn ycbcr_planes_only_for_ycbcr_jpegs() {
        let mut d = Decoder::new().unwrap();
        let gray = encode_jpeg(&[90u8; 16 * 8], 16, 8, PixelFormat::GRAY);
        assert!(d.decode_ycbcr(&gray, (16, 8)).unwrap().is_none());
        let png = encode_png(&[9u8; 4 * 2 * 3], 4, 2, ExtendedColorType::Rgb8);
        assert!(d.decode_ycbcr(&png, (4, 2)).unwrap().is_none());
        let e = d.decode_ycbcr(b"GIF89a", (4, 2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert_eq!(
            d.decode_ycbcr(&photo(0), (0, 2)).unwrap_err().kind(),
            ErrorKind::Usage
        );
        // Damage follows the policy, as on the pixel path; the handle is fine afterwards.
        let jpeg = photo(0);
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let e = d.decode_ycbcr(cut, (256, 144)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert!(e.message().starts_with("jpeg: premature end"), "{e}");
        d.set_policy(DecodePolicy::Lenient);
        assert!(d.decode_ycbcr(cut, (256, 144)).unwrap().is_some());
        assert_eq!(d.warning(), Some("jpeg: premature end of jpeg file"));
        assert!(d.decode_ycbcr(&jpeg, (256, 144)).unwrap().is_some());
        assert_eq!(d.warning(), None);
    }
}
