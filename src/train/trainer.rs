//! The training loop around [`TrainState`]: data, schedule, progress, cancel, saving.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};

use super::checkpoint;
use super::data::Dataset;
use super::losses::StepLosses;
use super::rng::{Rng, Stream};
use super::schedule::LrSchedule;
use super::state::TrainState;
use super::{Length, TrainConfig};
use crate::device::{compute_dtype, Backend};
use crate::error::{Error, Result};
use crate::pixels::{BitDepth, Pixels};
use crate::weights::{save_style, Weights};
use cyclegan_backend_api::SaveKind;

use super::remote::RemoteTrainer;

/// What the progress callback sees after each iteration.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Iterations completed, counting earlier runs of a resumed training.
    pub iteration: u64,
    /// Iterations in the whole run.
    pub total: u64,
    /// Zero-based epoch of the iteration just done.
    pub epoch: u64,
    /// Learning rate the iteration used.
    pub lr: f64,
    pub losses: StepLosses,
    /// Time spent in this `run` call.
    pub elapsed: Duration,
    /// Estimated time to `total` at this call's average speed.
    pub remaining: Duration,
}

/// How a [`Trainer::run`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Iterations this call performed.
    pub iterations: u64,
    /// The callback asked to stop. The trainer is consistent (at the last completed
    /// iteration) and can be saved or run further.
    pub cancelled: bool,
    /// The whole run is done.
    pub finished: bool,
}

/// A CycleGAN training run: content -> style (`g_ab`) and back (`g_ba`). It runs here
/// (on the CPU, or the GPU of a build with the `cuda` or `metal` feature) or inside a GPU
/// backend library (remote.rs), which holds the same trainer on its device: the methods
/// below behave alike for both.
pub struct Trainer {
    inner: Inner,
}

enum Inner {
    Local(Box<Local>),
    Remote(Box<RemoteTrainer>),
}

impl Trainer {
    /// Opens the folders and builds fresh networks (or `g_ab` from `config.init`) on
    /// `backend`'s device. A GPU served by a backend library is reached through
    /// [`RunSettings::open`](super::RunSettings::open) (what `cyclegan train` and
    /// `cg_trainer_new` call), which sends the settings across the boundary.
    pub fn new(config: TrainConfig, backend: Backend) -> Result<Self> {
        Ok(Local::new(config, backend)?.into())
    }

    /// Continues from a checkpoint exactly as it was saved.
    pub fn resume(path: &Path, backend: Backend) -> Result<Self> {
        Self::resume_with(path, backend, |c| c)
    }

    /// Continues from a checkpoint with settings changed by `edit`, which receives the
    /// stored ones: the length and decay (to train further), the folders (moved data),
    /// learning rate, loss weights, batch and seed may change; the networks' shapes, the
    /// crop size and the pool size may not.
    pub fn resume_with(
        path: &Path,
        backend: Backend,
        edit: impl FnOnce(TrainConfig) -> TrainConfig,
    ) -> Result<Self> {
        Ok(Local::resume_with(path, backend, edit)?.into())
    }

    pub(crate) fn from_remote(remote: RemoteTrainer) -> Self {
        Self {
            inner: Inner::Remote(Box::new(remote)),
        }
    }

