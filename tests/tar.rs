//! Tar shards: the loader reads them like the folder and NPY forms; `tar` reads what
//! `TarWriter` writes and `TarSource` reads what `tar` writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use stoker::digest::Digest;
use stoker::source::{ImageFolder, NpySource, Raw, Source, TarSource, TarWriter};
use stoker::{DType, Layout, Loader};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The fixture JPEGs as WebDataset shards of `per_shard` samples, in folder order.
fn write_shards(dir: &Path, per_shard: usize) -> Vec<PathBuf> {
    let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
    let mut paths = Vec::new();
    let mut buf = Vec::new();
    for (k, chunk) in (0..folder.len())
        .collect::<Vec<_>>()
        .chunks(per_shard)
        .enumerate()
    {
        let p = dir.join(format!("shard-{k:06}.tar"));
        let mut w = TarWriter::new(std::io::BufWriter::new(std::fs::File::create(&p).unwrap()));
        for &i in chunk {
            let item = folder.get(i, &mut buf).unwrap();
            let Raw::Encoded(bytes) = item.raw else {
                panic!()
            };
            w.append_sample(&format!("{i:06}"), "jpg", bytes, item.label)
                .unwrap();
        }
        w.finish().unwrap();
        paths.push(p);
    }
    paths
}

fn digest<S: Source + 'static>(src: S, workers: usize) -> String {
    let mut loader = Loader::builder(src)
        .batch_size(5)
        .shuffle(true)
        .seed(11)
        .num_workers(workers)
        .size(256, 144)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let mut d = Digest::new();
    for e in 0..2 {
        for b in loader.epoch(e) {
            d.update(&b.unwrap());
        }
    }
    assert_eq!(d.batches(), 14);
    d.hex()
}

#[test]
fn loader_digest_equals_npy_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), 10);
    assert_eq!(shards.len(), 4);
    let tar = digest(TarSource::shards(&shards).unwrap(), 2);
    let npy = NpySource::glob(
        fixtures().join("npy/images-*.npy").to_str().unwrap(),
        Some(fixtures().join("npy/labels-*.npy").to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(tar, digest(npy, 2));
    let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
    assert_eq!(tar, digest(folder, 0));
    let pattern = dir.path().join("shard-*.tar");
    assert_eq!(
        tar,
        digest(TarSource::glob(pattern.to_str().unwrap()).unwrap(), 1)
    );
}

fn have_tar() -> bool {
    Command::new("tar").arg("--version").output().is_ok()
}

#[test]
fn gnu_tar_reads_our_shards() {
    if !have_tar() {
        eprintln!("no tar command: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), 32);
    let out = Command::new("tar")
        .arg("-tf")
        .arg(&shards[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 64);
    assert_eq!(names[..2], ["000000.jpg", "000000.cls"]);
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&shards[0])
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
    assert_eq!(
        std::fs::read(x.join("000005.jpg")).unwrap(),
        std::fs::read(&folder.files()[5]).unwrap()
    );
    assert_eq!(std::fs::read(x.join("000031.cls")).unwrap(), b"3");
}

#[test]
fn we_read_gnu_and_pax_tars() {
    if !have_tar() {
        eprintln!("no tar command: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    let long = "a-directory-name-that-is-long/".repeat(5);
    let deep = src.join(&long);
    std::fs::create_dir_all(&deep).unwrap();
    let jpg = std::fs::read(fixtures().join("photos-256x144/class-a/photo-00.jpg")).unwrap();
    for k in 0..3 {
        std::fs::write(deep.join(format!("s{k}.jpg")), &jpg[..jpg.len() - k]).unwrap();
        std::fs::write(deep.join(format!("s{k}.cls")), format!("{k}\n")).unwrap();
    }
    for format in ["gnu", "pax", "ustar"] {
        let out = dir.path().join(format!("{format}.tar"));
        let mut names: Vec<String> = (0..3)
            .flat_map(|k| [format!("{long}s{k}.jpg"), format!("{long}s{k}.cls")])
            .collect();
        if format == "ustar" {
            names.truncate(2); // long paths are split into prefix + name
        }
        let st = Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&src)
            .args(&names)
            .status()
            .unwrap();
        assert!(st.success(), "{format}");
        let t = TarSource::open(&out).unwrap();
        assert_eq!(t.len(), names.len() / 2, "{format}");
        let mut buf = Vec::new();
        for k in 0..t.len() {
            let item = t.get(k, &mut buf).unwrap();
            assert_eq!(item.label, Some(k as i64));
            assert!(matches!(item.raw, Raw::Encoded(b) if b == &jpg[..jpg.len() - k]));
            assert_eq!(t.key(k), Some(format!("{long}s{k}").as_str()));
        }
    }
}

#[test]
fn a_tar_cut_inside_a_member_names_file_and_member() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), 32);
    let bytes = std::fs::read(&shards[0]).unwrap();
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = TarSource::open(&cut).unwrap_err();
    assert_eq!(e.kind(), stoker::ErrorKind::Format);
    assert!(e.to_string().contains("cut.tar"), "{e}");
    assert!(e.message().contains("truncated: member '0000"), "{e}");
    // Through shards: the broken shard is the one named.
    let e = TarSource::shards(&[shards[0].clone(), cut.clone()]).unwrap_err();
    assert_eq!(e.path(), Some(cut.as_path()));
}
