//! Elastic resume: a checkpoint taken at N ranks resumes at M ranks, and every sample of the
//! epoch is consumed exactly once across both (except the documented padding), whatever the
//! partition, order mode, skip policy or adapter. And the shard-aware order keeps a rank
//! within a window of shards.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use stoker::sampler::{Checkpoint, Order};
use stoker::source::{Item, Raw, ShardInfo, Source};
use stoker::{
    ErrorKind, ImageView, Loader, OnError, Partition, Pixels, Result, Sampler, SkipBound,
};

/// `n` tiny 2×1 gray images (pixel = index % 251) in shards of `sizes`, labelled by index;
/// indices in `fail_at` fail with a decode error.
struct Sharded {
    pixels: Vec<u8>,
    sizes: Vec<usize>,
    fail_at: BTreeSet<usize>,
}

impl Sharded {
    fn new(sizes: &[usize], fail_at: &[usize]) -> Arc<Sharded> {
        let n: usize = sizes.iter().sum();
        Arc::new(Sharded {
            pixels: (0..n).flat_map(|i| [(i % 251) as u8; 2]).collect(),
            sizes: sizes.to_vec(),
            fail_at: fail_at.iter().copied().collect(),
        })
    }
}

impl Source for Sharded {
    fn len(&self) -> usize {
        self.pixels.len() / 2
    }
    fn get<'a>(&'a self, i: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        if self.fail_at.contains(&i) {
            return Err(stoker::Error::new(ErrorKind::Decode, "bad sample").at(i));
        }
        let px = &self.pixels[i * 2..i * 2 + 2];
        Ok(Item {
            raw: Raw::Pixels(ImageView::new(2, 1, 1, Pixels::U8(px)).unwrap()),
            label: Some(i as i64),
        })
    }
    fn path(&self, _i: usize) -> Option<&Path> {
        None
    }
    fn has_labels(&self) -> bool {
        true
    }
    fn channels(&self) -> Option<usize> {
        Some(1)
    }
    fn size(&self) -> Option<(usize, usize)> {
        Some((2, 1))
    }
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        Some(
            self.sizes
                .iter()
                .enumerate()
                .map(|(k, &samples)| ShardInfo {
                    name: format!("shard-{k:03}.tar"),
                    samples,
                })
                .collect(),
        )
    }
}

const SIZES: [usize; 5] = [5, 9, 3, 8, 12]; // 37 samples
const BATCH: usize = 3;
const EPOCH: u64 = 2;

#[derive(Clone, Copy, Debug)]
struct Setup {
    partition: Partition,
    order: Order,
    skip: bool,
    drop_last: bool,
}

fn loader(src: &Arc<Sharded>, s: Setup, rank: usize, world: usize) -> Loader<Arc<Sharded>> {
    Loader::builder(Arc::clone(src))
        .batch_size(BATCH)
        .shuffle(true)
        .seed(17)
        .num_workers(0)
        .prefetch(2)
        .size(2, 1)
        .channels(1)
        .partition(s.partition)
        .order(s.order)
        .drop_last(s.drop_last)
        .on_error(if s.skip {
            OnError::Skip
        } else {
            OnError::Raise
        })
        .max_skipped(SkipBound::Fraction(1.0))
        .distributed(rank, world)
        .build()
        .unwrap()
}

/// Runs `batches` batches of the epoch on `l` (from position 0 of its order): the samples
/// delivered and the position reached.
fn run(l: &mut Loader<Arc<Sharded>>, batches: usize) -> (Vec<usize>, usize) {
    let mut seen = Vec::new();
    let mut position = 0;
    let len = l.epoch_len(EPOCH);
    for b in l.epoch(EPOCH).take(batches) {
        match b {
            Ok(b) => {
                seen.extend_from_slice(b.indices());
                position = b.next_position();
            }
            // Every sample of a (small) pass failed: all of it was consumed, none delivered
            // (the skip bound is 100%, so this is the only skip-limit error here).
            Err(e) if e.kind() == ErrorKind::SkipLimit => return (seen, len),
            Err(e) => panic!("{e}"),
        }
    }
    (seen, position)
}

