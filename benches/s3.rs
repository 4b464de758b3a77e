//! Object storage against local disk, in one run: the same 2,000 256×144 JPEGs in 8 tar shards
//! read from local disk, from a local S3 server (SeaweedFS) with a cold cache, then warm, and
//! with a cache limit of a quarter of the data set.
//!
//! Data: `benches/s3-data.sh` makes it (2,000 copies of the 16 photographs in
//! `../shared/fixtures/photos-1080p`, resized by `stoker resize --to tar --shard-size 250`) in
//! `target/bench-data/s3-tar`. The server is the tests' (`tests/s3_server`: `weed` from
//! `tools/install-seaweedfs.sh`).
//!
//! Prints one JSON object: epoch seconds of each round (5 rounds: local disk, a cold cache, then
//! warm, the local epoch first or last in turn) and the medians of the ratios within a round
//! - `cold_over_local`, `warm_over_local`: images/s from the server ÷ from local disk (goal ≥ 0.95);
//! - `limited_bytes_per_epoch_over_dataset`: bytes downloaded per epoch ÷ the data set's size,
//!   with `cache_limit` at a quarter of it (raised to two of the largest shards when that is
//!   more: `limited_cache_limit_over_dataset`) and the shard-aware order (`Order::Shards { window:
//!   2 }`), over 4 epochs (goal ≤ 1.1); the count includes shard 0, fetched at open, and the
//!   fifth epoch's first window, which the loader starts ahead;
//! - `fetcher_cpu_share`: CPU time of the fetch threads (`stoker-fetch*`) ÷ the process's CPU
//!   time over the cold epoch (median of the rounds).
//!
//! Run: `benches/s3-data.sh && cargo bench --features s3 --bench s3`.

#[path = "../tests/s3_server/mod.rs"]
mod s3_server;

use std::path::{Path, PathBuf};
use std::time::Instant;

use stoker::sampler::Order;
use stoker::source::{AnySource, OpenOptions};
use stoker::{DType, Layout, Loader};

const EPOCHS_LIMITED: u64 = 4;
const ROUNDS: u64 = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn data() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/s3-tar");
    assert!(
        d.join("stoker.json").is_file(),
        "no {}: run benches/s3-data.sh first",
        d.display()
    );
    d
}

/// Seconds of one epoch (batch 256, shuffled, 256×144 u8 NHWC, as many workers as cores).
fn epoch(loader: &mut Loader<AnySource>, e: u64) -> f64 {
    let t = Instant::now();
    let mut n = 0;
    for b in loader.epoch(e) {
        n += b.unwrap().len();
    }
    assert_eq!(n, 2000);
    t.elapsed().as_secs_f64()
}

/// The loader of every case; `ahead`: the next epoch starts as this one ends (the default).
/// The timed rounds turn it off, so that a loader kept between rounds (local disk's) does no
/// work while another one is timed.
fn loader(src: AnySource, order: Order, ahead: bool) -> Loader<AnySource> {
    Loader::builder(src)
        .prefetch_next_epoch(ahead)
        .batch_size(256)
        .shuffle(true)
        .order(order)
        .seed(1)
        .size(256, 144)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap()
}

/// CPU seconds of this process's threads, in all and of those whose name starts `prefix`.
fn thread_cpu(prefix: &str) -> (f64, f64) {
    let tick = 100.0; // USER_HZ on Linux
    let (mut all, mut named) = (0.0, 0.0);
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick;
        all += cpu;
        if comm.trim_end().starts_with(prefix) {
            named += cpu;
        }
    }
    (all, named)
}

fn main() {
    let dir = data();
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let server = s3_server::server().expect("the S3 server (tools/install-seaweedfs.sh)");
    let url = format!("s3://{}/bench", s3_server::BUCKET);
    s3_server::put_dir(&dir, &url);

    let local = stoker::source::open(&dir, &OpenOptions::new()).unwrap();
    let mut l = loader(local, Order::Global, false);
    epoch(&mut l, 0); // page cache warm, as the server's files are

    // Rounds: local disk, then a cold cache (a new one: open and the first epoch), then the
    // same loader's next epoch (warm), the local epoch first in even rounds and last in odd
    // ones; each ratio within its round, the medians over the rounds.
    let (mut cold, mut warm, mut share) = (Vec::new(), Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        let local_first = r % 2 == 0;
        let mut local_s = if local_first {
            epoch(&mut l, 1 + r)
        } else {
            0.0
        };
        let cache = tempfile::tempdir().unwrap();
        let o = OpenOptions::new().cache_dir(cache.path());
        let (cpu0, fetch0) = thread_cpu("stoker-fetch");
        let t = Instant::now();
        let src = stoker::source::open(format!("{url}/"), &o).unwrap();
        let mut remote = loader(src, Order::Global, false);
        let cold_s = t.elapsed().as_secs_f64() + epoch(&mut remote, 0);
        let (cpu1, fetch1) = thread_cpu("stoker-fetch");
        let warm_s = epoch(&mut remote, 1);
        drop(remote);
        if !local_first {
            local_s = epoch(&mut l, 1 + r);
        }
        cold.push(local_s / cold_s);
        warm.push(local_s / warm_s);
        share.push((fetch1 - fetch0) / (cpu1 - cpu0).max(1e-9));
        rounds.push(serde_json::json!({
            "local_epoch_s": local_s, "cold_epoch_s": cold_s, "warm_epoch_s": warm_s,
        }));
    }
    drop(l);

    // A quarter of the data set, and no less than a window (2) of the largest shards: a
    // window that does not fit the cache thrashes (docs/scaling.md).
    let biggest = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap();
    let limit = (size / 4).max(2 * biggest);
    let limited = tempfile::tempdir().unwrap();
    let o = OpenOptions::new()
        .cache_dir(limited.path())
        .cache_limit(limit);
    let src = stoker::source::open(format!("{url}/"), &o).unwrap();
    let mut l = loader(src, Order::Shards { window: 2 }, true);
    for e in 0..EPOCHS_LIMITED {
        epoch(&mut l, e);
    }
    let stats = l.source().fetch_stats().unwrap();
    let report = serde_json::json!({
        "server": server.endpoint,
        "dataset_bytes": size,
        "rounds": rounds,
        "cold_over_local": median(&mut cold),
        "warm_over_local": median(&mut warm),
        "fetcher_cpu_share": median(&mut share),
        "limited_cache_limit_over_dataset": limit as f64 / size as f64,
        "limited": stats,
        "limited_bytes_per_epoch_over_dataset":
            stats.bytes_downloaded as f64 / EPOCHS_LIMITED as f64 / size as f64,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
