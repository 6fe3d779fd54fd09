//! Status codes, their mapping from [`Error`], and the thread-local error message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use crate::error::Error;

use super::ffi;

/// Result of every fallible `cg_` function: `CG_OK` (0) or one of the `CG_ERR_*` codes.
/// New codes may be added in later versions; treat an unknown one as a generic failure and
/// show `cg_last_error_message()`.
pub type cg_status = u32;

/// Success.
pub const CG_OK: cg_status = 0;
/// A NULL where a value is required, a value out of its documented range, a buffer too
/// small for its size and stride, an unknown style name, or an unknown enum value.
pub const CG_ERR_INVALID_ARGUMENT: cg_status = 1;
/// A file could not be read (missing, unreadable).
pub const CG_ERR_IO: cg_status = 2;
/// Data was read but is not what it claims to be (corrupt or truncated weights, unknown
/// tensor layout).
pub const CG_ERR_FORMAT: cg_status = 3;
/// Valid input that this build cannot handle (e.g. a pickle feature of a .pth file).
pub const CG_ERR_UNSUPPORTED: cg_status = 4;
/// The requested backend is not compiled into this library or has no usable device.
pub const CG_ERR_BACKEND_UNAVAILABLE: cg_status = 5;
/// The progress callback returned false; outputs were left unchanged.
pub const CG_ERR_CANCELLED: cg_status = 6;
/// A bug inside the library was caught at the boundary (a Rust panic). The call had no
/// effect on its outputs; the library remains usable, but please report the message.
pub const CG_ERR_PANIC: cg_status = 7;
/// The compute backend failed (device error, device out of memory, internal tensor error).
pub const CG_ERR_COMPUTE: cg_status = 8;
/// A buffer the call needed could not be allocated (a very large image, or too little memory
/// left in the process). Nothing was changed and the library remains usable: retry with a
/// smaller image or scale, or after freeing memory.
pub const CG_ERR_OUT_OF_MEMORY: cg_status = 9;

/// The status a Rust error surfaces as. An exhaustive match, so a new `Error` variant
/// cannot compile until it is given a status.
pub(crate) fn status_of(e: &Error) -> cg_status {
    match e {
        Error::InvalidArgument(_) => CG_ERR_INVALID_ARGUMENT,
        Error::Io { .. } => CG_ERR_IO,
        Error::Format { .. } => CG_ERR_FORMAT,
        Error::Unsupported(_) => CG_ERR_UNSUPPORTED,
        Error::BackendUnavailable(_) => CG_ERR_BACKEND_UNAVAILABLE,
        Error::Cancelled => CG_ERR_CANCELLED,
        Error::OutOfMemory(_) => CG_ERR_OUT_OF_MEMORY,
        Error::Compute(_) | Error::Tensor(_) => CG_ERR_COMPUTE,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(crate) fn set_last_error(msg: &str) {
    // Interior NULs would truncate the C string silently; replace them visibly.
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(msg));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// A short, static, English description of `status` ("invalid argument"); for an unknown
/// code, "unknown status". Never NULL; the string lives as long as the library is loaded.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn cg_status_str(status: cg_status) -> *const c_char {
    ffi(c"internal error".as_ptr(), || {
        let s: &'static CStr = match status {
            CG_OK => c"ok",
            CG_ERR_INVALID_ARGUMENT => c"invalid argument",
            CG_ERR_IO => c"input/output error",
            CG_ERR_FORMAT => c"invalid data format",
            CG_ERR_UNSUPPORTED => c"unsupported",
            CG_ERR_BACKEND_UNAVAILABLE => c"backend unavailable",
            CG_ERR_CANCELLED => c"cancelled",
            CG_ERR_PANIC => c"internal error (panic)",
            CG_ERR_COMPUTE => c"compute backend error",
            CG_ERR_OUT_OF_MEMORY => c"out of memory",
            _ => c"unknown status",
        };
        s.as_ptr()
    })
}

/// Why the most recent `cg_status`-returning call on this thread failed, in words that name
/// the offending value ("strength 1.5 is outside 0..1"); "" if that call succeeded or none
/// was made. Never NULL. The string belongs to the library and stays valid until the next
/// `cg_` call on this thread; copy it to keep it. Each thread has its own message.
#[no_mangle]
pub extern "C" fn cg_last_error_message() -> *const c_char {
    ffi(c"".as_ptr(), || {
        LAST_ERROR.with(|e| match &*e.borrow() {
            // The CString's heap buffer does not move until the next set/clear replaces it.
            Some(m) => m.as_ptr(),
            None => c"".as_ptr(),
        })
    })
}
