//! The fetcher: threads that download shards into the cache ahead of need, in the order the
//! loader will read them, within a byte budget; with a cache limit, they evict the shard whose
//! next use is furthest away, never one in use.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::FetchStats;
use super::cache::{Cache, Fetched};
use super::plan;
use super::store::{Object, Store};
use crate::source::Source;
use crate::{Error, Result};

/// One shard: the objects fetched together before it opens (an images file and its labels).
#[derive(Debug)]
pub(crate) struct Shard {
    /// The first object's URL, as errors name the shard.
    pub url: String,
    pub objects: Vec<Object>,
}

impl Shard {
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// How much the fetcher may hold: bytes fetched ahead of the read position, and the cache's
/// limit (`None`: every shard stays once fetched).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub ahead: u64,
    pub limit: Option<u64>,
}

#[derive(Debug)]
enum Status {
    Remote,
    /// Evicted, its files being removed: fetched again only once they are gone, so that a
    /// fresh download never meets a late removal.
    Evicting,
    Fetching,
    Local,
    Failed(Arc<Error>),
}

struct State {
    status: Vec<Status>,
    /// The shard each position of the pass reads; the positions of each shard.
    sequence: Vec<u32>,
    uses: Vec<Vec<u32>>,
    /// Readers waiting on each shard.
    demanded: Vec<usize>,
    /// Bytes of shards `Local` or `Fetching`.
    held: u64,
    warned: bool,
    shutdown: bool,
}

/// What the fetch threads share with the source.
pub(crate) struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    store: Store,
    cache: Cache,
    bucket: String,
    pub shards: Vec<Shard>,
    budget: Budget,
    /// Reads since the plan began: the position the workers have reached, about (they read
    /// a little out of order).
    reads: AtomicUsize,
    /// Reads of each shard since the plan began: its next use is its `done[k]`-th use in the
    /// plan, however the workers' reads interleave.
    done: Vec<AtomicU32>,
    /// The opened shards when the cache has a limit (evicted ones are `None`).
    pub slots: Vec<RwLock<Option<Box<dyn Source>>>>,
    pub counters: Arc<Counters>,
}

/// What the fetcher did, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes: AtomicU64,
    pub downloads: AtomicU64,
    pub hits: AtomicU64,
    pub evictions: AtomicU64,
    pub peak_held: AtomicU64,
}

impl Counters {
    /// One object downloaded: `bytes` received.
    pub fn note_download(&self, bytes: u64) {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> FetchStats {
        FetchStats {
            bytes_downloaded: self.bytes.load(Ordering::Relaxed),
            downloads: self.downloads.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            peak_cached_bytes: self.peak_held.load(Ordering::Relaxed),
        }
    }
}

/// The fetch threads of one source; stopped and joined on drop.
pub(crate) struct Fetcher {
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("shards", &self.shared.shards.len())
            .field("budget", &self.shared.budget)
            .finish()
    }
}