/// The global order of the epoch: global position -> data set index.
fn global(n: usize, s: Setup) -> Vec<usize> {
    let sizes = SIZES;
    Sampler::new(n)
        .shuffle(true)
        .seed(17)
        .order(s.order)
        .shard_sizes(&sizes)
        .unwrap()
        .epoch(EPOCH)
        .iter_from(0)
        .collect()
}

/// One N -> M case: ranks of N consume `batches(rank)` batches each, checkpoint, merge,
/// resume at M ranks and run the rest. Checks that the positions consumed before and after
/// cover the epoch once (plus padding), and returns what was delivered.
fn check(
    src: &Arc<Sharded>,
    s: Setup,
    n_ranks: usize,
    m_ranks: usize,
    batches: &dyn Fn(usize) -> usize,
) {
    let n = src.len();
    let ctx = format!("{s:?} {n_ranks} -> {m_ranks}");
    let g = global(n, s);
    let mut delivered: Vec<usize> = Vec::new();
    let mut parts = Vec::new();
    // Global positions each rank consumed (padding wraps), counted.
    let mut consumed_before: HashMap<usize, usize> = HashMap::new();
    let mut json_parts = Vec::new();
    for rank in 0..n_ranks {
        let mut l = loader(src, s, rank, n_ranks);
        let (seen, position) = run(&mut l, batches(rank));
        delivered.extend(seen);
        for q in 0..position {
            let p = q * n_ranks + rank;
            *consumed_before.entry(p % n).or_default() += 1;
        }
        let part = l.checkpoint(EPOCH, position);
        // The trainer all-gathers the parts as JSON.
        json_parts.push(serde_json::to_string(&part).unwrap());
        parts.push(part);
    }
    let gathered: Vec<Checkpoint> = json_parts
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    assert_eq!(gathered, parts, "{ctx}");
    let merged = Checkpoint::merge(&gathered).unwrap();
    let distinct_before = consumed_before.len();
    assert_eq!(merged.remaining() as usize, n - distinct_before, "{ctx}");
    let k = n - distinct_before;
    let json = serde_json::to_string(&merged).unwrap();
    let mut after_len = 0;
    for rank in 0..m_ranks {
        let mut l = loader(src, s, rank, m_ranks);
        l.resume(&serde_json::from_str(&json).unwrap()).unwrap();
        let len = l.epoch_len(EPOCH);
        let (seen, position) = run(&mut l, usize::MAX);
        // (A skipped last sample ends no batch: the position stops short of it.)
        if !s.drop_last && !s.skip {
            assert_eq!(position, len, "{ctx}: rank {rank} ran its whole rest");
        }
        after_len += len;
        delivered.extend(seen);
    }
    // What each data set index should count, from the positions consumed.
    let pad_after = match s.partition {
        Partition::Pad => k.div_ceil(m_ranks) * m_ranks - k,
        Partition::Drop => 0,
    };
    let unseen_after = match s.partition {
        Partition::Pad => 0,
        Partition::Drop => k % m_ranks,
    };
    assert_eq!(after_len, k + pad_after - unseen_after, "{ctx}");
    let mut expected = vec![0usize; n];
    for p in 0..n {
        let before = consumed_before.get(&p).copied().unwrap_or(0);
        expected[g[p]] = if before > 0 { before } else { 1 };
    }
    for j in 0..pad_after {
        expected[g[j % n]] += 1;
    }
    if unseen_after > 0 {
        // Under Drop the last `k % M` positions of the rest are not seen this epoch.
        let rest: Vec<usize> = (0..n)
            .filter(|p| !consumed_before.contains_key(p))
            .collect();
        for &p in &rest[rest.len() - unseen_after..] {
            expected[g[p]] = 0;
        }
    }
    let mut got = vec![0usize; n];
    for &i in &delivered {
        got[i] += 1;
    }
    // Skipped samples are consumed, not delivered.
    for &i in &src.fail_at {
        assert_eq!(got[i], 0, "{ctx}: a failing sample was delivered");
        got[i] = expected[i];
    }
    if s.drop_last {
        // drop_last leaves positions unconsumed, so the counts only bound from above: no
        // sample twice unless padding says so.
        for i in 0..n {
            assert!(
                got[i] <= expected[i].max(1),
                "{ctx}: index {i} {} > {}",
                got[i],
                expected[i]
            );
        }
    } else {
        assert_eq!(got, expected, "{ctx}");
    }
}

