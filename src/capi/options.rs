//! `cg_options`: an opaque builder, so that adding a setting later adds a setter and never
//! changes a struct layout the caller compiled against.

use std::ffi::{c_char, CStr};

use crate::device::Backend;
use crate::engine::Precision;
use crate::error::{Error, Result};
use crate::pipeline::{Scale, StylizeOptions};

use super::threads::ThreadLimit;
use super::{
    clear_out, ffi, ffi_status, free_handle, live, live_mut, new_handle, status::cg_status, Handle,
};

/// A compute backend: one of the `CG_BACKEND_*` values.
pub type cg_backend = u32;

/// The best available: CUDA, then Metal, then the CPU. The default.
pub const CG_BACKEND_AUTO: cg_backend = 0;
/// The CPU; always available.
pub const CG_BACKEND_CPU: cg_backend = 1;
/// The first NVIDIA GPU, through the backend library `libcyclegan_backend_cuda.so` loaded at
/// run time (docs/gpu.md); `cg_backend_describe` says whether it was found and why not.
pub const CG_BACKEND_CUDA: cg_backend = 2;
/// The first Apple GPU; needs a library built with the `metal` feature.
pub const CG_BACKEND_METAL: cg_backend = 3;

/// The arithmetic of the forward passes: one of the `CG_PRECISION_*` values.
pub type cg_precision = u32;

/// bf16 products where the machine is fast at them and they stay within the documented
/// error bounds of f32 (CPUs with AVX-512 BF16 or AMX), f32 elsewhere. The default.
pub const CG_PRECISION_AUTO: cg_precision = 0;
/// f32 throughout.
pub const CG_PRECISION_F32: cg_precision = 1;
/// bf16 products with f32 accumulation; stylizing returns CG_ERR_UNSUPPORTED where the
/// backend has no such path.
pub const CG_PRECISION_BF16: cg_precision = 2;

/// The most threads `cg_options_set_threads` accepts; larger counts are almost always a
/// negative number cast to unsigned.
const MAX_THREADS: u32 = 1024;

pub(crate) fn backend_from(b: cg_backend) -> Result<Backend> {
    match b {
        CG_BACKEND_AUTO => Ok(Backend::Auto),
        CG_BACKEND_CPU => Ok(Backend::Cpu),
        CG_BACKEND_CUDA => Ok(Backend::Cuda),
        CG_BACKEND_METAL => Ok(Backend::Metal),
        _ => Err(Error::InvalidArgument(format!(
            "backend {b} is not one of CG_BACKEND_AUTO, _CPU, _CUDA, _METAL"
        ))),
    }
}

/// Settings for loading and stylizing. Create with `cg_options_new`, free with
/// `cg_options_free`.
pub struct cg_options {
    /// [`Handle::TAG`] while the handle is live.
    tag: u64,
    pub(crate) backend: Backend,
    pub(crate) stylize: StylizeOptions,
    pub(crate) threads: ThreadLimit,
}

impl Default for cg_options {
    fn default() -> Self {
        Self {
            tag: 0,
            backend: Backend::Auto,
            stylize: StylizeOptions::default(),
            threads: ThreadLimit::default(),
        }
    }
}

impl Handle for cg_options {
    const TAG: u64 = u64::from_le_bytes(*b"cg:opts!");
    const NAME: &'static str = "cg_options";

    unsafe fn tag_field(ptr: *mut Self) -> *mut u64 {
        // SAFETY: the caller guarantees `ptr` points into a large enough allocation; no
        // reference is created.
        unsafe { std::ptr::addr_of_mut!((*ptr).tag) }
    }
}

impl cg_options {
    /// Runs a stylize call's `work` with the configured thread limit; `progress` is called
    /// on the calling thread either way.
    pub(crate) fn run<R: Send>(
        &self,
        progress: &mut dyn FnMut(f32) -> bool,
        work: impl FnOnce(&mut dyn FnMut(f32) -> bool) -> R + Send,
    ) -> Result<R> {
        self.threads.run(progress, work)
    }

