//! Files that real data sets hold and that Pillow 13 decodes or refuses: CMYK and YCCK JPEGs,
//! JPEGs with damaged header segments, decompression bombs. The files and Pillow's verdict on
//! each (its pixels, or its error) are in `fixtures/decode/`, made by
//! `tools/make-decode-fixtures.py`; these tests need no Python.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use stoker::decode::{DEFAULT_MAX_IMAGE_PIXELS, DecodePolicy, Decoder};
use stoker::source::{ImageFolder, NpySource, Raw, Source};
use stoker::{DType, Error, ErrorKind, Layout, Loader, OnError, Pixels, SkipBound};

const DIR: &str = "fixtures/decode";
const PHOTO: &str = "fixtures/photos-256x144/class-a/photo-00.jpg";

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
        assert_eq!(d.stored_size(&bytes).unwrap(), (w, h), "{name}");
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

#[test]
fn a_bomb_is_refused_from_its_header() {
    for (name, format) in [("bomb-65000.jpg", "jpeg"), ("bomb-65000.png", "png")] {
        let refused = pillow_verdict(name)["error"].as_str().unwrap().to_string();
        assert!(refused.starts_with("DecompressionBombError"), "{refused}");
        let bytes = file(name);
        for policy in [DecodePolicy::Tolerant, DecodePolicy::Lenient] {
            let mut d = Decoder::new().unwrap();
            d.set_policy(policy);
            assert_eq!(d.stored_size(&bytes).unwrap(), (65000, 65000));
            // A small output size would let a JPEG decode at 1/8 scale: refused all the same.
            for size in [Some((224, 224)), None] {
                let e = decode_error(&mut d, &bytes, size);
                assert_eq!(e.kind(), ErrorKind::Decode);
                assert_eq!(
                    e.message(),
                    format!(
                        "{format}: image 65000x65000 (4225000000 pixels) exceeds \
                         max_image_pixels (178956970), refused before decoding"
                    )
                );
            }
            let e = d.decode_reduced(&bytes, 3, (224, 224)).unwrap_err();
            assert!(e.message().contains("max_image_pixels"), "{e}");
            if format == "jpeg" {
                let e = d.decode_ycbcr(&bytes, (224, 224)).unwrap_err();
                assert!(e.message().contains("max_image_pixels"), "{e}");
            }
        }
    }
    assert_eq!(DEFAULT_MAX_IMAGE_PIXELS, 178_956_970);
}

#[test]
fn the_limit_is_on_the_stored_pixel_count_of_jpegs_and_pngs() {
    let jpeg = std::fs::read(PHOTO).unwrap();
    let mut d = Decoder::new().unwrap();
    let (_, _, rgb) = u8s(d.decode(&jpeg, 3, None).unwrap());
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        256,
        144,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    for (bytes, format) in [(&jpeg, "jpeg"), (&png, "png")] {
        for policy in [DecodePolicy::Tolerant, DecodePolicy::Lenient] {
            d.set_policy(policy);
            // At the limit it decodes, also through the DCT scale that makes it far smaller.
            d.set_max_image_pixels(256 * 144);
            assert!(d.decode(bytes, 3, Some((64, 36))).is_ok());
            d.set_max_image_pixels(256 * 144 - 1);
            let e = decode_error(&mut d, bytes, Some((64, 36)));
            assert_eq!(
                e.message(),
                format!(
                    "{format}: image 256x144 (36864 pixels) exceeds max_image_pixels (36863), \
                     refused before decoding"
                )
            );
            // A PNG cut short under Lenient (its rows path) is refused too.
            let cut = &bytes[..bytes.len() * 2 / 3];
            let e = decode_error(&mut d, cut, None);
            assert!(e.message().contains("max_image_pixels"), "{format}: {e}");
        }
    }
}

/// A folder with `files` (name, bytes) in class folder `a`.
fn folder(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join("a").join(name), bytes).unwrap();
    }
    dir
}

fn loader(dir: &Path, on_error: OnError) -> stoker::LoaderBuilder<ImageFolder> {
    Loader::builder(ImageFolder::open(dir).unwrap())
        .batch_size(2)
        .size(48, 32)
        .num_workers(2)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .on_error(on_error)
        .max_skipped(SkipBound::Fraction(1.0))
}