#[test]
fn n_to_m_for_every_world_size_pad_and_drop() {
    let src = Sharded::new(&SIZES, &[]);
    for partition in [Partition::Pad, Partition::Drop] {
        for order in [Order::Global, Order::Shards { window: 2 }] {
            let s = Setup {
                partition,
                order,
                skip: false,
                drop_last: false,
            };
            for n_ranks in 1..=8 {
                for m_ranks in 1..=8 {
                    // Every rank at the same batch (lockstep), at 0, and at the end.
                    for b in [0, 2, 100] {
                        check(&src, s, n_ranks, m_ranks, &|_| b);
                    }
                    // Ranks at different batches (gathered positions differ).
                    check(&src, s, n_ranks, m_ranks, &|r| (r * 2 + n_ranks) % 5);
                }
            }
        }
    }
}

#[test]
fn n_to_m_with_a_skip_policy() {
    // Failing samples make ranks' positions drift apart: the parts must be merged.
    let src = Sharded::new(&SIZES, &[0, 3, 4, 11, 20, 21, 22, 36]);
    for partition in [Partition::Pad, Partition::Drop] {
        let s = Setup {
            partition,
            order: Order::Global,
            skip: true,
            drop_last: false,
        };
        for n_ranks in 1..=8 {
            for m_ranks in 1..=8 {
                check(&src, s, n_ranks, m_ranks, &|_| 2);
            }
        }
    }
    // The positions really differ between ranks in that setup.
    let s = Setup {
        partition: Partition::Pad,
        order: Order::Global,
        skip: true,
        drop_last: false,
    };
    let positions: BTreeSet<usize> = (0..4)
        .map(|r| run(&mut loader(&src, s, r, 4), 2).1)
        .collect();
    assert!(positions.len() > 1, "{positions:?}");
}

#[test]
fn n_to_m_with_drop_last_never_repeats_a_sample() {
    let src = Sharded::new(&SIZES, &[]);
    for partition in [Partition::Pad, Partition::Drop] {
        let s = Setup {
            partition,
            order: Order::Global,
            skip: false,
            drop_last: true,
        };
        for n_ranks in [1, 3, 8] {
            for m_ranks in [1, 2, 5, 8] {
                check(&src, s, n_ranks, m_ranks, &|r| 1 + r % 2);
            }
        }
    }
}

#[test]
fn same_world_resume_is_bit_identical_to_epoch_from() {
    let src = Sharded::new(&SIZES, &[]);
    for partition in [Partition::Pad, Partition::Drop] {
        for order in [Order::Global, Order::Shards { window: 3 }] {
            let s = Setup {
                partition,
                order,
                skip: false,
                drop_last: false,
            };
            for world in 1..=8 {
                for b in 0..=4 {
                    let cp = loader(&src, s, 0, world)
                        .checkpoint(EPOCH, b * BATCH)
                        .every_rank_alike()
                        .unwrap();
                    for rank in 0..world {
                        let mut plain = loader(&src, s, rank, world);
                        let len = plain.epoch_len(EPOCH);
                        let want: Vec<Vec<usize>> = plain
                            .epoch_from(EPOCH, (b * BATCH).min(len))
                            .map(|x| x.unwrap().indices().to_vec())
                            .collect();
                        let mut resumed = loader(&src, s, rank, world);
                        resumed.resume(&cp).unwrap();
                        let got: Vec<Vec<usize>> = resumed
                            .epoch(EPOCH)
                            .map(|x| x.unwrap().indices().to_vec())
                            .collect();
                        assert_eq!(got, want, "{s:?} world {world} rank {rank} at {b}");
                        // The next epoch is whole again.
                        assert_eq!(resumed.epoch_len(EPOCH + 1), plain.epoch_len(EPOCH + 1));
                    }
                }
            }
        }
    }
}