    /// Where the run computes: "cpu", "cuda (NVIDIA H200)".
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Local(t) => t.describe(),
            Inner::Remote(r) => r.describe(),
        }
    }

    pub fn config(&self) -> &TrainConfig {
        match &self.inner {
            Inner::Local(t) => &t.config,
            Inner::Remote(r) => r.config(),
        }
    }

    /// The networks, optimisers and pools; `None` when they live in a backend library.
    pub fn state(&self) -> Option<&TrainState> {
        match &self.inner {
            Inner::Local(t) => Some(&t.state),
            Inner::Remote(_) => None,
        }
    }

    /// Iterations completed so far.
    pub fn iteration(&self) -> u64 {
        match &self.inner {
            Inner::Local(t) => t.iteration,
            Inner::Remote(r) => r.info().iteration,
        }
    }

    /// Iterations in the whole run.
    pub fn total_iterations(&self) -> u64 {
        match &self.inner {
            Inner::Local(t) => t.total_iterations(),
            Inner::Remote(r) => r.info().total_iterations,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.iteration() >= self.total_iterations()
    }

    pub fn iterations_per_epoch(&self) -> u64 {
        match &self.inner {
            Inner::Local(t) => t.iterations_per_epoch(),
            Inner::Remote(r) => r.info().iterations_per_epoch,
        }
    }

    /// The learning rate of the next iteration.
    pub fn learning_rate(&self) -> f64 {
        match &self.inner {
            Inner::Local(t) => t.schedule.lr(t.iteration),
            Inner::Remote(r) => r.info().learning_rate,
        }
    }

    /// Usable images in the content and style folders.
    pub fn data_sizes(&self) -> (usize, usize) {
        match &self.inner {
            Inner::Local(t) => t.data_sizes(),
            Inner::Remote(r) => {
                let i = r.info();
                (i.content_images as usize, i.style_images as usize)
            }
        }
    }

    /// Messages about skipped files and the like since the last call; the library does
    /// not print, so callers decide where they go.
    pub fn take_warnings(&mut self) -> Vec<String> {
        match &mut self.inner {
            Inner::Local(t) => std::mem::take(&mut t.warnings),
            Inner::Remote(r) => r.take_warnings(),
        }
    }

    /// One iteration; returns its losses.
    pub fn step(&mut self) -> Result<StepLosses> {
        if self.is_finished() {
            return Err(Error::InvalidArgument(format!(
                "the run is complete ({} iterations); resume with a longer length to train further",
                self.total_iterations()
            )));
        }
        match &mut self.inner {
            Inner::Local(t) => t.step(),
            Inner::Remote(r) => {
                let mut losses = None;
                r.run(1, &mut |p| {
                    losses = Some(p.losses);
                    true
                })?;
                losses.ok_or_else(|| Error::Compute("the backend library ran no iteration".into()))
            }
        }
    }

    /// Runs up to `iterations` more iterations, stopping at the end of the run. After
    /// each one `progress` is called; returning false stops (see [`RunSummary`]).
    pub fn run(
        &mut self,
        iterations: u64,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<RunSummary> {
        match &mut self.inner {
            Inner::Local(t) => t.run(iterations, progress),
            Inner::Remote(r) => r.run(iterations, progress),
        }
    }

    /// Writes the content -> style generator as a style file (f16, with metadata): the
    /// file `cyclegan stylize --model` and the C ABI load.
    pub fn save_style(&self, path: &Path) -> Result<()> {
        match &self.inner {
            Inner::Local(t) => t.save_style(path),
            Inner::Remote(r) => r.save(SaveKind::Style, path),
        }
    }

    /// Writes the style -> content generator the same way.
    pub fn save_inverse(&self, path: &Path) -> Result<()> {
        match &self.inner {
            Inner::Local(t) => t.save_inverse(path),
            Inner::Remote(r) => r.save(SaveKind::Inverse, path),
        }
    }

    /// Writes everything needed to continue exactly (see [`checkpoint`]), atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        match &self.inner {
            Inner::Local(t) => t.save_checkpoint(path),
            Inner::Remote(r) => r.save(SaveKind::Checkpoint, path),
        }
    }

    /// A picture of how training goes, on the first content and style image
    /// (centre crops): rows content -> style -> content and style -> content -> style,
    /// columns input, translation, reconstruction.
    pub fn sample_grid(&mut self) -> Result<Pixels> {
        match &mut self.inner {
            Inner::Local(t) => t.sample_grid(),
            Inner::Remote(r) => r.sample_grid(),
        }
    }
}

impl From<Local> for Trainer {
    fn from(t: Local) -> Self {
        Self {
            inner: Inner::Local(Box::new(t)),
        }
    }
}

/// The trainer that computes in this process.
struct Local {
    config: TrainConfig,
    state: TrainState,
    data: Dataset,
    schedule: LrSchedule,
    iteration: u64,
    warnings: Vec<String>,
}

