//! Label checks: a negative label, or one not below `num_classes`, is an error that names the
//! file the bad value is in (the labels file, not the image), the sample index, the row, line
//! or member within that file, and the value: for every source, and through the wrappers
//! (`Concat` shards, `open`'s `AnySource`, `Arc`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stoker::source::{
    ImageFolder, Item, LabelSite, NpySource, Source, TarSource, TarWriter, save_npy,
};
use stoker::{Error, ErrorKind, Loader, OnError, Result, SkipBound};

use super::PHOTOS;

fn save_labels(path: &Path, labels: &[i64]) {
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    save_npy(path, "<i8", &[labels.len()], &bytes).unwrap();
}

/// The NPY fixtures' first shard (16 images) with `labels` as their labels file.
fn npy_with_labels(dir: &Path, labels: &[i64]) -> (NpySource, PathBuf) {
    let p = dir.join("labels.npy");
    save_labels(&p, labels);
    (
        NpySource::open("fixtures/npy/images-000.npy", Some(&p)).unwrap(),
        p,
    )
}

/// The error `build` gives, with `num_classes` when given.
fn build_error<S: Source + 'static>(source: S, num_classes: Option<usize>) -> Error {
    let mut b = Loader::builder(source);
    if let Some(n) = num_classes {
        b = b.num_classes(n);
    }
    b.build().err().expect("a label error")
}

/// Checks a label error's kind, file, index and message (the place in the file first).
fn assert_label_error(e: &Error, path: &Path, index: usize, message: &str) {
    assert_eq!(
        (e.kind(), e.path(), e.index()),
        (ErrorKind::Format, Some(path), Some(index)),
        "{e}"
    );
    assert!(e.message().starts_with(message), "{e}");
}

#[test]
fn npy_labels_name_the_labels_file_and_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let n = 16;
    let mut labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    labels[5] = -1;
    let (src, lab) = npy_with_labels(dir.path(), &labels);
    let src = Arc::new(src);
    assert_eq!(
        src.label_site(5),
        Some(LabelSite::Row {
            file: lab.clone(),
            row: 5
        })
    );
    let e = build_error(Arc::clone(&src), None);
    assert_label_error(&e, &lab, 5, "row 5: label -1 is negative (set ignore_label");
    // The display names the labels file, not the images file.
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("sample 5 ({}): ", lab.display())),
        "{shown}"
    );
    assert!(!shown.contains("images-000.npy"), "{shown}");
    // -1 let through as the ignored label: it reaches the batch as it is.
    let mut l = Loader::builder(src)
        .batch_size(n)
        .ignore_label(-1)
        .num_classes(3)
        .build()
        .unwrap();
    let b = l.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.labels().unwrap()[5], -1);

    labels[5] = 3;
    let src = Arc::new(npy_with_labels(dir.path(), &labels).0);
    let e = build_error(Arc::clone(&src), Some(3));
    assert_label_error(&e, &lab, 5, "row 5: label 3 is not below num_classes 3");
    assert!(Loader::builder(src).num_classes(4).build().is_ok());
}

#[test]
fn sharded_npy_labels_name_the_row_within_the_second_shard() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in 0..2 {
        let name = format!("images-00{k}.npy");
        std::fs::copy(format!("fixtures/npy/{name}"), d.join(name)).unwrap();
    }
    let (lab0, lab1) = (d.join("labels-000.npy"), d.join("labels-001.npy"));
    save_labels(&lab0, &[0; 16]);
    let mut second = [1i64; 16];
    second[3] = -7;
    save_labels(&lab1, &second);
    // Global sample 19 is row 3 of the second shard's labels file.
    let want = |e: &Error| assert_label_error(e, &lab1, 19, "row 3: label -7 is negative");
    let images = [d.join("images-000.npy"), d.join("images-001.npy")];
    let shards = NpySource::shards(&images, Some(&[lab0.clone(), lab1.clone()])).unwrap();
    assert_eq!(
        shards.label_site(19),
        Some(LabelSite::Row {
            file: lab1.clone(),
            row: 3
        })
    );
    assert_eq!(
        shards.label_site(3),
        Some(LabelSite::Row {
            file: lab0.clone(),
            row: 3
        })
    );
    want(&build_error(shards, None));
    // The same through `open` (labels paired by name), behind `AnySource` and `Arc`.
    let any = stoker::source::open(d, &stoker::source::OpenOptions::new()).unwrap();
    want(&build_error(Arc::new(any), None));
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_labels_name_the_file_the_dataset_and_the_row() {
    use stoker::source::Hdf5Source;
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..2)
        .map(|k| dir.path().join(format!("part-{k}.h5")))
        .collect();
    for (k, p) in paths.iter().enumerate() {
        let f = hdf5::File::create(p).unwrap();
        let x = f.new_dataset::<u8>().shape([3, 2, 2]).create("x").unwrap();
        x.write_raw(&[0u8; 12]).unwrap();
        let y = f.new_dataset::<i16>().shape([3]).create("meta/y").unwrap();
        let labels: [i16; 3] = if k == 1 { [0, 9, 1] } else { [0, 1, 2] };
        y.write_raw(&labels).unwrap();
        drop((x, y));
        f.close().unwrap();
    }
    let src = Hdf5Source::shards(&paths, "x", Some("meta/y")).unwrap();
    assert_eq!(
        src.label_site(4),
        Some(LabelSite::Dataset {
            file: paths[1].clone(),
            dataset: "meta/y".into(),
            row: 1
        })
    );
    let e = build_error(src, Some(5));
    assert_label_error(
        &e,
        &paths[1],
        4,
        "row 1 of dataset 'meta/y': label 9 is not below num_classes 5",
    );
}

