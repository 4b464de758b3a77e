//! Bad data as users meet it: lightly corrupted and truncated JPEGs (decoded as Pillow would,
//! with the warning counted), bounded skipping, and label checks (in `bad_data/labels.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stoker::decode::{DecodePolicy, Decoder};
use stoker::source::ImageFolder;
use stoker::{DType, ErrorKind, Layout, Loader, OnError, SkipBound};

#[path = "bad_data/labels.rs"]
mod labels;

const PHOTOS: &str = "fixtures/photos-256x144";

/// The 16 full-frame fixture photos.
fn photos() -> Vec<Vec<u8>> {
    (0..16)
        .map(|n| {
            let class = ["a", "b", "c", "d"][n % 4];
            std::fs::read(format!("{PHOTOS}/class-{class}/photo-{n:02}.jpg")).unwrap()
        })
        .collect()
}

/// A small seeded generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// (first byte of entropy-coded data, offset of the final EOI) of a baseline JPEG.
fn scan_range(jpeg: &[u8]) -> (usize, usize) {
    let mut i = 2;
    loop {
        assert_eq!(jpeg[i], 0xFF, "a marker at {i}");
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if jpeg[i + 1] == 0xDA {
            let end = jpeg.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
            return (i + 2 + len, end);
        }
        i += 2 + len;
    }
}

/// `jpeg` with 1 to 3 bytes of its scan data changed (to another value), within the
/// fraction `from..1` of the scan.
fn corrupt(jpeg: &[u8], rng: &mut Rng, from: f64) -> Vec<u8> {
    let (start, end) = scan_range(jpeg);
    let start = start + ((end - start) as f64 * from) as usize;
    let mut out = jpeg.to_vec();
    for _ in 0..1 + rng.below(3) {
        let p = start + rng.below(end - start);
        out[p] = out[p].wrapping_add(1 + rng.below(255) as u8);
    }
    out
}

fn decodes(bytes: &[u8], policy: DecodePolicy) -> bool {
    let mut d = Decoder::new().unwrap();
    d.set_policy(policy);
    d.decode(bytes, 3, None).is_ok()
}

fn u8_nhwc(folder: ImageFolder) -> stoker::LoaderBuilder<ImageFolder> {
    Loader::builder(folder)
        .batch_size(8)
        .num_workers(2)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .prefetch_next_epoch(false) // counts of this epoch's work alone
}

#[test]
fn lightly_corrupted_jpegs_decode_with_a_counted_warning() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photos();
    let mut rng = Rng(7);
    let mut files = Vec::new();
    let (mut strict, mut tolerant) = (0, 0);
    for k in 0..48 {
        let bytes = corrupt(&photos[k % 16], &mut rng, 0.0);
        strict += decodes(&bytes, DecodePolicy::Strict) as usize;
        tolerant += decodes(&bytes, DecodePolicy::Tolerant) as usize;
        assert!(decodes(&bytes, DecodePolicy::Lenient) || !decodes(&bytes, DecodePolicy::Tolerant));
        let p = dir.path().join(format!("c/{k:02}.jpg"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        files.push(p);
    }
    // As Pillow and torchvision: corrupt scan data decodes; strict refuses much of it.
    assert!(tolerant >= 46, "tolerant decoded {tolerant} of 48");
    assert!(strict < tolerant, "strict {strict}, tolerant {tolerant}");

    let folder = || ImageFolder::open(dir.path()).unwrap();
    let all = SkipBound::Fraction(1.0);
    let mut l = u8_nhwc(folder())
        .on_error(OnError::Skip)
        .max_skipped(all)
        .build()
        .unwrap();
    for b in l.epoch(0) {
        b.unwrap();
    }
    let s = l.stats();
    assert_eq!(s.samples as usize, tolerant);
    assert_eq!(s.skipped as usize, 48 - tolerant);
    // Those that strict refuses are the ones that decoded with a warning.
    assert_eq!(s.decoded_with_warnings as usize, tolerant - strict);
    let w = s.first_warning.expect("a warning is kept");
    assert!(w.message.starts_with("jpeg: "), "{w}");
    assert_eq!(w.path.as_deref(), Some(files[w.index].as_path()));

    let mut l = u8_nhwc(folder())
        .on_error(OnError::Skip)
        .max_skipped(all)
        .decode_policy(DecodePolicy::Strict)
        .build()
        .unwrap();
    for b in l.epoch(0) {
        b.unwrap();
    }
    let s = l.stats();
    assert_eq!((s.samples as usize, s.decoded_with_warnings), (strict, 0));
    assert_eq!(
        s.skipped_by_kind,
        [(ErrorKind::Decode, (48 - strict) as u64)]
    );
}

#[test]
fn the_undamaged_rows_are_the_clean_image() {
    let photos = photos();
    let mut rng = Rng(11);
    let mut d = Decoder::new().unwrap();
    let mut checked = 0;
    for k in 0..32 {
        let clean = match d.decode(&photos[k % 16], 3, None).unwrap().pixels {
            stoker::Pixels::U8(p) => p.to_vec(),
            _ => unreachable!(),
        };
        // Damage in the last fifth of the scan leaves the top rows alone.
        let bad = corrupt(&photos[k % 16], &mut rng, 0.8);
        let Ok(img) = d.decode(&bad, 3, None) else {
            continue;
        };
        let px = match img.pixels {
            stoker::Pixels::U8(p) => p.to_vec(),
            _ => unreachable!(),
        };
        if d.warning().is_none() {
            continue; // the change happened to decode cleanly
        }
        let top = 256 * 3 * 48; // three MCU rows
        assert_eq!(px[..top], clean[..top], "photo {k}");
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} damaged images decoded with a warning"
    );
}

