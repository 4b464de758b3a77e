//! A batch's images or labels as a DLPack tensor (the Python array API's exchange protocol),
//! which `numpy.from_dlpack` and `torch.from_dlpack` wrap without a copy. The tensor owns a
//! share of the batch: the buffer goes back to the loader's pool when the last array or tensor
//! over it is freed, on whatever thread that happens (the DLPack deleter needs no GIL).
//!
//! Both capsule kinds are made: the versioned one (`dltensor_versioned`, DLPack 1.x, when the
//! consumer passes `max_version >= (1, 0)`: numpy >= 2.1, torch >= 2.9) and the legacy one
//! (`dltensor`) for older consumers.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, c_void};
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use stoker::Batch;

/// DLPack's `DLDevice`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Device {
    device_type: i32,
    device_id: i32,
}

/// `kDLCPU`.
const CPU: Device = Device {
    device_type: 1,
    device_id: 0,
};

/// DLPack's `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

impl DataType {
    pub const U8: DataType = DataType::new(1, 8);
    pub const U16: DataType = DataType::new(1, 16);
    pub const I64: DataType = DataType::new(0, 64);
    pub const F16: DataType = DataType::new(2, 16);
    pub const BF16: DataType = DataType::new(4, 16);
    pub const F32: DataType = DataType::new(2, 32);

    const fn new(code: u8, bits: u8) -> DataType {
        DataType {
            code,
            bits,
            lanes: 1,
        }
    }
}

/// DLPack's `DLTensor`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: Device,
    ndim: i32,
    dtype: DataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// DLPack's `DLManagedTensor` (the legacy capsule's content).
#[repr(C)]
struct Managed {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut Managed)>,
}

/// DLPack's `DLPackVersion`.
#[repr(C)]
struct Version {
    major: u32,
    minor: u32,
}

/// DLPack's `DLManagedTensorVersioned` (the versioned capsule's content).
#[repr(C)]
struct ManagedVersioned {
    version: Version,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut ManagedVersioned)>,
    flags: u64,
    dl_tensor: DlTensor,
}

/// What a capsule points at: the managed tensor first (its address is the capsule's
/// pointer), then what its shape and strides point into, then the share of the batch.
#[repr(C)]
struct Export<M> {
    managed: M,
    shape: [i64; 4],
    strides: [i64; 4],
    _owner: Arc<Batch>,
}

const LEGACY: &CStr = c"dltensor";
const VERSIONED: &CStr = c"dltensor_versioned";

/// One tensor of a batch: `shape` (row-major, contiguous) of `dtype` at `data`, inside the
/// batch that `owner` keeps alive.
#[pyclass(frozen, module = "stoker._stoker", name = "Tensor")]
pub struct Tensor {
    owner: Arc<Batch>,
    /// The first element (an address inside `owner`'s buffer).
    data: usize,
    shape: [i64; 4],
    ndim: usize,
    dtype: DataType,
}

impl Tensor {
    /// A tensor of `shape` and `dtype` over `data`, an address inside `owner`'s buffer that
    /// stays valid while `owner` lives, holding `shape`'s product of elements.
    pub fn new(owner: Arc<Batch>, data: *const u8, shape: &[usize], dtype: DataType) -> Tensor {
        assert!(shape.len() <= 4, "at most 4 dimensions");
        let mut s = [0i64; 4];
        for (d, &n) in s.iter_mut().zip(shape) {
            *d = n as i64;
        }
        Tensor {
            owner,
            data: data as usize,
            shape: s,
            ndim: shape.len(),
            dtype,
        }
    }

    /// Row-major strides, in elements.
    fn strides(&self) -> [i64; 4] {
        let mut strides = [0i64; 4];
        let mut step = 1i64;
        for d in (0..self.ndim).rev() {
            strides[d] = step;
            step *= self.shape[d];
        }
        strides
    }

    fn dl_tensor(&self, shape: *mut i64, strides: *mut i64) -> DlTensor {
        DlTensor {
            data: self.data as *mut c_void,
            device: CPU,
            ndim: self.ndim as i32,
            dtype: self.dtype,
            shape,
            strides,
            byte_offset: 0,
        }
    }

