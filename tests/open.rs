//! The format layer: `source::open` recognises every format and the directories that
//! `stoker convert` writes, pairs labels, and gives the same batches as the format's own type.

use std::path::{Path, PathBuf};

use stoker::digest::Digest;
use stoker::source::{ImageFolder, Index, OpenOptions, Raw, Source, TarWriter, open, save_npy};
use stoker::{DType, ErrorKind, Layout, Loader, Pixels};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn digest<S: Source + 'static>(src: S) -> String {
    let mut loader = Loader::builder(src)
        .batch_size(5)
        .shuffle(true)
        .seed(2)
        .num_workers(2)
        .size(256, 144)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let mut d = Digest::new();
    for b in loader.epoch(0) {
        d.update(&b.unwrap());
    }
    d.hex()
}

fn folder_digest() -> String {
    digest(ImageFolder::open(fixtures().join("photos-256x144")).unwrap())
}

/// The fixtures' decoded pixels and labels.
fn pixels() -> (Vec<u8>, Vec<i64>, [usize; 4]) {
    let src = stoker::NpySource::glob(
        fixtures().join("npy/images-*.npy").to_str().unwrap(),
        Some(fixtures().join("npy/labels-*.npy").to_str().unwrap()),
    )
    .unwrap();
    let (mut px, mut labels, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..src.len() {
        let item = src.get(i, &mut buf).unwrap();
        let Raw::Pixels(v) = item.raw else {
            panic!("pixels")
        };
        let Pixels::U8(p) = v.pixels else {
            panic!("u8")
        };
        px.extend_from_slice(p);
        labels.push(item.label.unwrap());
    }
    let (w, h) = src.size().unwrap();
    (px, labels, [src.len(), h, w, 3])
}

/// NPY shards named as `stoker convert --to npy` names them, in `dir`.
fn write_npy_shards(dir: &Path, per_shard: usize) -> usize {
    let (px, labels, [n, h, w, c]) = pixels();
    let sample = h * w * c;
    let mut k = 0;
    for start in (0..n).step_by(per_shard) {
        let end = (start + per_shard).min(n);
        save_npy(
            dir.join(format!("images-{k:06}.npy")),
            "|u1",
            &[end - start, h, w, c],
            &px[start * sample..end * sample],
        )
        .unwrap();
        let l: Vec<u8> = labels[start..end]
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect();
        save_npy(
            dir.join(format!("labels-{k:06}.npy")),
            "<i8",
            &[end - start],
            &l,
        )
        .unwrap();
        k += 1;
    }
    k
}

#[test]
fn a_converted_npy_directory_opens_with_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_npy_shards(dir.path(), 12);
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert_eq!(src.format(), "npy");
    assert!(src.has_labels());
    assert!(src.access().fast);
    assert_eq!(digest(src), folder_digest());
    // One shard alone finds its labels beside it.
    let one = open(dir.path().join("images-000001.npy"), &OpenOptions::new()).unwrap();
    assert_eq!((one.len(), one.has_labels()), (12, true));
    // A glob too.
    let glob = dir.path().join("images-*.npy");
    let all = open(&glob, &OpenOptions::new()).unwrap();
    assert_eq!((all.len(), all.has_labels()), (32, true));
}

#[test]
fn npy_labels_can_be_given_and_must_pair_with_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    write_npy_shards(dir.path(), 12);
    // Explicit labels override the pairing (here: the shards' own, in another spelling).
    let pattern = dir.path().join("labels-*.npy").display().to_string();
    let src = open(dir.path(), &OpenOptions::new().labels(pattern)).unwrap();
    assert_eq!(digest(src), folder_digest());
    // One shard without its labels file: an error naming that shard, not a silent mix.
    std::fs::remove_file(dir.path().join("labels-000002.npy")).unwrap();
    let e = open(dir.path(), &OpenOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.to_string().contains("images-000002.npy"), "{e}");
    // No labels at all: unlabelled.
    for k in 0..2 {
        std::fs::remove_file(dir.path().join(format!("labels-{k:06}.npy"))).unwrap();
    }
    assert!(!open(dir.path(), &OpenOptions::new()).unwrap().has_labels());
}

#[test]
fn x_and_y_files_pair() {
    let dir = tempfile::tempdir().unwrap();
    save_npy(dir.path().join("x_train.npy"), "|u1", &[2, 1, 1], &[5, 6]).unwrap();
    save_npy(dir.path().join("y_train.npy"), "|u1", &[2], &[1, 0]).unwrap();
    let src = open(dir.path().join("x_train.npy"), &OpenOptions::new()).unwrap();
    assert_eq!(src.get(0, &mut Vec::new()).unwrap().label, Some(1));
}

