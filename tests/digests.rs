//! Pinned output bits: the digests of the fixtures through the main configurations.
//!
//! A refactor must change no output bit. Each configuration (dtype, layout, normalisation,
//! augmentation) is run over every container that holds the same images: the JPEG fixtures
//! as an image folder, a manifest CSV and tar shards; the NPY fixtures as NPY shards and as
//! HDF5 (contiguous and chunked). Every member must give the pinned digest. A change that is
//! meant to change output bits updates the table below and says so in the CHANGELOG.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stoker::augment::Augment;
use stoker::digest::Digest;
use stoker::source::{ImageFolder, NpySource, Raw, Source, TarWriter};
use stoker::{DType, Layout, Loader, Normalize};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One loader configuration.
struct Config {
    name: &'static str,
    dtype: DType,
    layout: Layout,
    imagenet: bool,
    augment: bool,
}

const CONFIGS: [Config; 5] = [
    Config {
        name: "u8-nhwc",
        dtype: DType::U8,
        layout: Layout::Nhwc,
        imagenet: false,
        augment: false,
    },
    Config {
        name: "f32-nchw-imagenet",
        dtype: DType::F32,
        layout: Layout::Nchw,
        imagenet: true,
        augment: false,
    },
    Config {
        name: "bf16-nhwc",
        dtype: DType::BF16,
        layout: Layout::Nhwc,
        imagenet: false,
        augment: false,
    },
    Config {
        name: "f32-nchw-imagenet-augment",
        dtype: DType::F32,
        layout: Layout::Nchw,
        imagenet: true,
        augment: true,
    },
    Config {
        name: "u8-nhwc-augment",
        dtype: DType::U8,
        layout: Layout::Nhwc,
        imagenet: false,
        augment: true,
    },
];

/// Pinned digests per configuration. The NPY fixtures are the JPEG fixtures decoded, in folder
/// order, so every container of either gives the same batches.
const PINNED: [(&str, &str); 5] = [
    ("u8-nhwc", "265a658a6c44338e"),
    ("f32-nchw-imagenet", "06a02a58bd83ffbc"),
    ("bf16-nhwc", "3aafccc36b92c015"),
    ("f32-nchw-imagenet-augment", "59b0286d56e99d1b"),
    ("u8-nhwc-augment", "7ed04bfb81b4a6c2"),
];

/// Two epochs (1 and 2), shuffled, 2 workers, batches of 6 (the last one partial).
fn digest<S: Source + 'static>(src: S, c: &Config) -> String {
    let mut b = Loader::builder(src)
        .batch_size(6)
        .shuffle(true)
        .seed(17)
        .num_workers(2)
        .size(256, 144)
        .dtype(c.dtype)
        .layout(c.layout);
    if c.imagenet {
        b = b.normalize(Normalize::imagenet());
    }
    if c.augment {
        b = b.transform(Arc::new(Augment::keras_default()));
    }
    let mut loader = b.build().unwrap();
    let mut d = Digest::new();
    for e in 1..3 {
        for batch in loader.epoch(e) {
            d.update(&batch.unwrap());
        }
    }
    assert_eq!(d.batches(), 12, "{}", c.name);
    d.hex()
}

/// Opens one container of the fixtures.
type Open<'a> = &'a dyn Fn() -> Box<dyn Source>;

