//! `cg_model_stylize`: the one call that does the work.

use std::ffi::c_void;

use crate::error::Error;
use crate::pipeline::stylize;

use super::image::{cg_image, ImageView};
use super::model::{cg_model, model_ref};
use super::options::cg_options;
use super::{ffi_status, live, non_null, status::cg_status};

/// Progress callback: receives `user_data` as given to `cg_model_stylize` and the fraction
/// done, increasing over the call and ending at 1. Return true to continue, false to cancel.
/// It is called on the thread that called `cg_model_stylize`, and must return normally (no
/// C++ exception or longjmp out of it).
pub type cg_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, fraction: f32) -> bool>;

/// Applies `model`'s style to `src` and writes the result into `dst`.
///
/// `dst` must have `src`'s width and height; its format may differ (an alpha channel the
/// destination lacks is dropped; one the source lacks is written opaque). `dst` may be `src`
/// itself or describe the same memory (in place): the source is read completely before the
/// destination is written. Alpha passes through unchanged. Only the pixel bytes of `dst` are
/// written, never its row padding, and only on success: on any error, including
/// cancellation, the destination is left byte for byte as it was.
///
/// `opts` may be NULL for the defaults; its strength, scale, detail, tile size and threads
/// apply (the backend was fixed when the model was loaded). `progress` may be NULL; otherwise
/// it is called with `user_data` as described at `cg_progress_fn`.
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `model`, `src` or `dst` is NULL, `model` or
/// `opts` is not a live handle (see `cg_model_free`), an image is malformed (NULL data, zero
/// size, stride too small, a byte span that overflows, unknown format) or the sizes differ;
/// CG_ERR_CANCELLED if `progress` returned false; CG_ERR_OUT_OF_MEMORY if a working buffer
/// cannot be allocated or the image does not fit the memory limit even in the smallest
/// tiles (`cg_options_set_memory_limit`); CG_ERR_COMPUTE if the device fails.
///
/// Thread-safe: concurrent calls may share one model and one options handle (neither is
/// modified), as long as no call writes a buffer another call reads or writes and no thread
/// changes the options meanwhile.
#[no_mangle]
pub extern "C" fn cg_model_stylize(
    model: *const cg_model,
    src: *const cg_image,
    dst: *mut cg_image,
    opts: *const cg_options,
    progress: cg_progress_fn,
    user_data: *mut c_void,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: per the documented contract each pointer is NULL or valid for the call, and
        // nothing modifies the model, the options or the two image descriptions meanwhile.
        let (model, src, dst) = unsafe {
            (
                model_ref(model)?,
                non_null(src, "src")?,
                non_null(dst.cast_const(), "dst")?,
            )
        };
        let default_opts;
        // SAFETY: as above.
        let opts = match unsafe { live(opts, "opts") }? {
            Some(o) => o,
            None => {
                default_opts = cg_options::default();
                &default_opts
            }
        };
        let src = ImageView::new(src, "src")?;
        let dst = ImageView::new(dst, "dst")?;
        if src.size() != dst.size() {
            return Err(Error::InvalidArgument(format!(
                "dst is {}x{} but src is {}x{}: they must be the same size",
                dst.size().0,
                dst.size().1,
                src.size().0,
                src.size().1
            )));
        }
        // SAFETY: `src.data` is readable for the validated span per the `cg_image` contract;
        // no slice over `dst` exists yet, so an in-place call is not aliased.
        let pixels = unsafe { src.read() }?;
        let mut report = |fraction: f32| match progress {
            // SAFETY: the caller supplied this callback and `user_data` for this call.
            Some(f) => unsafe { f(user_data, fraction) },
            None => true,
        };
        let styled = opts.run(&mut report, |report| {
            stylize(model, &pixels, &opts.stylize, report)
        })??;
        // SAFETY: `dst.data` is writable for the validated span per the `cg_image` contract;
        // the source slice was dropped inside `read`, so this is the only live reference.
        unsafe { dst.write(&styled) }
    })
}
