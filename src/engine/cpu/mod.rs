//! An inference-only CPU engine for the generator, running the same weights as the candle
//! [`Generator`](crate::nn::Generator).
//!
//! Why it exists: candle's CPU convolution copies a full im2col matrix per layer and runs
//! every op (padding, norm, ReLU, residual add) as its own pass over fresh tensors, which
//! made a 512-px image take several times as long as PyTorch. Here activations are NHWC
//! `f32` in a few buffers reused across layers; every convolution reads its kernel taps
//! straight out of an already padded input (no im2col), and the instance norm, ReLU,
//! residual add, padding and upsampling of each layer are one pass that writes the next
//! layer's padded input.
//!
//! One module per job:
//! - [`packing`]: a layer's weights reordered (or kept for a Winograd transform) at load;
//! - [`conv`]: one convolution, dispatched to [`direct`] (matrix products straight from the
//!   padded input; [`narrow`] for the tail's three outputs), [`winograd`] (F(4x4, 3x3),
//!   f32 or [`bf16`] products) or, at bf16 on AMX, [`amx_conv`] (3x3 layers as bf16 tile
//!   products straight from the padded input);
//! - [`stats`]: instance-norm statistics measured from a convolution's output, and the
//!   norm as a per-channel scale and shift;
//! - [`place`]: the normalized output written into the next layer's input (same grid,
//!   upsampled or dilated) and the residual add, with [`simd`] compiling these plain
//!   loops for the CPU's widest vectors;
//! - [`generator`]: the layer plan, with the layers by name, and its buffers.
//!
//! Training and GPU inference stay on candle; this path only runs forward passes on the CPU.
//! It is the [`Engine`] the CPU backend serves.

mod amx_conv;
mod bf16;
mod buffer;
mod conv;
mod direct;
mod generator;
mod matmul;
mod narrow;
mod packing;
mod place;
mod planes;
mod simd;
mod stats;
mod winograd;

use self::generator::CpuGenerator;
use super::{Engine, LayerProgress, Precision, Stats};
use crate::error::{Error, Result};
use crate::nn::{Generator, GeneratorConfig};
use crate::weights::GeneratorWeights;

/// The CPU backend's [`Engine`]: this module's generator, packed from the stored weights.
#[derive(Debug)]
pub(crate) struct CpuEngine {
    generator: CpuGenerator,
}

impl CpuEngine {
    pub fn new(weights: &GeneratorWeights) -> Result<Self> {
        // Packing converts each layer itself, so a network in the stored dtype (no copy)
        // serves, and building it checks every shape.
        let stored = weights.build(&candle_core::Device::Cpu, weights.stored_dtype())?;
        Self::from_generator(&stored)
    }

    pub fn from_generator(generator: &Generator) -> Result<Self> {
        Ok(Self {
            generator: CpuGenerator::new(generator)?,
        })
    }
}

/// The bf16 kernel a forward pass at `precision` runs: `bf16` takes the fastest this CPU
/// has (AMX, else AVX-512 BF16) and is an error without one.
///
/// `auto` runs bf16 where the CPU has AMX: the 3x3 layers as direct bf16 tile products
/// ([`amx_conv`]), measured 1.5-2x faster than f32 and within the error bounds on photos
/// (`tests/precision.rs`; docs/performance.md). Elsewhere it runs f32: without AMX the
/// bf16 path splits each Winograd product in three to stay within the bounds, and is not
/// faster than f32.
pub(super) fn bf16_kernel_for(precision: Precision) -> Result<Option<bf16::Kernel>> {
    match precision {
        Precision::F32 => Ok(None),
        Precision::Auto => Ok(bf16::kernel().filter(|&k| k == bf16::Kernel::Amx)),
        Precision::Bf16 => bf16::kernel().map(Some).ok_or_else(|| {
            Error::Unsupported(
                "this CPU has no bf16 instructions (avx512_bf16 or AMX): use precision auto \
                 or f32"
                    .into(),
            )
        }),
    }
}

impl Engine for CpuEngine {
    fn describe(&self) -> String {
        "cpu".into()
    }

    fn config(&self) -> GeneratorConfig {
        self.generator.config
    }

    fn memory_for(&self, width: usize, height: usize) -> u64 {
        self.generator.memory_for(width, height)
    }

    fn resident_memory(&self) -> u64 {
        self.generator.resident_bytes()
    }

    fn forward(
        &self,
        planar: &[f32],
        width: usize,
        height: usize,
        stats: Stats,
        precision: Precision,
        progress: LayerProgress,
    ) -> Result<Vec<f32>> {
        self.generator
            .forward_planar(planar, width, height, stats, precision, progress)
    }

    fn release_buffers(&self) {
        self.generator.release_buffers();
    }
}