#[test]
fn resumes_chain_n_to_m_to_k() {
    let src = Sharded::new(&SIZES, &[]);
    let s = Setup {
        partition: Partition::Drop,
        order: Order::Global,
        skip: false,
        drop_last: false,
    };
    let n = src.len();
    let mut seen: Vec<usize> = Vec::new();
    // 3 ranks, uneven positions.
    let mut parts = Vec::new();
    for rank in 0..3 {
        let mut l = loader(&src, s, rank, 3);
        let (got, position) = run(&mut l, 1 + rank % 2);
        seen.extend(got);
        parts.push(l.checkpoint(EPOCH, position));
    }
    let first = Checkpoint::merge(&parts).unwrap();
    // 5 ranks resume, consume one batch each, and checkpoint again.
    let mut parts = Vec::new();
    for rank in 0..5 {
        let mut l = loader(&src, s, rank, 5);
        l.resume(&first).unwrap();
        let (got, position) = run(&mut l, 1);
        seen.extend(got);
        let part = l.checkpoint(EPOCH, position);
        assert_eq!(
            part.consumed, first.consumed,
            "a part carries what it resumed from"
        );
        parts.push(part);
    }
    let second = Checkpoint::merge(&parts).unwrap();
    assert_eq!(second.remaining() as usize, n - seen.len());
    // 2 ranks finish the epoch.
    for rank in 0..2 {
        let mut l = loader(&src, s, rank, 2);
        l.resume(&second).unwrap();
        seen.extend(run(&mut l, usize::MAX).0);
    }
    let distinct: BTreeSet<usize> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no sample twice");
    assert_eq!(
        n - seen.len(),
        (second.remaining() % 2) as usize,
        "Drop leaves k % M"
    );
}

#[test]
fn a_checkpoint_of_another_loader_is_a_usage_error_naming_the_field() {
    let src = Sharded::new(&SIZES, &[]);
    let base = Setup {
        partition: Partition::Pad,
        order: Order::Global,
        skip: false,
        drop_last: false,
    };
    let cp = loader(&src, base, 0, 2)
        .checkpoint(EPOCH, 3)
        .every_rank_alike()
        .unwrap();
    let err = |mut l: Loader<Arc<Sharded>>, cp: &Checkpoint| l.resume(cp).unwrap_err();
    let e = err(
        loader(
            &src,
            Setup {
                order: Order::Shards { window: 2 },
                ..base
            },
            0,
            3,
        ),
        &cp,
    );
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert_eq!(
        e.message(),
        "this checkpoint is of another data set, seed or order: order global (this loader: shards:2)"
    );
    let e = err(
        loader(
            &src,
            Setup {
                partition: Partition::Drop,
                ..base
            },
            0,
            1,
        ),
        &cp,
    );
    assert!(
        e.message().contains("partition Pad (this loader: Drop)"),
        "{e}"
    );
    let e = err(
        loader(
            &src,
            Setup {
                drop_last: true,
                ..base
            },
            0,
            1,
        ),
        &cp,
    );
    assert!(e.message().contains("drop_last"), "{e}");
    // Another data set: other shard sizes (same total), or other sample count.
    let other = Sharded::new(&[5, 9, 3, 9, 11], &[]);
    let e = err(loader(&other, base, 0, 1), &cp);
    assert!(
        e.message()
            .contains("shards ShardInfo { name: \"shard-003.tar\", samples: 8 }"),
        "{e}"
    );
    let other = Sharded::new(&[5, 9, 3, 8, 13], &[]);
    assert!(
        err(loader(&other, base, 0, 1), &cp)
            .message()
            .contains("samples 37 (this loader: 38)")
    );
    // Another seed.
    let mut l = Loader::builder(Arc::clone(&src))
        .shuffle(true)
        .seed(18)
        .size(2, 1)
        .channels(1)
        .num_workers(0)
        .build()
        .unwrap();
    assert!(
        l.resume(&cp)
            .unwrap_err()
            .message()
            .contains("seed 17 (this loader: 18)")
    );
    // Another epoch is not a mismatch: a checkpoint says which epoch it resumes.
    // A part that was not merged.
    let part = loader(&src, base, 0, 2).checkpoint(EPOCH, 3);
    let e = err(loader(&src, base, 0, 2), &part);
    assert!(e.message().contains("merge"), "{e}");
}

