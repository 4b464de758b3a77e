//! Helpers shared by the decode tests.

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use turbojpeg::PixelFormat;

use super::Decoder;
use crate::{ErrorKind, ImageView, Pixels};

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

pub(super) fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
}

pub(super) fn photo(n: usize) -> Vec<u8> {
    let class = ["a", "b", "c", "d"][n % 4];
    fixture(&format!("photos-256x144/class-{class}/photo-{n:02}.jpg"))
}

pub(super) fn u8_pixels(img: ImageView<'_>) -> Vec<u8> {
    match img.pixels {
        Pixels::U8(p) => p.to_vec(),
        Pixels::F32(_) => panic!("expected u8 pixels"),
    }
}

pub(super) fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
    sum as f64 / a.len() as f64
}

pub(super) fn encode_jpeg(px: &[u8], w: usize, h: usize, format: PixelFormat) -> Vec<u8> {
    let image = turbojpeg::Image {
        pixels: px,
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    let subsamp = if format == PixelFormat::GRAY {
        turbojpeg::Subsamp::Gray
    } else {
        turbojpeg::Subsamp::Sub2x2
    };
    turbojpeg::compress(image, 90, subsamp).unwrap().to_vec()
}

pub(super) fn encode_png(px: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(px, w, h, color)
        .unwrap();
    out
}

/// A 1920×1080 JPEG of real photographic content: a mosaic of the 256×144 fixtures.
pub(super) fn mosaic_1080p() -> Vec<u8> {
    let (w, h) = (1920, 1080);
    let mut d = Decoder::new().unwrap();
    let mut px = vec![0u8; w * h * 3];
    for ty in 0..h.div_ceil(144) {
        for tx in 0..w.div_ceil(256) {
            let tile = u8_pixels(d.decode(&photo((ty * 8 + tx) % 16), 3, None).unwrap());
            for y in 0..144.min(h - ty * 144) {
                let cols = 256.min(w - tx * 256);
                let dst = ((ty * 144 + y) * w + tx * 256) * 3;
                px[dst..dst + cols * 3].copy_from_slice(&tile[y * 256 * 3..][..cols * 3]);
            }
        }
    }
    encode_jpeg(&px, w, h, PixelFormat::RGB)
}

/// Asserts that `bytes` fail to decode with kind Decode and a lowercase message, and that
/// the decoder still decodes a good JPEG (and PNG) correctly afterwards.
pub(super) fn assert_decode_error(d: &mut Decoder, bytes: &[u8], what: &str) -> String {
    let message = match d.decode(bytes, 3, Some((64, 36))) {
        Ok(_) => panic!("{what}: decoded without error"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Decode, "{what}: {e}");
            assert_eq!(e.message(), e.message().to_lowercase(), "{what}");
            e.message().to_string()
        }
    };
    let good = photo(1);
    let expected = u8_pixels(
        Decoder::new()
            .unwrap()
            .decode(&good, 3, Some((64, 36)))
            .unwrap(),
    );
    let after = d.decode(&good, 3, Some((64, 36)));
    assert_eq!(
        after.map(u8_pixels).ok(),
        Some(expected),
        "decoding after {what}"
    );
    message
}