impl Local {
    fn new(config: TrainConfig, backend: Backend) -> Result<Self> {
        let t = Self::build(config, backend)?;
        if let Some(init) = t.config.init.clone() {
            let w = Weights::read(&init)?;
            let found = w.generator_config().map_err(|e| e.with_path(&init))?;
            if found != t.config.generator {
                return Err(Error::InvalidArgument(format!(
                    "{}: its generator is {} with {} filters and {} blocks, but the run is set to {} with {} and {}",
                    init.display(),
                    found.layout.name(),
                    found.ngf,
                    found.blocks,
                    t.config.generator.layout.name(),
                    t.config.generator.ngf,
                    t.config.generator.blocks
                )));
            }
            let prefix = w.generator_prefixes().remove(0);
            t.state
                .load_network("g_ab", &w.tensors, &prefix)
                .map_err(|e| e.with_path(&init))?;
        }
        Ok(t)
    }

    fn build(config: TrainConfig, backend: Backend) -> Result<Self> {
        config.validate()?;
        let device = backend.device()?;
        let dtype = compute_dtype(&device);
        let mut warnings = Vec::new();
        let data = Dataset::open(&config.content_dir, &config.style_dir, &mut warnings)?;
        let state = TrainState::new(
            config.generator,
            config.ndf,
            config.step_settings(),
            &device,
            dtype,
            config.seed,
        )?;
        let schedule = schedule_for(&config, &data);
        Ok(Self {
            config,
            state,
            data,
            schedule,
            iteration: 0,
            warnings,
        })
    }

