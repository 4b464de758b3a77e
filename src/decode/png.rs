//! The PNG paths of a [`Decoder`]: whole images through the `image` crate, and the rows of a
//! truncated one under [`DecodePolicy::Lenient`](super::DecodePolicy::Lenient).

use std::io::Cursor;

use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder};

use super::color::convert;
use super::{DecodePolicy, Decoder, check_pixels, scratch};
use crate::{Error, ErrorKind, Result};

impl Decoder {
    /// Decodes a PNG into `self.decoded` as `channels` u8 values per pixel; returns its size.
    /// Under [`DecodePolicy::Lenient`], a PNG cut inside its image data gives the rows that
    /// decode and gray (128) below them, with a warning, as Pillow's `LOAD_TRUNCATED_IMAGES`.
    pub(super) fn decode_png(&mut self, bytes: &[u8], channels: usize) -> Result<(usize, usize)> {
        match self.decode_png_whole(bytes, channels) {
            Err(e) if self.policy == DecodePolicy::Lenient => {
                self.decode_png_rows(bytes, channels).ok_or(e)
            }
            r => r,
        }
    }

    /// The rows of a truncated, non-interlaced PNG that decode (at least one), the rest gray;
    /// `None` when the image is whole, interlaced, above the stored-size limit, or no row
    /// decodes.
    fn decode_png_rows(&mut self, bytes: &[u8], channels: usize) -> Option<(usize, usize)> {
        let mut d = png::Decoder::new(Cursor::new(bytes));
        d.set_transformations(png::Transformations::EXPAND);
        let mut reader = d.read_info().ok()?;
        let info = reader.info();
        let (w, h) = (info.width as usize, info.height as usize);
        if info.interlaced || w == 0 || h == 0 || self.check_stored("png", (w, h)).is_err() {
            return None;
        }
        let n = check_pixels(w, h, channels).ok()?;
        let (color, depth) = reader.output_color_type();
        let stored = color.samples();
        let wide = depth == png::BitDepth::Sixteen;
        let out = scratch(&mut self.decoded, n);
        let mut row_ne = Vec::new();
        let mut rows = 0;
        while rows < h {
            let Ok(Some(row)) = reader.next_row() else {
                break;
            };
            let dst = &mut out[rows * w * channels..(rows + 1) * w * channels];
            if wide {
                // PNG stores 16-bit samples big-endian; `convert` reads native-endian pairs.
                row_ne.clear();
                row_ne.extend(
                    row.data()
                        .chunks_exact(2)
                        .flat_map(|b| u16::from_be_bytes([b[0], b[1]]).to_ne_bytes()),
                );
                convert::<2>(&row_ne, stored, dst, channels);
            } else {
                convert::<1>(row.data(), stored, dst, channels);
            }
            rows += 1;
        }
        if rows == 0 || rows == h {
            return None;
        }
        out[rows * w * channels..].fill(128);
        self.set_warning(format_args!(
            "png: truncated image data: {rows} of {h} rows decoded, the rest gray"
        ));
        Some((w, h))
    }

    /// Decodes a whole PNG through the `image` crate.
    fn decode_png_whole(&mut self, bytes: &[u8], channels: usize) -> Result<(usize, usize)> {
        let png = PngDecoder::with_limits(Cursor::new(bytes), image::Limits::default())
            .map_err(png_error)?;
        let (w, h) = png.dimensions();
        let (w, h) = (w as usize, h as usize);
        if w == 0 || h == 0 {
            return Err(Error::new(ErrorKind::Decode, "png: empty image"));
        }
        self.check_stored("png", (w, h))?;
        let n = check_pixels(w, h, channels)?;
        let color = png.color_type();
        let raw_len = usize::try_from(png.total_bytes())
            .map_err(|_| Error::new(ErrorKind::Decode, "png: image too large"))?;
        if matches!((color, channels), (ColorType::L8, 1) | (ColorType::Rgb8, 3)) {
            png.read_image(scratch(&mut self.decoded, n))
                .map_err(png_error)?;
            return Ok((w, h));
        }
        let (stored, wide) = match color {
            ColorType::L8 => (1, false),
            ColorType::La8 => (2, false),
            ColorType::Rgb8 => (3, false),
            ColorType::Rgba8 => (4, false),
            ColorType::L16 => (1, true),
            ColorType::La16 => (2, true),
            ColorType::Rgb16 => (3, true),
            ColorType::Rgba16 => (4, true),
            other => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("png: unsupported colour type {other:?}"),
                ));
            }
        };
        let raw = scratch(&mut self.raw, raw_len);
        png.read_image(raw).map_err(png_error)?;
        let out = scratch(&mut self.decoded, n);
        if wide {
            convert::<2>(raw, stored, out, channels);
        } else {
            convert::<1>(raw, stored, out, channels);
        }
        Ok((w, h))
    }
}

