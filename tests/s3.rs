//! Object storage against a real S3-compatible server (SeaweedFS on 127.0.0.1, started once
//! for this binary by `s3_server`): `s3://` paths open as local ones do, shards are fetched
//! once into the cache and mapped, a cache limit evicts, and faults injected by a loopback
//! proxy are retried or end in a typed error naming the URL. Without the server binary these
//! tests skip and say so (CI sets `STOKER_S3_REQUIRED=1`).
//!
//! `cargo test --features s3 --test s3`

#[cfg(not(feature = "s3"))]
#[test]
fn an_s3_path_without_the_feature_names_it() {
    let e = stoker::source::open("s3://bucket/shard-*.tar", &Default::default()).unwrap_err();
    assert_eq!(e.kind(), stoker::ErrorKind::Usage);
    assert!(e.message().contains("s3 feature"), "{e}");
    assert_eq!(
        e.path(),
        Some(std::path::Path::new("s3://bucket/shard-*.tar"))
    );
}

#[cfg(feature = "s3")]
mod s3_server;

#[cfg(feature = "s3")]
mod with_server {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use stoker::digest::Digest;
    use stoker::sampler::Order;
    use stoker::source::{
        ImageFolder, Index, OpenOptions, Raw, Source, TarSource, TarWriter, save_npy,
    };
    use stoker::{DType, ErrorKind, Layout, Loader};

    use super::s3_server::proxy::{Fault, Proxy};
    use super::s3_server::{self, put, put_dir};
    use crate::server_or_skip;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    /// The 32 fixture JPEGs as `n` tar shards in `dir` (with a `stoker.json` when `index`).
    fn write_shards(dir: &Path, n: usize, index: bool) -> Vec<PathBuf> {
        write_copies(dir, n, 1, index)
    }

    /// `copies` times the 32 fixture JPEGs, as `n` tar shards in `dir`.
    fn write_copies(dir: &Path, n: usize, copies: usize, index: bool) -> Vec<PathBuf> {
        let folder = ImageFolder::open(fixtures().join("photos-256x144")).unwrap();
        let len = folder.len() * copies;
        let per = len.div_ceil(n);
        let mut paths = Vec::new();
        let mut idx = Index::new("tar", len);
        let mut buf = Vec::new();
        for k in 0..n {
            let p = dir.join(format!("shard-{k:06}.tar"));
            let mut w = TarWriter::new(std::fs::File::create(&p).unwrap());
            let range = k * per..((k + 1) * per).min(len);
            for i in range.clone() {
                let item = folder.get(i % folder.len(), &mut buf).unwrap();
                let Raw::Encoded(bytes) = item.raw else {
                    panic!("fixture JPEGs are encoded")
                };
                w.append_sample(&format!("{i:06}"), "jpg", bytes, item.label)
                    .unwrap();
            }
            w.finish().unwrap();
            idx.shards.push(format!("shard-{k:06}.tar"));
            idx.shard_samples.push(range.len());
            paths.push(p);
        }
        if index {
            idx.write(dir).unwrap();
        }
        paths
    }

    fn total_bytes(paths: &[PathBuf]) -> u64 {
        paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    }