#[test]
fn the_loader_decodes_cmyk_and_refuses_bombs_by_file_and_index() {
    let photo = std::fs::read(PHOTO).unwrap();
    let dir = folder(&[
        ("0-photo.jpg", photo.clone()),
        ("1-bomb.jpg", file("bomb-65000.jpg")),
        ("2-cmyk.jpg", file("cmyk.jpg")),
        ("3-bomb.png", file("bomb-65000.png")),
        ("4-ycck.jpg", file("ycck.jpg")),
        ("5-junk.jpg", file("junk-between-segments.jpg")),
    ]);
    // By default the first bomb stops the epoch, naming the file, the index and the limit.
    let mut l = loader(dir.path(), OnError::Raise).build().unwrap();
    let e = l.epoch(0).find_map(|b| b.err()).unwrap();
    assert_eq!((e.kind(), e.index()), (ErrorKind::Decode, Some(1)));
    assert!(e.path().unwrap().ends_with("a/1-bomb.jpg"), "{e}");
    assert!(e.message().contains("65000x65000"), "{e}");
    assert!(e.message().contains("max_image_pixels (178956970)"), "{e}");
    // Skipped and counted like any bad file; the rest decode, the damaged header with a warning.
    let mut l = loader(dir.path(), OnError::Skip).build().unwrap();
    let mut indices = Vec::new();
    for b in l.epoch(0) {
        indices.extend_from_slice(b.unwrap().indices());
    }
    assert_eq!(indices, [0, 2, 4, 5]);
    let s = l.stats();
    assert_eq!(s.skipped_by_kind, [(ErrorKind::Decode, 2)]);
    let skipped: Vec<Option<usize>> = s.skipped_samples.iter().map(|k| k.index).collect();
    assert_eq!(skipped, [Some(1), Some(3)]);
    assert!(s.skipped_samples[1].message.contains("3-bomb.png"));
    assert_eq!(s.decoded_with_warnings, 1);
    // The builder's limit reaches every worker: the 256x144 photo is over 10,000 pixels, the
    // 50x30 CMYK JPEG is not.
    let mut l = loader(dir.path(), OnError::Skip)
        .max_image_pixels(10_000)
        .build()
        .unwrap();
    let mut indices = Vec::new();
    for b in l.epoch(0) {
        indices.extend_from_slice(b.unwrap().indices());
    }
    assert_eq!(indices, [2, 4, 5]);
}

/// Runs this test binary's test `name` alone in a child process with `STOKER_CHILD=what`, and
/// returns the child's peak resident memory (VmHWM, which the child prints before it checks
/// its results), in KiB, once it is below [`PEAK_RSS_KIB`] and the child passed.
#[cfg(target_os = "linux")]
fn child_peak_rss_kib(name: &str, what: &str) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("STOKER_CHILD", what)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let failed = || format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    // libtest prints the child's line after the test's name, on the same line.
    let after = text
        .split("peak_rss_kib=")
        .nth(1)
        .unwrap_or_else(|| panic!("no peak in {}", failed()));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let peak = digits.parse().unwrap();
    assert!(
        peak < PEAK_RSS_KIB,
        "{what}: peak resident memory {peak} KiB\n{}",
        failed()
    );
    assert!(out.status.success(), "{}", failed());
    peak
}

/// This process's peak resident memory, in KiB.
#[cfg(target_os = "linux")]
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Peak resident memory allowed to a process that refuses bombs (the bound).
const PEAK_RSS_KIB: u64 = 64 * 1024;

#[cfg(target_os = "linux")]
#[test]
fn refusing_a_bomb_keeps_peak_memory_small() {
    const NAME: &str = "refusing_a_bomb_keeps_peak_memory_small";
    if let Ok(dir) = std::env::var("STOKER_CHILD") {
        // The child: a loader at 224x224 (a JPEG bomb would decode at 1/8, 8125x8125x3 bytes).
        let mut l = Loader::builder(ImageFolder::open(dir).unwrap())
            .batch_size(1)
            .size(224, 224)
            .num_workers(1)
            .dtype(DType::U8)
            .on_error(OnError::Skip)
            .max_skipped(SkipBound::Fraction(1.0))
            .build()
            .unwrap();
        for b in l.epoch(0) {
            b.unwrap();
        }
        println!("peak_rss_kib={}", peak_rss_kib());
        assert_eq!(l.stats().skipped_by_kind, [(ErrorKind::Decode, 2)]);
        return;
    }
    let dir = folder(&[
        ("0-photo.jpg", std::fs::read(PHOTO).unwrap()),
        ("1-bomb.jpg", file("bomb-65000.jpg")),
        ("2-bomb.png", file("bomb-65000.png")),
    ]);
    let peak = child_peak_rss_kib(NAME, dir.path().to_str().unwrap());
    assert!(peak > 0);
}

/// A 64x48 RGB PNG with a zTXt chunk whose text inflates to `text_mib` MiB of zeros (the
/// compressed chunk is about a thousandth of that).
fn png_with_ztxt_bomb(text_mib: usize) -> (Vec<u8>, Vec<u8>) {
    let rgb: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        64,
        48,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..text_mib {
        z.write_all(&zeros).unwrap();
    }
    let mut body = b"zTXtComment\0\0".to_vec();
    body.extend(z.finish().unwrap());
    let mut crc = flate2::Crc::new();
    crc.update(&body);
    let mut chunk = ((body.len() - 4) as u32).to_be_bytes().to_vec();
    chunk.extend(&body);
    chunk.extend(crc.sum().to_be_bytes());
    // After the signature (8 bytes) and IHDR (25): before the image data.
    let bomb = [&png[..33], &chunk[..], &png[33..]].concat();
    (bomb, rgb)
}