/// A PNG's stored (width, height), from its IHDR chunk (the first, as the format requires).
pub(super) fn png_size(bytes: &[u8]) -> Result<(usize, usize)> {
    let be = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    match (bytes.get(12..16), be(16), be(20)) {
        (Some(b"IHDR"), Some(w), Some(h)) if w > 0 && h > 0 => Ok((w, h)),
        (Some(b"IHDR"), Some(_), Some(_)) => Err(Error::new(ErrorKind::Decode, "png: empty image")),
        _ => Err(Error::new(ErrorKind::Decode, "png: no image header (ihdr)")),
    }
}

fn png_error(e: image::ImageError) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("png: {}", e.to_string().to_lowercase()),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::color::luma;
    use crate::decode::testutil::*;
    use image::ExtendedColorType;

    #[test]
    fn png_decodes_to_the_pixels_written() {
        let (w, h) = (7usize, 5usize);
        let n = w * h;
        let rgb: Vec<u8> = (0..n * 3).map(|i| (i * 37 % 256) as u8).collect();
        let gray: Vec<u8> = (0..n).map(|i| (i * 53 % 256) as u8).collect();
        let rgba: Vec<u8> = rgb
            .chunks(3)
            .enumerate()
            .flat_map(|(i, p)| [p[0], p[1], p[2], (i * 11) as u8])
            .collect();
        let gray_alpha: Vec<u8> = gray.iter().flat_map(|&g| [g, 255 - g]).collect();
        // 16-bit samples: v * 257 is exactly v, others round to the nearest 8-bit level.
        let wide = |v: &[u8], tweak: u16| -> Vec<u8> {
            v.iter()
                .enumerate()
                .flat_map(|(i, &x)| {
                    let s = x as u16 * 257;
                    let s = if i % 2 == 0 {
                        s
                    } else {
                        s.saturating_sub(tweak)
                    };
                    s.to_ne_bytes()
                })
                .collect()
        };
        let rgb16 = wide(&rgb, 128);
        let gray16 = wide(&gray, 100);
        let rgba16 = wide(&rgba, 0);
        let to_gray =
            |v: &[u8]| -> Vec<u8> { v.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect() };
        let to_rgb = |v: &[u8]| -> Vec<u8> { v.iter().flat_map(|&g| [g, g, g]).collect() };
        let (w32, h32) = (w as u32, h as u32);
        let cases = [
            (
                "rgb8",
                encode_png(&rgb, w32, h32, ExtendedColorType::Rgb8),
                &rgb,
            ),
            (
                "rgba8",
                encode_png(&rgba, w32, h32, ExtendedColorType::Rgba8),
                &rgb,
            ),
            (
                "l8",
                encode_png(&gray, w32, h32, ExtendedColorType::L8),
                &gray,
            ),
            (
                "la8",
                encode_png(&gray_alpha, w32, h32, ExtendedColorType::La8),
                &gray,
            ),
            (
                "rgb16",
                encode_png(&rgb16, w32, h32, ExtendedColorType::Rgb16),
                &rgb,
            ),
            (
                "rgba16",
                encode_png(&rgba16, w32, h32, ExtendedColorType::Rgba16),
                &rgb,
            ),
            (
                "l16",
                encode_png(&gray16, w32, h32, ExtendedColorType::L16),
                &gray,
            ),
        ];
        let mut d = Decoder::new().unwrap();
        for (name, png, expected) in &cases {
            let colour = expected.len() == n * 3;
            let (want3, want1) = if colour {
                ((*expected).clone(), to_gray(expected))
            } else {
                (to_rgb(expected), (*expected).clone())
            };
            let img = d.decode(png, 3, None).unwrap();
            assert_eq!((img.width, img.height, img.channels), (w, h, 3), "{name}");
            assert_eq!(u8_pixels(img), want3, "{name} as rgb");
            let img = d.decode(png, 1, None).unwrap();
            assert_eq!(u8_pixels(img), want1, "{name} as gray");
            let img = d.decode(png, 3, Some((3, 2))).unwrap();
            assert_eq!((img.width, img.height, img.channels), (3, 2, 3), "{name}");
        }
    }
}