    /// The loader of these tests over `src`: batches of 5, 2 workers, 64×36 u8 NHWC.
    fn loader<S: Source + 'static>(src: S, shuffle: bool) -> Loader<S> {
        Loader::builder(src)
            .batch_size(5)
            .shuffle(shuffle)
            .seed(11)
            .num_workers(2)
            .size(64, 36)
            .dtype(DType::U8)
            .layout(Layout::Nhwc)
            .build()
            .unwrap()
    }

    /// The digest of `loader`'s epochs 0 and 1.
    fn read_two<S: Source + 'static>(loader: &mut Loader<S>) -> Digest {
        let mut d = Digest::new();
        for e in 0..2 {
            for b in loader.epoch(e) {
                d.update(&b.unwrap());
            }
        }
        d
    }

    /// Two epochs' digest, read by 2 workers.
    fn digest<S: Source + 'static>(src: S, shuffle: bool) -> String {
        let d = read_two(&mut loader(src, shuffle));
        assert_eq!(d.batches(), 14);
        d.hex()
    }

    fn local_digest(paths: &[PathBuf], shuffle: bool) -> String {
        digest(TarSource::shards(paths).unwrap(), shuffle)
    }

    /// Data set `name` (4 tar shards, indexed or not) uploaded to the server.
    fn uploaded(name: &str, index: bool) -> (tempfile::TempDir, Vec<PathBuf>, String) {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_shards(dir.path(), 4, index);
        let url = s3_server::prefix(name);
        put_dir(dir.path(), &url);
        (dir, paths, url)
    }

    fn opts(cache: &Path) -> OpenOptions {
        OpenOptions::new().cache_dir(cache)
    }

    #[test]
    fn a_glob_of_tar_shards_reads_as_the_local_shards_then_from_the_cache() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("glob", false);
        let cache = tempfile::tempdir().unwrap();
        let src = stoker::source::open(format!("{url}/shard-*.tar"), &opts(cache.path())).unwrap();
        assert_eq!(
            (src.format(), src.len(), src.has_labels()),
            ("tar", 32, true)
        );
        assert_eq!(digest(src, true), local_digest(&paths, true));
        // Opened again with the same cache: nothing is downloaded.
        let again =
            stoker::source::open(format!("{url}/shard-*.tar"), &opts(cache.path())).unwrap();
        let first_bytes = total_bytes(&paths);
        let stats = again.fetch_stats().unwrap();
        let _ = digest(again, false);
        assert_eq!(stats.bytes_downloaded, 0, "{stats:?}");
        assert_eq!(stats.cache_hits, 4, "{stats:?}");
        // The cache holds each shard whole under its key, and no temporary file.
        let cached = cache.path().join("s3/shards/glob/shard-000002.tar");
        assert_eq!(
            std::fs::read(&cached).unwrap(),
            std::fs::read(&paths[2]).unwrap()
        );
        let names: Vec<String> = std::fs::read_dir(cached.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".part")), "{names:?}");
        assert!(first_bytes > 0);
    }

    #[test]
    fn a_converted_directory_opens_by_its_index_and_fetches_lazily() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("indexed", true);
        let cache = tempfile::tempdir().unwrap();
        for path in [format!("{url}/"), format!("{url}/stoker.json"), url.clone()] {
            let src = stoker::source::open(&path, &opts(cache.path())).unwrap();
            assert_eq!((src.format(), src.len()), ("tar", 32), "{path}");
        }
        // With shard_samples in the index, open fetches only the first shard (and, with the
        // smallest fetch-ahead budget, the fetcher nothing more until reads begin).
        let fresh = tempfile::tempdir().unwrap();
        let src =
            stoker::source::open(format!("{url}/"), &opts(fresh.path()).fetch_ahead(1)).unwrap();
        let stats = src.fetch_stats().unwrap();
        assert_eq!(stats.downloads, 1, "{stats:?}");
        assert_eq!(digest(src, true), local_digest(&paths, true));
    }

    #[test]
    fn npy_shards_come_with_their_labels() {
        let _s = server_or_skip!();
        let url = s3_server::prefix("npy");
        put_dir(&fixtures().join("npy"), &url);
        let cache = tempfile::tempdir().unwrap();
        let local = stoker::source::open(fixtures().join("npy"), &OpenOptions::new()).unwrap();
        for path in [format!("{url}/"), format!("{url}/images-*.npy")] {
            let src = stoker::source::open(&path, &opts(cache.path())).unwrap();
            assert_eq!(
                (src.format(), src.len(), src.has_labels()),
                ("npy", 32, true)
            );
            let mut a = Vec::new();
            let mut b = Vec::new();
            for i in 0..src.len() {
                assert_eq!(
                    src.get(i, &mut a).unwrap().label,
                    local.get(i, &mut b).unwrap().label
                );
            }
        }
    }

    /// A glob of NPY shards without a `stoker.json` is counted from the objects' headers
    /// (ranged requests): open downloads shard 0 alone (to open it), not every shard; and
    /// the loader reads what it reads from the local files.
    #[test]
    fn an_npy_glob_is_counted_from_its_headers_not_downloaded_at_open() {
        let _s = server_or_skip!();
        let url = s3_server::prefix("npy-count");
        put_dir(&fixtures().join("npy"), &url);
        let cache = tempfile::tempdir().unwrap();
        let o = opts(cache.path()).fetch_ahead(1);
        let src = stoker::source::open(format!("{url}/images-*.npy"), &o).unwrap();
        assert_eq!(src.len(), 32);
        let stats = src.fetch_stats().unwrap();
        // Shard 0's images and labels; shard 1 waits until it is read.
        assert_eq!((stats.downloads, stats.cache_hits), (2, 0), "{stats:?}");
        let local = stoker::source::open(fixtures().join("npy"), &OpenOptions::new()).unwrap();
        assert_eq!(digest(src, true), digest(local, true));
    }

    /// An NPY file whose header is padded with `pad` spaces (numpy pads with spaces too), so
    /// long that it takes a second request; `save_npy` writes the usual short one.
    fn npy_long_header(path: &Path, descr: &str, shape: &str, data: &[u8], pad: usize) {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut text = format!("{dict}{}", " ".repeat(pad));
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    /// Counting from headers checks what opening checks, at open, naming the object: labels
    /// that are not one per image, images cut short; and a header longer than the first
    /// request is asked for again and read.
    #[test]
    fn npy_headers_that_do_not_add_up_fail_at_open_naming_the_object() {
        let _s = server_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let px = [7u8; 3 * 2 * 2 * 3];
        // A header of about 6 KB: past the first 4 KB asked for.
        npy_long_header(&d.join("images-0.npy"), "|u1", "(3, 2, 2, 3)", &px, 6000);
        save_npy(d.join("labels-0.npy"), "<i8", &[3], &[0; 24]).unwrap();
        let url = s3_server::prefix("npy-heads");
        put_dir(d, &url);
        let cache = tempfile::tempdir().unwrap();
        let o = opts(cache.path());
        let src = stoker::source::open(format!("{url}/images-*.npy"), &o).unwrap();
        assert_eq!((src.len(), src.has_labels()), (3, true));

        // Two labels for three images.
        save_npy(d.join("labels-0.npy"), "<i8", &[2], &[0; 16]).unwrap();
        let url = s3_server::prefix("npy-labels");
        put_dir(d, &url);
        let e = stoker::source::open(format!("{url}/images-*.npy"), &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "{e}");
        let labels_url = format!("{url}/labels-0.npy");
        assert_eq!(e.path(), Some(Path::new(&labels_url)), "{e}");

        // Five images said, three there: the file cut short after the third.
        let images = d.join("images-0.npy");
        save_npy(&images, "|u1", &[5, 2, 2, 3], &[7; 5 * 2 * 2 * 3]).unwrap();
        let len = std::fs::metadata(&images).unwrap().len();
        let f = std::fs::File::options().write(true).open(&images).unwrap();
        f.set_len(len - 2 * 2 * 2 * 3).unwrap();
        drop(f);
        std::fs::remove_file(d.join("labels-0.npy")).unwrap();
        let url = s3_server::prefix("npy-short");
        put_dir(d, &url);
        let e = stoker::source::open(format!("{url}/images-*.npy"), &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "{e}");
        let images_url = format!("{url}/images-0.npy");
        assert_eq!(e.path(), Some(Path::new(&images_url)), "{e}");
    }

    /// A loader over `src` reading two epochs in order (no shuffle): its digest, and what its
    /// fetcher did.
    fn two_epochs(src: stoker::source::AnySource) -> (String, stoker::remote::FetchStats) {
        let mut loader = loader(src, false);
        let d = read_two(&mut loader);
        (d.hex(), loader.source().fetch_stats().unwrap())
    }

    #[test]
    fn a_cache_limit_evicts_the_furthest_shard_and_every_epoch_stays_whole() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("limit", true);
        let cache = tempfile::tempdir().unwrap();
        let biggest = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .max()
            .unwrap();
        let total = total_bytes(&paths);
        let limit = 2 * biggest;
        let o = opts(cache.path()).cache_limit(limit).fetch_ahead(biggest);
        let src = stoker::source::open(format!("{url}/"), &o).unwrap();
        let (got, stats) = two_epochs(src);
        assert_eq!(got, local_digest(&paths, false));
        eprintln!("in order, cache 2 shards of 4: {stats:?}");
        assert!(stats.evictions >= 2, "{stats:?}");
        assert!(stats.peak_cached_bytes <= limit, "{stats:?} limit {limit}");
        // The second epoch needs all 4 shards with 2 in the cache: at least 2 downloads
        // more, so 6 in all is the least there can be (the furthest next use evicted keeps a
        // shard of the first epoch's end for the second's); 8, each shard once an epoch, the
        // most.
        assert!((6..=8).contains(&stats.downloads), "{stats:?}");
        assert!(
            stats.bytes_downloaded <= 2 * total,
            "{stats:?} total {total}"
        );
        // What stays in the cache fits the limit.
        let held: u64 = std::fs::read_dir(cache.path().join("s3/shards/limit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(held <= limit, "{held} > {limit}");
    }

    /// 8 shards of 16 samples, a cache limit of a quarter of the data set, the shard-aware
    /// order with windows of 2 shards: over four epochs each shard is downloaded once per
    /// epoch, plus shard 0 (opened at open) and the fifth epoch's first window, which the
    /// loader starts ahead.
    #[test]
    fn the_shard_aware_order_under_a_quarter_cache_downloads_each_shard_once_an_epoch() {
        let _s = server_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        let paths = write_copies(dir.path(), 8, 4, true);
        let url = s3_server::prefix("windows");
        put_dir(dir.path(), &url);
        let total = total_bytes(&paths);
        let biggest = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .max()
            .unwrap();
        // A quarter of the data set, and no less than a window of the biggest shards: the
        // shards here come in two sizes, and a window of two big ones would not fit a quarter
        // (it would then thrash, as docs/scaling.md says).
        let limit = (total / 4).max(2 * biggest);
        assert!(
            limit < total / 4 + total / 16,
            "about a quarter: {limit} of {total}"
        );
        let cache = tempfile::tempdir().unwrap();
        let o = opts(cache.path()).cache_limit(limit);
        let src = stoker::source::open(format!("{url}/"), &o).unwrap();
        let build = |src| {
            Loader::builder(src)
                .batch_size(4)
                .shuffle(true)
                .order(Order::Shards { window: 2 })
                .seed(7)
                .num_workers(2)
                .size(64, 36)
                .dtype(DType::U8)
                .layout(Layout::Nhwc)
                .build()
                .unwrap()
        };
        let mut loader = build(src);
        let mut local = build(stoker::source::open(dir.path(), &OpenOptions::new()).unwrap());
        let epochs = 4;
        for e in 0..epochs {
            let (mut a, mut b) = (Digest::new(), Digest::new());
            for batch in loader.epoch(e) {
                a.update(&batch.unwrap());
            }
            for batch in local.epoch(e) {
                b.update(&batch.unwrap());
            }
            assert_eq!(a.hex(), b.hex(), "epoch {e}");
            assert_eq!(a.batches(), 32);
        }
        let stats = loader.source().fetch_stats().unwrap();
        // Outside the epochs read: shard 0, opened at open, and the fifth epoch's first window
        // (2 shards), which the loader starts ahead: at most 3 shards.
        let per_epoch = stats.bytes_downloaded.saturating_sub(3 * biggest) as f64;
        let ratio = per_epoch / (epochs * total) as f64;
        eprintln!("shard order, cache 1/4: {stats:?}, {ratio:.3} of the data set per epoch");
        assert!(
            ratio <= 1.1,
            "{ratio:.3}: {stats:?} (data set {total} bytes)"
        );
        // 8 an epoch and those 3: no shard comes back within its window.
        assert!(stats.downloads <= 8 * epochs + 3, "{stats:?}");
        assert!(stats.evictions >= 8 * (epochs - 1), "{stats:?}");
        assert!(
            stats.peak_cached_bytes <= limit + biggest,
            "{stats:?} limit {limit}"
        );
    }

    #[test]
    fn without_a_limit_every_shard_stays_mapped_and_nothing_is_fetched_twice() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("nolimit", true);
        let cache = tempfile::tempdir().unwrap();
        let src = stoker::source::open(format!("{url}/"), &opts(cache.path())).unwrap();
        let (got, stats) = two_epochs(src);
        assert_eq!(got, local_digest(&paths, false));
        assert_eq!((stats.downloads, stats.evictions), (4, 0), "{stats:?}");
        assert_eq!(stats.bytes_downloaded, total_bytes(&paths), "{stats:?}");
    }

    #[test]
    fn two_readers_of_one_cache_download_each_shard_once() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("shared", false);
        let cache = tempfile::tempdir().unwrap();
        let glob = format!("{url}/shard-*.tar");
        let stats: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let src = stoker::source::open(&glob, &opts(cache.path())).unwrap();
                        src.fetch_stats().unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let downloads: u64 = stats.iter().map(|s| s.downloads).sum();
        let hits: u64 = stats.iter().map(|s| s.cache_hits).sum();
        assert_eq!((downloads, hits), (4, 8), "{stats:?}");
        let _ = paths;
    }

    #[test]
    fn a_partial_file_under_the_final_name_is_fetched_again() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("partial", false);
        let cache = tempfile::tempdir().unwrap();
        let cached = cache.path().join("s3/shards/partial/shard-000000.tar");
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        let whole = std::fs::read(&paths[0]).unwrap();
        std::fs::write(&cached, &whole[..whole.len() / 2]).unwrap();
        let src = stoker::source::open(format!("{url}/shard-*.tar"), &opts(cache.path())).unwrap();
        assert_eq!(src.fetch_stats().unwrap().downloads, 4);
        assert_eq!(std::fs::read(&cached).unwrap(), whole);
        assert_eq!(digest(src, true), local_digest(&paths, true));
    }

    /// Opens `url` through a fresh proxy with `faults` queued for GETs of `filter`.
    fn through_proxy(
        url: &str,
        filter: &str,
        faults: &[(Fault, usize)],
        o: OpenOptions,
    ) -> (stoker::Result<stoker::source::AnySource>, Proxy) {
        let server = s3_server::server().unwrap();
        let proxy = Proxy::start(server.port, filter);
        for &(f, n) in faults {
            proxy.inject(f, n);
        }
        let cache = tempfile::tempdir().unwrap();
        let o = o.cache_dir(cache.path()).endpoint(&proxy.endpoint);
        let r = stoker::source::open(url, &o);
        // The cache goes with the test: keep it alive as long as the source.
        std::mem::forget(cache);
        (r, proxy)
    }

    /// An upload whose parts keep failing is aborted: a clear error naming the URL, and no
    /// object under the key (not even a partial one); a later upload writes it whole.
    #[test]
    fn a_failed_upload_leaves_no_object() {
        let server = server_or_skip!();
        let proxy = Proxy::start_for(server.port, "PUT", "upload-fails");
        proxy.inject(Fault::SlowDown, 100);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.bin");
        // Two parts of 16 MiB and a tail: the upload is a multipart one.
        let bytes: Vec<u8> = (0..(33u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let url = format!("{}/upload-fails/big.bin", s3_server::prefix("faults"));
        let o = OpenOptions::new()
            .endpoint(&proxy.endpoint)
            .remote_retries(1)
            .remote_timeout(std::time::Duration::from_secs(5));
        let e = stoker::remote::upload_file(&file, &url, &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        assert!(proxy.gets.load(std::sync::atomic::Ordering::SeqCst) >= 2);
        assert!(!stoker::remote::exists(&url, &OpenOptions::new()).unwrap());
        // Without faults the same upload completes, and the object is the file.
        s3_server::put(&file, &url);
        let src = stoker::remote::exists(&url, &OpenOptions::new()).unwrap();
        assert!(src);
    }

    #[test]
    fn transient_faults_are_retried_and_the_data_arrives_whole() {
        let _s = server_or_skip!();
        let (_dir, paths, url) = uploaded("faults", true);
        let want = local_digest(&paths, true);
        let cases = [
            (Fault::SlowDown, 2),
            (Fault::DropMidBody, 2),
            (Fault::CutBody, 1),
            (Fault::Short, 1),
            (Fault::Stall, 1),
        ];
        for (fault, n) in cases {
            let o = OpenOptions::new().remote_timeout(Duration::from_secs(1));
            let (src, proxy) = through_proxy(&format!("{url}/"), "shard-000000", &[(fault, n)], o);
            let src = src.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(proxy.pending(), 0, "{fault:?}: every fault was met");
            let stats = src.fetch_stats().unwrap();
            assert_eq!(digest(src, true), want, "{fault:?}");
            if fault == Fault::Short {
                // The short copy was received, found short, and the object fetched again.
                assert!(
                    stats.bytes_downloaded > std::fs::metadata(&paths[0]).unwrap().len(),
                    "{stats:?}"
                );
            }
        }
    }

    #[test]
    fn faults_past_the_retries_are_a_remote_error_naming_the_url() {
        let _s = server_or_skip!();
        let (_dir, _paths, url) = uploaded("persistent", true);
        let o = OpenOptions::new().remote_retries(1);
        let (r, _proxy) = through_proxy(
            &format!("{url}/"),
            "shard-000000",
            &[(Fault::SlowDown, 100)],
            o,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert_eq!(
            e.path(),
            Some(Path::new(&format!("{url}/shard-000000.tar"))),
            "{e}"
        );
        // A later shard that cannot be fetched ends the epoch with that error, not short.
        let o = OpenOptions::new().remote_retries(1);
        let (src, _proxy) = through_proxy(
            &format!("{url}/"),
            "shard-000002",
            &[(Fault::DropMidBody, 100)],
            o,
        );
        let src = src.unwrap();
        let mut loader = Loader::builder(src)
            .batch_size(5)
            .size(64, 36)
            .num_workers(2)
            .on_error(stoker::OnError::Skip)
            .build()
            .unwrap();
        let results: Vec<_> = loader.epoch(0).collect();
        let err = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("the epoch fails");
        assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
        assert!(err.to_string().contains("shard-000002.tar"), "{err}");
    }

    #[test]
    fn what_is_missing_is_an_error_at_open() {
        let _s = server_or_skip!();
        let (dir, _paths, url) = uploaded("missing", true);
        let cache = tempfile::tempdir().unwrap();
        let open = |p: &str| stoker::source::open(p, &opts(cache.path())).unwrap_err();
        // The index lists a shard the bucket does not hold.
        let mut index = Index::read(dir.path()).unwrap().unwrap();
        index.shards.push("shard-000009.tar".into());
        index.shard_samples.push(1);
        index.samples += 1;
        let other = tempfile::tempdir().unwrap();
        index.write(other.path()).unwrap();
        put(
            &other.path().join("stoker.json"),
            &format!("{url}-bad/stoker.json"),
        );
        for p in [
            "shard-000000.tar",
            "shard-000001.tar",
            "shard-000002.tar",
            "shard-000003.tar",
        ] {
            put(&dir.path().join(p), &format!("{url}-bad/{p}"));
        }
        let e = open(&format!("{url}-bad/"));
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(
            e.to_string().contains("shard-000009.tar") && e.message().contains("missing"),
            "{e}"
        );
        let e = open("s3://no-such-bucket-here/data/");
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(e.message().contains("no such bucket"), "{e}");
        let e = open(&format!("{url}/nothing-*.tar"));
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(e.message().contains("no objects match"), "{e}");
        let e = open(&format!("{url}/nowhere/"));
        assert!(e.to_string().contains("nowhere"), "{e}");
    }

    #[test]
    fn wrong_credentials_are_an_error_at_open() {
        let server = server_or_skip!();
        let (_dir, _paths, url) = uploaded("creds", true);
        // The client reads its keys from the environment: check in a child process.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "with_server::wrong_credentials_child",
                "--nocapture",
                "--include-ignored",
            ])
            .env("STOKER_TEST_CHILD_URL", format!("{url}/"))
            .env("AWS_ENDPOINT_URL", &server.endpoint)
            .env("AWS_ACCESS_KEY_ID", "someone-else")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// Run by `wrong_credentials_are_an_error_at_open` in a child process with wrong keys.
    #[test]
    #[ignore = "run by wrong_credentials_are_an_error_at_open"]
    fn wrong_credentials_child() {
        let url = std::env::var("STOKER_TEST_CHILD_URL").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let o = opts(cache.path()).remote_retries(0);
        let e = stoker::source::open(&url, &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(e.message().contains("access denied"), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
    }
}