    fn resume_with(
        path: &Path,
        backend: Backend,
        edit: impl FnOnce(TrainConfig) -> TrainConfig,
    ) -> Result<Self> {
        let (tensors, meta) = checkpoint::read(path)?;
        let stored = TrainConfig::from_metadata(&meta).map_err(|e| e.with_path(path))?;
        let config = edit(stored.clone());
        // A crafted checkpoint's stored settings get the limits a new run's settings get.
        crate::train::settings::check_config_limits(&config)?;
        let fixed = [
            (
                "generator layout",
                stored.generator.layout.name().to_string(),
                config.generator.layout.name().to_string(),
            ),
            (
                "generator filters (ngf)",
                stored.generator.ngf.to_string(),
                config.generator.ngf.to_string(),
            ),
            (
                "residual blocks",
                stored.generator.blocks.to_string(),
                config.generator.blocks.to_string(),
            ),
            (
                "discriminator filters (ndf)",
                stored.ndf.to_string(),
                config.ndf.to_string(),
            ),
            (
                "crop size",
                stored.size.to_string(),
                config.size.to_string(),
            ),
            (
                "pool size",
                stored.pool_size.to_string(),
                config.pool_size.to_string(),
            ),
        ];
        for (what, was, now) in fixed {
            if was != now {
                return Err(Error::InvalidArgument(format!(
                    "{}: the checkpoint's {what} is {was}, cannot resume with {now}",
                    path.display()
                )));
            }
        }
        let iteration: u64 = meta
            .get("iteration")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::format(path, "checkpoint metadata lacks the iteration"))?;
        let mut t = Self::build(config, backend)?;
        t.state
            .restore_parts(&tensors, &meta)
            .map_err(|e| e.with_path(path))?;
        t.iteration = iteration;
        for (key, now) in [
            ("data.content_images", t.data.content.len()),
            ("data.style_images", t.data.style.len()),
        ] {
            if let Some(was) = meta.get(key) {
                if *was != now.to_string() {
                    t.warnings.push(format!(
                        "the {} folder now has {now} usable images, {was} when the checkpoint was written: the run continues but does not repeat an uninterrupted one",
                        if key.contains("content") { "content" } else { "style" }
                    ));
                }
            }
        }
        if iteration > t.schedule.total_iterations() {
            t.warnings.push(format!(
                "the checkpoint is at iteration {iteration}, past the run's length of {}",
                t.schedule.total_iterations()
            ));
        }
        Ok(t)
    }

    fn describe(&self) -> String {
        match self.state.device() {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => "cuda (compiled in)".into(),
            Device::Metal(_) => "metal (compiled in)".into(),
        }
    }

    fn is_finished(&self) -> bool {
        self.iteration >= self.schedule.total_iterations()
    }

    fn total_iterations(&self) -> u64 {
        self.schedule.total_iterations()
    }

    fn data_sizes(&self) -> (usize, usize) {
        (self.data.content.len(), self.data.style.len())
    }

    fn iterations_per_epoch(&self) -> u64 {
        self.data.iterations_per_epoch(self.config.batch)
    }

    /// One iteration; the caller has checked that the run is not complete.
    fn step(&mut self) -> Result<StepLosses> {
        let it = self.iteration;
        let batch = self.data.batch(
            it,
            self.config.batch,
            self.config.size,
            self.config.seed,
            self.state.device(),
            self.state.dtype(),
            &mut self.warnings,
        )?;
        let lr = self.schedule.lr(it);
        let mut rng = Rng::derive(self.config.seed, Stream::Pool, it);
        let losses = self
            .state
            .step(&batch.content, &batch.style, lr, &mut rng)?;
        if !losses.g.is_finite() || !losses.d_a.is_finite() || !losses.d_b.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "training diverged at iteration {it} (loss G {}, D_A {}, D_B {}); lower the learning rate or resume from the last checkpoint",
                losses.g, losses.d_a, losses.d_b
            )));
        }
        self.iteration += 1;
        Ok(losses)
    }

    fn run(
        &mut self,
        iterations: u64,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<RunSummary> {
        let start = Instant::now();
        let per_epoch = self.iterations_per_epoch().max(1);
        let mut done = 0;
        let mut cancelled = false;
        while done < iterations && !self.is_finished() {
            let it = self.iteration;
            let lr = self.schedule.lr(it);
            let losses = self.step()?;
            done += 1;
            let elapsed = start.elapsed();
            let left = self.total_iterations().saturating_sub(self.iteration);
            let remaining = elapsed.mul_f64(left as f64 / done as f64);
            let p = Progress {
                iteration: self.iteration,
                total: self.total_iterations(),
                epoch: it / per_epoch,
                lr,
                losses,
                elapsed,
                remaining,
            };
            if !progress(&p) {
                cancelled = true;
                break;
            }
        }
        Ok(RunSummary {
            iterations: done,
            cancelled,
            finished: self.is_finished(),
        })
    }

    /// Metadata every exported file carries: where it came from and how it was made.
    fn export_metadata(&self, direction: &str) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut m = c.to_metadata();
        let (na, nb) = self.data_sizes();
        m.insert("name".into(), style_name(&c.style_dir));
        m.insert("direction".into(), direction.into());
        m.insert("content".into(), c.content_dir.display().to_string());
        m.insert("style".into(), c.style_dir.display().to_string());
        m.insert("iterations".into(), self.iteration.to_string());
        m.insert(
            "data".into(),
            format!("content {na} images, style {nb} images"),
        );
        let unit = match c.length {
            Length::Epochs(_) => "epochs",
            Length::Iterations(_) => "iterations",
        };
        m.insert(
            "training".into(),
            format!(
                "cyclegan trainer, seed recipe ({} generator, {} filters, {} blocks; PatchGAN {} filters; LSGAN, cycle {}, identity {}; Adam {} ({}, {}); pool {}), {} px crops of {} px, batch {}, {} of {} iterations ({} {unit}, decay from {}), seed {}",
                c.generator.layout.name(),
                c.generator.ngf,
                c.generator.blocks,
                c.ndf,
                c.lambda_cycle,
                c.lambda_identity,
                c.lr,
                c.beta1,
                c.beta2,
                c.pool_size,
                c.size,
                (f64::from(c.size) * 1.12) as u32,
                c.batch,
                self.iteration,
                self.total_iterations(),
                c.length_units(),
                c.decay_start(),
                c.seed,
            ),
        );
        let arch = match c.generator.layout {
            crate::nn::Layout::Seed => format!("seed-resnet{}-upsample", c.generator.blocks),
            crate::nn::Layout::Official => {
                format!("official-resnet{}-convtranspose", c.generator.blocks)
            }
        };
        m.insert("arch".into(), arch);
        m
    }

    fn save_style(&self, path: &Path) -> Result<()> {
        save_style(
            path,
            &self.state.network("g_ab")?,
            DType::F16,
            self.export_metadata("content->style"),
            self.state.generator_config(),
        )
    }

    fn save_inverse(&self, path: &Path) -> Result<()> {
        save_style(
            path,
            &self.state.network("g_ba")?,
            DType::F16,
            self.export_metadata("style->content"),
            self.state.generator_config(),
        )
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let (tensors, mut meta) = self.state.checkpoint_parts()?;
        meta.extend(self.config.to_metadata());
        meta.insert("iteration".into(), self.iteration.to_string());
        meta.insert(
            "random_state".into(),
            format!(
                "pcg32 streams derived from seed {} and the iteration",
                self.config.seed
            ),
        );
        meta.insert(
            "data.content_images".into(),
            self.data.content.len().to_string(),
        );
        meta.insert(
            "data.style_images".into(),
            self.data.style.len().to_string(),
        );
        meta.insert(
            "dtype".into(),
            format!("{:?}", self.state.dtype()).to_lowercase(),
        );
        checkpoint::write(path, &tensors, meta)
    }

    fn sample_grid(&mut self) -> Result<Pixels> {
        let size = self.config.size;
        let (a, b) = self.data.sample_inputs(
            size,
            self.state.device(),
            self.state.dtype(),
            &mut self.warnings,
        )?;
        let fake_b = self.state.g_ab.forward(&a)?.detach();
        let rec_a = self.state.g_ba.forward(&fake_b)?.detach();
        let fake_a = self.state.g_ba.forward(&b)?.detach();
        let rec_b = self.state.g_ab.forward(&fake_a)?.detach();
        grid(&[[a, fake_b, rec_a], [b, fake_a, rec_b]], size)
    }
}