impl Fetcher {
    /// Starts `threads` fetch threads over `shards`; until told an order
    /// ([`plan`](Self::plan)), they fetch in shard order.
    pub fn start(
        store: Store,
        cache: Cache,
        bucket: String,
        shards: Vec<Shard>,
        sequence: Vec<u32>,
        budget: Budget,
        threads: usize,
    ) -> Result<Fetcher> {
        let n = shards.len();
        let uses = plan::uses(&sequence, n);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: (0..n).map(|_| Status::Remote).collect(),
                sequence,
                uses,
                demanded: vec![0; n],
                held: 0,
                warned: false,
                shutdown: false,
            }),
            cv: Condvar::new(),
            store,
            cache,
            bucket,
            shards,
            budget,
            reads: AtomicUsize::new(0),
            done: (0..n).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..n).map(|_| RwLock::new(None)).collect(),
            counters: Arc::new(Counters::default()),
        });
        let mut handles = Vec::new();
        for t in 0..threads.max(1) {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("stoker-fetch-{t}"))
                .spawn(move || s.run())
                .map_err(|e| Error::io("stoker-fetch", e))?;
            handles.push(h);
        }
        Ok(Fetcher {
            shared,
            threads: handles,
        })
    }

    /// The pass about to start reads shard `sequence[p]` at its position `p`: fetch in that
    /// order from now on.
    pub fn plan(&self, sequence: Vec<u32>) {
        self.install(|_, _| sequence);
    }

    /// The pass after the one in progress reads shard `sequence[p]` at its position `p`, once
    /// the rest of the current pass is read: the plan becomes that rest, then `sequence`.
    /// (Replacing the plan instead would let the next pass's first shards evict the shards
    /// the current pass still reads.)
    pub fn plan_next(&self, sequence: Vec<u32>) {
        self.install(|old, done| {
            // The rest: each shard's uses past the reads it has had, in plan order.
            let mut skip: Vec<u32> = done.to_vec();
            let mut joined: Vec<u32> = old
                .iter()
                .copied()
                .filter(|&k| {
                    let s = &mut skip[k as usize];
                    if *s > 0 {
                        *s -= 1;
                        false
                    } else {
                        true
                    }
                })
                .collect();
            joined.extend_from_slice(&sequence);
            joined
        });
    }

    /// Makes `make(old plan, reads of each shard)` the plan, read from its start.
    fn install(&self, make: impl FnOnce(&[u32], &[u32]) -> Vec<u32>) {
        let mut st = self.shared.lock();
        self.shared.reads.store(0, Ordering::Relaxed);
        let done: Vec<u32> = self
            .shared
            .done
            .iter()
            .map(|d| d.swap(0, Ordering::Relaxed))
            .collect();
        let sequence = make(&st.sequence, &done);
        st.uses = plan::uses(&sequence, self.shared.shards.len());
        st.sequence = sequence;
        // A new pass tries again what failed in the last one.
        for s in st.status.iter_mut() {
            if matches!(s, Status::Failed(_)) {
                *s = Status::Remote;
            }
        }
        drop(st);
        self.shared.cv.notify_all();
    }

    /// A read of shard `k` is about to happen: the read position moves on.
    pub fn touch(&self, k: usize) {
        self.shared.reads.fetch_add(1, Ordering::Relaxed);
        self.shared.done[k].fetch_add(1, Ordering::Relaxed);
    }

    /// Blocks until shard `k` is in the cache (fetching it first, ahead of everything else),
    /// or its download failed for good. While the caller holds the returned guard, the shard
    /// is not evicted.
    pub fn wait(&self, k: usize) -> Result<Demand<'_>> {
        let mut st = self.shared.lock();
        st.demanded[k] += 1;
        self.shared.cv.notify_all();
        loop {
            match &st.status[k] {
                Status::Local => return Ok(Demand { fetcher: self, k }),
                Status::Failed(e) => {
                    let mut err = Error::new(e.kind(), e.message()).with_source(e.clone());
                    if let Some(p) = e.path() {
                        err = err.file(p);
                    }
                    st.demanded[k] -= 1;
                    return Err(err);
                }
                _ => st = self.shared.wait(st),
            }
        }
    }

    /// The local files of shard `k` (in the cache; valid while a [`Demand`] is held).
    pub fn local_paths(&self, k: usize) -> Vec<std::path::PathBuf> {
        let s = &self.shared;
        s.shards[k]
            .objects
            .iter()
            .map(|o| s.cache.path(&s.bucket, &o.key))
            .collect()
    }
}

/// A reader's claim on a shard in the cache: not evicted while held.
pub(crate) struct Demand<'a> {
    fetcher: &'a Fetcher,
    k: usize,
}

