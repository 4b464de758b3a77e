//! `stoker._stoker.Batch`: one batch of the Rust loader, shared by the arrays or tensors made
//! over it. Its buffer goes back to the loader's pool when the batch object and every array
//! and tensor over it are gone.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use stoker::{Batch, DType, Layout};

use crate::core::dtype_name;
use crate::dlpack::{DataType, Tensor};

/// A batch: `images()` and `labels()` as DLPack tensors over its buffer (what
/// `numpy.from_dlpack` and `torch.from_dlpack` take without a copy), and where it lies in its
/// epoch.
#[pyclass(frozen, module = "stoker._stoker", name = "Batch")]
pub struct PyBatch {
    batch: Arc<Batch>,
}

impl PyBatch {
    pub fn new(batch: Arc<Batch>) -> PyBatch {
        PyBatch { batch }
    }

    pub fn batch(&self) -> &Batch {
        &self.batch
    }
}

#[pymethods]
impl PyBatch {
    /// The images, `[n, C, H, W]` (NCHW) or `[n, H, W, C]` (NHWC), in the loader's dtype;
    /// bfloat16 as its 16 bits when `bits16` is set (numpy has no bfloat16: the caller views
    /// them as `ml_dtypes.bfloat16`).
    #[pyo3(signature = (*, bits16 = false))]
    fn images(&self, bits16: bool) -> Tensor {
        let b = &self.batch;
        let spec = b.spec();
        let n = b.len();
        let shape = match spec.layout {
            Layout::Nchw => [n, spec.channels, spec.height, spec.width],
            Layout::Nhwc => [n, spec.height, spec.width, spec.channels],
        };
        let dtype = match spec.dtype {
            DType::U8 => DataType::U8,
            DType::F16 => DataType::F16,
            DType::BF16 if bits16 => DataType::U16,
            DType::BF16 => DataType::BF16,
            DType::F32 => DataType::F32,
        };
        Tensor::new(Arc::clone(b), b.as_ptr(), &shape, dtype)
    }

    /// The labels, `[n]` int64 (`-1` where a source has none), or `None` when the source has
    /// no labels.
    fn labels(&self) -> Option<Tensor> {
        let b = &self.batch;
        let labels = b.labels()?;
        Some(Tensor::new(
            Arc::clone(b),
            labels.as_ptr() as *const u8,
            &[labels.len()],
            DataType::I64,
        ))
    }

    /// The data set index of each sample.
    #[getter]
    fn indices(&self) -> Vec<usize> {
        self.batch.indices().to_vec()
    }

    #[getter]
    fn epoch(&self) -> u64 {
        self.batch.epoch()
    }

    /// The stream position of the first sample.
    #[getter]
    fn first_position(&self) -> usize {
        self.batch.first_position()
    }

    /// The stream position after the last sample: where a checkpoint taken after this batch
    /// resumes.
    #[getter]
    fn next_position(&self) -> usize {
        self.batch.next_position()
    }

    /// The images' dtype name (`"float32"`, `"float16"`, `"bfloat16"`, `"uint8"`).
    #[getter]
    fn dtype(&self) -> &'static str {
        dtype_name(self.batch.dtype())
    }

    fn __len__(&self) -> usize {
        self.batch.len()
    }
}

/// The digest of a run of batches, as `stoker bench --digest` prints it (shape, dtype, bytes,
/// labels and indices of every batch, in order).
#[pyclass(module = "stoker._stoker", name = "Digest")]
pub struct Digest {
    inner: Mutex<stoker::digest::Digest>,
}

#[pymethods]
impl Digest {
    #[new]
    fn new() -> Digest {
        Digest {
            inner: Mutex::new(stoker::digest::Digest::new()),
        }
    }

    /// Adds one batch.
    fn update(&self, batch: PyRef<'_, PyBatch>) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(batch.batch());
    }

    /// The digest as 16 hex digits.
    fn hexdigest(&self) -> String {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).hex()
    }
}
