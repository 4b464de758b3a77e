//! Image folder source: torchvision's `ImageFolder` layout (`root/<class>/**/<image>`), a
//! manifest CSV of `path,label` lines, or an explicit list of files.
//!
//! `get` reads the encoded file bytes into the caller's buffer; the worker decodes them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Access, Item, LabelSite, Raw, Source};
use crate::{Error, Result};

/// Extensions (lowercase) of the files a folder walk keeps.
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Where the list of files (and the labels) came from, for `describe` and `label_site`.
#[derive(Debug)]
enum Origin {
    Folder(PathBuf),
    /// A manifest CSV and the line (from 1) of each sample in it.
    Manifest {
        csv: PathBuf,
        lines: Vec<usize>,
    },
    Files,
}

/// Encoded image files (JPEG or PNG) with optional labels, read whole by [`get`](Source::get)
/// into the caller's buffer and decoded by the worker.
///
/// ```
/// use stoker::source::{ImageFolder, Raw, Source};
/// let dir = tempfile::tempdir().unwrap();
/// for (class, file) in [("dog", "a.jpg"), ("cat", "b.png"), ("cat", "sub/c.JPEG")] {
///     let p = dir.path().join(class).join(file);
///     std::fs::create_dir_all(p.parent().unwrap()).unwrap();
///     std::fs::write(&p, file).unwrap();
/// }
/// let src = ImageFolder::open(dir.path()).unwrap();
/// assert_eq!(src.classes(), ["cat", "dog"]);
/// assert_eq!(src.labels(), Some(&[0, 0, 1][..]));
/// let mut buf = Vec::new();
/// let item = src.get(2, &mut buf).unwrap();
/// assert!(matches!(item.raw, Raw::Encoded(b"a.jpg")));
/// assert_eq!(item.label, Some(1));
/// ```
#[derive(Debug)]
pub struct ImageFolder {
    files: Vec<PathBuf>,
    labels: Option<Vec<i64>>,
    classes: Vec<String>,
    origin: Origin,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_image_ext(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Appends the image files under `dir` (recursively, skipping hidden entries) to `out`.
/// Symlinks to files are followed; symlinks to directories are not (no cycles).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if has_image_ext(&path) && (ft.is_file() || path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// The `.jpg`/`.jpeg`/`.png` files (any case) below `dir`, in torchvision's `ImageFolder`
/// order: by directory path (as a string), then file name. Hidden entries (names starting
/// with `.`) are skipped; symlinks to files are followed, symlinks to directories below `dir`
/// are not, so a link cycle cannot loop. The one directory walk of the crate and its tools.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// for f in ["b.jpg", "a/z.PNG", "a/b/c.jpeg", ".hidden/x.jpg", "notes.txt"] {
///     let p = dir.path().join(f);
///     std::fs::create_dir_all(p.parent().unwrap()).unwrap();
///     std::fs::write(p, b"").unwrap();
/// }
/// let files = stoker::source::image_files(dir.path()).unwrap();
/// let rel: Vec<_> = files.iter().map(|p| p.strip_prefix(dir.path()).unwrap()).collect();
/// assert_eq!(rel, [std::path::Path::new("b.jpg"), "a/z.PNG".as_ref(), "a/b/c.jpeg".as_ref()]);
/// ```
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort_by_cached_key(|p| {
        let parent = p.parent().unwrap_or(Path::new("")).as_os_str();
        (
            parent.as_encoded_bytes().to_vec(),
            p.file_name().map(|n| n.to_os_string()),
        )
    });
    Ok(files)
}

/// Strips surrounding double quotes and undoes CSV `""` escapes.
fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => s.to_string(),
    }
}

/// One sample of a manifest CSV: its path as written, its label, and its line (from 1, every
/// line of the file counted).
#[derive(Debug)]
pub(crate) struct ManifestRow {
    pub(crate) path: String,
    pub(crate) label: i64,
    pub(crate) line: usize,
}

