//! Object storage against local disk, in one run: the same 2,000 256×144 JPEGs in 8 tar shards
//! read from local disk, from a local S3 server (SeaweedFS) with a cold cache, then warm, and
//! with a cache limit of a quarter of the data set.
//!
//! Data: `benches/s3-data.sh` makes it (2,000 copies of the 16 photographs in
//! `../shared/fixtures/photos-1080p`, resized by `stoker resize --to tar --shard-size 250`) in
//! `target/bench-data/s3-tar`. The server is the tests' (`tests/s3_server`: `weed` from
//! `tools/install-seaweedfs.sh`).
//!
//! Prints one JSON object. For each order (the global shuffle, and the shard-aware order with a
//! window of 2 shards), 5 rounds, each with its cases in turn (local disk first in even rounds
//! and last in odd ones), and the medians of the ratios within a round:
//! - `cold_over_local_first`: images/s of a first epoch from the server with a cold cache (open,
//!   build the loader, one epoch) ÷ of a first epoch from local disk (the same three steps,
//!   the files in the page cache as the server's are); goal ≥ 0.95;
//! - `cold_over_local_warm`: the same cold epoch ÷ a later epoch of a loader kept from round
//!   to round (what this benchmark compared until 2026-12-07: it charges the cold side for the
//!   loader's own start, its threads and first-touched buffers, and the local side for none);
//! - `warm_over_local`: images/s of the remote loader's second epoch ÷ the kept local loader's
//!   (goal ≥ 0.95);
//! - `cpu`: CPU seconds over each first epoch: `local_first` (this process), `cold` (this
//!   process), `server` (the S3 server's, which shares this machine's cores) and `fetch` (the
//!   fetch threads, `stoker-fetch*`, part of `cold`); `fetch_share` = fetch ÷ cold, and
//!   `cold_and_server_over_local_first` = (cold + server) ÷ local_first: when both epochs keep
//!   every core busy, the best `cold_over_local_first` can be is its inverse.
//!
//! And `limited_bytes_per_epoch_over_dataset`: bytes downloaded per epoch ÷ the data set's
//! size, with `cache_limit` at a quarter of it (raised to two of the largest shards when that
//! is more: `limited_cache_limit_over_dataset`) and the shard-aware order (`Order::Shards {
//! window: 2 }`), over 4 epochs (goal ≤ 1.1); the count includes shard 0, fetched at open, and
//! the fifth epoch's first window, which the loader starts ahead.
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

/// User + system CPU seconds from a `/proc/…/stat` file (`None` when it cannot be read).
fn stat_cpu(path: &Path) -> Option<f64> {
    let tick = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / tick)
}

/// CPU seconds of process `pid` and of its descendants (the server runs under a shell).
fn tree_cpu(pid: u32) -> f64 {
    let mut parent = std::collections::HashMap::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(id) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let ppid = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1);
        if let Some(pp) = ppid.and_then(|v| v.parse::<u32>().ok()) {
            parent.insert(id, pp);
        }
    }
    let under = |mut id: u32| loop {
        if id == pid {
            return true;
        }
        match parent.get(&id) {
            Some(&pp) if pp != 0 && pp != id => id = pp,
            _ => return false,
        }
    };
    parent
        .keys()
        .filter(|&&id| under(id))
        .filter_map(|id| stat_cpu(&Path::new("/proc").join(id.to_string()).join("stat")))
        .sum()
}

/// CPU seconds of this process (threads that ended included), of the live threads whose name
/// starts `prefix`, and of the server's processes (`server`: the first one's id).
fn cpu(prefix: &str, server: u32) -> (f64, f64, f64) {
    let mut named = 0.0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            named += stat_cpu(&t.path().join("stat")).unwrap_or(0.0);
        }
    }
    let own = stat_cpu(Path::new("/proc/self/stat")).unwrap();
    (own, named, tree_cpu(server))
}

/// Open `src`, build its loader and read its first epoch: seconds, and CPU seconds from
/// [`cpu`] over it (taken before the loader is dropped). `remote`: also its second epoch's
/// seconds.
fn first_epoch(
    src: impl Fn() -> AnySource,
    order: Order,
    server: u32,
    remote: bool,
) -> (f64, [f64; 3], Option<f64>) {
    let (own0, fetch0, srv0) = cpu("stoker-fetch", server);
    let t = Instant::now();
    let mut l = loader(src(), order, false);
    let s = t.elapsed().as_secs_f64() + epoch(&mut l, 0);
    let (own1, fetch1, srv1) = cpu("stoker-fetch", server);
    let second = remote.then(|| epoch(&mut l, 1));
    (s, [own1 - own0, fetch1 - fetch0, srv1 - srv0], second)
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

    let pid = server.pid();
    let open_local = || stoker::source::open(&dir, &OpenOptions::new()).unwrap();
    let mut orders = serde_json::Map::new();
    for (name, order) in [
        ("global", Order::Global),
        ("shards_window_2", Order::Shards { window: 2 }),
    ] {
        let mut kept = loader(open_local(), order, false);
        epoch(&mut kept, 0); // page cache warm, as the server's files are
        // Each ratio within its round, the medians over the rounds.
        let (mut cold, mut cold_warm, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        let (mut share, mut cpu_ratio) = (Vec::new(), Vec::new());
        let mut rounds = Vec::new();
        for r in 0..ROUNDS {
            let local_first_case = |kept: &mut Loader<AnySource>| {
                let (first, c, _) = first_epoch(open_local, order, pid, false);
                (first, c[0], epoch(kept, 1 + r))
            };
            let local = if r % 2 == 0 {
                Some(local_first_case(&mut kept))
            } else {
                None
            };
            let cache = tempfile::tempdir().unwrap();
            let o = OpenOptions::new().cache_dir(cache.path());
            let open_remote = || stoker::source::open(format!("{url}/"), &o).unwrap();
            let (cold_s, c, warm_s) = first_epoch(open_remote, order, pid, true);
            let warm_s = warm_s.unwrap();
            let (local_first_s, local_cpu, local_s) =
                local.unwrap_or_else(|| local_first_case(&mut kept));
            cold.push(local_first_s / cold_s);
            cold_warm.push(local_s / cold_s);
            warm.push(local_s / warm_s);
            share.push(c[1] / c[0].max(1e-9));
            cpu_ratio.push((c[0] + c[2]) / local_cpu.max(1e-9));
            rounds.push(serde_json::json!({
                "local_first_epoch_s": local_first_s, "local_epoch_s": local_s,
                "cold_epoch_s": cold_s, "warm_epoch_s": warm_s,
                "cpu": {"local_first": local_cpu, "cold": c[0], "server": c[2], "fetch": c[1]},
            }));
        }
        drop(kept);
        orders.insert(
            name.to_string(),
            serde_json::json!({
                "rounds": rounds,
                "cold_over_local_first": median(&mut cold),
                "cold_over_local_warm": median(&mut cold_warm),
                "warm_over_local": median(&mut warm),
                "fetch_share": median(&mut share),
                "cold_and_server_over_local_first": median(&mut cpu_ratio),
            }),
        );
    }

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
        "orders": orders,
        "limited_cache_limit_over_dataset": limit as f64 / size as f64,
        "limited": stats,
        "limited_bytes_per_epoch_over_dataset":
            stats.bytes_downloaded as f64 / EPOCHS_LIMITED as f64 / size as f64,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
