//! `cg_trainer`: learn a new style from two folders, from C. A thin layer over
//! [`Trainer`] and [`RunSettings`], which `cyclegan train` uses too, so both front ends take
//! the same settings and leave the same checkpoints.

use std::ffi::{c_char, c_void, CStr};
use std::path::Path;

use crate::error::{Error, Result};
use crate::train::{session, RunSettings, RunSummary, StepLosses, Trainer};

use super::options::cg_options;
use super::stylize::cg_progress_fn;
use super::threads::ThreadLimit;
use super::{
    clear_out, ffi, ffi_status, free_handle, live, live_mut, new_handle, status::cg_status, Handle,
};

/// A training run. Create with `cg_trainer_new`, free with `cg_trainer_free`.
pub struct cg_trainer {
    /// [`Handle::TAG`] while the handle is live.
    tag: u64,
    trainer: Trainer,
    settings: RunSettings,
    threads: ThreadLimit,
    last: Option<StepLosses>,
    /// Set while a run is in progress and left set if it failed: the networks may then be
    /// half-way through an update, so further runs and exports are refused.
    broken: Option<String>,
}

impl Handle for cg_trainer {
    const TAG: u64 = u64::from_le_bytes(*b"cg:train");
    const NAME: &'static str = "cg_trainer";

    unsafe fn tag_field(ptr: *mut Self) -> *mut u64 {
        // SAFETY: the caller guarantees `ptr` points into a large enough allocation; no
        // reference is created.
        unsafe { std::ptr::addr_of_mut!((*ptr).tag) }
    }
}

/// Borrows a trainer argument that must not be NULL.
///
/// # Safety
/// `ptr` must be NULL or a handle from `cg_trainer_new` that no call modifies during `'a`.
unsafe fn trainer_ref<'a>(ptr: *const cg_trainer) -> Result<&'a cg_trainer> {
    // SAFETY: guaranteed by the caller.
    unsafe { live(ptr, "trainer") }?.ok_or_else(|| Error::InvalidArgument("trainer is NULL".into()))
}

/// The losses of the latest training iteration, named as the seed logs them.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cg_train_losses {
    /// Everything the generators minimise: gan + lambda_cycle x cycle + lambda_identity x
    /// identity.
    pub g: f64,
    /// Mean adversarial loss of the two generators.
    pub gan: f64,
    /// Mean of the two reconstruction L1 losses.
    pub cycle: f64,
    /// Mean of the two identity L1 losses.
    pub identity: f64,
    /// Content-domain discriminator loss.
    pub d_a: f64,
    /// Style-domain discriminator loss.
    pub d_b: f64,
}

impl From<StepLosses> for cg_train_losses {
    fn from(l: StepLosses) -> Self {
        Self {
            g: l.g,
            gan: l.gan,
            cycle: l.cycle,
            identity: l.identity,
            d_a: l.d_a,
            d_b: l.d_b,
        }
    }
}

/// A NUL-terminated UTF-8 argument as `&str`.
///
/// # Safety
/// `ptr` must be NULL or a NUL-terminated string alive for `'a`.
unsafe fn utf8_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, per the caller's guarantee, NUL-terminated and alive for 'a.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

impl cg_trainer {
    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::InvalidArgument(format!(
                "this trainer failed earlier ({why}); free it and resume from {}",
                self.settings.checkpoint_path().display()
            ))),
            None => Ok(()),
        }
    }
}

/// Up to `iterations` more iterations through the one checkpoint loop the CLI also runs
/// ([`session::run_with_checkpoints`]); `last` receives each iteration's losses.
fn train_for(
    trainer: &mut Trainer,
    settings: &RunSettings,
    last: &mut Option<StepLosses>,
    iterations: u64,
    report: &mut dyn FnMut(f32) -> bool,
) -> Result<RunSummary> {
    let schedule = session::Schedule {
        out: &settings.out,
        checkpoint_every: settings.checkpoint_every,
        sample_every: 0,
    };
    session::run_with_checkpoints(
        trainer,
        schedule,
        iterations,
        &mut |p| {
            *last = Some(p.losses);
            report(p.iteration as f32 / p.total.max(1) as f32)
        },
        &mut |_, _| Ok(()),
    )
}