    /// Applies `change` to the stylize settings only if the result is valid, so a rejected
    /// value leaves the options as they were.
    fn update(&mut self, change: impl FnOnce(&mut StylizeOptions)) -> Result<()> {
        let mut next = self.stylize;
        change(&mut next);
        next.validate()?;
        self.stylize = next;
        Ok(())
    }
}

/// Borrows the options for a setter.
///
/// # Safety
/// `opts` must be NULL or a live handle from `cg_options_new` not used by another thread.
unsafe fn options_mut<'a>(opts: *mut cg_options) -> Result<&'a mut cg_options> {
    // SAFETY: the caller guarantees `opts` is NULL or an exclusively used handle.
    unsafe { live_mut(opts, "options") }?
        .ok_or_else(|| Error::InvalidArgument("options is NULL".into()))
}

/// Creates options with the defaults: backend auto, threads 0 (all cores), strength 1,
/// scale 0 (auto), tile size 0 (chosen by the memory plan), memory limit 0 (the smaller of
/// 2 GiB and half the available memory), detail 0.5. On success `*out` holds a new handle the caller
/// owns and must release with `cg_options_free`; on failure `*out` is NULL.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `out` is NULL.
///
/// Thread-safety: setters need exclusive access to the handle; once configured, one
/// handle may be passed to any number of concurrent `cg_model_load`/`cg_model_stylize` calls.
#[no_mangle]
pub extern "C" fn cg_options_new(out: *mut *mut cg_options) -> cg_status {
    ffi_status(|| {
        // SAFETY: `out` is NULL or points to a writable pointer, per the documented contract.
        let out = unsafe { clear_out(out, "out") }?;
        *out = new_handle(cg_options::default());
        Ok(())
    })
}

/// Releases options created by `cg_options_new`. NULL is a no-op. The handle must not be in
/// use by another call; models loaded with it do not refer to it and stay valid. Using the
/// handle afterwards is undefined behaviour, though the library recognises most such pointers
/// (a second `cg_options_free` is ignored, other calls return CG_ERR_INVALID_ARGUMENT).
#[no_mangle]
pub extern "C" fn cg_options_free(opts: *mut cg_options) {
    ffi((), || {
        // SAFETY: `opts` is NULL or a handle from `cg_options_new` that the caller gives up
        // here, with no call still using it, per the documented contract.
        unsafe { free_handle(opts, "options") }
    })
}

/// Chooses the backend models are loaded on (`CG_BACKEND_*`). The choice is checked when the
/// model is loaded: `cg_model_load` returns CG_ERR_BACKEND_UNAVAILABLE for a backend this
/// build or machine lacks (except AUTO, which falls back to the CPU).
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `backend` is not a
/// `CG_BACKEND_*` value (the options are then unchanged).
#[no_mangle]
pub extern "C" fn cg_options_set_backend(opts: *mut cg_options, backend: cg_backend) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        let o = unsafe { options_mut(opts) }?;
        o.backend = backend_from(backend)?;
        Ok(())
    })
}

/// Limits the CPU threads stylizing computes with. `threads` > 0: calls using these options
/// run on a pool of that many worker threads owned by the handle (started on first use and
/// stopped by `cg_options_free`, which waits for them to exit); calls sharing the handle
/// share the pool, so together they use at most `threads` threads. 0, the default: the
/// process-wide pool, sized by the RAYON_NUM_THREADS environment variable or else one thread
/// per logical CPU. The calling thread waits while the workers compute, and runs the progress
/// callback.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `threads` exceeds 1024.
#[no_mangle]
pub extern "C" fn cg_options_set_threads(opts: *mut cg_options, threads: u32) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        let o = unsafe { options_mut(opts) }?;
        if threads > MAX_THREADS {
            return Err(Error::InvalidArgument(format!(
                "threads = {threads} is above the maximum of {MAX_THREADS} (0 = all cores)"
            )));
        }
        if threads != o.threads.threads() {
            o.threads = ThreadLimit::new(threads);
        }
        Ok(())
    })
}

