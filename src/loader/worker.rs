//! The workers: each takes sample tasks, reads, decodes and transforms the sample straight
//! into its batch slot, and answers with the label or the error (a panic becomes an error).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::labels::LabelCheck;
use crate::decode::{DecodePolicy, Decoder};
use crate::output::{OutputSpec, SrcType, Store};
use crate::rng::SampleRng;
use crate::source::{Raw, Source};
use crate::stats::Counters;
use crate::transform::{SampleInfo, SlotWriter, Transform};
use crate::{Error, ErrorKind, ImageView, Result, YCbCrView};

/// State shared by the consumer and the workers.
pub(super) struct Shared<S> {
    pub source: S,
    pub spec: Arc<OutputSpec>,
    pub seed: u64,
    pub transform: Arc<dyn Transform>,
    /// [`Decoder::set_max_image_pixels`] of every worker's decoder.
    pub max_image_pixels: u64,
    pub decode_policy: DecodePolicy,
    pub labels: LabelCheck,
    pub counters: Counters,
    /// Tasks of an older generation are cancelled (answered without work).
    pub min_gen: AtomicU64,
    /// Results sent by the workers, in all.
    pub sent: AtomicU64,
    /// The consumer sleeps until `sent` reaches this; the worker that gets there rings `bell`.
    /// Waking the consumer per batch rather than per sample spares the workers a system call
    /// and an inter-processor interrupt for every sample.
    pub wake_at: AtomicU64,
    pub bell: Sender<()>,
}

impl<S: Source> Shared<S> {
    /// Adds the sample index and, where the error has none, the file.
    pub fn locate(&self, e: Error, index: usize) -> Error {
        locate(&self.source, e, index)
    }
}

/// Adds sample `index` and, where the error has none, the file `source` holds it in.
pub(super) fn locate<S: Source>(source: &S, e: Error, index: usize) -> Error {
    let e = e.at(index);
    match (e.path().is_none(), source.path(index)) {
        (true, Some(p)) => e.file(p),
        _ => e,
    }
}

/// Everything a worker reuses from sample to sample.
pub(super) struct WorkerCtx {
    buf: Vec<u8>,
    decoder: Decoder,
    store_u8: Store,
    store_f32: Store,
    /// The transform's per-worker scratch ([`Transform::scratch`]).
    scratch: Box<dyn std::any::Any + Send>,
}

impl WorkerCtx {
    pub fn new<S>(sh: &Shared<S>) -> Result<WorkerCtx> {
        let mut decoder = Decoder::new()?;
        decoder.set_policy(sh.decode_policy);
        decoder.set_max_image_pixels(sh.max_image_pixels);
        Ok(WorkerCtx {
            buf: Vec::new(),
            decoder,
            store_u8: Store::new(&sh.spec, SrcType::U8)?,
            store_f32: Store::new(&sh.spec, SrcType::F32)?,
            scratch: sh.transform.scratch(),
        })
    }
}

/// One sample to make: read, decode, transform, write into `slot`.
pub(super) struct Task {
    pub generation: u64,
    pub epoch: u64,
    pub pos: usize,
    pub index: usize,
    pub slot: *mut u8,
}

// SAFETY: `slot` points into a pool buffer that the consumer keeps alive and does not touch
// until the task's result has come back (it drains every task before releasing a buffer);
// each slot is written by exactly one task at a time.
unsafe impl Send for Task {}

/// A task's outcome: the label, or why the sample failed.
pub(super) struct Done {
    pub generation: u64,
    pub pos: usize,
    pub result: Result<Option<i64>>,
}

pub(super) fn workers_gone() -> Error {
    Error::new(ErrorKind::Panic, "every worker thread has exited")
}

pub(super) fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "cancelled")
}

/// crossbeam allocates a thread's context, and a channel's list of waiting threads, the first
/// time a thread really blocks on the channel (after spinning): make that happen once, at
/// start-up, on an empty channel, so that steady state allocates nothing.
pub(super) fn block_once<T>(rx: &Receiver<T>) {
    let _ = rx.recv_timeout(Duration::from_millis(2));
}

pub(super) fn worker_main<S: Source>(
    sh: Arc<Shared<S>>,
    tasks: Receiver<Task>,
    results: Sender<Done>,
    mut ctx: WorkerCtx,
    ready: Sender<()>,
) {
    block_once(&tasks);
    let _ = ready.send(());
    drop(ready);
    for task in tasks.iter() {
        let result = if task.generation < sh.min_gen.load(Ordering::Acquire) {
            Err(cancelled())
        } else {
            run_task(&sh, &mut ctx, &task)
        };
        let done = Done {
            generation: task.generation,
            pos: task.pos,
            result,
        };
        if results.send(done).is_err() {
            break; // the loader is gone
        }
        let sent = sh.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if sent >= sh.wake_at.load(Ordering::SeqCst) {
            let _ = sh.bell.try_send(()); // full: the consumer is already being woken
        }
    }
}

