//! `cyclegan train`: learn a style from a folder of photos and a folder of paintings.
//!
//! Kept out of `cyclegan.rs` so that the training CLI and the rest of the tool can change
//! independently.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use cyclegan::train::{checkpoint, session};
use cyclegan::train::{Progress, RunSettings};
use cyclegan::{Backend, Trainer};

/// Settings left out take the seed recipe's value on a new run and the checkpoint's
/// value with `--resume`.
#[derive(Args)]
pub struct TrainArgs {
    /// Folder of photos (domain A): what the style will be applied to.
    #[arg(long)]
    content: Option<PathBuf>,
    /// Folder of paintings (domain B) in the style to learn.
    #[arg(long)]
    style: Option<PathBuf>,
    /// Output folder: style.safetensors (content -> style), inverse.safetensors,
    /// checkpoint.safetensors and samples/.
    #[arg(long)]
    out: PathBuf,
    /// Run length in epochs (passes over the larger folder).
    #[arg(long, conflicts_with = "iterations")]
    epochs: Option<u64>,
    /// Run length in iterations: the total to reach, also when resuming.
    #[arg(long)]
    iterations: Option<u64>,
    /// Epoch or iteration (the unit of the length) where the learning rate starts its
    /// linear decay to 0 [default: half the length].
    #[arg(long)]
    decay_from: Option<u64>,
    /// Training crop side in pixels [default: 256].
    #[arg(long)]
    size: Option<u32>,
    /// Images per iteration [default: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [default: 0.0002].
    #[arg(long)]
    lr: Option<f64>,
    /// Weight of the cycle-consistency loss [default: 10].
    #[arg(long)]
    lambda_cycle: Option<f64>,
    /// Weight of the identity loss [default: half of --lambda-cycle].
    #[arg(long)]
    lambda_identity: Option<f64>,
    /// Past fakes kept for the discriminators; 0 disables the pool [default: 50].
    #[arg(long)]
    pool: Option<usize>,
    /// Generator filters [default: 64, or the --init file's].
    #[arg(long)]
    ngf: Option<usize>,
    /// Residual blocks [default: 9, or the --init file's].
    #[arg(long)]
    blocks: Option<usize>,
    /// Discriminator filters [default: 64].
    #[arg(long)]
    ndf: Option<usize>,
    /// Seed of every random choice (weights, order, crops, pool) [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Write the checkpoint and style files every N iterations (and at the end).
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Save a sample grid into OUT/samples every N iterations (0: never).
    #[arg(long, default_value_t = 500)]
    sample_every: u64,
    /// Continue the run in OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// Start the content -> style generator from this style file (fine-tuning).
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
}

