//! Colour conversions of decoded samples: RGB to luma, and stored PNG samples to 1 or 3
//! channels of u8.

/// libjpeg-turbo's RGB→gray weights (FIX(0.299), FIX(0.587), FIX(0.114) at 16 bits, rounded):
/// the Y that a JPEG encoder stores, so gray PNGs and gray JPEG decodes agree.
pub(super) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19595 * r as u32 + 38470 * g as u32 + 7471 * b as u32 + 32768) >> 16) as u8
}

/// Converts `stored` samples per pixel of `BYTES` bytes each (native-endian u16 when 2) to
/// `channels` u8 values per pixel: drops alpha, replicates gray, takes luma of RGB.
pub(super) fn convert<const BYTES: usize>(
    raw: &[u8],
    stored: usize,
    out: &mut [u8],
    channels: usize,
) {
    let sample = |p: &[u8], i: usize| -> u8 {
        if BYTES == 1 {
            p[i]
        } else {
            let v = u16::from_ne_bytes([p[2 * i], p[2 * i + 1]]) as u32;
            ((v + 128) / 257) as u8
        }
    };
    let color = stored >= 3;
    for (p, o) in raw
        .chunks_exact(stored * BYTES)
        .zip(out.chunks_exact_mut(channels))
    {
        match (color, channels) {
            (false, _) => o.fill(sample(p, 0)),
            (true, 1) => o[0] = luma(sample(p, 0), sample(p, 1), sample(p, 2)),
            (true, _) => {
                o[0] = sample(p, 0);
                o[1] = sample(p, 1);
                o[2] = sample(p, 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Decoder;
    use crate::decode::testutil::*;
    use image::ExtendedColorType;
    use turbojpeg::PixelFormat;

    #[test]
    fn png_and_jpeg_agree_on_gray() {
        // The same RGB pixels as a PNG and as a (near-lossless) JPEG, both decoded to gray:
        // libjpeg-turbo's Y and our luma of the PNG agree up to the JPEG's rounding.
        let (w, h) = (64, 48);
        let px: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]
            })
            .collect();
        let image = turbojpeg::Image {
            pixels: &px[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(100).unwrap();
        c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
        let jpeg = c.compress_to_vec(image).unwrap();
        let png = encode_png(&px, w as u32, h as u32, ExtendedColorType::Rgb8);
        let mut d = Decoder::new().unwrap();
        let from_jpeg = u8_pixels(d.decode(&jpeg, 1, None).unwrap());
        let from_png = u8_pixels(d.decode(&png, 1, None).unwrap());
        let mad = mean_abs_diff(&from_jpeg, &from_png);
        assert!(mad < 0.6, "mean abs difference {mad}");
        // Other weights (BT.709) would not agree as well.
        let bt709: Vec<u8> = px
            .chunks(3)
            .map(|p| {
                (0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64).round() as u8
            })
            .collect();
        assert!(mean_abs_diff(&from_jpeg, &bt709) > 2.0 * mad);
    }
}
