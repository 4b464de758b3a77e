//! `stoker._stoker.Core`: one Rust [`Loader`] behind the Python loaders (`stoker.Loader`,
//! `stoker.torch.Loader`, `stoker.keras.PyDataset`), which only convert what it yields.
//!
//! - The epoch order, the resume position and the checkpoint are the Rust loader's; this file
//!   keeps the cursor (the next epoch, the position consumed so far) that `state_dict` saves.
//! - Waiting for a batch releases the GIL and wakes every 100 ms to check for signals, so
//!   Ctrl-C raises `KeyboardInterrupt` within about a tenth of a second and cancels the epoch.
//! - A loader used in a process forked after it was made raises `RuntimeError` (its worker
//!   threads are not in the child) and is leaked there, never joined.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use stoker::decode::DecodePolicy;
use stoker::sampler::Order;
use stoker::source::{AnySource, OpenOptions, Source};
use stoker::{
    Checkpoint, DType, Error, ErrorKind, Layout, Loader, Normalize, OnError, Partition, SkipBound,
};

use crate::augment::Augment;
use crate::batch::PyBatch;
use crate::errors::{IntoPy, kind_name, raise, raise_with, usage};

/// How often a blocked `next` wakes to check for signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// A number of samples or a fraction (`max_skipped`).
#[derive(FromPyObject)]
pub enum SkipArg {
    Count(usize),
    Fraction(f64),
    Text(String),
}

/// Normalisation: `"imagenet"`, or per-channel `(mean, std)` in `[0, 1]` units.
#[derive(FromPyObject)]
pub enum NormalizeArg {
    Name(String),
    MeanStd((Vec<f32>, Vec<f32>)),
}

struct State {
    loader: ManuallyDrop<Loader<AnySource>>,
    /// The epoch the next `begin` starts, and its first position.
    next_epoch: u64,
    resume: usize,
    /// The epoch being iterated and the position consumed so far (the next batch's first).
    current: Option<(u64, usize)>,
}

/// The loader: see the module docs.
#[pyclass(frozen, module = "stoker._stoker", name = "Core")]
pub struct Core {
    state: Mutex<State>,
    /// The process that made the loader (its threads live there only).
    pid: u32,
    prefetch: usize,
    seed: u64,
    shuffle: bool,
    drop_last: bool,
    samples: usize,
    description: String,
}