    fn legacy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let export = Box::into_raw(Box::new(Export {
            managed: Managed {
                dl_tensor: self.dl_tensor(std::ptr::null_mut(), std::ptr::null_mut()),
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_legacy),
            },
            shape: self.shape,
            strides: self.strides(),
            _owner: Arc::clone(&self.owner),
        }));
        // SAFETY: `export` is a live, uniquely owned allocation; the shape and strides arrays
        // live in it, so pointers to them stay valid until the deleter frees it.
        unsafe {
            (*export).managed.dl_tensor.shape = (*export).shape.as_mut_ptr();
            (*export).managed.dl_tensor.strides = (*export).strides.as_mut_ptr();
            (*export).managed.manager_ctx = export as *mut c_void;
        }
        // SAFETY: `Managed` is the first field of the `repr(C)` `Export`, so the capsule's
        // pointer is both; the destructor calls the deleter unless a consumer took it over.
        let made = unsafe { capsule(py, export as *mut c_void, LEGACY, drop_legacy_capsule) };
        if made.is_err() {
            // SAFETY: no capsule owns the export: free it here.
            unsafe { delete_legacy(&raw mut (*export).managed) };
        }
        made
    }

    fn versioned(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let export = Box::into_raw(Box::new(Export {
            managed: ManagedVersioned {
                version: Version { major: 1, minor: 0 },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: 0,
                dl_tensor: self.dl_tensor(std::ptr::null_mut(), std::ptr::null_mut()),
            },
            shape: self.shape,
            strides: self.strides(),
            _owner: Arc::clone(&self.owner),
        }));
        // SAFETY: as in `legacy`.
        unsafe {
            (*export).managed.dl_tensor.shape = (*export).shape.as_mut_ptr();
            (*export).managed.dl_tensor.strides = (*export).strides.as_mut_ptr();
            (*export).managed.manager_ctx = export as *mut c_void;
        }
        // SAFETY: as in `legacy`, for the versioned struct.
        let made = unsafe { capsule(py, export as *mut c_void, VERSIONED, drop_versioned_capsule) };
        if made.is_err() {
            // SAFETY: no capsule owns the export: free it here.
            unsafe { delete_versioned(&raw mut (*export).managed) };
        }
        made
    }
}

#[pymethods]
impl Tensor {
    /// The DLPack capsule of this tensor (CPU memory, no copy): the array API's
    /// `__dlpack__`. `copy=True` is refused (the point is not to copy; copy the array you
    /// get instead).
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Py<PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(s) = stream
            && !s.is_none(py)
        {
            return Err(PyValueError::new_err(
                "stoker tensors are in CPU memory: __dlpack__ takes no stream",
            ));
        }
        if let Some((t, id)) = dl_device
            && (t, id) != (CPU.device_type, CPU.device_id)
        {
            return Err(PyBufferError::new_err(format!(
                "stoker tensors are in CPU memory, not on device ({t}, {id})"
            )));
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "stoker hands its batch buffer over without a copy: copy the array you get",
            ));
        }
        match max_version {
            Some((major, _)) if major >= 1 => self.versioned(py),
            _ => self.legacy(py),
        }
    }

    /// `(kDLCPU, 0)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (CPU.device_type, CPU.device_id)
    }

    /// The address of the first element (inside the batch buffer).
    #[getter]
    fn data_ptr(&self) -> usize {
        self.data
    }

    /// The shape.
    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.shape[..self.ndim].to_vec()
    }
}

/// A new capsule named `name` over `pointer`, with `destructor`.
///
/// # Safety
///
/// `pointer` is what `destructor` expects to find in a capsule named `name`.
unsafe fn capsule(
    py: Python<'_>,
    pointer: *mut c_void,
    name: &'static CStr,
    destructor: ffi::PyCapsule_Destructor,
) -> PyResult<Py<PyAny>> {
    // SAFETY: a valid pointer, a static name, the matching destructor (the caller's contract).
    let raw = unsafe { ffi::PyCapsule_New(pointer, name.as_ptr(), Some(destructor)) };
    if raw.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `raw` is a new reference to the capsule just made.
    Ok(unsafe { Bound::from_owned_ptr(py, raw) }.unbind())
}

/// The legacy deleter: frees the export (and its share of the batch).
///
/// # Safety
///
/// `m` is the `managed` field of a live `Export<Managed>` made by [`Tensor::legacy`].
unsafe extern "C" fn delete_legacy(m: *mut Managed) {
    if !m.is_null() {
        // SAFETY: the caller's contract; `manager_ctx` is the export itself.
        drop(unsafe { Box::from_raw((*m).manager_ctx as *mut Export<Managed>) });
    }
}

/// The versioned deleter, as [`delete_legacy`].
///
/// # Safety
///
/// `m` is the `managed` field of a live `Export<ManagedVersioned>` made by
/// [`Tensor::versioned`].
unsafe extern "C" fn delete_versioned(m: *mut ManagedVersioned) {
    if !m.is_null() {
        // SAFETY: the caller's contract; `manager_ctx` is the export itself.
        drop(unsafe { Box::from_raw((*m).manager_ctx as *mut Export<ManagedVersioned>) });
    }
}

/// A legacy capsule that no consumer took (its name is still `dltensor`) frees its tensor;
/// a consumer that took it renamed it (`used_dltensor`) and calls the deleter itself.
///
/// # Safety
///
/// Called by Python with a capsule made by [`Tensor::legacy`], or with null from
/// [`capsule`]'s failure path.
unsafe extern "C" fn drop_legacy_capsule(capsule: *mut ffi::PyObject) {
    if capsule.is_null() {
        return;
    }
    // SAFETY: a live capsule object; `IsValid` checks the name without setting an error.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, LEGACY.as_ptr()) as *mut Managed;
            delete_legacy(m);
        }
    }
}

/// [`drop_legacy_capsule`] for the versioned capsule.
///
/// # Safety
///
/// As [`drop_legacy_capsule`], for [`Tensor::versioned`].
unsafe extern "C" fn drop_versioned_capsule(capsule: *mut ffi::PyObject) {
    if capsule.is_null() {
        return;
    }
    // SAFETY: as in `drop_legacy_capsule`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr()) as *mut ManagedVersioned;
            delete_versioned(m);
        }
    }
}
