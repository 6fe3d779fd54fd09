//! The candle engine: the reference [`Generator`] on any candle device. It serves the GPU
//! backends compiled into this build (CUDA with the fused kernels, Metal) and is the
//! reference the CPU engine is tested against.

use candle_core::{DType, Device, Tensor};

use super::{check_input, Engine, LayerProgress, NormStat, Precision, Stats};
use crate::device::compute_dtype;
use crate::error::{Error, Result};
use crate::nn::generator::CANCELLED;
use crate::nn::layers::NormStats;
use crate::nn::{Generator, GeneratorConfig, Norms};
use crate::weights::GeneratorWeights;

/// Bytes per working pixel and first-layer filter that candle's forward pass allocates at
/// its peak: every op makes a fresh tensor, and a residual block holds about ten
/// activations of `4 ngf` channels at a sixteenth of the pixels, the up layers two of
/// `2 ngf` and `ngf` channels at full size plus their padded copies. Measured on the CPU
/// device at 256 and 512 px (peak RSS growth per pixel), rounded up.
const BYTES_PER_PIXEL_FILTER: u64 = 40;

#[derive(Debug)]
pub(crate) struct CandleEngine {
    generator: Generator,
    /// The generator with bf16 weights in its body ([`Generator::with_bf16_body`]), made
    /// on the first bf16 pass.
    bf16: std::sync::OnceLock<Generator>,
    device: Device,
    dtype: DType,
}

impl CandleEngine {
    pub fn new(weights: &GeneratorWeights, device: Device) -> Result<Self> {
        let dtype = compute_dtype(&device);
        Ok(Self {
            generator: weights.build(&device, dtype)?,
            bf16: std::sync::OnceLock::new(),
            device,
            dtype,
        })
    }

    pub fn from_generator(generator: Generator, device: Device) -> Self {
        Self {
            dtype: generator.convs()[0].weight().dtype(),
            generator,
            bf16: std::sync::OnceLock::new(),
            device,
        }
    }

    /// The network a pass at `precision` runs: `auto` is f32 here (bf16 on a GPU is not
    /// measured yet, docs/gpu.md); `bf16` the mixed-precision copy.
    fn network(&self, precision: Precision) -> Result<&Generator> {
        if precision != Precision::Bf16 || self.dtype != DType::F32 {
            return Ok(&self.generator);
        }
        if let Some(g) = self.bf16.get() {
            return Ok(g);
        }
        let g = self.generator.with_bf16_body()?;
        Ok(self.bf16.get_or_init(|| g))
    }

    /// The statistics as the candle network takes them, on its device.
    fn to_tensors(&self, given: &[NormStat]) -> Result<Vec<NormStats>> {
        given
            .iter()
            .map(|s| {
                let c = s.mean.len();
                if s.var.len() != c {
                    return Err(Error::InvalidArgument(format!(
                        "norm statistics with {c} means and {} variances",
                        s.var.len()
                    )));
                }
                Ok(NormStats {
                    mean: Tensor::from_slice(&s.mean, (1, c, 1, 1), &self.device)?,
                    var: Tensor::from_slice(&s.var, (1, c, 1, 1), &self.device)?,
                })
            })
            .collect()
    }
}

fn from_tensors(recorded: &[NormStats]) -> Result<Vec<NormStat>> {
    let read =
        |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
    recorded
        .iter()
        .map(|s| {
            Ok(NormStat {
                mean: read(&s.mean)?,
                var: read(&s.var)?,
            })
        })
        .collect()
}

impl Engine for CandleEngine {
    fn describe(&self) -> String {
        match &self.device {
            Device::Cpu => "candle-cpu".into(),
            Device::Cuda(_) => "cuda".into(),
            Device::Metal(_) => "metal".into(),
        }
    }

    fn config(&self) -> GeneratorConfig {
        self.generator.config()
    }

    fn memory_for(&self, width: usize, height: usize) -> u64 {
        (width * height) as u64 * self.config().ngf as u64 * BYTES_PER_PIXEL_FILTER
    }

    // No `device_memory_free`: candle does not report a device's free memory, so the
    // pipeline plans with its own budget (the GPU backend library reports it).

    fn resident_memory(&self) -> u64 {
        let c = self.config();
        let (n, b) = (c.ngf as u64, c.blocks as u64);
        // Parameters: 3x3 convolutions dominate (2 per block at 4 ngf squared).
        let params = 2 * b * 9 * 16 * n * n + 9 * (2 * n * n + 8 * n * n) * 2 + 2 * 49 * 3 * n;
        params * self.dtype.size_in_bytes() as u64
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
        check_input(planar, width, height)?;
        let generator = self.network(precision)?;
        let x = Tensor::from_slice(planar, (1, 3, height, width), &self.device)?
            .to_dtype(self.dtype)?;
        let total = generator.layer_count();
        let mut done = 0;
        let mut on_layer = || {
            done += 1;
            progress(done.min(total), total)
        };
        let run = |norms: &mut Norms, on_layer: &mut dyn FnMut() -> bool| {
            generator.forward_observed(&x, norms, on_layer)
        };
        let y = match stats {
            Stats::Measure => run(&mut Norms::Own, &mut on_layer),
            Stats::Record(out) => {
                let mut recorded = Vec::new();
                let y = run(&mut Norms::Record(&mut recorded), &mut on_layer);
                if y.is_ok() {
                    out.extend(from_tensors(&recorded)?);
                }
                y
            }
            Stats::Given(given) => {
                let tensors = self.to_tensors(given)?;
                run(&mut Norms::Frozen(&tensors, 0), &mut on_layer)
            }
        };
        let y = match y {
            Err(candle_core::Error::Msg(m)) if m == CANCELLED => return Err(Error::Cancelled),
            other => other?,
        };
        Ok(y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }
}