pub fn run(a: TrainArgs) -> Result<ExitCode, String> {
    let backend = Backend::parse(&a.device).map_err(|e| e.to_string())?;
    if let Some(notice) = backend.fallback_notice() {
        eprintln!("note: {notice}");
    }
    if a.checkpoint_every == 0 {
        return Err("--checkpoint-every must be at least 1".into());
    }
    let ckpt = a.out.join(checkpoint::FILE_NAME);
    // A run killed while writing leaves a temporary beside the file it was replacing (the
    // file itself is always whole); clear such leftovers of dead runs.
    let outputs = [
        checkpoint::FILE_NAME,
        session::STYLE_FILE,
        session::INVERSE_FILE,
    ];
    cyclegan::io::remove_stale_temps(&a.out, |t| outputs.contains(&t));
    cyclegan::io::remove_stale_temps(&a.out.join("samples"), |t| {
        t.starts_with("iter_") && t.ends_with(".png")
    });
    // The library refuses these too; checked here first to name the flag.
    if a.resume && !ckpt.is_file() {
        return Err(format!(
            "{}: no checkpoint to resume; start a run without --resume",
            ckpt.display()
        ));
    }
    if !a.resume && ckpt.exists() {
        return Err(format!(
            "{} already holds a training run; add --resume to continue it or choose another --out",
            a.out.display()
        ));
    }
    if !a.resume {
        if a.content.is_none() {
            return Err(
                "--content FOLDER is required (the photos the style will be applied to)".into(),
            );
        }
        if a.style.is_none() {
            return Err("--style FOLDER is required (paintings in the style to learn)".into());
        }
        if a.epochs.is_none() && a.iterations.is_none() {
            return Err("give the run length with --epochs N or --iterations N".into());
        }
    }
    let mut trainer = settings(&a).open(backend).map_err(|e| e.to_string())?;
    for w in trainer.take_warnings() {
        eprintln!("warning: {w}");
    }
    let (na, nb) = trainer.data_sizes();
    eprintln!(
        "training on {na} content and {nb} style images with {}: {} iterations ({} per epoch), from iteration {}",
        trainer.describe(),
        trainer.total_iterations(),
        trainer.iterations_per_epoch(),
        trainer.iteration()
    );

    let bar = ProgressBar::new(trainer.total_iterations());
    bar.set_style(
        ProgressStyle::with_template("{bar:25} {pos}/{len} it  {per_sec}  {msg}")
            .expect("static template"),
    );
    bar.set_position(trainer.iteration());
    bar.enable_steady_tick(Duration::from_millis(500));

    // The last iteration's progress and the losses summed since the last log line.
    let since = std::cell::RefCell::new((None::<Progress>, [0f64; 6]));
    let mut on_iteration = |p: &Progress| {
        bar.set_position(p.iteration);
        bar.set_message(describe(p));
        let (last, sum) = &mut *since.borrow_mut();
        *last = Some(*p);
        let l = &p.losses;
        for (s, v) in sum
            .iter_mut()
            .zip([l.g, l.gan, l.cycle, l.identity, l.d_a, l.d_b])
        {
            *s += v;
        }
        true
    };
    // A line per sample or checkpoint, so logs of unattended runs (where the bar is not
    // drawn) show the losses too; averaged since the last line, because a single
    // iteration's losses (one small batch) jump around too much to read a trend from.
    let mut on_chunk = |t: &mut Trainer, summary: &cyclegan::train::RunSummary| {
        for w in t.take_warnings() {
            bar.suspend(|| eprintln!("warning: {w}"));
        }
        let (last, sum) = &mut *since.borrow_mut();
        if let Some(mut p) = last.take() {
            let rate = summary.iterations as f64 / p.elapsed.as_secs_f64().max(1e-9);
            let n = summary.iterations.max(1) as f64;
            let [g, gan, cycle, identity, d_a, d_b] = sum.map(|s| s / n);
            *sum = [0.0; 6];
            p.losses = cyclegan::train::StepLosses {
                g,
                gan,
                cycle,
                identity,
                d_a,
                d_b,
            };
            bar.suspend(|| {
                eprintln!(
                    "iteration {}/{}: mean {}  ({rate:.2} it/s)",
                    p.iteration,
                    p.total,
                    describe(&p)
                )
            });
        }
        Ok(())
    };
    let schedule = session::Schedule {
        out: &a.out,
        checkpoint_every: a.checkpoint_every,
        sample_every: a.sample_every,
    };
    session::run_with_checkpoints(
        &mut trainer,
        schedule,
        u64::MAX,
        &mut on_iteration,
        &mut on_chunk,
    )
    .map_err(|e| {
        bar.abandon();
        e.to_string()
    })?;
    bar.finish();
    eprintln!(
        "wrote {} (content -> style), {} and {}",
        a.out.join(session::STYLE_FILE).display(),
        a.out.join(session::INVERSE_FILE).display(),
        ckpt.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(p: &Progress) -> String {
    let l = &p.losses;
    let secs = p.remaining.as_secs();
    format!(
        "G {:.3} (gan {:.3} cyc {:.3} id {:.3})  D_A {:.3} D_B {:.3}  lr {:.1e}  {}:{:02}:{:02} left",
        l.g,
        l.gan,
        l.cycle,
        l.identity,
        l.d_a,
        l.d_b,
        p.lr,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The flags as the library's run settings.
fn settings(a: &TrainArgs) -> RunSettings {
    RunSettings {
        content: a.content.clone(),
        style: a.style.clone(),
        epochs: a.epochs,
        iterations: a.iterations,
        decay_from: a.decay_from,
        size: a.size,
        batch: a.batch,
        lr: a.lr,
        lambda_cycle: a.lambda_cycle,
        lambda_identity: a.lambda_identity,
        pool: a.pool,
        ngf: a.ngf,
        blocks: a.blocks,
        ndf: a.ndf,
        seed: a.seed,
        init: a.init.clone(),
        resume: a.resume,
        checkpoint_every: a.checkpoint_every,
        out: a.out.clone(),
    }
}
