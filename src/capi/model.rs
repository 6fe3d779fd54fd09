//! `cg_model`: a loaded style, immutable after loading so that any number of threads can
//! stylize with one model at once.

use std::ffi::{c_char, CStr};

use crate::device::Backend;
use crate::error::{Error, Result};
use crate::model::Model;

use super::{
    clear_out, ffi, ffi_status, free_handle, live, new_handle, options::cg_options,
    status::cg_status, Handle,
};

/// A loaded style model. Create with `cg_model_load` or `cg_model_load_from_memory`, free
/// with `cg_model_free`.
pub struct cg_model {
    /// [`Handle::TAG`] while the handle is live.
    tag: u64,
    pub(crate) model: Model,
}

impl Handle for cg_model {
    const TAG: u64 = u64::from_le_bytes(*b"cg:model");
    const NAME: &'static str = "cg_model";

    unsafe fn tag_field(ptr: *mut Self) -> *mut u64 {
        // SAFETY: the caller guarantees `ptr` points into a large enough allocation; no
        // reference is created.
        unsafe { std::ptr::addr_of_mut!((*ptr).tag) }
    }
}

// Sharing one handle across threads is part of the ABI contract; this fails to compile if a
// change to `Model` ever breaks it.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<cg_model>();
};

/// The backend the options ask for; NULL options mean the default.
///
/// # Safety
/// `opts` must be NULL or a handle from `cg_options_new` that no thread modifies during the
/// call.
unsafe fn backend_of(opts: *const cg_options) -> Result<Backend> {
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { live(opts, "opts") }?.map_or(Backend::Auto, |o| o.backend))
}

fn finish(out: &mut *mut cg_model, model: Result<Model>) -> Result<()> {
    *out = new_handle(cg_model {
        tag: 0,
        model: model?,
    });
    Ok(())
}

/// Borrows the model of a stylize call.
///
/// # Safety
/// `model` must be NULL or a handle from a load function, alive for `'a`.
pub(crate) unsafe fn model_ref<'a>(model: *const cg_model) -> Result<&'a Model> {
    // SAFETY: guaranteed by the caller.
    match unsafe { live(model, "model") }? {
        Some(m) => Ok(&m.model),
        None => Err(Error::InvalidArgument("model is NULL".into())),
    }
}

/// Loads a style: a shipped style name (see `cg_style_name`, e.g. "monet") or the path of a
/// `.safetensors` style file or a PyTorch `.pth` generator checkpoint. `name_or_path` is
/// UTF-8 and NUL-terminated; it is not kept. `opts` may be NULL for the defaults; only its
/// backend is used here. On success `*out` holds a new handle the caller owns and must release
/// with `cg_model_free`; on failure `*out` is NULL.
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `name_or_path` or `out` is NULL, not UTF-8, or
/// names no shipped style and no file, or if `opts` is not a live options handle; CG_ERR_IO
/// if the file cannot be read (missing, a folder, unreadable); CG_ERR_FORMAT if
/// it is not a valid style; CG_ERR_UNSUPPORTED for checkpoint features this build cannot read;
/// CG_ERR_BACKEND_UNAVAILABLE if the chosen backend is missing; CG_ERR_OUT_OF_MEMORY if the
/// weights cannot be allocated; CG_ERR_COMPUTE if the device fails.
///
/// Thread-safe: any number of models may be loaded concurrently.
#[no_mangle]
pub extern "C" fn cg_model_load(
    name_or_path: *const c_char,
    opts: *const cg_options,
    out: *mut *mut cg_model,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: `out` is NULL or points to a writable pointer, per the documented contract.
        let out = unsafe { clear_out(out, "out") }?;
        if name_or_path.is_null() {
            return Err(Error::InvalidArgument("name_or_path is NULL".into()));
        }
        // SAFETY: non-NULL and, per the contract, a NUL-terminated string alive for the call.
        let name = unsafe { CStr::from_ptr(name_or_path) }
            .to_str()
            .map_err(|_| Error::InvalidArgument("name_or_path is not valid UTF-8".into()))?;
        // SAFETY: `opts` is NULL or a live, unmodified handle, per the documented contract.
        let backend = unsafe { backend_of(opts) }?;
        finish(out, Model::load(name, backend))
    })
}

/// Loads a style from `len` bytes at `data` (the contents of a `.safetensors` or `.pth`
/// file). The bytes are copied during the call and not kept. `opts` may be NULL for the
/// defaults; only its backend is used. On success `*out` holds a new handle the caller owns
/// and must release with `cg_model_free`; on failure `*out` is NULL.
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `data` or `out` is NULL; CG_ERR_FORMAT if the
/// bytes are not a valid style (an empty buffer included); CG_ERR_UNSUPPORTED,
/// CG_ERR_BACKEND_UNAVAILABLE and CG_ERR_COMPUTE as for `cg_model_load`.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn cg_model_load_from_memory(
    data: *const u8,
    len: usize,
    opts: *const cg_options,
    out: *mut *mut cg_model,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: `out` is NULL or points to a writable pointer, per the documented contract.
        let out = unsafe { clear_out(out, "out") }?;
        if data.is_null() {
            return Err(Error::InvalidArgument("data is NULL".into()));
        }
        if len > isize::MAX as usize {
            return Err(Error::InvalidArgument(format!("len {len} is too large")));
        }
        // SAFETY: non-NULL, at most isize::MAX bytes, and per the contract readable for `len`
        // bytes and unmodified during the call.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        // SAFETY: `opts` is NULL or a live, unmodified handle, per the documented contract.
        let backend = unsafe { backend_of(opts) }?;
        finish(out, Model::from_bytes(bytes, backend))
    })
}

/// Releases a model. NULL is a no-op. No other call may be using the model, and it must not be
/// used afterwards: that is undefined behaviour, though the library recognises most such
/// pointers (a second `cg_model_free` is ignored, other calls return CG_ERR_INVALID_ARGUMENT).
#[no_mangle]
pub extern "C" fn cg_model_free(model: *mut cg_model) {
    ffi((), || {
        // SAFETY: `model` is NULL or a handle from a load function that the caller gives up
        // here, with no call still using it, per the documented contract.
        unsafe { free_handle(model, "model") }
    })
}