/// The rows of a manifest CSV (`path,label` lines, optional header, quoted fields, a UTF-8
/// byte-order mark allowed); the error names the line.
pub(crate) fn parse_manifest(bytes: &[u8]) -> std::result::Result<Vec<ManifestRow>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not utf-8 text (byte {})", e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut first = true;
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if std::mem::take(&mut first) && line.eq_ignore_ascii_case("path,label") {
            continue;
        }
        let bad = |m: String| format!("line {}: {m}", k + 1);
        let (path, label) = line
            .rsplit_once(',')
            .ok_or_else(|| bad("expected path,label".into()))?;
        let label = unquote(label.trim());
        let label: i64 = label
            .parse()
            .map_err(|_| bad(format!("label {label:?} is not an integer")))?;
        let path = unquote(path.trim());
        if path.is_empty() {
            return Err(bad("empty path".into()));
        }
        rows.push(ManifestRow {
            path,
            label,
            line: k + 1,
        });
    }
    if rows.is_empty() {
        return Err("no samples in manifest".into());
    }
    Ok(rows)
}

/// Fuzzing ([`crate::fuzz::manifest`]): `data` as a manifest CSV. Panics only on a broken
/// invariant (an empty result, an empty path, lines not increasing from 1).
pub(crate) fn fuzz_manifest(data: &[u8]) {
    if let Ok(rows) = parse_manifest(data) {
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| !r.path.is_empty()), "{rows:?}");
        assert!(rows[0].line >= 1, "{rows:?}");
        assert!(rows.windows(2).all(|w| w[0].line < w[1].line), "{rows:?}");
    }
}

impl ImageFolder {
    /// Walks `root` in torchvision's `ImageFolder` layout: every immediate subdirectory is a
    /// class, labelled `0..` in byte order of the names; its `.jpg`/`.jpeg`/`.png` files
    /// (any case), found recursively, are its samples, sorted as torchvision sorts them: by
    /// directory path (as a string), then file name. Hidden entries (names
    /// starting with `.`) are skipped, as are symlinked directories below the class level.
    /// An empty class keeps its label; no images at all is an error.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::create_dir(dir.path().join("only")).unwrap();
    /// let e = stoker::source::ImageFolder::open(dir.path()).unwrap_err();
    /// assert!(e.to_string().contains("no images"));
    /// ```
    pub fn open(root: impl AsRef<Path>) -> Result<ImageFolder> {
        let root = root.as_ref();
        let mut class_dirs = Vec::new();
        for entry in fs::read_dir(root).map_err(|e| Error::io(root, e))? {
            let entry = entry.map_err(|e| Error::io(root, e))?;
            let name = entry.file_name();
            // `path.is_dir()` follows a symlinked class directory.
            if !is_hidden(&name) && entry.path().is_dir() {
                class_dirs.push(name);
            }
        }
        if class_dirs.is_empty() {
            return Err(Error::format(
                root,
                "no class folders (expected root/<class>/<image>)",
            ));
        }
        // OsString order is byte order on Unix.
        class_dirs.sort();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::with_capacity(class_dirs.len());
        for (label, name) in class_dirs.iter().enumerate() {
            files.extend(image_files(&root.join(name))?);
            labels.resize(files.len(), label as i64);
            classes.push(name.to_string_lossy().into_owned());
        }
        if files.is_empty() {
            return Err(Error::format(
                root,
                format!(
                    "no images found in {} class folders (extensions: jpg, jpeg, png)",
                    classes.len()
                ),
            ));
        }
        Ok(ImageFolder {
            files,
            labels: Some(labels),
            classes,
            origin: Origin::Folder(root.to_path_buf()),
        })
    }