/// The fixtures as tar shards `shard-00000k.tar`, as `stoker convert --to tar` names them.
fn write_tar_shards(dir: &Path) {
    let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
    let mut buf = Vec::new();
    for k in 0..2 {
        let p = dir.join(format!("shard-{k:06}.tar"));
        let mut w = TarWriter::new(std::fs::File::create(&p).unwrap());
        for i in k * 16..(k + 1) * 16 {
            let item = folder.get(i, &mut buf).unwrap();
            let Raw::Encoded(bytes) = item.raw else {
                panic!("encoded")
            };
            w.append_sample(&format!("{i:06}"), "jpg", bytes, item.label)
                .unwrap();
        }
        w.finish().unwrap();
    }
}

#[test]
fn a_tar_directory_and_a_tar_file_without_extension_open() {
    let dir = tempfile::tempdir().unwrap();
    write_tar_shards(dir.path());
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert_eq!((src.format(), src.len()), ("tar", 32));
    assert_eq!(digest(src), folder_digest());
    // Recognised by content: the ustar magic.
    let bare = dir.path().join("noext");
    std::fs::copy(dir.path().join("shard-000000.tar"), &bare).unwrap();
    assert_eq!(open(&bare, &OpenOptions::new()).unwrap().format(), "tar");
    // Tar shards carry their labels: giving others is a usage error.
    let e = open(dir.path(), &OpenOptions::new().labels("l.npy")).unwrap_err();
    assert!(e.to_string().contains("tar"), "{e}");
}

#[test]
fn an_index_lists_the_shards_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_tar_shards(dir.path());
    // A tar file the index does not list is not read.
    std::fs::write(dir.path().join("junk.tar"), b"not a tar").unwrap();
    let mut index = Index::new("tar", 32);
    index.shards = vec!["shard-000000.tar".into(), "shard-000001.tar".into()];
    index.write(dir.path()).unwrap();
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert_eq!(digest(src), folder_digest());
    // A sample count that does not match is an error naming the index.
    index.samples = 31;
    index.write(dir.path()).unwrap();
    let e = open(dir.path(), &OpenOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.to_string().contains("stoker.json"), "{e}");
    // An unknown format is named.
    index.format = "zip".into();
    index.write(dir.path()).unwrap();
    let e = open(dir.path(), &OpenOptions::new()).unwrap_err();
    assert!(e.to_string().contains("zip"), "{e}");
}

#[test]
fn shard_samples_are_read_back_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_tar_shards(dir.path());
    let mut index = Index::new("tar", 32);
    index.shards = vec!["shard-000000.tar".into(), "shard-000001.tar".into()];
    index.shard_samples = vec![16, 16];
    index.write(dir.path()).unwrap();
    assert_eq!(Index::read(dir.path()).unwrap().unwrap(), index);
    assert_eq!(
        digest(open(dir.path(), &OpenOptions::new()).unwrap()),
        folder_digest()
    );
    for bad in [vec![16, 15], vec![32]] {
        index.shard_samples = bad.clone();
        index.write(dir.path()).unwrap();
        let e = open(dir.path(), &OpenOptions::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "{bad:?}");
        assert!(e.to_string().contains("stoker.json"), "{e}");
        assert!(e.to_string().contains("shard_samples"), "{e}");
    }
    // An index without them (as earlier versions wrote) still opens.
    index.shard_samples.clear();
    index.write(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("stoker.json")).unwrap();
    assert!(
        !text.contains("shard_samples") && !text.contains("part"),
        "{text}"
    );
    assert_eq!(open(dir.path(), &OpenOptions::new()).unwrap().len(), 32);
}

