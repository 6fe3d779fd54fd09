//! The one checkpoint loop: what `cyclegan train` and `cg_trainer_run` both run, so the
//! two doors leave the same files behind.
//!
//! At every multiple of the checkpoint interval, and when a call ends (finished, cancelled
//! or its iteration count reached), the run's `out` folder receives the checkpoint and both
//! exported styles, each written atomically: a process killed at any moment leaves the
//! previous or the new file, never a torn one, and the style files always match a
//! checkpoint.

use std::path::Path;

use super::{checkpoint, Progress, RunSummary, Trainer};
use crate::error::{Error, Result};
use crate::io::write_image;

/// The style file `out` receives: content -> style, the file to stylize with.
pub const STYLE_FILE: &str = "style.safetensors";
/// The inverse generator's file: style -> content.
pub const INVERSE_FILE: &str = "inverse.safetensors";
/// Sample grids go in this subfolder of `out`.
pub const SAMPLES_DIR: &str = "samples";

/// Where and how often a loop saves.
#[derive(Debug, Clone, Copy)]
pub struct Schedule<'a> {
    pub out: &'a Path,
    /// Checkpoint and styles at every multiple of this (at least 1).
    pub checkpoint_every: u64,
    /// A sample grid at every multiple of this; 0 for none.
    pub sample_every: u64,
}

/// Writes the checkpoint and both styles into `out`.
pub fn save_outputs(trainer: &Trainer, out: &Path) -> Result<()> {
    trainer.save_checkpoint(&out.join(checkpoint::FILE_NAME))?;
    trainer.save_style(&out.join(STYLE_FILE))?;
    trainer.save_inverse(&out.join(INVERSE_FILE))
}

/// Runs up to `iterations` more iterations (`u64::MAX`: to the end of the run), saving as
/// `schedule` says. `on_iteration` sees each iteration and returns false to stop after it;
/// `on_chunk` runs between chunks (after each checkpoint or sample boundary), for logs.
pub fn run_with_checkpoints(
    trainer: &mut Trainer,
    schedule: Schedule,
    iterations: u64,
    on_iteration: &mut dyn FnMut(&Progress) -> bool,
    on_chunk: &mut dyn FnMut(&mut Trainer, &RunSummary) -> Result<()>,
) -> Result<RunSummary> {
    if schedule.checkpoint_every == 0 {
        return Err(Error::InvalidArgument(
            "checkpoint_every must be at least 1".into(),
        ));
    }
    let next_multiple = |it: u64, every: u64| (it / every + 1) * every;
    let mut done = 0u64;
    let mut cancelled = false;
    let mut saved_at = None;
    while done < iterations && !trainer.is_finished() && !cancelled {
        let it = trainer.iteration();
        let mut next = next_multiple(it, schedule.checkpoint_every);
        if schedule.sample_every > 0 {
            next = next.min(next_multiple(it, schedule.sample_every));
        }
        let next = next
            .min(trainer.total_iterations())
            .min(it.saturating_add(iterations - done));
        let summary = trainer.run(next - it, on_iteration)?;
        done += summary.iterations;
        cancelled = summary.cancelled;
        on_chunk(trainer, &summary)?;
        let it = trainer.iteration();
        if schedule.sample_every > 0
            && summary.iterations > 0
            && (it % schedule.sample_every == 0 || summary.finished)
        {
            let dir = schedule.out.join(SAMPLES_DIR);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let grid = trainer.sample_grid()?;
            write_image(&dir.join(format!("iter_{it:07}.png")), &grid)?;
        }
        if it % schedule.checkpoint_every == 0 || summary.finished {
            save_outputs(trainer, schedule.out)?;
            saved_at = Some(it);
        }
    }
    // The end of a call is a checkpoint too; a resumed run that was already complete still
    // leaves its outputs in place.
    if saved_at != Some(trainer.iteration()) && (done > 0 || trainer.is_finished()) {
        save_outputs(trainer, schedule.out)?;
    }
    Ok(RunSummary {
        iterations: done,
        cancelled,
        finished: trainer.is_finished(),
    })
}