    /// Reads a manifest CSV of `path,label` lines. The first line may be the header
    /// `path,label`; blank lines are skipped. Each line splits at its last comma, so paths
    /// may contain commas; a path in double quotes is unquoted (`""` inside is `"`).
    /// Relative paths are relative to the CSV's directory. A manifest has no class names:
    /// [`classes`](Self::classes) is empty. Files are not checked until read.
    ///
    /// ```
    /// use stoker::source::{ImageFolder, Source};
    /// let dir = tempfile::tempdir().unwrap();
    /// let csv = dir.path().join("train.csv");
    /// std::fs::write(&csv, "path,label\nimgs/a.jpg,3\n\"b, c.png\",0\n").unwrap();
    /// let src = ImageFolder::from_manifest(&csv).unwrap();
    /// assert_eq!(src.files(), [dir.path().join("imgs/a.jpg"), dir.path().join("b, c.png")]);
    /// assert_eq!(src.labels(), Some(&[3, 0][..]));
    /// std::fs::write(&csv, "a.jpg,3\nb.jpg\n").unwrap();
    /// let e = ImageFolder::from_manifest(&csv).unwrap_err();
    /// assert!(e.to_string().contains("train.csv") && e.to_string().contains("line 2"));
    /// ```
    pub fn from_manifest(csv: impl AsRef<Path>) -> Result<ImageFolder> {
        let csv = csv.as_ref();
        let bytes = fs::read(csv).map_err(|e| Error::io(csv, e))?;
        let rows = parse_manifest(&bytes).map_err(|m| Error::format(csv, m))?;
        let base = csv.parent().unwrap_or(Path::new(""));
        let files = rows.iter().map(|r| base.join(&r.path)).collect();
        Ok(ImageFolder {
            files,
            labels: Some(rows.iter().map(|r| r.label).collect()),
            classes: Vec::new(),
            origin: Origin::Manifest {
                csv: csv.to_path_buf(),
                lines: rows.iter().map(|r| r.line).collect(),
            },
        })
    }

    /// A source over the given files, in order. Either every file has a label or none has.
    ///
    /// ```
    /// use stoker::source::{ImageFolder, Source};
    /// let src = ImageFolder::from_files(vec![("a.png".into(), None), ("b.png".into(), None)]).unwrap();
    /// assert!(!src.has_labels());
    /// assert!(ImageFolder::from_files(vec![("a.png".into(), Some(1)), ("b.png".into(), None)]).is_err());
    /// ```
    pub fn from_files(files: Vec<(PathBuf, Option<i64>)>) -> Result<ImageFolder> {
        if files.is_empty() {
            return Err(Error::usage("no image files given"));
        }
        let labelled = files[0].1.is_some();
        if files.iter().any(|(_, l)| l.is_some() != labelled) {
            return Err(Error::usage("some files have labels and others do not"));
        }
        let labels = labelled.then(|| files.iter().filter_map(|(_, l)| *l).collect());
        Ok(ImageFolder {
            files: files.into_iter().map(|(p, _)| p).collect(),
            labels,
            classes: Vec::new(),
            origin: Origin::Files,
        })
    }

    /// Class names, index = label (empty for a manifest or a file list).
    ///
    /// ```
    /// let src = stoker::source::ImageFolder::from_files(vec![("a.png".into(), Some(0))]).unwrap();
    /// assert!(src.classes().is_empty());
    /// ```
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The files, in sample order.
    ///
    /// ```
    /// let src = stoker::source::ImageFolder::from_files(vec![("a.png".into(), None)]).unwrap();
    /// assert_eq!(src.files(), [std::path::PathBuf::from("a.png")]);
    /// ```
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The labels, in sample order (`None` for an unlabelled file list).
    ///
    /// ```
    /// let src = stoker::source::ImageFolder::from_files(vec![("a.png".into(), Some(4))]).unwrap();
    /// assert_eq!(src.labels(), Some(&[4][..]));
    /// ```
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref()
    }
}

