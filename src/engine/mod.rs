//! The engine boundary: what every backend that runs the generator implements, and the one
//! place that picks a backend for a [`Backend`] choice.
//!
//! Why a boundary: the pipeline above (working size, memory plan, tiles, statistics,
//! strength, alpha, progress) is the same for every backend, and the next backends (GPU
//! libraries loaded at run time, reduced precision) must plug in without touching it or the
//! front ends. Everything crosses it as plain data: planar f32 pixels in, planar f32 pixels
//! out, and instance-norm statistics as per-channel f32 arrays, never tensors of one
//! backend's library.

pub(crate) mod candle;
pub(crate) mod cpu;
pub mod dynamic;

use std::fmt::Debug;

use crate::device::Backend;
use crate::error::{Error, Result};
use crate::nn::GeneratorConfig;
use crate::weights::GeneratorWeights;

/// Per-channel statistics of one instance norm: mean and biased variance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NormStat {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// Where a forward pass's instance norms get their statistics.
pub enum Stats<'a> {
    /// From the activations themselves, as in PyTorch (a whole image in one piece).
    Measure,
    /// From the activations, and appended here in forward order (the statistics pass
    /// before tiling).
    Record(&'a mut Vec<NormStat>),
    /// Given, in forward order (tiles normalized as the whole image was).
    Given(&'a [NormStat]),
}

impl Stats<'_> {
    /// Whether the norms measure their input (an engine can skip the sums otherwise).
    pub fn measures(&self) -> bool {
        !matches!(self, Stats::Given(_))
    }
}

/// Walks a [`Stats`] through a forward pass, one norm at a time.
pub(crate) struct StatsCursor<'s, 'a> {
    stats: &'s mut Stats<'a>,
    next: usize,
}

impl<'s, 'a> StatsCursor<'s, 'a> {
    pub fn new(stats: &'s mut Stats<'a>) -> Self {
        Self { stats, next: 0 }
    }

    pub fn measures(&self) -> bool {
        self.stats.measures()
    }

    /// The statistics of the next norm, of `channels` channels: `measured` (required unless
    /// given) is kept when recording; given ones are checked against the layer.
    pub fn next(&mut self, channels: usize, measured: Option<NormStat>) -> Result<NormStat> {
        let missing = || Error::Compute("norm statistics were not measured".into());
        let s = match &mut *self.stats {
            Stats::Measure => measured.ok_or_else(missing)?,
            Stats::Record(out) => {
                let s = measured.ok_or_else(missing)?;
                out.push(s.clone());
                s
            }
            Stats::Given(given) => {
                let s = given.get(self.next).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{} norm statistics were given; the network has more norms",
                        given.len()
                    ))
                })?;
                if s.mean.len() != channels || s.var.len() != channels {
                    return Err(Error::InvalidArgument(format!(
                        "given statistics of norm {} have {} channels; the layer has {channels}",
                        self.next,
                        s.mean.len()
                    )));
                }
                s.clone()
            }
        };
        self.next += 1;
        Ok(s)
    }
}

/// The arithmetic a forward pass may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// The fastest path that stays within the reduced-precision error bounds on this
    /// machine (bf16 products where the CPU or GPU has fast instructions for them), f32
    /// elsewhere.
    #[default]
    Auto,
    /// f32 throughout: the parity path.
    F32,
    /// bf16 products with f32 accumulation; an error where the engine has no such path.
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::InvalidArgument(format!(
                "unknown precision {s:?}: use auto, f32 or bf16"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Called after each layer of a forward pass with (layers done, layers in all); returning
/// false cancels the pass ([`Error::Cancelled`]).
pub type LayerProgress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// One backend's generator, loaded and ready. Immutable once loaded: one engine serves
/// concurrent forward passes.
pub trait Engine: Send + Sync + Debug {
    /// The backend as users see it: "cpu", "cuda (NVIDIA H200)", ...
    fn describe(&self) -> String;

    /// The network's shape.
    fn config(&self) -> GeneratorConfig;

    /// Bytes a forward pass of a `width` x `height` working image allocates at its peak,
    /// beyond what the loaded engine already holds. An estimate the pipeline plans with;
    /// it must not be low by more than a few percent.
    fn memory_for(&self, width: usize, height: usize) -> u64;

    /// Bytes the engine holds once loaded and warmed up (weights, kept transforms).
    fn resident_memory(&self) -> u64;

    /// Memory the pipeline may plan for on this engine's device: `None` for the host's
    /// memory (the pipeline's own budget applies), a figure for a device with its own.
    fn device_memory_free(&self) -> Option<u64> {
        None
    }

    /// One forward pass of a planar RGB image (`3 x height x width`, values in [-1, 1],
    /// sides multiples of 4) in `precision`; returns the same layout.
    fn forward(
        &self,
        planar: &[f32],
        width: usize,
        height: usize,
        stats: Stats,
        precision: Precision,
        progress: LayerProgress,
    ) -> Result<Vec<f32>>;

    /// Frees memory kept from earlier calls, before calls of a very different size.
    fn release_buffers(&self) {}
}

/// Loads `weights` on the engine that serves `backend`: the CPU engine; a GPU backend
/// library loaded at run time (dynamic.rs); or, in a build with the `cuda` or `metal`
/// feature (what the backend libraries themselves are built from), the candle engine on
/// the compiled-in device.
pub(crate) fn load(weights: &GeneratorWeights, backend: Backend) -> Result<Box<dyn Engine>> {
    let cpu = || -> Result<Box<dyn Engine>> { Ok(Box::new(cpu::CpuEngine::new(weights)?)) };
    if let Some(name) = backend.library() {
        return Ok(Box::new(dynamic::load(weights, name)?));
    }
    match backend {
        Backend::Cpu => cpu(),
        _ => {
            let device = backend.device()?;
            if device.is_cpu() {
                cpu()
            } else {
                Ok(Box::new(candle::CandleEngine::new(weights, device)?))
            }
        }
    }
}

/// The candle engine for `weights` on `device`: what a backend library serves.
#[doc(hidden)]
pub fn candle_engine_on(
    weights: &GeneratorWeights,
    device: candle_core::Device,
) -> Result<Box<dyn Engine>> {
    Ok(Box::new(candle::CandleEngine::new(weights, device)?))
}

/// The CPU engine for a candle generator: what tests and benchmarks compare the two with.
#[doc(hidden)]
pub fn cpu_engine(generator: &crate::nn::Generator) -> Result<Box<dyn Engine>> {
    Ok(Box::new(cpu::CpuEngine::from_generator(generator)?))
}

/// The candle engine on the CPU for a candle generator: the reference.
#[doc(hidden)]
pub fn candle_engine(generator: &crate::nn::Generator) -> Result<Box<dyn Engine>> {
    Ok(Box::new(candle::CandleEngine::from_generator(
        generator.clone(),
        candle_core::Device::Cpu,
    )))
}

/// Checks a forward pass's arguments, as every engine needs them.
pub(crate) fn check_input(planar: &[f32], width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || width % 4 != 0 || height % 4 != 0 {
        return Err(Error::InvalidArgument(format!(
            "working size {width}x{height} is not a positive multiple of 4 (the pipeline pads to it)"
        )));
    }
    let want = width
        .checked_mul(height)
        .and_then(|v| v.checked_mul(3))
        .ok_or_else(|| Error::InvalidArgument(format!("{width}x{height} is too large")))?;
    if planar.len() != want {
        return Err(Error::InvalidArgument(format!(
            "expected {want} values for 3x{height}x{width}, got {}",
            planar.len()
        )));
    }
    Ok(())
}