/// Opens a training run described by `config_json`, a JSON object whose keys are the long
/// options of `cyclegan train` with `_` for `-`:
///
/// ```json
/// {"content": "photos/", "style": "paintings/", "out": "run/", "iterations": 20000}
/// ```
///
/// `out` (required) is the folder that receives `checkpoint.safetensors`; `content`, `style`
/// and a length (`epochs` or `iterations`, the total to reach) are required for a new run.
/// Optional: `decay_from`, `size`, `batch`, `lr`, `lambda_cycle`, `lambda_identity`, `pool`,
/// `ngf`, `blocks`, `ndf`, `seed`, `init` (a style file to fine-tune), `checkpoint_every`
/// (default 1000) and `resume` (true: continue the run in `out`; the other keys then
/// override the checkpoint's settings, e.g. a larger `iterations`). Unknown keys and wrong
/// types are refused. Settings left out take the seed recipe's values (the paper's).
///
/// `opts` may be NULL; its backend and thread count apply. With CG_BACKEND_CUDA (or AUTO when
/// the CUDA backend library found a GPU) the whole run lives in that library, which reads
/// the folders and writes the same files (docs/gpu.md). The folders are listed now (a file
/// that is not an image is skipped); the networks are built, or read from the checkpoint.
/// On success `*out` holds a new handle the caller owns and must release with
/// `cg_trainer_free`; on failure `*out` is NULL and nothing on disk has changed.
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT for NULL arguments, JSON that is not valid UTF-8 or
/// not a valid settings object, settings out of range, missing or empty folders, a new run
/// over an existing checkpoint or `resume` without one, a checkpoint whose network shapes
/// differ from the settings, and an `out` folder that cannot be created or written;
/// CG_ERR_IO if a folder or file cannot be read; CG_ERR_FORMAT for a corrupt checkpoint or
/// `init` file; CG_ERR_BACKEND_UNAVAILABLE if the chosen backend is missing.
#[no_mangle]
pub extern "C" fn cg_trainer_new(
    config_json: *const c_char,
    opts: *const cg_options,
    out: *mut *mut cg_trainer,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: `out` is NULL or points to a writable pointer, per the documented contract.
        let out = unsafe { clear_out(out, "out") }?;
        // SAFETY: NULL or a NUL-terminated string alive for the call, per the contract.
        let json = unsafe { utf8_arg(config_json, "config_json") }?;
        // SAFETY: `opts` is NULL or a handle no thread modifies during the call.
        let opts = unsafe { live(opts, "opts") }?;
        let settings = RunSettings::from_json(json)?;
        let backend = opts.map_or(crate::device::Backend::Auto, |o| o.backend);
        let threads = ThreadLimit::new(opts.map_or(0, |o| o.threads.threads()));
        let trainer = settings.open(backend)?;
        *out = new_handle(cg_trainer {
            tag: 0,
            trainer,
            settings,
            threads,
            last: None,
            broken: None,
        });
        Ok(())
    })
}

/// Trains up to `iterations` more iterations, stopping early at the end of the run; pass
/// UINT64_MAX to train to the end. The run's `out` folder receives the checkpoint and both
/// styles (`style.safetensors`, content -> style, and `inverse.safetensors`) at every
/// multiple of `checkpoint_every` and when the call returns, each atomically: killing the
/// process at any moment leaves the previous or the new file, never a torn one. This is
/// the loop `cyclegan train` runs, so both leave the same files.
///
/// `progress` may be NULL; otherwise it is called after every iteration with `user_data` and
/// the fraction of the whole run done, on the calling thread. It must not call `cg_trainer_*`
/// functions on this trainer. Returning false stops after that iteration: the checkpoint is
/// written and the call returns CG_ERR_CANCELLED; the trainer stays usable (call again to
/// continue).
///
/// Returns CG_OK (also when the run was already complete: nothing is done);
/// CG_ERR_INVALID_ARGUMENT if `trainer` is NULL or an earlier call failed; CG_ERR_CANCELLED
/// as above; CG_ERR_IO if the checkpoint cannot be written; CG_ERR_COMPUTE if the device
/// fails. After any error other than CG_ERR_CANCELLED the trainer refuses further runs and
/// exports: free it and open the run again with `"resume": true`, which continues from the
/// last checkpoint.
///
/// Not thread-safe for one trainer: no other call may use it meanwhile.
#[no_mangle]
pub extern "C" fn cg_trainer_run(
    trainer: *mut cg_trainer,
    iterations: u64,
    progress: cg_progress_fn,
    user_data: *mut c_void,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: NULL or a handle used by no other call, per the documented contract.
        let t = unsafe { live_mut(trainer, "trainer") }?
            .ok_or_else(|| Error::InvalidArgument("trainer is NULL".into()))?;
        t.usable()?;
        // Marked before and cleared after, so that a panic or error half-way through an
        // update leaves the trainer refusing further use.
        t.broken = Some("a cg_trainer_run call did not complete".into());
        let mut report = |fraction: f32| match progress {
            // SAFETY: the caller supplied this callback and `user_data` for this call.
            Some(f) => unsafe { f(user_data, fraction) },
            None => true,
        };
        let cg_trainer {
            trainer,
            settings,
            threads,
            last,
            ..
        } = &mut *t;
        let result = threads.run(&mut report, |report| {
            train_for(trainer, settings, last, iterations, report)
        });
        match result? {
            Ok(summary) => {
                t.broken = None;
                if summary.cancelled {
                    Err(Error::Cancelled)
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                t.broken = Some(e.to_string());
                Err(e)
            }
        }
    })
}