fn schedule_for(config: &TrainConfig, data: &Dataset) -> LrSchedule {
    let unit = match config.length {
        Length::Epochs(_) => data.iterations_per_epoch(config.batch),
        Length::Iterations(_) => 1,
    };
    LrSchedule {
        base: config.lr,
        unit,
        total: config.length_units(),
        decay_from: config.decay_start(),
    }
}

/// A readable style name from the folder: `monet2photo/trainA` gives `monet2photo`,
/// `paintings/monet` gives `monet`.
fn style_name(dir: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let last = name(dir);
    let generic = ["train", "test", "val"]
        .iter()
        .any(|g| last.to_ascii_lowercase().starts_with(g));
    match dir.parent() {
        Some(parent) if generic && !name(parent).is_empty() => name(parent),
        _ => last,
    }
}

/// Tiles `(1, 3, s, s)` images in [-1, 1] into one picture with 4-pixel white gutters.
fn grid<const C: usize>(rows: &[[Tensor; C]], size: u32) -> Result<Pixels> {
    const GAP: u32 = 4;
    let s = size as usize;
    let width = C as u32 * size + (C as u32 - 1) * GAP;
    let height = rows.len() as u32 * size + (rows.len() as u32 - 1) * GAP;
    let mut out = Pixels::new(width, height, 3, BitDepth::Eight)?;
    out.data_mut().fill(1.0);
    for (r, row) in rows.iter().enumerate() {
        for (c, t) in row.iter().enumerate() {
            let v = t
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (x0, y0) = (c * (s + GAP as usize), r * (s + GAP as usize));
            for y in 0..s {
                for x in 0..s {
                    let o = ((y0 + y) * width as usize + x0 + x) * 3;
                    for ch in 0..3 {
                        out.data_mut()[o + ch] =
                            ((v[ch * s * s + y * s + x] + 1.0) / 2.0).clamp(0.0, 1.0);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_names() {
        assert_eq!(
            style_name(Path::new("data/monet2photo/trainA")),
            "monet2photo"
        );
        assert_eq!(style_name(Path::new("paintings/monet")), "monet");
        assert_eq!(style_name(Path::new("trainA")), "trainA");
    }
}