impl Source for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let path = self.files.get(index).ok_or_else(|| {
            Error::usage(format!("index out of range (len {})", self.files.len())).at(index)
        })?;
        let io = |e| Error::io(path, e).at(index);
        let mut f = fs::File::open(path).map_err(io)?;
        buf.clear();
        // Grows `buf` only when this file is larger than any before it.
        if let Ok(m) = f.metadata() {
            buf.reserve_exact(usize::try_from(m.len()).unwrap_or(0));
        }
        f.read_to_end(buf).map_err(io)?;
        Ok(Item {
            raw: Raw::Encoded(&buf[..]),
            label: self.labels.as_ref().map(|l| l[index]),
        })
    }

    fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(PathBuf::as_path)
    }

    fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    fn label(&self, index: usize) -> Option<i64> {
        self.labels.as_ref()?.get(index).copied()
    }

    /// A manifest's line; a folder's class folder; none for labels given with the files.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        match &self.origin {
            Origin::Manifest { csv, lines } => Some(LabelSite::Line {
                file: csv.clone(),
                line: *lines.get(index)?,
            }),
            Origin::Folder(root) => {
                let class = self.files.get(index)?.strip_prefix(root).ok()?;
                Some(LabelSite::ClassFolder {
                    folder: root.join(class.components().next()?),
                })
            }
            Origin::Files => None,
        }
    }

    fn describe(&self) -> String {
        let n = self.files.len();
        match &self.origin {
            Origin::Folder(root) => format!(
                "image folder: {n} images in {} classes ({})",
                self.classes.len(),
                root.display()
            ),
            Origin::Manifest { csv, .. } => {
                format!("image manifest: {n} images ({})", csv.display())
            }
            Origin::Files => format!("image files: {n} images"),
        }
    }

    fn access(&self) -> Access {
        Access::slow("one file per sample; `stoker convert --to tar` or `--to npy` is faster")
    }
}

/// The image folder format for [`open`](super::open): a directory of class folders
/// (torchvision's `ImageFolder`), labelled by class.
pub(crate) struct FolderFormat;

/// The one [`FolderFormat`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static IMAGE_FOLDER: FolderFormat = FolderFormat;

/// Whether `dir` has a non-hidden subdirectory (following symlinks).
fn has_subdir(dir: &Path) -> Result<bool> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !is_hidden(&entry.file_name()) && entry.path().is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl super::Format for FolderFormat {
    fn name(&self) -> &'static str {
        "image folder"
    }

    fn recognises(&self, _path: &Path, _head: &[u8]) -> bool {
        false
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        Ok(has_subdir(dir)?.then(|| vec![dir.to_path_buf()]))
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        opts.no_labels("an image folder", "its labels are the class folders")?;
        let [dir] = files else {
            return Err(Error::usage("an image folder is one directory"));
        };
        Ok(Box::new(ImageFolder::open(dir)?))
    }
}

/// The manifest format for [`open`](super::open): a `.csv` file of `path,label` lines.
pub(crate) struct ManifestFormat;

/// The one [`ManifestFormat`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static MANIFEST: ManifestFormat = ManifestFormat;

impl super::Format for ManifestFormat {
    fn name(&self) -> &'static str {
        "manifest"
    }

    fn recognises(&self, path: &Path, _head: &[u8]) -> bool {
        super::open::has_ext(path, &["csv"])
    }

    fn find(&self, _dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        Ok(None)
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        opts.no_labels("a manifest", "its labels are its second column")?;
        let [csv] = files else {
            return Err(Error::usage("give one manifest csv, not a glob of several"));
        };
        Ok(Box::new(ImageFolder::from_manifest(csv)?))
    }
}

/// Loose image files for [`open`](super::open), unlabelled: a glob of `.jpg`/`.png` files (by
/// extension or magic), one image file, or a directory of images without subdirectories.
pub(crate) struct ImageFilesFormat;

/// The one [`ImageFilesFormat`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static IMAGE_FILES: ImageFilesFormat = ImageFilesFormat;

