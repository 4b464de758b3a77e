//! The JPEG paths of a [`Decoder`]: header, DCT-domain scale, decode into the decoder's
//! buffer, and what the [`DecodePolicy`] makes of libjpeg-turbo's warnings.

use super::cmyk::cmyk_to;
use super::turbo::{Jpeg, JpegError};
use super::{DecodePolicy, Decoder, check_pixels, markers, scratch};
use crate::{Error, ErrorKind, Result};

/// The DCT-domain downscale that libjpeg-turbo should apply to a JPEG of `stored` size
/// (width, height) to be resized to `target`: the denominator (1, 2, 4 or 8) of the smallest
/// factor among 1/8, 1/4, 1/2 and 1 whose scaled size (rounded up, as libjpeg-turbo does) is
/// still at least the target in both dimensions.
///
/// ```
/// use stoker::decode::jpeg_scale;
/// assert_eq!(jpeg_scale((1920, 1080), (256, 144)), 4); // decodes at 480×270
/// assert_eq!(jpeg_scale((1920, 1080), (224, 224)), 4);
/// assert_eq!(jpeg_scale((100, 100), (200, 200)), 1); // upscaling: full size
/// ```
pub fn jpeg_scale(stored: (usize, usize), target: (usize, usize)) -> usize {
    [8, 4, 2]
        .into_iter()
        .find(|&d| stored.0.div_ceil(d) >= target.0 && stored.1.div_ceil(d) >= target.1)
        .unwrap_or(1)
}

impl Decoder {
    /// Decodes a JPEG into `self.decoded`, downscaled in the DCT domain towards `size`;
    /// returns the decoded (width, height).
    pub(super) fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
        let result = self.decode_jpeg_inner(bytes, channels, size);
        if result.is_err() {
            self.fresh_handle();
        }
        result
    }

    /// A JPEG's stored (width, height), from its header.
    pub(super) fn jpeg_size(&mut self, bytes: &[u8]) -> Result<(usize, usize)> {
        match self.jpeg.header(bytes) {
            Ok((header, _)) => Ok((header.width, header.height)),
            Err(e) => {
                self.fresh_handle();
                Err(jpeg_error(e))
            }
        }
    }

    /// A new TurboJPEG handle after a failed decode: libjpeg-turbo 3.1's tj3DecompressHeader
    /// leaves the handle mid-header when it fails, and every later header read on that handle
    /// fails too.
    pub(super) fn fresh_handle(&mut self) {
        if let Ok(fresh) = Jpeg::new() {
            self.jpeg = fresh;
        }
    }

    fn decode_jpeg_inner(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
        // Not another file's tables: see markers::borrows_tables.
        if super::markers::borrows_tables(bytes) {
            self.fresh_handle();
        }
        let (header, header_warning) = self.jpeg.header(bytes).map_err(jpeg_error)?;
        let stored = (header.width, header.height);
        self.check_stored("jpeg", stored)?;
        let denom = match size {
            // libjpeg-turbo cannot scale lossless JPEGs.
            Some(target) if !header.lossless => jpeg_scale(stored, target),
            _ => 1,
        };
        self.jpeg.set_scale(denom).map_err(jpeg_error)?;
        let (w, h) = (stored.0.div_ceil(denom), stored.1.div_ceil(denom));
        let n = check_pixels(w, h, channels)?;
        let out = scratch(&mut self.decoded, n);
        // tj3Decompress8 reports a warning (corrupt or missing scan data) after it has
        // written every pixel: the policy decides what it makes of that.
        let warning = if header.cmyk() {
            // CMYK and YCCK decode to CMYK only: the four samples go to the raw buffer first.
            let stored = scratch(&mut self.raw, check_pixels(w, h, 4)?);
            let warning = self.jpeg.decompress(bytes, stored, (w, h, 4));
            cmyk_to(stored, out, channels);
            warning
        } else {
            self.jpeg.decompress(bytes, out, (w, h, channels))
        }
        .map_err(jpeg_error)?;
        if let Some(w) = header_warning.or(warning) {
            self.accept_jpeg_warning(w, bytes)?;
        }
        Ok((w, h))
    }

    /// Applies the policy to a JPEG that decoded with a warning: records the warning, or
    /// makes it the error.
    pub(super) fn accept_jpeg_warning(&mut self, w: JpegError, bytes: &[u8]) -> Result<()> {
        let truncated = w.message == TRUNCATED || markers::is_truncated(bytes);
        let accept = match self.policy {
            DecodePolicy::Strict => false,
            DecodePolicy::Tolerant => !truncated,
            DecodePolicy::Lenient => true,
        };
        if !accept {
            if truncated && w.message != TRUNCATED {
                // The first warning was about corrupt data; the cut is what makes it fatal.
                let message = format!("jpeg: {TRUNCATED} (first warning: {})", w.message);
                return Err(Error::new(ErrorKind::Decode, message).with_source(w));
            }
            return Err(jpeg_error(w));
        }
        self.set_warning(format_args!("jpeg: {}", w.message));
        Ok(())
    }
}

/// libjpeg's message for a file that ends before its last scan does.
const TRUNCATED: &str = "premature end of jpeg file";

