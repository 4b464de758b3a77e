//! HDF5 chunked datasets read from the map by chunk address: every chunking and filter
//! pipeline gives the contiguous bytes, damaged chunks are errors of their sample, and reads
//! do not wait on the HDF5 library's lock.
#![cfg(feature = "hdf5")]

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