/// Runs one task, turning a panic into an error value (and rebuilding the worker's state,
/// which the panic may have left inconsistent).
pub(super) fn run_task<S: Source>(
    sh: &Shared<S>,
    ctx: &mut WorkerCtx,
    task: &Task,
) -> Result<Option<i64>> {
    match panic::catch_unwind(AssertUnwindSafe(|| process(sh, ctx, task))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            if let Ok(fresh) = WorkerCtx::new(sh) {
                *ctx = fresh;
            }
            Err(sh.locate(
                Error::new(ErrorKind::Panic, format!("worker panicked: {msg}")),
                task.index,
            ))
        }
    }
}

/// A decoded sample: pixels, or a JPEG's planes for a transform that takes them.
enum Decoded<'a> {
    Pixels(ImageView<'a>),
    Planes(YCbCrView<'a>),
}

fn process<S: Source>(sh: &Shared<S>, ctx: &mut WorkerCtx, task: &Task) -> Result<Option<i64>> {
    let spec = &*sh.spec;
    let c = &sh.counters;
    let WorkerCtx {
        buf,
        decoder,
        store_u8,
        store_f32,
        scratch,
    } = ctx;
    let at_source = sh.transform.samples_source();
    let ycbcr = sh.transform.takes_ycbcr() && spec.channels == 3;
    decoder.clear_warning();
    let t0 = Instant::now();
    let item = sh
        .source
        .get(task.index, buf)
        .map_err(|e| sh.locate(e, task.index))?;
    if let Some(label) = item.label {
        sh.labels.check(&sh.source, task.index, label)?;
    }
    let t1 = Instant::now();
    let size = (spec.width, spec.height);
    let img = match item.raw {
        Raw::Encoded(bytes) => {
            Counters::add(&c.bytes_read, bytes.len() as u64);
            let planes = if ycbcr {
                decoder
                    .decode_planes(bytes, size)
                    .map_err(|e| sh.locate(e, task.index))?
            } else {
                None
            };
            match planes {
                Some(layout) => Decoded::Planes(
                    decoder
                        .planes_view(&layout)
                        .map_err(|e| sh.locate(e, task.index))?,
                ),
                None => Decoded::Pixels(
                    if at_source {
                        decoder.decode_reduced(bytes, spec.channels, size)
                    } else {
                        decoder.decode(bytes, spec.channels, Some(size))
                    }
                    .map_err(|e| sh.locate(e, task.index))?,
                ),
            }
        }
        Raw::Pixels(v) => {
            let elem = match v.pixels {
                crate::Pixels::U8(_) => 1,
                crate::Pixels::F32(_) => 4,
            };
            Counters::add(
                &c.bytes_read,
                (v.width * v.height * v.channels * elem) as u64,
            );
            if v.channels != spec.channels {
                return Err(sh.locate(
                    Error::new(
                        ErrorKind::Format,
                        format!(
                            "sample has {} channel(s), the loader outputs {}",
                            v.channels, spec.channels
                        ),
                    ),
                    task.index,
                ));
            }
            Decoded::Pixels(if at_source || (v.width, v.height) == size {
                v
            } else {
                decoder
                    .resize(v, spec.width, spec.height)
                    .map_err(|e| sh.locate(e, task.index))?
            })
        }
    };
    let t2 = Instant::now();
    // SAFETY: see `Task`: the slot is `sample_bytes` long (within its buffer, asserted by
    // `Buffer::slot_ptr`), alive, and ours alone.
    let slot = unsafe { std::slice::from_raw_parts_mut(task.slot, spec.sample_bytes()) };
    let mut out = SlotWriter {
        slot,
        store_u8,
        store_f32,
        write_time: Duration::ZERO,
        scratch: &mut **scratch,
    };
    let mut rng = SampleRng::for_sample(sh.seed, task.epoch, task.index);
    let info = SampleInfo {
        index: task.index,
        epoch: task.epoch,
    };
    match &img {
        Decoded::Pixels(v) => sh.transform.apply(info, v, &mut rng, &mut out),
        Decoded::Planes(v) => sh.transform.apply_ycbcr(info, v, &mut rng, &mut out),
    }
    .map_err(|e| sh.locate(e, task.index))?;
    let t3 = Instant::now();
    let write = out.write_time;
    Counters::add(&c.read_ns, (t1 - t0).as_nanos() as u64);
    Counters::add(&c.decode_ns, (t2 - t1).as_nanos() as u64);
    Counters::add(
        &c.transform_ns,
        (t3 - t2).saturating_sub(write).as_nanos() as u64,
    );
    Counters::add(&c.write_ns, write.as_nanos() as u64);
    if let Some(warning) = decoder.warning() {
        let path = sh.source.path(task.index);
        tracing::warn!(
            index = task.index,
            path = ?path,
            warning,
            "stoker: sample decoded with a warning"
        );
        c.warn(task.index, path, warning);
    }
    Ok(item.label)
}