/// Forces tiles of `tile_size` working pixels, at least 64 (tiles are at least 160 pixels
/// wide, so smaller values act as 160); 0 (the default) lets the
/// memory plan choose: the whole image in one piece when it fits the memory limit (see
/// `cg_options_set_memory_limit`), otherwise the largest tiles that fit. Tiles overlap and
/// are normalized with whole-image statistics, so they leave no seams; larger tiles are
/// faster and use more memory.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `tile_size` is 1..63.
#[no_mangle]
pub extern "C" fn cg_options_set_tile_size(opts: *mut cg_options, tile_size: u32) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        unsafe { options_mut(opts) }?.update(|s| s.tile = (tile_size > 0).then_some(tile_size))
    })
}

/// Limits the memory one stylize call may use, in bytes, the image and the model included:
/// the call runs the whole image in one piece when that fits and in smaller tiles when it
/// does not, and fails with CG_ERR_INVALID_ARGUMENT naming the size it needs when even
/// the smallest tile does not. 0 (the default): the smaller of 2 GiB and half of the memory
/// available when the call starts.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `bytes` is 1 .. 128 MiB - 1.
#[no_mangle]
pub extern "C" fn cg_options_set_memory_limit(opts: *mut cg_options, bytes: u64) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        unsafe { options_mut(opts) }?.update(|s| s.max_memory = (bytes > 0).then_some(bytes))
    })
}

/// The working size a `width` x `height` input gets with these options (scale), so that a
/// front end can show it or size a preview the way `cg_model_stylize` will. `opts` may be
/// NULL for the defaults. On success `*out_width` and `*out_height` are written.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if an out-pointer is NULL, `opts` is not a live
/// handle, or a side is 0.
#[no_mangle]
pub extern "C" fn cg_options_working_size(
    opts: *const cg_options,
    width: u32,
    height: u32,
    out_width: *mut u32,
    out_height: *mut u32,
) -> cg_status {
    ffi_status(|| {
        if out_width.is_null() || out_height.is_null() {
            return Err(Error::InvalidArgument(
                "out_width and out_height must not be NULL".into(),
            ));
        }
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "image size {width}x{height}: width and height must be at least 1"
            )));
        }
        // SAFETY: per the documented contract of the options handle.
        let o = unsafe { live(opts, "opts") }?;
        let stylize = o.map(|o| o.stylize).unwrap_or_default();
        let (w, h) = stylize.working_size(width, height);
        // SAFETY: both were checked non-NULL; the caller guarantees they are writable.
        unsafe {
            *out_width = w;
            *out_height = h;
        }
        Ok(())
    })
}

/// Sets the arithmetic of the forward passes: a `CG_PRECISION_*` value (default AUTO).
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `precision` is not a
/// `CG_PRECISION_*` value (the options are then unchanged).
#[no_mangle]
pub extern "C" fn cg_options_set_precision(
    opts: *mut cg_options,
    precision: cg_precision,
) -> cg_status {
    ffi_status(|| {
        let p = match precision {
            CG_PRECISION_AUTO => Precision::Auto,
            CG_PRECISION_F32 => Precision::F32,
            CG_PRECISION_BF16 => Precision::Bf16,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "precision {precision} is not one of CG_PRECISION_AUTO, _F32, _BF16"
                )))
            }
        };
        // SAFETY: per the documented contract of the options handle.
        unsafe { options_mut(opts) }?.update(|s| s.precision = p)
    })
}

/// Sets how strongly the style is applied, 0..1 (default 1): 0 returns the input, values in
/// between blend linearly with the original.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `strength` is outside 0..1
/// or NaN.
#[no_mangle]
pub extern "C" fn cg_options_set_strength(opts: *mut cg_options, strength: f32) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        unsafe { options_mut(opts) }?.update(|s| s.strength = strength)
    })
}