#[test]
fn truncation_is_an_error_unless_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = &photos()[3];
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() * 3 / 4]).unwrap();
    let files = vec![
        (
            PathBuf::from(format!("{PHOTOS}/class-a/photo-00.jpg")),
            None,
        ),
        (cut.clone(), None),
    ];
    let source = || ImageFolder::from_files(files.clone()).unwrap();
    let mut l = Loader::builder(source()).batch_size(2).build().unwrap();
    let e = l.epoch(0).next().unwrap().unwrap_err();
    assert_eq!(
        (e.kind(), e.index(), e.path()),
        (ErrorKind::Decode, Some(1), Some(cut.as_path()))
    );
    assert_eq!(e.message(), "jpeg: premature end of jpeg file");

    let mut l = Loader::builder(source())
        .batch_size(2)
        .prefetch_next_epoch(false)
        .decode_policy(DecodePolicy::Lenient)
        .build()
        .unwrap();
    assert_eq!(l.epoch(0).next().unwrap().unwrap().len(), 2);
    let s = l.stats();
    assert_eq!(s.decoded_with_warnings, 1);
    assert_eq!(
        s.first_warning.unwrap().path.as_deref(),
        Some(cut.as_path())
    );
}

/// `px` (RGB) as a PNG: 8-bit RGB, or 16-bit gray (the red channel) when `wide`.
fn png_of(px: &[u8], w: u32, h: u32, wide: bool) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    if wide {
        // Gray at 16 bits: each pixel's red byte, scaled to 0..=65535 (big-endian pairs).
        let g: Vec<u8> = px
            .chunks_exact(3)
            .flat_map(|p| (u16::from(p[0]) * 257).to_be_bytes())
            .collect();
        enc.write_image(&g, w, h, image::ExtendedColorType::L16)
            .unwrap();
    } else {
        enc.write_image(px, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
    }
    out
}

#[test]
fn a_truncated_png_gives_its_decoded_rows_when_lenient() {
    let mut d = Decoder::new().unwrap();
    let clean_rgb = d.decode(&photos()[5], 3, None).unwrap();
    let (w, h) = (clean_rgb.width, clean_rgb.height);
    let stoker::Pixels::U8(px) = clean_rgb.pixels else {
        panic!()
    };
    let px = px.to_vec();
    for wide in [false, true] {
        for channels in [1, 3] {
            let png = png_of(&px, w as u32, h as u32, wide);
            let cut = &png[..png.len() * 3 / 5];
            let mut d = Decoder::new().unwrap();
            let clean = match d.decode(&png, channels, None).unwrap().pixels {
                stoker::Pixels::U8(p) => p.to_vec(),
                _ => unreachable!(),
            };
            // Strict and tolerant: an error, as Pillow by default.
            for policy in [DecodePolicy::Strict, DecodePolicy::Tolerant] {
                d.set_policy(policy);
                let e = d.decode(cut, channels, None).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Decode);
            }
            d.set_policy(DecodePolicy::Lenient);
            let img = d.decode(cut, channels, None).unwrap();
            assert_eq!((img.width, img.height, img.channels), (w, h, channels));
            let stoker::Pixels::U8(got) = img.pixels else {
                panic!()
            };
            let got = got.to_vec();
            let row = w * channels;
            let same = (0..h)
                .take_while(|&r| got[r * row..(r + 1) * row] == clean[r * row..(r + 1) * row])
                .count();
            assert!(
                same > h / 4 && same < h,
                "{same} of {h} rows (wide {wide}, {channels} ch)"
            );
            // Every row that did not decode is gray, and the warning says how many did.
            assert!(
                got[same * row..].iter().all(|&v| v == 128),
                "wide {wide}, {channels} ch"
            );
            let warning = d.warning().unwrap();
            assert!(
                warning.contains(&format!("{same} of {h} rows")),
                "{warning}"
            );
        }
    }
}