impl Drop for Demand<'_> {
    fn drop(&mut self) {
        let s = &self.fetcher.shared;
        s.lock().demanded[self.k] -= 1;
        s.cv.notify_all();
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_all();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// One decision of a fetch thread.
struct Job {
    k: usize,
    evicted: Vec<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.cv
            .wait_timeout(st, Duration::from_millis(200))
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// A fetch thread: takes the next shard to fetch, fetches it, and again.
    fn run(&self) {
        loop {
            let mut st = self.lock();
            let job = loop {
                if st.shutdown {
                    return;
                }
                if let Some(j) = self.next_job(&mut st) {
                    break j;
                }
                st = self.wait(st);
            };
            let k = job.k;
            st.status[k] = Status::Fetching;
            st.held += self.shards[k].bytes();
            self.counters
                .peak_held
                .fetch_max(st.held, Ordering::Relaxed);
            drop(st);
            for &v in &job.evicted {
                for o in &self.shards[v].objects {
                    if let Err(e) = self.cache.evict(&self.bucket, &o.key) {
                        tracing::warn!("cannot evict {}: {e}", o.key);
                    }
                }
            }
            if !job.evicted.is_empty() {
                let mut st = self.lock();
                for &v in &job.evicted {
                    st.status[v] = Status::Remote;
                }
                drop(st);
                self.cv.notify_all();
            }
            let result = self.fetch(k);
            let mut st = self.lock();
            match result {
                Ok(()) => st.status[k] = Status::Local,
                Err(e) => {
                    st.held -= self.shards[k].bytes();
                    st.status[k] = Status::Failed(Arc::new(e));
                }
            }
            drop(st);
            self.cv.notify_all();
        }
    }

    fn fetch(&self, k: usize) -> Result<()> {
        for o in &self.shards[k].objects {
            let (_, how) = self.cache.ensure(&self.store, &self.bucket, o)?;
            match how {
                Fetched::Hit => self.counters.hits.fetch_add(1, Ordering::Relaxed),
                Fetched::Downloaded(n) => {
                    self.counters.downloads.fetch_add(1, Ordering::Relaxed);
                    self.counters.bytes.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
        Ok(())
    }

    /// The shard to fetch next, and the shards evicted to make room for it; `None` when
    /// nothing should be fetched now.
    fn next_job(&self, st: &mut State) -> Option<Job> {
        let pos = self.reads.load(Ordering::Relaxed);
        if let Some(k) = (0..self.shards.len())
            .find(|&k| st.demanded[k] > 0 && matches!(st.status[k], Status::Remote))
        {
            return self.make_room(st, k, true);
        }
        let mut ahead = 0u64;
        for k in upcoming(st, pos, self.shards.len()) {
            if ahead > 0 && ahead + self.shards[k].bytes() > self.budget.ahead {
                break;
            }
            ahead += self.shards[k].bytes();
            if matches!(st.status[k], Status::Remote) {
                return self.make_room(st, k, false);
            }
        }
        None
    }

    /// The position in the plan of shard `k`'s next use (`usize::MAX`: none): its first use
    /// past the reads it has had, however the workers' reads interleave.
    fn next_use(&self, st: &State, k: usize) -> usize {
        let done = self.done[k].load(Ordering::Relaxed) as usize;
        st.uses[k].get(done).map_or(usize::MAX, |&u| u as usize)
    }

    /// Evicts what the limit needs for shard `k` to fit: shards not in use (no reader waits on
    /// one or copies out of it), whose next use is furthest (never used again first), and
    /// only those needed later than `k` (a reader ahead of the others may wait on `k` while
    /// they still read a shard: that one stays, and the limit is exceeded for a while). Under a limit a shard
    /// the plan does not read is not fetched ahead. When no room can be made, nothing is
    /// evicted and `None` returned; a shard the readers wait on is fetched anyway, past the
    /// limit.
    fn make_room(&self, st: &mut State, k: usize, demanded: bool) -> Option<Job> {
        let Some(limit) = self.budget.limit else {
            return Some(Job {
                k,
                evicted: Vec::new(),
            });
        };
        let need = self.shards[k].bytes();
        let k_next = self.next_use(st, k);
        if !demanded && k_next == usize::MAX {
            return None;
        }
        let mut victims: Vec<(usize, usize)> = (0..self.shards.len())
            .filter(|&v| v != k && matches!(st.status[v], Status::Local) && st.demanded[v] == 0)
            .map(|v| (self.next_use(st, v), v))
            .filter(|&(next, _)| next > k_next)
            .collect();
        victims.sort_unstable_by(|a, b| b.cmp(a));
        // Choose first, evict after: a prefetch that cannot fit evicts nothing.
        let mut held = st.held;
        let mut chosen = Vec::new();
        for &(_, v) in &victims {
            if held + need <= limit {
                break;
            }
            chosen.push(v);
            held -= self.shards[v].bytes();
        }
        if held + need > limit && !demanded {
            return None;
        }
        let mut evicted = Vec::new();
        for v in chosen {
            // A reader copying out of the shard holds its read lock: then it is in use.
            let Ok(mut slot) = self.slots[v].try_write() else {
                continue;
            };
            slot.take();
            drop(slot);
            st.status[v] = Status::Evicting;
            st.held -= self.shards[v].bytes();
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            evicted.push(v);
        }
        if st.held + need > limit && !st.warned {
            st.warned = true;
            tracing::warn!(
                "cache_limit {limit} bytes is smaller than the shards in use: exceeding it"
            );
        }
        Some(Job { k, evicted })
    }
}

/// The shards in the order of their next use from `pos` on, each once; then those not used
/// again in this pass, in shard order (the next pass likely starts with them too).
fn upcoming(st: &State, pos: usize, n: usize) -> Vec<usize> {
    let mut seen = vec![false; n];
    let mut out = Vec::new();
    for &k in st.sequence.iter().skip(pos) {
        let k = k as usize;
        if !seen[k] {
            seen[k] = true;
            out.push(k);
            if out.len() == n {
                return out;
            }
        }
    }
    out.extend((0..n).filter(|&k| !seen[k]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcoming_shards_in_the_order_of_their_next_use() {
        let st = State {
            status: Vec::new(),
            sequence: vec![2, 2, 0, 2, 1, 0],
            uses: Vec::new(),
            demanded: Vec::new(),
            held: 0,
            warned: false,
            shutdown: false,
        };
        assert_eq!(upcoming(&st, 0, 4), [2, 0, 1, 3]);
        assert_eq!(upcoming(&st, 4, 4), [1, 0, 2, 3]);
    }
}