#[test]
fn parts_open_as_one_data_set_once_every_part_is_written() {
    use stoker::source::Part;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_tar_shards(d);
    let part = |k: usize| {
        let mut index = Index::new("tar", 16);
        index.shards = vec![format!("shard-{k:06}.tar")];
        index.shard_samples = vec![16];
        index.part = Some(Part::new(k, 2).unwrap());
        index
    };
    // Part 1 finishes first: part 0 is named as missing.
    part(1).write(d).unwrap();
    assert!(d.join("stoker.part-0001-of-0002.json").is_file());
    let e = open(d, &OpenOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(
        e.to_string().contains("1 of 2 parts not written yet"),
        "{e}"
    );
    assert!(
        e.to_string().contains("stoker.part-0000-of-0002.json"),
        "{e}"
    );
    assert!(!e.to_string().contains("stoker.part-0001"), "{e}");
    assert_eq!(e.path(), Some(d));
    part(0).write(d).unwrap();
    let whole = Index::read(d).unwrap().unwrap();
    assert_eq!(
        (whole.samples, whole.part, whole.shard_samples.clone()),
        (32, None, vec![16, 16])
    );
    assert_eq!(whole.shards, ["shard-000000.tar", "shard-000001.tar"]);
    let src = open(d, &OpenOptions::new()).unwrap();
    assert_eq!(digest(src), folder_digest());

    // A part index under another part's name.
    std::fs::copy(
        d.join("stoker.part-0000-of-0002.json"),
        d.join("stoker.part-0001-of-0002.json"),
    )
    .unwrap();
    let e = open(d, &OpenOptions::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("holds the index of part 0/2, not 1/2"),
        "{e}"
    );
    assert!(
        e.to_string().contains("stoker.part-0001-of-0002.json"),
        "{e}"
    );
    part(1).write(d).unwrap();
    // Parts that disagree on the format.
    let mut npy = part(1);
    npy.format = "npy".into();
    npy.write(d).unwrap();
    let e = open(d, &OpenOptions::new()).unwrap_err();
    assert!(e.to_string().contains("unlike \"tar\""), "{e}");
    part(1).write(d).unwrap();
    // Left from an earlier run: parts of another count, or a whole index beside the parts.
    let mut stale = part(0);
    stale.part = Some(Part::new(0, 3).unwrap());
    stale.write(d).unwrap();
    let e = open(d, &OpenOptions::new()).unwrap_err();
    assert!(e.to_string().contains("two runs"), "{e}");
    std::fs::remove_file(d.join("stoker.part-0000-of-0003.json")).unwrap();
    let mut single = Index::new("tar", 32);
    single.shards = whole.shards.clone();
    single.write(d).unwrap();
    let e = open(d, &OpenOptions::new()).unwrap_err();
    assert!(
        e.to_string().contains("both stoker.json and part indexes"),
        "{e}"
    );
    std::fs::remove_file(d.join("stoker.json")).unwrap();
    assert_eq!(open(d, &OpenOptions::new()).unwrap().len(), 32);
}

#[test]
fn an_index_pairs_npy_labels_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    write_npy_shards(dir.path(), 16);
    // Labels under other names, found only through the index.
    for k in 0..2 {
        std::fs::rename(
            dir.path().join(format!("labels-{k:06}.npy")),
            dir.path().join(format!("targets-{k}.npy")),
        )
        .unwrap();
    }
    let mut index = Index::new("npy", 32);
    index.shards = vec!["images-000000.npy".into(), "images-000001.npy".into()];
    index.labels = vec!["targets-0.npy".into(), "targets-1.npy".into()];
    index.write(dir.path()).unwrap();
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert!(src.has_labels());
    assert_eq!(digest(src), folder_digest());
}

#[test]
fn a_glob_of_two_formats_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_tar_shards(dir.path());
    save_npy(dir.path().join("shard-x.npy"), "|u1", &[1, 1, 1], &[0]).unwrap();
    let e = open(dir.path().join("shard-*"), &OpenOptions::new()).unwrap_err();
    assert!(e.to_string().contains("two formats"), "{e}");
}

#[test]
fn loose_images_open_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.jpg", "b.jpg"] {
        std::fs::copy(
            fixtures().join("photos-256x144/class-a/photo-00.jpg"),
            dir.path().join(name),
        )
        .unwrap();
    }
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert_eq!(
        (src.format(), src.len(), src.has_labels()),
        ("image files", 2, false)
    );
    let one = open(dir.path().join("a.jpg"), &OpenOptions::new()).unwrap();
    assert_eq!(one.len(), 1);
}

#[cfg(feature = "hdf5")]
#[test]
fn a_converted_hdf5_directory_opens_with_its_labels() {
    use stoker::source::{Hdf5Layout, save_hdf5};
    let dir = tempfile::tempdir().unwrap();
    let (px, labels, shape) = pixels();
    save_hdf5(
        dir.path().join("data-000000.h5"),
        Pixels::U8(&px),
        shape,
        Some(&labels),
        Hdf5Layout::Contiguous,
    )
    .unwrap();
    let src = open(dir.path(), &OpenOptions::new()).unwrap();
    assert_eq!(src.format(), "hdf5");
    assert!(src.has_labels() && src.access().fast);
    assert_eq!(digest(src), folder_digest());
    // Chunked, deflated: opens the same way, read lock-free from the chunk map, and `open`
    // names that path.
    let chunked = dir.path().join("chunked.h5");
    let layout = Hdf5Layout::Chunked {
        rows: 4,
        deflate: Some(4),
    };
    save_hdf5(&chunked, Pixels::U8(&px), shape, None, layout).unwrap();
    let src = open(&chunked, &OpenOptions::new()).unwrap();
    assert!(!src.has_labels());
    assert!(src.access().fast, "{}", src.access().note);
    assert!(
        src.access()
            .note
            .contains("chunked (4, 144, 256, 3) deflate"),
        "{}",
        src.access().note
    );
}