#[test]
fn manifest_labels_name_the_line_counted_as_the_file_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("train.csv");
    let photos = std::fs::canonicalize(PHOTOS).unwrap();
    let row = |name: &str, label: i64| format!("{},{label}", photos.join(name).display());
    // Line 1 the header (after a byte-order mark), line 2 blank, then samples 0 and 1, a
    // blank line 5, and sample 2, the bad one, on line 6; CRLF and LF line ends.
    let text = format!(
        "\u{feff}path,label\r\n\r\n{}\r\n{}\n\n{}\n",
        row("class-a/photo-00.jpg", 0),
        row("class-b/photo-01.jpg", 1),
        row("class-c/photo-02.jpg", -4),
    );
    std::fs::write(&csv, text).unwrap();
    let src = ImageFolder::from_manifest(&csv).unwrap();
    assert_eq!(
        src.label_site(2),
        Some(LabelSite::Line {
            file: csv.clone(),
            line: 6
        })
    );
    assert_eq!(
        src.label_site(0),
        Some(LabelSite::Line {
            file: csv.clone(),
            line: 3
        })
    );
    let e = build_error(src, None);
    assert_label_error(&e, &csv, 2, "line 6: label -4 is negative");
}

#[test]
fn tar_labels_name_the_shard_and_the_cls_member() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(format!("{PHOTOS}/class-a/photo-00.jpg")).unwrap();
    let shards: Vec<PathBuf> = (0..2)
        .map(|k| dir.path().join(format!("shard-00000{k}.tar")))
        .collect();
    for (k, p) in shards.iter().enumerate() {
        let mut w = TarWriter::new(std::fs::File::create(p).unwrap());
        for j in 0..3 {
            let key = format!("{:06}", 3 * k + j);
            w.append(&format!("{key}.jpg"), &jpeg).unwrap();
            // The bad label's member is named as the archive spells it.
            let (ext, label): (&str, &[u8]) = if (k, j) == (1, 1) {
                ("CLS", b"-2")
            } else {
                ("cls", b"1")
            };
            w.append(&format!("{key}.{ext}"), label).unwrap();
        }
        w.finish().unwrap();
    }
    let src = TarSource::glob(dir.path().join("shard-*.tar").to_str().unwrap()).unwrap();
    assert_eq!(
        src.label_site(4),
        Some(LabelSite::Member {
            file: shards[1].clone(),
            member: "000004.CLS".into()
        })
    );
    let e = build_error(src, None);
    assert_label_error(
        &e,
        &shards[1],
        4,
        "member '000004.CLS': label -2 is negative",
    );
}

#[test]
fn folder_labels_name_the_class_folder() {
    // A folder's labels are its class folders: 4 classes, so num_classes(3) is refused at
    // the first file of the fourth, naming that class folder.
    let src = ImageFolder::open(PHOTOS).unwrap();
    let class_d = Path::new(PHOTOS).join("class-d");
    assert_eq!(
        src.label_site(24),
        Some(LabelSite::ClassFolder {
            folder: class_d.clone()
        })
    );
    let e = build_error(src, Some(3));
    assert_label_error(
        &e,
        &class_d,
        24,
        "class folder 'class-d': label 3 is not below num_classes 3",
    );
    // Labels given with the files have no labels file: the error names the image.
    let photo = PathBuf::from(format!("{PHOTOS}/class-a/photo-00.jpg"));
    let given =
        ImageFolder::from_files(vec![(photo.clone(), Some(0)), (photo.clone(), Some(-1))]).unwrap();
    assert_eq!(given.label_site(1), None);
    let e = build_error(given, None);
    assert_label_error(&e, &photo, 1, "label -1 is negative");
}

/// A source whose labels are known only when a sample is read (`label` is `None`), as a
/// user's own source may be: the loader checks them in the workers.
struct LabelsOnRead<S>(S);

impl<S: Source> Source for LabelsOnRead<S> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        self.0.get(index, buf)
    }
    fn path(&self, index: usize) -> Option<&Path> {
        self.0.path(index)
    }
    fn has_labels(&self) -> bool {
        self.0.has_labels()
    }
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        self.0.label_site(index)
    }
    fn channels(&self) -> Option<usize> {
        self.0.channels()
    }
    fn size(&self) -> Option<(usize, usize)> {
        self.0.size()
    }
}

#[test]
fn labels_read_with_the_sample_are_checked_in_the_workers_with_their_site() {
    let dir = tempfile::tempdir().unwrap();
    let mut labels = [0i64; 16];
    labels[9] = -3;
    let (src, lab) = npy_with_labels(dir.path(), &labels);
    let src = Arc::new(LabelsOnRead(src));
    // The build-time check cannot see it; the epoch stops at it.
    let mut l = Loader::builder(Arc::clone(&src))
        .batch_size(4)
        .build()
        .unwrap();
    let e = l.epoch(0).find_map(|b| b.err()).unwrap();
    assert_label_error(&e, &lab, 9, "row 9: label -3 is negative");
    // Skipped: counted as a format error whose message names the labels file and row.
    let mut l = Loader::builder(src)
        .batch_size(4)
        .on_error(OnError::Skip)
        .max_skipped(SkipBound::Count(1))
        .build()
        .unwrap();
    let n: usize = l.epoch(0).map(|b| b.unwrap().len()).sum();
    let stats = l.stats();
    assert_eq!((n, stats.skipped), (15, 1));
    let skip = &stats.skipped_samples[0];
    assert_eq!((skip.index, skip.kind), (Some(9), ErrorKind::Format));
    assert!(
        skip.message.contains(&lab.display().to_string()) && skip.message.contains("row 9:"),
        "{}",
        skip.message
    );
}