fn parse<T: std::str::FromStr<Err = Error>>(py: Python<'_>, what: &str, v: &str) -> PyResult<T> {
    v.parse::<T>()
        .map_err(|e| usage(py, format!("{what} {v:?}: {}", e.message())))
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (
        path,
        *,
        labels = None,
        images_key = None,
        batch_size = 64,
        size = None,
        channels = None,
        shuffle = false,
        seed = 0,
        num_workers = None,
        prefetch = 2,
        prefetch_next_epoch = true,
        augment = None,
        dtype = "float32",
        layout = "NCHW",
        normalize = None,
        on_error = "raise",
        max_skipped = None,
        decode_policy = "tolerant",
        max_image_pixels = None,
        drop_last = false,
        num_classes = None,
        ignore_label = None,
        rank = None,
        world_size = None,
        partition = "pad",
        order = "global",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        labels: Option<String>,
        images_key: Option<String>,
        batch_size: usize,
        size: Option<(usize, usize)>,
        channels: Option<usize>,
        shuffle: bool,
        seed: u64,
        num_workers: Option<usize>,
        prefetch: usize,
        prefetch_next_epoch: bool,
        augment: Option<PyRef<'_, Augment>>,
        dtype: &str,
        layout: &str,
        normalize: Option<NormalizeArg>,
        on_error: &str,
        max_skipped: Option<SkipArg>,
        decode_policy: &str,
        max_image_pixels: Option<u64>,
        drop_last: bool,
        num_classes: Option<usize>,
        ignore_label: Option<i64>,
        rank: Option<usize>,
        world_size: Option<usize>,
        partition: &str,
        order: &str,
    ) -> PyResult<Core> {
        let mut opts = OpenOptions::new();
        if let Some(l) = labels {
            opts = opts.labels(l);
        }
        if let Some(k) = images_key {
            opts = opts.images_key(k);
        }
        let dtype: DType = parse(py, "dtype", dtype)?;
        let layout: Layout = parse(py, "layout", layout)?;
        let on_error: OnError = parse(py, "on_error", on_error)?;
        let order: Order = parse(py, "order", order)?;
        let decode_policy = match decode_policy {
            "tolerant" => DecodePolicy::Tolerant,
            "strict" => DecodePolicy::Strict,
            "lenient" => DecodePolicy::Lenient,
            other => {
                return Err(usage(
                    py,
                    format!("decode_policy {other:?}: expected tolerant, strict or lenient"),
                ));
            }
        };
        let partition = match partition {
            "pad" => Partition::Pad,
            "drop" => Partition::Drop,
            other => {
                return Err(usage(
                    py,
                    format!("partition {other:?}: expected pad or drop"),
                ));
            }
        };
        let normalize = match normalize {
            None => None,
            Some(NormalizeArg::Name(n)) if n.eq_ignore_ascii_case("imagenet") => {
                Some(Normalize::imagenet())
            }
            Some(NormalizeArg::Name(n)) if n.eq_ignore_ascii_case("none") => None,
            Some(NormalizeArg::Name(n)) => {
                return Err(usage(
                    py,
                    format!("normalize {n:?}: expected \"imagenet\", None or (mean, std)"),
                ));
            }
            Some(NormalizeArg::MeanStd((mean, std))) => Some(Normalize::new(mean, std).py(py)?),
        };
        let max_skipped = match max_skipped {
            None => None,
            Some(SkipArg::Count(n)) => Some(SkipBound::Count(n)),
            Some(SkipArg::Fraction(f)) => Some(SkipBound::Fraction(f)),
            Some(SkipArg::Text(t)) => Some(parse::<SkipBound>(py, "max_skipped", &t)?),
        };
        let distributed = match (rank, world_size) {
            (Some(r), Some(w)) => Some((r, w)),
            (None, None) => None,
            _ => {
                return Err(usage(
                    py,
                    "rank and world_size go together: give both or neither",
                ));
            }
        };
        let augment = augment.map(|a| a.inner.clone());
        let (loader, description) = py
            .detach(move || -> stoker::Result<_> {
                let source = stoker::source::open(&path, &opts)?;
                let description = source.describe();
                let mut b = Loader::builder(source)
                    .batch_size(batch_size)
                    .shuffle(shuffle)
                    .seed(seed)
                    .prefetch(prefetch)
                    .prefetch_next_epoch(prefetch_next_epoch)
                    .dtype(dtype)
                    .layout(layout)
                    .on_error(on_error)
                    .decode_policy(decode_policy)
                    .drop_last(drop_last)
                    .partition(partition)
                    .order(order);
                if let Some((h, w)) = size {
                    b = b.size(w, h);
                }
                if let Some(c) = channels {
                    b = b.channels(c);
                }
                if let Some(n) = num_workers {
                    b = b.num_workers(n);
                }
                if let Some(n) = normalize {
                    b = b.normalize(n);
                }
                if let Some(m) = max_skipped {
                    b = b.max_skipped(m);
                }
                if let Some(n) = max_image_pixels {
                    b = b.max_image_pixels(n);
                }
                if let Some(n) = num_classes {
                    b = b.num_classes(n);
                }
                if let Some(l) = ignore_label {
                    b = b.ignore_label(l);
                }
                if let Some((r, w)) = distributed {
                    b = b.distributed(r, w);
                }
                if let Some(a) = augment {
                    b = b.transform(Arc::new(a));
                }
                Ok((b.build()?, description))
            })
            .py(py)?;
        let samples = loader.source().len();
        Ok(Core {
            state: Mutex::new(State {
                loader: ManuallyDrop::new(loader),
                next_epoch: 0,
                resume: 0,
                current: None,
            }),
            pid: std::process::id(),
            prefetch,
            seed,
            shuffle,
            drop_last,
            samples,
            description,
        })
    }

    /// Batches per epoch for this rank.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.loader.batches_per_epoch())
    }

    /// Starts the next epoch (at the resume position a checkpoint set, else 0) and returns
    /// `(epoch, position)`; an epoch still in progress is cancelled first.
    fn begin(&self, py: Python<'_>) -> PyResult<(u64, usize)> {
        let mut s = self.lock(py)?;
        let (epoch, position) = (s.next_epoch, s.resume);
        s.current = None;
        let st = &mut *s;
        py.detach(|| st.loader.begin_epoch(epoch, position))
            .py(py)?;
        s.current = Some((epoch, position));
        s.next_epoch = epoch + 1;
        s.resume = 0;
        Ok((epoch, position))
    }

    /// The next batch of the epoch in progress, `None` at its end. Waits without the GIL;
    /// a signal (Ctrl-C) raises its exception within about 0.1 s and cancels the epoch.
    fn next(&self, py: Python<'_>) -> PyResult<Option<PyBatch>> {
        let mut s = self.lock(py)?;
        if s.current.is_none() {
            return Ok(None);
        }
        loop {
            let st = &mut *s;
            let polled = py.detach(|| st.loader.poll_batch(SIGNAL_CHECK));
            match polled {
                Poll::Pending => {
                    if let Err(e) = py.check_signals() {
                        s.loader.end_epoch();
                        s.current = None;
                        return Err(e);
                    }
                }
                Poll::Ready(None) => {
                    s.current = None;
                    return Ok(None);
                }
                Poll::Ready(Some(Ok(batch))) => {
                    let epoch = batch.epoch();
                    s.current = Some((epoch, batch.next_position()));
                    return Ok(Some(PyBatch::new(Arc::new(batch))));
                }
                Poll::Ready(Some(Err(e))) => {
                    s.current = None;
                    return Err(self.error(py, &e, s.loader.batches_per_epoch()));
                }
            }
        }
    }

    /// Cancels the epoch in progress (what breaking out of a loop does): samples in flight
    /// are dropped, the workers go on with nothing.
    fn end(&self, py: Python<'_>) -> PyResult<()> {
        let mut s = self.lock(py)?;
        if s.current.take().is_some() {
            let st = &mut *s;
            py.detach(|| st.loader.end_epoch());
        }
        Ok(())
    }

    /// Sets the epoch the next iteration starts (from its first batch), as
    /// `DistributedSampler.set_epoch` does.
    fn set_epoch(&self, py: Python<'_>, epoch: u64) -> PyResult<()> {
        let mut s = self.lock(py)?;
        s.next_epoch = epoch;
        s.resume = 0;
        Ok(())
    }

    /// The checkpoint: the epoch in progress and the position consumed so far, or, between
    /// epochs, the next epoch at position 0; with what shapes the order (seed, samples,
    /// batch size, rank, world size, shuffle, drop_last), which `load_state_dict` checks,
    /// and `checkpoint`: this rank's part of a `stoker::Checkpoint` as JSON (what an elastic
    /// resume merges).
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock(py)?;
        let (epoch, position) = s.current.unwrap_or((s.next_epoch, s.resume));
        let sampler = s.loader.sampler();
        let d = PyDict::new(py);
        let part = s.loader.checkpoint(epoch, position);
        d.set_item("checkpoint", to_json(py, &part)?)?;
        d.set_item("epoch", epoch)?;
        d.set_item("position", position)?;
        d.set_item("seed", self.seed)?;
        d.set_item("samples", self.samples)?;
        d.set_item("batch_size", s.loader.batch_size())?;
        d.set_item("rank", sampler.rank())?;
        d.set_item("world_size", sampler.world_size())?;
        d.set_item("shuffle", self.shuffle)?;
        d.set_item("drop_last", self.drop_last)?;
        Ok(d)
    }

    /// Resumes from a merged checkpoint (JSON, from `merge_checkpoints`) taken at any world
    /// size: the next iteration yields its epoch, this rank's share of the positions no rank
    /// consumed. A checkpoint of another data set, seed or order is a usage error naming the
    /// field.
    fn load_checkpoint(&self, py: Python<'_>, checkpoint: &str) -> PyResult<()> {
        let cp = from_json(py, checkpoint)?;
        let mut s = self.lock(py)?;
        if s.current.take().is_some() {
            s.loader.end_epoch();
        }
        let st = &mut *s;
        py.detach(|| st.loader.resume(&cp)).py(py)?;
        s.next_epoch = cp.epoch;
        s.resume = 0;
        Ok(())
    }

    /// Resumes from a `state_dict` of this rank at this world size: the next iteration yields
    /// exactly the batches that would have followed its position. A checkpoint of another
    /// data set, seed, batch size, rank or world size is a usage error naming what differs.
    fn load_state_dict(&self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut s = self.lock(py)?;
        let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            state
                .get_item(k)?
                .ok_or_else(|| usage(py, format!("state_dict has no {k:?}")))
        };
        let sampler = s.loader.sampler();
        let mine: [(&str, u64); 5] = [
            ("seed", self.seed),
            ("samples", self.samples as u64),
            ("batch_size", s.loader.batch_size() as u64),
            ("rank", sampler.rank() as u64),
            ("world_size", sampler.world_size() as u64),
        ];
        let mut differ = Vec::new();
        for (k, v) in mine {
            let theirs: u64 = get(k)?.extract()?;
            if theirs != v {
                differ.push(format!("{k} {theirs} (this loader: {v})"));
            }
        }
        for (k, v) in [("shuffle", self.shuffle), ("drop_last", self.drop_last)] {
            let theirs: bool = get(k)?.extract()?;
            if theirs != v {
                differ.push(format!("{k} {theirs} (this loader: {v})"));
            }
        }
        if !differ.is_empty() {
            return Err(usage(
                py,
                format!(
                    "this checkpoint is of another loader: {}",
                    differ.join(", ")
                ),
            ));
        }
        let epoch: u64 = get("epoch")?.extract()?;
        let position: usize = get("position")?.extract()?;
        // A state saved in an epoch that was itself resumed elastically: that epoch's order
        // is the rest it resumed from.
        if let Some(part) = state.get_item("checkpoint")? {
            let part = from_json(py, &part.extract::<String>()?)?;
            if part.epoch == epoch && !part.consumed.is_empty() {
                let base = Checkpoint {
                    ranks: Vec::new(),
                    ..part
                };
                if s.current.take().is_some() {
                    s.loader.end_epoch();
                }
                let st = &mut *s;
                py.detach(|| st.loader.resume(&base)).py(py)?;
            }
        }
        let sampler = s.loader.sampler();
        let len = sampler.epoch(epoch).len();
        if position > len {
            return Err(usage(
                py,
                format!(
                    "checkpoint position {position} is past the end of epoch {epoch} ({len} samples)"
                ),
            ));
        }
        if s.current.take().is_some() {
            s.loader.end_epoch();
        }
        s.next_epoch = epoch;
        s.resume = position;
        Ok(())
    }

    /// What the loader did so far, as a dict (samples, batches, bytes read, seconds per
    /// stage, the consumer's wait, skipped samples by kind with their first messages,
    /// samples decoded with a warning).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.lock(py)?.loader.stats();
        let d = PyDict::new(py);
        d.set_item("samples", st.samples)?;
        d.set_item("batches", st.batches)?;
        d.set_item("bytes_read", st.bytes_read)?;
        d.set_item("read_s", st.read.as_secs_f64())?;
        d.set_item("decode_s", st.decode.as_secs_f64())?;
        d.set_item("transform_s", st.transform.as_secs_f64())?;
        d.set_item("write_s", st.write.as_secs_f64())?;
        d.set_item("consumer_wait_s", st.consumer_wait.as_secs_f64())?;
        d.set_item("skipped", st.skipped)?;
        let by_kind = PyDict::new(py);
        for (k, n) in &st.skipped_by_kind {
            by_kind.set_item(kind_name(*k), n)?;
        }
        d.set_item("skipped_by_kind", by_kind)?;
        let skipped: Vec<(Option<usize>, String, &str)> = st
            .skipped_samples
            .iter()
            .map(|s| (s.index, kind_name(s.kind), s.message.as_str()))
            .collect();
        d.set_item("skipped_samples", skipped)?;
        d.set_item("decoded_with_warnings", st.decoded_with_warnings)?;
        d.set_item(
            "first_warning",
            st.first_warning.as_ref().map(|w| w.to_string()),
        )?;
        Ok(d)
    }

    /// Samples in the data set (all ranks).
    #[getter]
    fn samples(&self) -> usize {
        self.samples
    }

    #[getter]
    fn batch_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.loader.batch_size())
    }

    #[getter]
    fn num_workers(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.loader.num_workers())
    }

    #[getter]
    fn prefetch(&self) -> usize {
        self.prefetch
    }

    #[getter]
    fn rank(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.loader.sampler().rank())
    }

    #[getter]
    fn world_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.loader.sampler().world_size())
    }

    /// `(channels, height, width)` of one sample, its dtype (`"float32"`, ...) and layout
    /// (`"NCHW"` or `"NHWC"`).
    #[getter]
    fn spec(
        &self,
        py: Python<'_>,
    ) -> PyResult<((usize, usize, usize), &'static str, &'static str)> {
        let s = self.lock(py)?;
        let spec = s.loader.spec();
        Ok((
            (spec.channels, spec.height, spec.width),
            dtype_name(spec.dtype),
            match spec.layout {
                Layout::Nchw => "NCHW",
                Layout::Nhwc => "NHWC",
            },
        ))
    }

    /// What the source is (format, samples, shape).
    #[getter]
    fn description(&self) -> &str {
        &self.description
    }
}