/// Sets the working resolution, which sizes the brush strokes: the styles were trained on
/// 256-pixel paintings, so on a large photo native resolution gives a fine texture rather
/// than a painting. 0 (default) = auto: a long side of 384 pixels, or native if smaller;
/// otherwise the fraction of the input size, in (0, 4] (1 = native). The output is always
/// the input's size.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `scale` is negative, above
/// 4 or NaN.
#[no_mangle]
pub extern "C" fn cg_options_set_scale(opts: *mut cg_options, scale: f32) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        let o = unsafe { options_mut(opts) }?;
        o.update(|s| {
            s.scale = if scale == 0.0 {
                Scale::Auto
            } else {
                Scale::Fraction(scale)
            }
        })
    })
}

/// Sets how much of the photo's fine luminance detail is added back when the working
/// resolution is below native, 0..4 (default 0.5; 0 = none, a softer, more painterly look).
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `detail` is outside 0..4 or
/// NaN.
#[no_mangle]
pub extern "C" fn cg_options_set_detail(opts: *mut cg_options, detail: f32) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract of the options handle.
        unsafe { options_mut(opts) }?.update(|s| s.detail = detail)
    })
}

/// The backend a user-facing name stands for ("auto", "cpu", "cuda" or "gpu", "metal"; any
/// case), so that plug-ins take the same names as the command line. On success `*out` is
/// written.
///
/// Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if a pointer is NULL, the name is not UTF-8 or
/// names no backend (the message lists the known names).
#[no_mangle]
pub extern "C" fn cg_backend_from_name(name: *const c_char, out: *mut cg_backend) -> cg_status {
    ffi_status(|| {
        if name.is_null() || out.is_null() {
            return Err(Error::InvalidArgument(
                "name and out must not be NULL".into(),
            ));
        }
        // SAFETY: `name` is non-NULL and NUL-terminated per the documented contract.
        let name = unsafe { CStr::from_ptr(name) }
            .to_str()
            .map_err(|_| Error::InvalidArgument("backend name is not UTF-8".into()))?;
        let b = match Backend::parse(name)? {
            Backend::Auto => CG_BACKEND_AUTO,
            Backend::Cpu => CG_BACKEND_CPU,
            Backend::Cuda => CG_BACKEND_CUDA,
            Backend::Metal => CG_BACKEND_METAL,
        };
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { *out = b };
        Ok(())
    })
}

/// Whether `backend` can run on this machine: for CG_BACKEND_CUDA, a backend library was
/// found, passed its checks and opened its GPU (the status `cg_backend_describe` gives).
/// CG_BACKEND_AUTO and CG_BACKEND_CPU are always available; an unknown value gives false.
/// The first call looks for the backend libraries and opens a GPU, which can take a
/// moment; later calls give the same answer. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_backend_is_available(backend: cg_backend) -> bool {
    ffi(false, || {
        backend_from(backend)
            .map(Backend::is_available)
            .unwrap_or(false)
    })
}

/// Writes one line of text saying what `backend` is on this machine into `buf`: "cpu: ready
/// (built in)", "cuda: ready: NVIDIA H200, 139.8 GiB (138.2 GiB free)
/// (/usr/lib/cyclegan/libcyclegan_backend_cuda.so)", or why it cannot run ("cuda: no cuda
/// backend: libcyclegan_backend_cuda.so is not in ...", "... was refused: it is truncated
/// or corrupt ..."). The same text as the `cyclegan backends` command.
///
/// Follows snprintf: writes at most `len - 1` bytes and a NUL (truncating the text if it
/// does not fit; nothing when `len` is 0, and then `buf` may be NULL), and returns the
/// text's full length in bytes without the NUL, so a return value `>= len` means it was
/// truncated. An unknown backend value gives a text saying so. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_backend_describe(backend: cg_backend, buf: *mut c_char, len: usize) -> usize {
    ffi(0, || {
        let text = match backend_from(backend) {
            Ok(b) => b.describe_status(),
            Err(e) => e.to_string(),
        };
        let bytes = text.as_bytes();
        if !buf.is_null() && len > 0 {
            let n = bytes.len().min(len - 1);
            // SAFETY: per the documented contract `buf` is writable for `len` bytes; we
            // write `n + 1 <= len` of them.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        bytes.len()
    })
}
