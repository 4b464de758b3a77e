//! Files that real data sets hold and that Pillow 13 decodes or refuses: CMYK and YCCK JPEGs,
//! JPEGs with damaged header segments. The files and Pillow's verdict on each (its pixels, or its error) are in
//! `fixtures/decode/`, made by `tools/make-decode-fixtures.py`; these tests need no Python.

use stoker::decode::{DecodePolicy, Decoder};
use stoker::source::{NpySource, Raw, Source};
use stoker::{Error, Pixels};

const DIR: &str = "fixtures/decode";

fn file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

/// What `tools/make-decode-fixtures.py` recorded of Pillow's `Image.open(name).load()`.
fn pillow_verdict(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{DIR}/pillow.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all["files"][name].clone()
}

/// Pillow's RGB pixels of `name`: (width, height, values).
fn pillow_rgb(name: &str) -> (usize, usize, Vec<u8>) {
    let stem = name.rsplit_once('.').unwrap().0;
    let src = NpySource::open(format!("{DIR}/{stem}.pillow.npy"), None).unwrap();
    let mut buf = Vec::new();
    let Raw::Pixels(v) = src.get(0, &mut buf).unwrap().raw else {
        panic!("pixels expected")
    };
    let Pixels::U8(p) = v.pixels else {
        panic!("u8 expected")
    };
    assert_eq!(v.channels, 3);
    (v.width, v.height, p.to_vec())
}

fn u8s(img: stoker::ImageView<'_>) -> (usize, usize, Vec<u8>) {
    let Pixels::U8(p) = img.pixels else {
        panic!("u8 expected")
    };
    (img.width, img.height, p.to_vec())
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.abs_diff(y) as f64)
        .sum::<f64>()
        / a.len() as f64
}

/// Gray as stoker (and Pillow's RGB→L) weighs RGB: libjpeg-turbo's luma.
fn luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .map(|p| {
            ((19595 * p[0] as u32 + 38470 * p[1] as u32 + 7471 * p[2] as u32 + 32768) >> 16) as u8
        })
        .collect()
}

fn decode_error(d: &mut Decoder, bytes: &[u8], size: Option<(usize, usize)>) -> Error {
    match d.decode(bytes, 3, size) {
        Ok(img) => panic!("decoded to {}x{}", img.width, img.height),
        Err(e) => e,
    }
}

#[test]
fn cmyk_and_ycck_jpegs_decode_to_pillows_pixels() {
    let mut rgbs = Vec::new();
    for (name, transform) in [("cmyk.jpg", 0), ("ycck.jpg", 2)] {
        // The files are what they say: Pillow reads a CMYK JPEG with that Adobe transform.
        let verdict = pillow_verdict(name);
        assert_eq!(verdict["mode"], "CMYK", "{name}");
        assert_eq!(verdict["adobe_transform"], transform, "{name}");
        let bytes = file(name);
        let (w, h, want) = pillow_rgb(name);
        let mut d = Decoder::new().unwrap();
        let (gw, gh, rgb) = u8s(d.decode(&bytes, 3, None).unwrap());
        assert_eq!((gw, gh), (w, h), "{name}");
        assert_eq!(d.warning(), None, "{name}");
        let mad = mean_abs_diff(&rgb, &want);
        assert!(mad <= 2.0, "{name}: mean abs difference from Pillow {mad}");
        // One channel: the luma of that RGB.
        let (_, _, gray) = u8s(d.decode(&bytes, 1, None).unwrap());
        let mad = mean_abs_diff(&gray, &luma(&want));
        assert!(mad <= 2.0, "{name}: gray, mean abs difference {mad}");
        // Resized and DCT-reduced decodes take the same path.
        let (sw, sh, small) = u8s(d.decode(&bytes, 3, Some((20, 12))).unwrap());
        assert_eq!((sw, sh, small.len()), (20, 12, 20 * 12 * 3));
        let (rw, rh, _) = u8s(d.decode_reduced(&bytes, 1, (20, 12)).unwrap());
        assert_eq!((rw, rh), (25, 15), "{name}: the 1/2 scale keeps 20x12");
        // The YCbCr plane path has no planes to give: it leaves these to the pixel path.
        assert!(
            d.decode_ycbcr(&bytes, (20, 12)).unwrap().is_none(),
            "{name}"
        );
        rgbs.push(rgb);
    }
    // Both hold the same picture: the YCCK file went through YCCK -> CMYK -> RGB.
    let mad = mean_abs_diff(&rgbs[0], &rgbs[1]);
    assert!(mad < 4.0, "cmyk and ycck decodes differ by {mad}");
}

#[test]
fn damaged_header_segments_decode_as_pillow_reads_them() {
    for (name, extraneous) in [
        ("junk-between-segments.jpg", 13),
        ("app14-cut.jpg", 5),
        ("app13-short.jpg", 12),
    ] {
        assert_eq!(
            pillow_verdict(name)["mode"],
            "RGB",
            "{name}: Pillow decodes it"
        );
        let bytes = file(name);
        let (w, h, want) = pillow_rgb(name);
        let mut d = Decoder::new().unwrap();
        let (gw, gh, rgb) = u8s(d.decode(&bytes, 3, None).unwrap());
        assert_eq!((gw, gh), (w, h), "{name}");
        let mad = mean_abs_diff(&rgb, &want);
        assert!(mad <= 2.0, "{name}: mean abs difference from Pillow {mad}");
        // libjpeg-turbo skipped the bytes that are not a marker, and said so.
        assert_eq!(
            d.warning(),
            Some(
                format!(
                    "jpeg: corrupt jpeg data: {extraneous} extraneous bytes before marker 0xdb"
                )
                .as_str()
            ),
            "{name}"
        );
        assert!(d.decode_ycbcr(&bytes, (w, h)).unwrap().is_some(), "{name}");
        // Strict refuses every warning; scan data that really ends early stays an error.
        d.set_policy(DecodePolicy::Strict);
        let e = decode_error(&mut d, &bytes, None);
        assert!(e.message().contains("extraneous bytes"), "{name}: {e}");
        d.set_policy(DecodePolicy::Tolerant);
        let cut = &bytes[..bytes.len() - 300];
        let e = decode_error(&mut d, cut, None);
        assert!(
            e.message().starts_with("jpeg: premature end of jpeg file"),
            "{name}: {e}"
        );
        d.set_policy(DecodePolicy::Lenient);
        assert!(d.decode(cut, 3, None).is_ok(), "{name}");
    }
}