pub(super) fn jpeg_error(e: JpegError) -> Error {
    Error::new(ErrorKind::Decode, format!("jpeg: {}", e.message)).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::color::luma;
    use crate::decode::testutil::*;
    use crate::{ImageView, Pixels};
    use turbojpeg::PixelFormat;

    #[test]
    fn jpeg_scale_picks_smallest_factor_that_covers_target() {
        assert_eq!(jpeg_scale((1920, 1080), (256, 144)), 4);
        assert_eq!(jpeg_scale((512, 288), (256, 144)), 2);
        assert_eq!(jpeg_scale((300, 200), (256, 144)), 1);
        assert_eq!(jpeg_scale((256, 144), (512, 288)), 1);
        assert_eq!(jpeg_scale((2048, 1152), (256, 144)), 8);
        // Rounding up: 2041 / 8 = 255.1 -> 256 columns, enough for 1/8.
        assert_eq!(jpeg_scale((2041, 1152), (256, 144)), 8);
        assert_eq!(jpeg_scale((2040, 1152), (256, 144)), 4);
        // Both dimensions must be covered.
        assert_eq!(jpeg_scale((1920, 300), (256, 144)), 2);
    }

    #[test]
    fn dct_downscale_is_close_to_full_decode_and_resize() {
        let jpeg = mosaic_1080p();
        let mut d = Decoder::new().unwrap();
        let full = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
        assert_eq!(full.len(), 1920 * 1080 * 3);
        let full_view = ImageView::new(1920, 1080, 3, Pixels::U8(&full)).unwrap();
        let reference = u8_pixels(d.resize(full_view, 256, 144).unwrap());

        let fast = d.decode(&jpeg, 3, Some((256, 144))).unwrap();
        assert_eq!((fast.width, fast.height, fast.channels), (256, 144, 3));
        let fast = u8_pixels(fast);
        assert_eq!(d.jpeg.denom(), 4);
        let mad = mean_abs_diff(&fast, &reference);
        assert!(mad < 2.0, "mean abs difference {mad}");
    }

    #[test]
    fn gray_jpeg_decode_is_the_luma_of_rgb() {
        let mut d = Decoder::new().unwrap();
        let bytes = photo(5);
        let rgb = u8_pixels(d.decode(&bytes, 3, None).unwrap());
        let gray = d.decode(&bytes, 1, None).unwrap();
        assert_eq!((gray.width, gray.height, gray.channels), (256, 144, 1));
        let gray = u8_pixels(gray);
        let luma_of_rgb: Vec<u8> = rgb.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect();
        let mad = mean_abs_diff(&gray, &luma_of_rgb);
        assert!(mad < 1.0, "mean abs difference {mad}");
        // Resized gray output has the requested shape.
        let small = d.decode(&bytes, 1, Some((100, 50))).unwrap();
        assert_eq!((small.width, small.height, small.channels), (100, 50, 1));
    }

    #[test]
    fn gray_jpeg_decodes_to_replicated_rgb() {
        let (w, h) = (40, 24);
        let px: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        let jpeg = encode_jpeg(&px, w, h, PixelFormat::GRAY);
        let mut d = Decoder::new().unwrap();
        let gray = u8_pixels(d.decode(&jpeg, 1, None).unwrap());
        let rgb = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
        assert_eq!(rgb.len(), gray.len() * 3);
        for (p, &g) in rgb.chunks(3).zip(&gray) {
            assert_eq!(p, [g, g, g]);
        }
    }

    /// The u8 payload and shape of a C-order NPY file, parsed by hand.
    fn read_npy(bytes: &[u8]) -> (String, Vec<usize>, &[u8]) {
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let (len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            _ => (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            ),
        };
        let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
        assert!(header.contains("'fortran_order': False"), "{header}");
        let descr = header.split("'descr': '").nth(1).unwrap();
        let descr = descr[..descr.find('\'').unwrap()].to_string();
        let shape = header.split("'shape': (").nth(1).unwrap();
        let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        (descr, shape, &bytes[start + len..])
    }

    #[test]
    fn npy_fixtures_equal_the_decoded_jpeg_fixtures() {
        let manifest = String::from_utf8(fixture("manifest.csv")).unwrap();
        let mut lines = manifest.lines();
        assert_eq!(lines.next(), Some("path,label"));
        let samples: Vec<(&str, i64)> = lines
            .map(|l| {
                let (path, label) = l.split_once(',').unwrap();
                (path, label.parse().unwrap())
            })
            .collect();
        assert_eq!(samples.len(), 32);
        let mut d = Decoder::new().unwrap();
        for shard in 0..2 {
            let images = fixture(&format!("npy/images-{shard:03}.npy"));
            let labels = fixture(&format!("npy/labels-{shard:03}.npy"));
            let (descr, shape, data) = read_npy(&images);
            assert_eq!(descr, "|u1");
            assert_eq!(shape, [16, 144, 256, 3]);
            let (ldescr, lshape, ldata) = read_npy(&labels);
            assert_eq!((ldescr.as_str(), lshape.as_slice()), ("<i8", &[16][..]));
            let row = 144 * 256 * 3;
            for i in 0..16 {
                let (path, label) = samples[shard * 16 + i];
                let stored = i64::from_le_bytes(ldata[i * 8..i * 8 + 8].try_into().unwrap());
                assert_eq!(stored, label, "{path}");
                let decoded = u8_pixels(d.decode(&fixture(path), 3, None).unwrap());
                assert!(
                    decoded == data[i * row..(i + 1) * row],
                    "{path}: pixels differ"
                );
            }
        }
    }
}
