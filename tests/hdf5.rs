//! HDF5 source: both layouts give the NPY pixels; every chunked layout gives the contiguous
//! bytes without the library's lock; malformed files are clear errors.
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

/// Chunked datasets read from the map by chunk address: every chunking and filter pipeline
/// gives the contiguous bytes, damaged chunks are errors of their sample, and reads do not
/// wait on the HDF5 library's lock.
mod chunked {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use stoker::source::{Hdf5Read, Hdf5Source, Raw, Source};
    use stoker::{ErrorKind, Pixels};

    const N: usize = 11;
    const H: usize = 6;
    const W: usize = 5;

    /// Compressible but not constant: a gradient with a little hashed noise.
    fn value(i: usize) -> u8 {
        let noise = (i.wrapping_mul(2_654_435_761) >> 13) & 7;
        ((i / 7) as u8).wrapping_add(noise as u8)
    }

    /// The filters of one case, in pipeline (write) order.
    #[derive(Clone, Copy, Debug)]
    enum F {
        Shuffle,
        Deflate,
        Fletcher,
    }

    fn create<T: hdf5::H5Type>(
        f: &hdf5::File,
        name: &str,
        shape: &[usize],
        chunk: Option<&[usize]>,
        filters: &[F],
        data: &[T],
    ) {
        let mut b = f.new_dataset_builder();
        if let Some(c) = chunk {
            b = b.chunk(c.to_vec());
        }
        for fl in filters {
            b = match fl {
                F::Shuffle => b.shuffle(),
                F::Deflate => b.deflate(4),
                F::Fletcher => b.fletcher32(),
            };
        }
        let d = b.empty::<T>().shape(shape.to_vec()).create(name).unwrap();
        d.write_raw(data).unwrap();
    }

    /// Every sample of `name` in `path`, read in a scrambled order through one shared buffer.
    fn samples(path: &Path, name: &str) -> (Vec<Vec<u8>>, Hdf5Read) {
        let s = Hdf5Source::open(path, name, None).unwrap();
        let mut buf = Vec::new();
        let mut out = vec![Vec::new(); s.len()];
        for k in 0..s.len() {
            let i = (k * 7 + 3) % s.len();
            let Raw::Pixels(v) = s.get(i, &mut buf).unwrap().raw else {
                panic!()
            };
            out[i] = match v.pixels {
                Pixels::U8(p) => p.to_vec(),
                Pixels::F32(p) => bytemuck::cast_slice(p).to_vec(),
            };
        }
        (out, s.read_path())
    }

    #[test]
    fn every_chunking_and_filter_gives_the_contiguous_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("all.h5");
        let rgb: Vec<u8> = (0..N * H * W * 3).map(value).collect();
        let gray: Vec<f32> = (0..N * H * W)
            .map(|i| value(i) as f32 * 0.25 - 3.0)
            .collect();
        let f = hdf5::File::create(&p).unwrap();
        create(&f, "rgb/flat", &[N, H, W, 3], None, &[], &rgb);
        create(&f, "gray/flat", &[N, H, W], None, &[], &gray);
        let chunkings_rgb: [&[usize]; 5] = [
            &[1, H, W, 3],
            &[4, H, W, 3],
            &[N, H, W, 3],
            &[3, 4, 2, 2],
            &[2, H, 1, 3],
        ];
        let chunkings_gray: [&[usize]; 3] = [&[1, H, W], &[4, H, W], &[3, 4, 3]];
        let pipelines: [&[F]; 4] = [&[], &[F::Deflate], &[F::Shuffle, F::Deflate], &[F::Shuffle]];
        let mut names = Vec::new();
        for (ci, c) in chunkings_rgb.iter().enumerate() {
            for (pi, fl) in pipelines.iter().enumerate() {
                let name = format!("rgb/c{ci}p{pi}");
                create(&f, &name, &[N, H, W, 3], Some(c), fl, &rgb);
                names.push((name, "rgb/flat", c.to_vec(), fl.to_vec()));
            }
        }
        for (ci, c) in chunkings_gray.iter().enumerate() {
            for (pi, fl) in pipelines.iter().enumerate() {
                let name = format!("gray/c{ci}p{pi}");
                create(&f, &name, &[N, H, W], Some(c), fl, &gray);
                names.push((name, "gray/flat", c.to_vec(), fl.to_vec()));
            }
        }
        // A filter stoker does not undo: through the library, same bytes.
        create(
            &f,
            "rgb/fletcher",
            &[N, H, W, 3],
            Some(&[2, H, W, 3]),
            &[F::Fletcher, F::Deflate],
            &rgb,
        );
        f.close().unwrap();