#[test]
fn the_shard_aware_order_keeps_a_rank_within_a_window() {
    // 40 shards of various sizes.
    let sizes: Vec<usize> = (0..40).map(|s| 3 + (s * 7) % 11).collect();
    let n: usize = sizes.iter().sum();
    for window in [1, 2, 4, 8] {
        for world in [1, 3, 8] {
            for rank in [0, world - 1] {
                let s = Sampler::new(n)
                    .shuffle(true)
                    .seed(5)
                    .order(Order::Shards { window })
                    .partition(Partition::Drop)
                    .shard_sizes(&sizes)
                    .unwrap()
                    .distributed(rank, world)
                    .unwrap();
                for epoch in 0..3 {
                    let order = s.epoch(epoch);
                    let shards: Vec<usize> = (0..order.len())
                        .map(|p| order.shard_of(p).unwrap())
                        .collect();
                    // Each shard's uses form one stretch [first, last]: at any position, the
                    // shards whose stretch spans it are at most `window`.
                    let mut span: HashMap<usize, (usize, usize)> = HashMap::new();
                    for (p, &sh) in shards.iter().enumerate() {
                        span.entry(sh).and_modify(|e| e.1 = p).or_insert((p, p));
                    }
                    for p in 0..shards.len() {
                        let live = span.values().filter(|&&(a, b)| a <= p && p <= b).count();
                        assert!(
                            live <= window,
                            "k={window} world={world} rank={rank} p={p}: {live}"
                        );
                    }
                    // shards_from lists each change of shard, in order.
                    let needs: Vec<(usize, usize)> = order.shards_from(0).collect();
                    let mut expect = Vec::new();
                    for (p, &sh) in shards.iter().enumerate() {
                        if p == 0 || shards[p - 1] != sh {
                            expect.push((p, sh));
                        }
                    }
                    assert_eq!(needs, expect);
                    // Deterministic: a fresh sampler gives the same order.
                    assert_eq!(order, s.clone().epoch(epoch));
                }
                // Epochs differ.
                let a: Vec<usize> = s.epoch(0).iter_from(0).collect();
                let b: Vec<usize> = s.epoch(1).iter_from(0).collect();
                assert_ne!(a, b);
            }
        }
    }
    // The global permutation does not keep the window: a rank touches many shards at once.
    let s = Sampler::new(n)
        .shuffle(true)
        .seed(5)
        .shard_sizes(&sizes)
        .unwrap();
    let order = s.epoch(0);
    let first: BTreeSet<usize> = (0..40).map(|p| order.shard_of(p).unwrap()).collect();
    assert!(first.len() > 8, "{}", first.len());
}

#[test]
fn the_shard_aware_order_shuffles_across_the_epoch() {
    // Every window's shards come from anywhere in the data set, and each window's samples
    // are mixed: the first positions do not follow data set order.
    let sizes = [10usize; 20];
    let s = Sampler::new(200)
        .shuffle(true)
        .seed(1)
        .order(Order::Shards { window: 4 })
        .shard_sizes(&sizes)
        .unwrap();
    let order: Vec<usize> = s.epoch(0).iter_from(0).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    let first_window: BTreeSet<usize> = order[..40].iter().map(|i| i / 10).collect();
    assert_eq!(first_window.len(), 4);
    assert_ne!(first_window, (0..4).collect::<BTreeSet<_>>());
    let ascending = order[..40].windows(2).filter(|w| w[0] < w[1]).count();
    assert!((10..30).contains(&ascending), "{ascending} of 39 ascending");
}