/// A folder of `good` fixture photos and `bad` files that are not images.
fn mixed_folder(dir: &Path, good: usize, bad: usize) -> ImageFolder {
    let photos = photos();
    std::fs::create_dir_all(dir.join("x")).unwrap();
    for k in 0..good {
        std::fs::write(dir.join(format!("x/{k:02}.jpg")), &photos[k % 16]).unwrap();
    }
    for k in good..good + bad {
        std::fs::write(dir.join(format!("x/{k:02}.jpg")), b"no image here").unwrap();
    }
    ImageFolder::open(dir).unwrap()
}

#[test]
fn skipping_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let folder = Arc::new(mixed_folder(dir.path(), 18, 2)); // 20 files, 10% bad
    let build = |bound: Option<SkipBound>| {
        let b = Loader::builder(Arc::clone(&folder))
            .batch_size(4)
            .num_workers(2)
            .on_error(OnError::Skip);
        match bound {
            Some(bound) => b.max_skipped(bound),
            None => b,
        }
        .build()
        .unwrap()
    };
    // The default 5% of 20 allows one skip: the second ends the epoch.
    let mut l = build(None);
    let results: Vec<_> = l.epoch(0).map(|b| b.map(|b| b.len())).collect();
    let e = results.last().unwrap().as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SkipLimit);
    assert!(
        e.message()
            .starts_with("2 of 20 samples skipped, past the bound of 1 (5%) in "),
        "{e}"
    );
    assert!(e.message().contains("first: sample 18 ("), "{e}");
    let first = std::error::Error::source(e)
        .unwrap()
        .downcast_ref::<stoker::Error>()
        .unwrap();
    assert_eq!((first.kind(), first.index()), (ErrorKind::Decode, Some(18)));
    assert_eq!(l.stats().skipped, 2);
    // The next epoch runs (and stops the same way).
    assert!(
        l.epoch(1)
            .any(|b| b.is_err_and(|e| e.kind() == ErrorKind::SkipLimit))
    );
    // Within the bound, the epoch completes.
    let mut l = build(Some(SkipBound::Count(2)));
    let n: usize = l.epoch(0).map(|b| b.unwrap().len()).sum();
    assert_eq!(n, 18);
    let mut l = build(Some("10%".parse().unwrap()));
    assert_eq!(l.epoch(0).map(|b| b.unwrap().len()).sum::<usize>(), 18);
    // A bad fraction is a usage error.
    let e = Loader::builder(Arc::clone(&folder))
        .max_skipped(SkipBound::Fraction(1.5))
        .build()
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[test]
fn an_epoch_of_nothing_is_an_error_whatever_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Loader::builder(mixed_folder(dir.path(), 0, 6))
        .size(32, 32)
        .batch_size(4)
        .on_error(OnError::Skip)
        .max_skipped(SkipBound::Fraction(1.0))
        .build()
        .unwrap();
    let results: Vec<_> = l.epoch(0).map(|b| b.map(|b| b.len())).collect();
    assert_eq!(results.len(), 1);
    let e = results[0].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SkipLimit);
    assert!(
        e.message()
            .starts_with("no sample of the pass could be used (6 of 6 skipped)"),
        "{e}"
    );
    assert_eq!(l.stats().samples, 0);
}

#[test]
fn a_bad_tar_member_is_skipped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shard-000000.tar");
    let mut w = stoker::source::TarWriter::new(std::fs::File::create(&p).unwrap());
    let photos = photos();
    for (k, photo) in photos.iter().take(8).enumerate() {
        let key = format!("{k:06}");
        w.append(&format!("{key}.jpg"), photo).unwrap();
        let label: &[u8] = if k == 3 { b"dog" } else { b"1" };
        w.append(&format!("{key}.cls"), label).unwrap();
    }
    w.finish().unwrap();
    let src = Arc::new(stoker::source::TarSource::open(&p).unwrap());
    // Raised: the error names the shard, the member and the sample.
    let mut l = Loader::builder(Arc::clone(&src))
        .batch_size(4)
        .build()
        .unwrap();
    let e = l.epoch(0).find_map(|b| b.err()).unwrap();
    assert_eq!(
        (e.kind(), e.index(), e.path()),
        (ErrorKind::Format, Some(3), Some(p.as_path()))
    );
    assert!(
        e.message().contains("'000003.cls' is not an integer label"),
        "{e}"
    );
    // Skipped: the seven others arrive.
    let mut l = Loader::builder(src)
        .batch_size(4)
        .on_error(OnError::Skip)
        .max_skipped(SkipBound::Count(1))
        .build()
        .unwrap();
    let n: usize = l.epoch(0).map(|b| b.unwrap().len()).sum();
    assert_eq!((n, l.stats().skipped), (7, 1));
}