        let (rgb_want, path) = samples(&p, "rgb/flat");
        assert_eq!(path, Hdf5Read::Contiguous);
        let (gray_want, _) = samples(&p, "gray/flat");
        assert_eq!(rgb_want.concat(), rgb);
        for (name, flat, chunk, fl) in &names {
            let (got, path) = samples(&p, name);
            let want = if flat.starts_with("rgb") {
                &rgb_want
            } else {
                &gray_want
            };
            let bad = (0..N).find(|&i| got[i] != want[i]);
            assert_eq!(
                bad, None,
                "{name}: chunks {chunk:?}, filters {fl:?}: sample differs"
            );
            let whole = chunk[1..] == [H, W, 3][..chunk.len() - 1];
            let expected = Hdf5Read::Chunks {
                whole_images: whole,
                deflate: fl.iter().any(|f| matches!(f, F::Deflate)),
                shuffle: fl.iter().any(|f| matches!(f, F::Shuffle)),
            };
            assert_eq!(path, expected, "{name}");
        }
        let (got, path) = samples(&p, "rgb/fletcher");
        assert_eq!((path, got), (Hdf5Read::Library, rgb_want));
        let s = Hdf5Source::open(&p, "rgb/fletcher", None).unwrap();
        assert!(
            s.describe().contains("filter fletcher32"),
            "{}",
            s.describe()
        );
        assert!(!s.access().fast);
        let s = Hdf5Source::open(&p, "rgb/c0p1", None).unwrap();
        assert!(s.access().fast);
        assert!(s.describe().contains("lock-free"), "{}", s.describe());
    }

    #[test]
    fn unwritten_chunks_read_as_the_fill_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part.h5");
        let f = hdf5::File::create(&p).unwrap();
        for (name, filters) in [("plain", &[][..]), ("deflate", &[F::Deflate][..])] {
            let mut b = f.new_dataset_builder().chunk([2, H, W, 3]);
            if !filters.is_empty() {
                b = b.deflate(1);
            }
            let d = b.empty::<u8>().shape([6, H, W, 3]).create(name).unwrap();
            // Rows 0..2 only: chunks 1 and 2 are never written.
            let rows: Vec<u8> = (0..2 * H * W * 3).map(|i| value(i) | 1).collect();
            d.write_slice(
                &ndarray::Array4::from_shape_vec((2, H, W, 3), rows).unwrap(),
                ndarray::s![0..2, .., .., ..],
            )
            .unwrap();
        }
        f.close().unwrap();
        for name in ["plain", "deflate"] {
            let (got, path) = samples(&p, name);
            assert!(matches!(path, Hdf5Read::Chunks { .. }), "{name}");
            assert!(got[..2].iter().all(|s| s.iter().all(|&v| v & 1 == 1)));
            assert!(got[2..].iter().all(|s| s.iter().all(|&v| v == 0)), "{name}");
        }
    }

    /// The addresses and sizes of every chunk of `name`, from the library.
    fn chunk_spans(p: &Path, name: &str) -> Vec<(u64, u64)> {
        let f = hdf5::File::open(p).unwrap();
        let d = f.dataset(name).unwrap();
        (0..d.num_chunks().unwrap())
            .map(|k| {
                let c = d.chunk_info(k).unwrap();
                (c.addr, c.size)
            })
            .collect()
    }

    #[test]
    fn a_damaged_deflate_chunk_is_an_error_of_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.h5");
        let rgb: Vec<u8> = (0..N * H * W * 3).map(value).collect();
        let f = hdf5::File::create(&p).unwrap();
        create(
            &f,
            "images",
            &[N, H, W, 3],
            Some(&[2, H, W, 3]),
            &[F::Deflate],
            &rgb,
        );
        create(
            &f,
            "cut",
            &[N, H, W, 3],
            Some(&[2, 3, W, 3]),
            &[F::Shuffle, F::Deflate],
            &rgb,
        );
        f.close().unwrap();
        // Damage chunk 1 of `images` (samples 2 and 3) and chunk 0 of `cut` (half of samples 0, 1).
        let mut bytes = std::fs::read(&p).unwrap();
        for (name, k) in [("images", 1), ("cut", 0)] {
            let (addr, size) = chunk_spans(&p, name)[k];
            for b in &mut bytes[addr as usize + 2..(addr + size) as usize] {
                *b ^= 0x5a;
            }
        }
        std::fs::write(&p, &bytes).unwrap();
        for (name, bad) in [("images", [2, 3]), ("cut", [0, 1])] {
            let s = Hdf5Source::open(&p, name, None).unwrap();
            let mut buf = Vec::new();
            for i in 0..N {
                match s.get(i, &mut buf) {
                    Ok(item) => {
                        assert!(
                            !bad.contains(&i),
                            "{name}: sample {i} read from a damaged chunk"
                        );
                        let Raw::Pixels(v) = item.raw else { panic!() };
                        let Pixels::U8(px) = v.pixels else { panic!() };
                        let n = H * W * 3;
                        assert_eq!(px, &rgb[i * n..(i + 1) * n], "{name}: sample {i}");
                    }
                    Err(e) => {
                        assert!(bad.contains(&i), "{name}: sample {i}: {e}");
                        assert_eq!(e.kind(), ErrorKind::Format);
                        assert_eq!(e.index(), Some(i));
                        assert_eq!(e.path(), Some(p.as_path()));
                        assert!(e.to_string().contains("deflate"), "{e}");
                    }
                }
            }
        }
    }

    /// Reads every sample of `src` on another thread while this one holds the HDF5 library's
    /// lock; whether they all came back within `wait`.
    fn reads_while_locked(src: Arc<Hdf5Source>, wait: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let src = Arc::clone(&src);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..src.len() {
                    src.get(i, &mut buf).unwrap();
                }
                tx.send(()).unwrap();
            })
        };
        let done = hdf5::sync::sync(|| rx.recv_timeout(wait).is_ok());
        reader.join().unwrap();
        done
    }

    #[test]
    fn chunk_reads_do_not_wait_on_the_library_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock.h5");
        let rgb: Vec<u8> = (0..N * H * W * 3).map(value).collect();
        let f = hdf5::File::create(&p).unwrap();
        let c = [1, H, W, 3];
        create(&f, "plain", &[N, H, W, 3], Some(&c), &[], &rgb);
        create(
            &f,
            "deflate",
            &[N, H, W, 3],
            Some(&c),
            &[F::Shuffle, F::Deflate],
            &rgb,
        );
        create(
            &f,
            "fletcher",
            &[N, H, W, 3],
            Some(&c),
            &[F::Fletcher],
            &rgb,
        );
        f.close().unwrap();
        for (name, free) in [("plain", true), ("deflate", true), ("fletcher", false)] {
            let s = Arc::new(Hdf5Source::open(&p, name, None).unwrap());
            assert_eq!(s.read_path().lock_free(), free, "{name}");
            // The first pass asks the library where each chunk is; later ones need no lock.
            let mut buf = Vec::new();
            for i in 0..N {
                s.get(i, &mut buf).unwrap();
            }
            let wait = Duration::from_millis(if free { 20_000 } else { 300 });
            assert_eq!(reads_while_locked(s, wait), free, "{name}");
        }
    }
}
