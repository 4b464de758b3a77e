//! CMYK and YCCK JPEGs (Adobe APP14, as Photoshop writes them) to RGB or gray, with the values
//! Pillow gives.
//!
//! libjpeg-turbo decodes both to the four samples the file stores (YCCK through its own
//! YCCK→CMYK step). Adobe stores CMYK inverted, and Pillow reads every CMYK JPEG that way
//! (raw mode `"CMYK;I"`), then converts with its own `cmyk2rgb`: `R = (255 - K) - C (255 - K) / 255`
//! with Pillow's rounding of the product. Gray is the luma of that RGB, as for RGB JPEGs (and as
//! Pillow's own CMYK→L gives).

use super::color::luma;

/// `a * b / 255` rounded as Pillow's `MULDIV255` rounds it (exact for `a, b <= 255`).
fn muldiv255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// The RGB of one pixel of a CMYK JPEG as libjpeg-turbo decodes it (the stored samples, which
/// Adobe inverts), as Pillow gives it.
fn rgb(stored: &[u8]) -> [u8; 3] {
    // Not inverted: c = 255 - stored, and 255 - k is the stored K itself.
    let nk = stored[3] as u32;
    let channel = |s: u8| (nk - muldiv255(255 - s as u32, nk)) as u8;
    [channel(stored[0]), channel(stored[1]), channel(stored[2])]
}

/// Converts the four stored samples per pixel of a CMYK (or YCCK) JPEG, as libjpeg-turbo
/// decodes them to `TJPF_CMYK`, to `channels` (1 or 3) u8 values per pixel: Pillow's RGB, or
/// its luma.
pub(super) fn cmyk_to(stored: &[u8], out: &mut [u8], channels: usize) {
    for (p, o) in stored.chunks_exact(4).zip(out.chunks_exact_mut(channels)) {
        let [r, g, b] = rgb(p);
        if channels == 1 {
            o[0] = luma(r, g, b);
        } else {
            o.copy_from_slice(&[r, g, b]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muldiv255_is_the_rounded_quotient() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                let exact = (a * b) as f64 / 255.0;
                assert_eq!(muldiv255(a, b), exact.round() as u32, "{a} * {b} / 255");
            }
        }
    }

    #[test]
    fn inverted_cmyk_to_rgb_and_gray() {
        // Stored (inverted) samples: 255 is no ink, 0 full ink.
        let stored = [
            255, 255, 255, 255, // no ink: white
            0, 0, 0, 255, // full C, M, Y: black
            255, 255, 255, 0, // full K: black
            0, 255, 255, 255, // full cyan: (0, 255, 255)
            255, 127, 255, 127, // half M, half K
        ];
        let mut out = [0u8; 15];
        cmyk_to(&stored, &mut out, 3);
        // Half magenta on half black: R = B = 127 (255 - 128 ink of K), G = 127 - 127*128/255.
        let g = 127 - (127.0 * 128.0 / 255.0_f64).round() as u8;
        assert_eq!(
            out,
            [255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, g, 127]
        );
        let mut gray = [0u8; 5];
        cmyk_to(&stored, &mut gray, 1);
        let want: Vec<u8> = out.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect();
        assert_eq!(gray[..], want[..]);
    }
}
