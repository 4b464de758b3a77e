//! HDF5 source: both layouts give the NPY pixels; malformed files are clear errors.
#![cfg(feature = "hdf5")]

use std::path::{Path, PathBuf};

use stoker::digest::Digest;
use stoker::source::{Hdf5Layout, Hdf5Source, NpySource, Raw, Source, save_hdf5};
use stoker::{DType, ErrorKind, Layout, Loader, Pixels};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn npy() -> stoker::source::Concat<NpySource> {
    NpySource::glob(
        fixtures().join("npy/images-*.npy").to_str().unwrap(),
        Some(fixtures().join("npy/labels-*.npy").to_str().unwrap()),
    )
    .unwrap()
}

/// The NPY fixtures (32 × 144×256×3 u8) as one HDF5 file in `layout`.
fn write_fixture(path: &Path, layout: Hdf5Layout) {
    let src = npy();
    let mut px = Vec::new();
    let mut labels = Vec::new();
    let mut buf = Vec::new();
    for i in 0..src.len() {
        let item = src.get(i, &mut buf).unwrap();
        let Raw::Pixels(v) = item.raw else { panic!() };
        let Pixels::U8(p) = v.pixels else { panic!() };
        px.extend_from_slice(p);
        labels.push(item.label.unwrap());
    }
    save_hdf5(
        path,
        Pixels::U8(&px),
        [32, 144, 256, 3],
        Some(&labels),
        layout,
    )
    .unwrap();
}

fn digest<S: Source + 'static>(src: S) -> String {
    let mut loader = Loader::builder(src)
        .batch_size(6)
        .shuffle(true)
        .seed(5)
        .num_workers(2)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let mut d = Digest::new();
    for b in loader.epoch(1) {
        d.update(&b.unwrap());
    }
    assert_eq!(d.batches(), 6);
    d.hex()
}

#[test]
fn both_layouts_give_the_npy_digest() {
    let dir = tempfile::tempdir().unwrap();
    let want = digest(npy());
    let layouts = [
        ("contiguous.h5", Hdf5Layout::Contiguous, true),
        (
            "chunked.h5",
            Hdf5Layout::Chunked {
                rows: 5,
                deflate: None,
            },
            false,
        ),
        (
            "deflate.h5",
            Hdf5Layout::Chunked {
                rows: 4,
                deflate: Some(4),
            },
            false,
        ),
    ];
    for (name, layout, mapped) in layouts {
        let p = dir.path().join(name);
        write_fixture(&p, layout);
        let src = Hdf5Source::open(&p, "images", Some("labels")).unwrap();
        assert_eq!(src.is_mapped(), mapped, "{name}");
        assert_eq!((src.shape(), src.dtype()), ([32, 144, 256, 3], "u8"));
        assert!(
            src.describe()
                .contains(if mapped { "memory-mapped" } else { "chunked" })
        );
        assert_eq!(digest(src), want, "{name}");
    }
    // Shards of mixed layouts, through a glob.
    let all = Hdf5Source::glob(
        dir.path().join("*.h5").to_str().unwrap(),
        "images",
        Some("labels"),
    )
    .unwrap();
    assert_eq!(all.len(), 96);
}