/// Writes the content -> style generator as a style file (f16 safetensors with the run's
/// settings in its metadata) at `path`, a UTF-8 NUL-terminated path: the file that
/// `cg_model_load`, `cyclegan stylize --model` and the plug-ins load. The file is written
/// atomically (an existing one is replaced only once the new one is complete).
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT if an argument is NULL or not UTF-8, or the trainer
/// failed earlier; CG_ERR_IO if the file cannot be written.
///
/// Thread-safe with other calls that only read the trainer.
#[no_mangle]
pub extern "C" fn cg_trainer_save_style(
    trainer: *const cg_trainer,
    path: *const c_char,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: NULL or a handle no call modifies meanwhile, per the contract.
        let t = unsafe { trainer_ref(trainer) }?;
        // SAFETY: NULL or a NUL-terminated string alive for the call, per the contract.
        let path = unsafe { utf8_arg(path, "path") }?;
        t.usable()?;
        t.trainer.save_style(Path::new(path))
    })
}

/// Iterations completed so far, counting earlier runs of a resumed training; 0 for NULL or
/// a handle that is not live.
#[no_mangle]
pub extern "C" fn cg_trainer_iteration(trainer: *const cg_trainer) -> u64 {
    ffi(0, || {
        // SAFETY: NULL or a handle no call modifies meanwhile, per the contract.
        unsafe { trainer_ref(trainer) }.map_or(0, |t| t.trainer.iteration())
    })
}

/// Iterations in the whole run (its length); 0 for NULL or a handle that is not live.
#[no_mangle]
pub extern "C" fn cg_trainer_total_iterations(trainer: *const cg_trainer) -> u64 {
    ffi(0, || {
        // SAFETY: NULL or a handle no call modifies meanwhile, per the contract.
        unsafe { trainer_ref(trainer) }.map_or(0, |t| t.trainer.total_iterations())
    })
}

/// Copies the losses of the latest iteration this handle trained into `*out`.
///
/// Returns CG_OK; CG_ERR_INVALID_ARGUMENT if an argument is NULL or no iteration has run
/// on this handle yet.
#[no_mangle]
pub extern "C" fn cg_trainer_last_losses(
    trainer: *const cg_trainer,
    out: *mut cg_train_losses,
) -> cg_status {
    ffi_status(|| {
        // SAFETY: NULL or a handle no call modifies meanwhile, per the contract.
        let t = unsafe { trainer_ref(trainer) }?;
        // SAFETY: NULL or writable storage for one `cg_train_losses`, per the contract.
        let out =
            unsafe { out.as_mut() }.ok_or_else(|| Error::InvalidArgument("out is NULL".into()))?;
        let l = t.last.ok_or_else(|| {
            Error::InvalidArgument("no iteration has run on this trainer yet".into())
        })?;
        *out = l.into();
        Ok(())
    })
}

/// Releases a trainer. NULL is a no-op; a handle that is not live (most double frees) is
/// left alone and reported through `cg_last_error_message()`. Nothing is saved: the
/// checkpoint on disk is the one the last `cg_trainer_run` wrote. No other call may be using
/// the trainer.
#[no_mangle]
pub extern "C" fn cg_trainer_free(trainer: *mut cg_trainer) {
    ffi((), || {
        // SAFETY: NULL or a handle from `cg_trainer_new` that the caller gives up here, with
        // no call still using it.
        unsafe { free_handle(trainer, "trainer") }
    })
}