impl super::Format for ImageFilesFormat {
    fn name(&self) -> &'static str {
        "image files"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        crate::decode::ImageFormat::sniff(head).is_some() || has_image_ext(path)
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        if has_subdir(dir)? {
            return Ok(None);
        }
        super::open::files_in(dir, |n| has_image_ext(Path::new(n)))
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        opts.no_labels("loose image files", "they have no labels")?;
        Ok(Box::new(ImageFolder::from_files(
            files.iter().map(|f| (f.clone(), None)).collect(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn touch(root: &Path, rel: &str) -> PathBuf {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rel.as_bytes()).unwrap();
        p
    }

    fn read(src: &ImageFolder, i: usize, buf: &mut Vec<u8>) -> (Vec<u8>, Option<i64>) {
        let item = src.get(i, buf).unwrap();
        let Raw::Encoded(b) = item.raw else { panic!() };
        (b.to_vec(), item.label)
    }

    #[test]
    fn folder_layout() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "zebra/1.jpg",
            "Zebra/x.PNG",
            "ant/b/deep/2.jpeg",
            "ant/a.jpg",
            "ant/b.Jpg",
            "ant/notes.txt",
            "ant/noext",
            "ant/.hidden.jpg",
            "ant/.cache/3.jpg",
            ".git/4.jpg",
            "empty/readme.md",
            "loose.jpg",
        ] {
            touch(r, f);
        }
        let src = ImageFolder::open(r).unwrap();
        // Byte order: uppercase before lowercase; hidden dir not a class; a file is not a class.
        assert_eq!(src.classes(), ["Zebra", "ant", "empty", "zebra"]);
        let rel: Vec<_> = src
            .files()
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "Zebra/x.PNG",
                "ant/a.jpg",
                "ant/b.Jpg",
                "ant/b/deep/2.jpeg",
                "zebra/1.jpg"
            ]
        );
        assert_eq!(src.labels(), Some(&[0, 1, 1, 1, 3][..]));
        assert_eq!(src.len(), 5);
        assert!(src.has_labels());
        assert_eq!(src.channels(), None);
        assert_eq!(
            src.describe(),
            format!("image folder: 5 images in 4 classes ({})", r.display())
        );
        let mut buf = Vec::new();
        assert_eq!(
            read(&src, 3, &mut buf),
            (b"ant/b/deep/2.jpeg".to_vec(), Some(1))
        );
        assert_eq!(src.path(4), Some(r.join("zebra/1.jpg").as_path()));
    }

    #[test]
    fn get_reuses_buffer() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "c/a.jpg");
        let long = dir.path().join("c/b.jpg");
        fs::write(&long, vec![7u8; 5000]).unwrap();
        let src = ImageFolder::open(dir.path()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read(&src, 1, &mut buf).0.len(), 5000);
        let ptr = buf.as_ptr();
        let cap = buf.capacity();
        assert_eq!(read(&src, 0, &mut buf).0, b"c/a.jpg");
        assert_eq!(read(&src, 1, &mut buf).0, vec![7u8; 5000]);
        assert_eq!((buf.as_ptr(), buf.capacity()), (ptr, cap));
    }

    #[test]
    fn folder_errors_name_root() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = ImageFolder::open(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.path(), Some(missing.as_path()));

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        touch(&empty, "stray.jpg");
        let e = ImageFolder::open(&empty).unwrap_err();
        assert_eq!(e.path(), Some(empty.as_path()));
        assert!(e.message().contains("no class folders"), "{e}");

        touch(&empty, "cls/notes.txt");
        let e = ImageFolder::open(&empty).unwrap_err();
        assert_eq!(e.path(), Some(empty.as_path()));
        assert!(e.message().contains("no images found"), "{e}");
    }

    #[test]
    fn missing_file_is_io_error_with_index() {
        let dir = tempfile::tempdir().unwrap();
        let a = touch(dir.path(), "c/a.jpg");
        let b = touch(dir.path(), "c/b.jpg");
        let src = ImageFolder::open(dir.path()).unwrap();
        fs::remove_file(&b).unwrap();
        let mut buf = vec![1, 2, 3];
        let e = src.get(1, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.index(), Some(1));
        assert_eq!(e.path(), Some(b.as_path()));
        assert!(e.to_string().starts_with("sample 1 ("), "{e}");
        assert_eq!(read(&src, 0, &mut buf).0, b"c/a.jpg");
        assert_eq!(src.path(0), Some(a.as_path()));
        let e = src.get(2, &mut buf).unwrap_err();
        assert_eq!(e.index(), Some(2));
    }

    #[test]
    fn manifest_paths_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let abs = touch(r, "elsewhere/abs.png");
        touch(r, "sub/a,b.jpg");
        touch(r, "sub/q\"x.jpg");
        let csv = r.join("m.csv");
        let text = format!(
            "\u{feff}path,label\r\n\nsub/a,b.jpg, 2\r\n\"sub/q\"\"x.jpg\",-1\n  {},7\n\n",
            abs.display()
        );
        fs::write(&csv, text).unwrap();
        let src = ImageFolder::from_manifest(&csv).unwrap();
        assert_eq!(
            src.files(),
            [r.join("sub/a,b.jpg"), r.join("sub/q\"x.jpg"), abs.clone()]
        );
        assert_eq!(src.labels(), Some(&[2, -1, 7][..]));
        assert!(src.classes().is_empty());
        assert_eq!(
            src.describe(),
            format!("image manifest: 3 images ({})", csv.display())
        );
        let mut buf = Vec::new();
        assert_eq!(read(&src, 0, &mut buf), (b"sub/a,b.jpg".to_vec(), Some(2)));
        assert_eq!(read(&src, 2, &mut buf).0, b"elsewhere/abs.png");

        // Without a header; a relative CSV path resolves relative to the CSV's directory.
        fs::write(&csv, "sub/a,b.jpg,5\n").unwrap();
        let src = ImageFolder::from_manifest(&csv).unwrap();
        assert_eq!(src.files(), [r.join("sub/a,b.jpg")]);
        assert_eq!(src.labels(), Some(&[5][..]));
        // `path,label` after the first line is a malformed line, not a header.
        fs::write(&csv, "a.jpg,1\npath,label\n").unwrap();
        let e = ImageFolder::from_manifest(&csv).unwrap_err();
        assert!(e.message().starts_with("line 2:"), "{e}");
    }

    #[test]
    fn manifest_errors() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("bad.csv");
        for (text, line, needle) in [
            ("a.jpg,1\n\nno-comma\n", 3, "expected path,label"),
            ("path,label\na.jpg,x\n", 2, "\"x\" is not an integer"),
            ("a.jpg,1.5\n", 1, "not an integer"),
            ("a.jpg,\n", 1, "not an integer"),
            (",3\n", 1, "empty path"),
        ] {
            fs::write(&csv, text).unwrap();
            let e = ImageFolder::from_manifest(&csv).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format);
            assert_eq!(e.path(), Some(csv.as_path()));
            assert!(e.message().starts_with(&format!("line {line}: ")), "{e}");
            assert!(e.message().contains(needle), "{e}");
        }
        fs::write(&csv, "path,label\n\n").unwrap();
        assert!(
            ImageFolder::from_manifest(&csv)
                .unwrap_err()
                .message()
                .contains("no samples")
        );
        fs::write(&csv, b"a\xff.jpg,1\n").unwrap();
        assert!(
            ImageFolder::from_manifest(&csv)
                .unwrap_err()
                .message()
                .contains("utf-8")
        );
        let e = ImageFolder::from_manifest(dir.path().join("none.csv")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn from_files_labels() {
        let dir = tempfile::tempdir().unwrap();
        let a = touch(dir.path(), "a.png");
        let src =
            ImageFolder::from_files(vec![(a.clone(), Some(9)), (a.clone(), Some(8))]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read(&src, 1, &mut buf), (b"a.png".to_vec(), Some(8)));
        let src = ImageFolder::from_files(vec![(a, None)]).unwrap();
        assert_eq!(read(&src, 0, &mut buf).1, None);
        assert_eq!(src.describe(), "image files: 1 images");
        assert!(ImageFolder::from_files(Vec::new()).is_err());
    }
}