impl Core {
    /// The state, in the process that made the loader (a forked child gets an error).
    fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, State>> {
        let here = std::process::id();
        if here != self.pid {
            return Err(PyRuntimeError::new_err(format!(
                "this stoker loader was made in process {} and is used in process {here}, \
                 forked from it: its worker threads are not in this process. Make the loader \
                 in the process that iterates it (inside a torch DataLoader worker, make it in \
                 worker_init_fn, or better use stoker's own workers instead of DataLoader's)",
                self.pid
            )));
        }
        // A panic never happens while the state is locked (the loader turns worker panics
        // into errors), so a poisoned lock is only a previous Python exception: go on.
        Ok(self.state.lock().unwrap_or_else(|e| {
            let _ = py;
            e.into_inner()
        }))
    }

    /// `e` as its Python exception; a full pool gets a message for Python users and `held`.
    fn error(&self, py: Python<'_>, e: &Error, _batches: usize) -> PyErr {
        if e.kind() == ErrorKind::PoolExhausted {
            let held = self.prefetch + 2;
            let message = format!(
                "all {held} batch buffers are held by your code: a buffer is reused only when \
                 every array or tensor over its batch is freed. Keep .copy() (numpy) or \
                 .clone() (torch) of what you keep, or raise prefetch (now {}) so that more \
                 batches can be held",
                self.prefetch
            );
            return raise_with(
                py,
                e,
                Some(message),
                &[("held", held.into_pyobject(py).unwrap().into_any().unbind())],
            );
        }
        raise(py, e)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if std::process::id() == self.pid {
            // SAFETY: dropped once, here; nothing uses the loader after.
            unsafe { ManuallyDrop::drop(&mut s.loader) };
        }
        // In a forked child the workers do not exist: joining them would hang. The memory is
        // the child's copy; leaving it is what the child's exit does anyway.
    }
}

/// The numpy name of a dtype.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::U8 => "uint8",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
    }
}

fn to_json(py: Python<'_>, v: &Checkpoint) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| usage(py, format!("checkpoint to json: {e}")))
}

fn from_json(py: Python<'_>, s: &str) -> PyResult<Checkpoint> {
    serde_json::from_str(s).map_err(|e| usage(py, format!("not a stoker checkpoint: {e}")))
}

/// Merges the checkpoint parts (JSON, one per rank: `state_dict()["checkpoint"]` gathered
/// from every rank) into one merged checkpoint (JSON) that resumes at any world size.
#[pyfunction]
pub fn merge_checkpoints(py: Python<'_>, parts: &Bound<'_, PyList>) -> PyResult<String> {
    let parts: Vec<Checkpoint> = parts
        .iter()
        .map(|p| from_json(py, &p.extract::<String>()?))
        .collect::<PyResult<_>>()?;
    to_json(py, &Checkpoint::merge(&parts).py(py)?)
}