#[test]
fn chunk_cache_is_per_source_and_f32_gray_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.h5"), dir.path().join("b.h5"));
    let px: Vec<f32> = (0..10 * 2 * 3).map(|v| v as f32 * 0.5).collect();
    let chunked = Hdf5Layout::Chunked {
        rows: 4,
        deflate: Some(1),
    };
    save_hdf5(&a, Pixels::F32(&px), [10, 2, 3, 1], None, chunked).unwrap();
    let px2: Vec<f32> = px.iter().map(|v| -v).collect();
    save_hdf5(&b, Pixels::F32(&px2), [10, 2, 3, 1], None, chunked).unwrap();
    let (sa, sb) = (
        Hdf5Source::open(&a, "images", None).unwrap(),
        Hdf5Source::open(&b, "images", None).unwrap(),
    );
    assert_eq!((sa.channels(), sa.size()), (Some(1), Some((3, 2))));
    let mut buf = Vec::new();
    // One buffer shared by both sources, chunk by chunk and back: never the wrong chunk.
    for i in [0, 1, 9, 5, 4, 3, 8] {
        for (s, sign) in [(&sa, 1.0), (&sb, -1.0)] {
            let Raw::Pixels(v) = s.get(i, &mut buf).unwrap().raw else {
                panic!()
            };
            let Pixels::F32(p) = v.pixels else { panic!() };
            let want: Vec<f32> = (i * 6..i * 6 + 6).map(|v| sign * v as f32 * 0.5).collect();
            assert_eq!(p, &want[..], "sample {i}");
        }
    }
    let e = sa.get(10, &mut buf).unwrap_err();
    assert_eq!(e.index(), Some(10));
    // An (N, H, W) gray u8 dataset written by the library directly, chunked and contiguous.
    let g = dir.path().join("gray.h5");
    let f = hdf5::File::create(&g).unwrap();
    let data: Vec<u8> = (0..3 * 2 * 2).collect();
    let d = f
        .new_dataset::<u8>()
        .chunk([2, 2, 2])
        .shape([3, 2, 2])
        .create("x/chunked")
        .unwrap();
    d.write_raw(&data).unwrap();
    let d = f
        .new_dataset::<u8>()
        .shape([3, 2, 2])
        .create("x/flat")
        .unwrap();
    d.write_raw(&data).unwrap();
    let l = f.new_dataset::<u16>().shape([3]).create("y").unwrap();
    l.write_raw(&[7u16, 8, 9]).unwrap();
    drop((d, l));
    f.close().unwrap();
    for name in ["x/chunked", "x/flat"] {
        let s = Hdf5Source::open(&g, name, Some("y")).unwrap();
        assert_eq!(s.is_mapped(), name == "x/flat");
        let item = s.get(2, &mut buf).unwrap();
        assert_eq!(item.label, Some(9));
        let Raw::Pixels(v) = item.raw else { panic!() };
        assert!(
            matches!(v.pixels, Pixels::U8(p) if p == &data[8..12]),
            "{name}"
        );
    }
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = d.join("bad.h5");
    let f = hdf5::File::create(&p).unwrap();
    f.new_dataset::<u8>().shape([4, 4]).create("rank2").unwrap();
    f.new_dataset::<i16>()
        .shape([1, 2, 2, 3])
        .create("int16")
        .unwrap();
    f.new_dataset::<f64>()
        .shape([1, 2, 2])
        .create("f64")
        .unwrap();
    f.new_dataset::<u8>()
        .shape([1, 2, 2, 4])
        .create("rgba")
        .unwrap();
    f.new_dataset::<u8>().shape([2, 2, 2]).create("ok").unwrap();
    f.new_dataset::<i64>().shape([3]).create("three").unwrap();
    f.new_dataset::<f32>().shape([2]).create("flabels").unwrap();
    f.new_dataset::<i64>()
        .shape([2, 2])
        .create("labels2d")
        .unwrap();
    f.close().unwrap();
    for (images, labels, needle) in [
        ("rank2", None, "found rank 2"),
        ("int16", None, "not supported"),
        ("f64", None, "not supported"),
        ("rgba", None, "1 or 3 channels, found 4"),
        ("missing", None, "no dataset 'missing'"),
        ("ok", Some("three"), "3 labels in 'three' but 2 images"),
        ("ok", Some("flabels"), "must be integers"),
        ("ok", Some("labels2d"), "must be 1-D"),
        ("ok", Some("nolabels"), "no dataset 'nolabels'"),
    ] {
        let e = Hdf5Source::open(&p, images, labels).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "{images}: {e}");
        assert_eq!(e.path(), Some(p.as_path()));
        assert!(e.message().contains(needle), "{images}: {e}");
    }
    let e = Hdf5Source::open(d.join("missing.h5"), "images", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("missing.h5"));
    let z = d.join("zero.h5");
    std::fs::write(&z, b"").unwrap();
    let e = Hdf5Source::open(&z, "images", None).unwrap_err();
    assert!(e.message().contains("empty file"), "{e}");
    let t = d.join("text.h5");
    std::fs::write(&t, b"this is not hdf5 at all").unwrap();
    let e = Hdf5Source::open(&t, "images", None).unwrap_err();
    assert!(e.message().starts_with("not an hdf5 file"), "{e}");
    // Truncated: a contiguous file cut inside the data.
    let c = d.join("cut.h5");
    save_hdf5(
        &c,
        Pixels::U8(&vec![1; 64 * 1024]),
        [16, 64, 64, 1],
        None,
        Hdf5Layout::Contiguous,
    )
    .unwrap();
    let bytes = std::fs::read(&c).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() - 4096]).unwrap();
    match Hdf5Source::open(&c, "images", None) {
        Err(e) => assert_eq!(e.path(), Some(c.as_path()), "{e}"),
        Ok(s) => panic!("opened a truncated file: {}", s.describe()),
    }
}