/// Every member of a family against the pinned digest; all mismatches reported at once.
fn check(family: &str, members: &[(&str, Open)]) {
    let mut wrong = Vec::new();
    for c in &CONFIGS {
        let want = PINNED.iter().find(|(n, _)| *n == c.name).unwrap().1;
        for (member, open) in members {
            let got = digest(open(), c);
            if got != want {
                wrong.push(format!(
                    "{family}/{member} {}: got {got}, pinned {want}",
                    c.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "digests changed:\n{}", wrong.join("\n"));
}

/// The fixture JPEGs as two WebDataset shards, in folder order.
fn write_shards(dir: &Path) -> String {
    let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
    let mut buf = Vec::new();
    let half = folder.len().div_ceil(2);
    for k in 0..2 {
        let p = dir.join(format!("shard-{k:06}.tar"));
        let mut w = TarWriter::new(std::io::BufWriter::new(std::fs::File::create(&p).unwrap()));
        for i in k * half..((k + 1) * half).min(folder.len()) {
            let item = folder.get(i, &mut buf).unwrap();
            let Raw::Encoded(bytes) = item.raw else {
                panic!("folder gives encoded bytes")
            };
            w.append_sample(&format!("{i:06}"), "jpg", bytes, item.label)
                .unwrap();
        }
        w.finish().unwrap();
    }
    dir.join("shard-*.tar").to_str().unwrap().to_string()
}

#[test]
fn jpeg_fixtures_keep_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path());
    let folder = || -> Box<dyn Source> {
        Box::new(ImageFolder::open(fixtures().join("photos-256x144")).unwrap())
    };
    let manifest = || -> Box<dyn Source> {
        Box::new(ImageFolder::from_manifest(fixtures().join("manifest.csv")).unwrap())
    };
    let tar = || -> Box<dyn Source> { Box::new(stoker::TarSource::glob(&shards).unwrap()) };
    check(
        "jpeg",
        &[("folder", &folder), ("manifest", &manifest), ("tar", &tar)],
    );
}

fn npy() -> stoker::source::Concat<NpySource> {
    NpySource::glob(
        fixtures().join("npy/images-*.npy").to_str().unwrap(),
        Some(fixtures().join("npy/labels-*.npy").to_str().unwrap()),
    )
    .unwrap()
}

/// The NPY fixtures as one HDF5 file in `layout`.
#[cfg(feature = "hdf5")]
fn write_hdf5(path: &Path, layout: stoker::source::Hdf5Layout) {
    let src = npy();
    let (mut px, mut labels, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..src.len() {
        let item = src.get(i, &mut buf).unwrap();
        let Raw::Pixels(v) = item.raw else {
            panic!("npy gives pixels")
        };
        let stoker::Pixels::U8(p) = v.pixels else {
            panic!("u8 fixtures")
        };
        px.extend_from_slice(p);
        labels.push(item.label.unwrap());
    }
    let (w, h) = src.size().unwrap();
    let shape = [src.len(), h, w, src.channels().unwrap()];
    stoker::source::save_hdf5(path, stoker::Pixels::U8(&px), shape, Some(&labels), layout).unwrap();
}

#[test]
fn pixel_fixtures_keep_their_digests() {
    let npy = || -> Box<dyn Source> { Box::new(npy()) };
    #[cfg_attr(not(feature = "hdf5"), allow(unused_mut))]
    let mut members: Vec<(&str, Open)> = vec![("npy", &npy)];
    #[cfg(feature = "hdf5")]
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "hdf5")]
    let (contiguous, chunked) = {
        use stoker::source::Hdf5Layout;
        let contiguous = dir.path().join("contiguous.h5");
        let chunked = dir.path().join("chunked.h5");
        write_hdf5(&contiguous, Hdf5Layout::Contiguous);
        write_hdf5(
            &chunked,
            Hdf5Layout::Chunked {
                rows: 4,
                deflate: Some(1),
            },
        );
        (contiguous, chunked)
    };
    #[cfg(feature = "hdf5")]
    let h5c = || -> Box<dyn Source> {
        Box::new(stoker::Hdf5Source::open(&contiguous, "images", Some("labels")).unwrap())
    };
    #[cfg(feature = "hdf5")]
    let h5k = || -> Box<dyn Source> {
        Box::new(stoker::Hdf5Source::open(&chunked, "images", Some("labels")).unwrap())
    };
    #[cfg(feature = "hdf5")]
    members.extend([("hdf5-contiguous", &h5c as Open), ("hdf5-chunked", &h5k)]);
    check("pixels", &members);
}