#[cfg(target_os = "linux")]
#[test]
fn a_png_with_a_huge_ztxt_chunk_decodes_in_bounded_memory() {
    const NAME: &str = "a_png_with_a_huge_ztxt_chunk_decodes_in_bounded_memory";
    if let Ok(path) = std::env::var("STOKER_CHILD") {
        let (bytes, want) = (
            std::fs::read(&path).unwrap(),
            std::fs::read(format!("{path}.rgb")).unwrap(),
        );
        let decoded: Vec<_> = [DecodePolicy::Tolerant, DecodePolicy::Lenient]
            .into_iter()
            .map(|policy| {
                let mut d = Decoder::new().unwrap();
                d.set_policy(policy);
                d.decode(&bytes, 3, None).map(u8s)
            })
            .collect();
        println!("peak_rss_kib={}", peak_rss_kib());
        for image in decoded {
            assert_eq!(image.unwrap(), (64, 48, want.clone()), "the pixels written");
        }
        return;
    }
    // 256 MiB of text, which a decoder that inflated it would hold.
    let (bomb, rgb) = png_with_ztxt_bomb(256);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("ztxt-bomb.png");
    std::fs::write(&path, &bomb).unwrap();
    std::fs::write(dir.path().join("ztxt-bomb.png.rgb"), &rgb).unwrap();
    let peak = child_peak_rss_kib(NAME, path.to_str().unwrap());
    assert!(peak > 0);
}

#[test]
fn a_jpeg_missing_a_table_decodes_alike_whatever_was_decoded_before() {
    // libjpeg keeps the last image's tables: a file that lost its first quantization table
    // (junk over it, skipped with a warning) decoded with the previous file's after a good one.
    let photo = std::fs::read(PHOTO).unwrap();
    let mut lost_table = photo.clone();
    lost_table[3..64].fill(0);
    let other = std::fs::read("fixtures/photos-256x144/class-b/photo-01.jpg").unwrap();
    let mut fresh = Decoder::new().unwrap();
    let e = decode_error(&mut fresh, &lost_table, Some((64, 36)));
    assert_eq!(e.message(), "jpeg: quantization table 0x00 was not defined");
    let mut used = Decoder::new().unwrap();
    for _ in 0..2 {
        used.decode(&other, 3, Some((64, 36))).unwrap();
        let e = decode_error(&mut used, &lost_table, Some((64, 36)));
        assert_eq!(e.message(), "jpeg: quantization table 0x00 was not defined");
        assert!(used.decode_ycbcr(&lost_table, (64, 36)).is_err());
    }
}

/// `path` re-encoded as a progressive JPEG (libjpeg-turbo writes a Huffman table before each
/// AC scan, between the scans).
fn progressive(path: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let rgb = turbojpeg::decompress(&bytes, turbojpeg::PixelFormat::RGB).unwrap();
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_progressive(true).unwrap();
    c.compress_to_vec(rgb.as_deref()).unwrap()
}

/// `jpeg` without the first Huffman table segment (`FF C4`) that follows its first scan.
fn without_first_later_table(jpeg: &[u8]) -> Vec<u8> {
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let at = sos
        + jpeg[sos..]
            .windows(2)
            .position(|w| w == [0xFF, 0xC4])
            .unwrap();
    let end = at + 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
    [&jpeg[..at], &jpeg[end..]].concat()
}

#[test]
fn a_progressive_jpeg_missing_a_later_table_decodes_alike_whatever_was_decoded_before() {
    // The first AC scan's table lost: libjpeg would use the previous file's table on a used
    // handle, the standard one (or an error) on a fresh one.
    let lost = without_first_later_table(&progressive(PHOTO));
    let other = progressive("fixtures/photos-256x144/class-b/photo-01.jpg");
    let outcome = |d: &mut Decoder| -> Result<Vec<u8>, String> {
        match d.decode(&lost, 3, None) {
            Ok(view) => match view.pixels {
                Pixels::U8(p) => Ok(p.to_vec()),
                _ => panic!("u8 pixels"),
            },
            Err(e) => Err(e.message().to_string()),
        }
    };
    let fresh = outcome(&mut Decoder::new().unwrap());
    let mut used = Decoder::new().unwrap();
    for _ in 0..2 {
        used.decode(&other, 3, None).unwrap();
        assert!(
            outcome(&mut used) == fresh,
            "depends on the file decoded before"
        );
    }
}
