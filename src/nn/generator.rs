//! The ResNet generator, in the seed's layout (nearest upsample + conv) and in the official
//! pytorch-CycleGAN-and-pix2pix layout (ConvTranspose upsampling), which differ only in the
//! upsampling and in key names.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::{Conv, ConvKind};
use super::fused;
use super::layers::{instance_stats, normalize, reflection_pad2d, NormStats};

use super::layout;
pub use super::layout::Layout;

/// Shape of a generator: everything needed to build it or check a file against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneratorConfig {
    pub layout: Layout,
    /// Filters of the first layer (64 in the paper).
    pub ngf: usize,
    /// Residual blocks (9 for 256-px training, 6 for 128).
    pub blocks: usize,
}

impl GeneratorConfig {
    /// The seed model of the paper: 64 filters, 9 blocks.
    pub const SEED: Self = Self {
        layout: Layout::Seed,
        ngf: 64,
        blocks: 9,
    };

    /// Instance norms in one forward pass: 3 down, 2 per block, 2 up.
    pub fn norm_count(&self) -> usize {
        5 + 2 * self.blocks
    }
}

/// How instance norms get their statistics during a forward pass.
pub enum Norms<'a> {
    /// From the tensor itself, as in PyTorch (whole-image inference and training).
    Own,
    /// From the tensor itself, and keep them (the statistics pass before tiling).
    Record(&'a mut Vec<NormStats>),
    /// From a previous `Record` pass, in order (tiles normalised as the whole image).
    Frozen(&'a [NormStats], usize),
}

/// The next of `stats`, recorded by an earlier pass, moving `next` past it.
fn take_frozen<'s>(stats: &'s [NormStats], next: &mut usize) -> Result<&'s NormStats> {
    let s = stats.get(*next).ok_or_else(|| {
        candle_core::Error::Msg("fewer recorded norm statistics than norms".into())
    })?;
    *next += 1;
    Ok(s)
}

impl Norms<'_> {
    /// The next norm's statistics for the fused ops ([`fused::plane_stats`]' layout),
    /// measured on `x` unless frozen.
    fn fused_stats(&mut self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norms::Own => fused::plane_stats(x),
            Norms::Record(out) => {
                let stats = fused::plane_stats(x)?;
                let (n, c, _, _) = x.dims4()?;
                out.push(fused::norm_stats(&stats, n, c)?);
                Ok(stats)
            }
            Norms::Frozen(stats, next) => {
                let s = take_frozen(stats, next)?;
                fused::stats_tensor(s)?.to_device(x.device())
            }
        }
    }

    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norms::Own => normalize(x, &instance_stats(x)?),
            Norms::Record(out) => {
                let s = instance_stats(x)?;
                let y = normalize(x, &s)?;
                out.push(s);
                Ok(y)
            }
            Norms::Frozen(stats, next) => {
                let s = take_frozen(stats, next)?;
                normalize(x, s)
            }
        }
    }
}

/// The message of the error a forward pass stops with when its observer cancels it.
pub const CANCELLED: &str = "forward pass cancelled";

fn check_layer(on_layer: &mut dyn FnMut() -> bool) -> Result<()> {
    if on_layer() {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(CANCELLED.into()))
    }
}

#[derive(Debug, Clone)]
struct ResidualBlock {
    conv1: Conv,
    conv2: Conv,
}

/// A CycleGAN ResNet generator. Input and output are NCHW in [-1, 1].
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    head: Conv,
    down: [Conv; 2],
    blocks: Vec<ResidualBlock>,
    up: [Conv; 2],
    tail: Conv,
}

impl Generator {
    /// Builds the generator from `vb` (keys `model.N...` as the PyTorch module's state dict).
    pub fn new(vb: &VarBuilder, config: GeneratorConfig) -> Result<Self> {
        let ngf = config.ngf;
        let fwd = |stride, padding| ConvKind::Forward { stride, padding };
        let conv = |key: String, cin, cout, k, kind| Conv::new(vb, &key, cin, cout, k, kind);
        let head = conv(layout::layer(layout::HEAD), 3, ngf, 7, fwd(1, 0))?;
        let down = [
            conv(layout::layer(layout::DOWN[0]), ngf, 2 * ngf, 3, fwd(2, 1))?,
            conv(
                layout::layer(layout::DOWN[1]),
                2 * ngf,
                4 * ngf,
                3,
                fwd(2, 1),
            )?,
        ];
        let blocks = (0..config.blocks)
            .map(|i| {
                let c = |j| {
                    conv(
                        config.layout.block_conv(i, j),
                        4 * ngf,
                        4 * ngf,
                        3,
                        fwd(1, 0),
                    )
                };
                Ok(ResidualBlock {
                    conv1: c(0)?,
                    conv2: c(1)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (u1, u2, t) = config.layout.tail_indices(config.blocks);
        let up_kind = match config.layout {
            Layout::Seed => fwd(1, 1),
            Layout::Official => ConvKind::Transposed,
        };
        let up = [
            conv(layout::layer(u1), 4 * ngf, 2 * ngf, 3, up_kind)?,
            conv(layout::layer(u2), 2 * ngf, ngf, 3, up_kind)?,
        ];
        let tail = conv(layout::layer(t), ngf, 3, 7, fwd(1, 0))?;
        Ok(Self {
            config,
            head,
            down,
            blocks,
            up,
            tail,
        })
    }

    pub fn config(&self) -> GeneratorConfig {
        self.config
    }

    /// Every convolution in forward order (head, 2 down, 2 per block, 2 up, tail), so other
    /// engines (the CPU fast path) can run the same weights.
    pub fn convs(&self) -> Vec<&Conv> {
        let mut v = vec![&self.head, &self.down[0], &self.down[1]];
        for b in &self.blocks {
            v.push(&b.conv1);
            v.push(&b.conv2);
        }
        v.extend([&self.up[0], &self.up[1], &self.tail]);
        v
    }

    /// This generator with the residual blocks' weights in bf16: those 18 convolutions
    /// (most of the work) multiply bf16 operands, with f32 accumulation on the GPU and the
    /// result rounded to bf16; everything else stays f32 (head, down and up layers, tail,
    /// norms and the activations between layers). The up layers stay f32 because their
    /// bf16-rounded results reach the output almost directly: with them in bf16 a whole
    /// stylize of rocket.jpg was 9 levels from f32 at worst, without them 2.
    pub fn with_bf16_body(&self) -> Result<Self> {
        let mut g = self.clone();
        for b in &mut g.blocks {
            b.conv1 = b.conv1.with_weight_dtype(DType::BF16)?;
            b.conv2 = b.conv2.with_weight_dtype(DType::BF16)?;
        }
        Ok(g)
    }

    /// The forward pass with instance norms as `norms` says. Height and width must be
    /// multiples of 4 (two stride-2 convolutions); `stylize` pads to that.
    ///
    /// On a CUDA device, in f32 and without gradients (inference), it runs the fused ops of
    /// [`fused`]; otherwise candle's differentiable ones.
    pub fn forward_with(&self, x: &Tensor, norms: &mut Norms) -> Result<Tensor> {
        self.forward_observed(x, norms, &mut || true)
    }

    /// [`Generator::forward_with`], calling `on_layer` after each convolution is queued;
    /// when it returns false the pass stops with an error whose message is
    /// [`CANCELLED`].
    pub fn forward_observed(
        &self,
        x: &Tensor,
        norms: &mut Norms,
        on_layer: &mut dyn FnMut() -> bool,
    ) -> Result<Tensor> {
        let inference = !x.track_op() && !self.head.weight().track_op();
        if x.device().is_cuda() && x.dtype() == DType::F32 && inference {
            return self.fused_pass(x, norms, on_layer);
        }
        self.generic_pass(x, norms, on_layer)
    }

    /// Convolutions in one forward pass: the units of [`Generator::forward_observed`].
    pub fn layer_count(&self) -> usize {
        6 + 2 * self.blocks.len()
    }

    /// The forward pass through candle's differentiable ops on any device and dtype: what
    /// training runs, and the reference for [`Generator::forward_fused`].
    pub fn forward_generic(&self, x: &Tensor, norms: &mut Norms) -> Result<Tensor> {
        self.generic_pass(x, norms, &mut || true)
    }

    fn generic_pass(
        &self,
        x: &Tensor,
        norms: &mut Norms,
        on_layer: &mut dyn FnMut() -> bool,
    ) -> Result<Tensor> {
        let mut step = || check_layer(on_layer);
        let mut h = self.head.forward(&reflection_pad2d(x, 3)?)?;
        h = norms.apply(&h)?.relu()?;
        step()?;
        for conv in &self.down {
            h = norms.apply(&conv.forward(&h)?)?.relu()?;
            step()?;
        }
        for block in &self.blocks {
            let r = block.conv1.forward(&reflection_pad2d(&h, 1)?)?;
            let r = norms.apply(&r)?.relu()?;
            step()?;
            let r = block.conv2.forward(&reflection_pad2d(&r, 1)?)?;
            h = (h + norms.apply(&r)?)?;
            step()?;
        }
        for conv in &self.up {
            if self.config.layout == Layout::Seed {
                let (_, _, hh, ww) = h.dims4()?;
                h = h.upsample_nearest2d(hh * 2, ww * 2)?;
            }
            h = norms.apply(&conv.forward(&h)?)?.relu()?;
            step()?;
        }
        let y = self.tail.forward(&reflection_pad2d(&h, 3)?)?.tanh()?;
        step()?;
        Ok(y)
    }

    /// [`Generator::forward_with`] through the fused ops (f32, no gradients): each norm is
    /// one statistics kernel and one kernel that normalizes, applies ReLU or adds the
    /// residual, and writes the next convolution's reflection padding. Public so tests can
    /// run it on the CPU against the reference pass.
    pub fn forward_fused(&self, x: &Tensor, norms: &mut Norms) -> Result<Tensor> {
        self.fused_pass(x, norms, &mut || true)
    }

    fn fused_pass(
        &self,
        x: &Tensor,
        norms: &mut Norms,
        on_layer: &mut dyn FnMut() -> bool,
    ) -> Result<Tensor> {
        let mut step = || check_layer(on_layer);
        fn norm(
            y: &Tensor,
            norms: &mut Norms,
            residual: Option<&Tensor>,
            relu: bool,
            pad: usize,
        ) -> Result<Tensor> {
            fused::norm_act(y, &norms.fused_stats(y)?, residual, relu, pad)
        }
        let y = self.head.forward(&fused::reflect_pad(x, 3)?)?;
        let mut h = norm(&y, norms, None, true, 0)?;
        step()?;
        for conv in &self.down {
            let y = conv.forward(&h)?;
            h = norm(&y, norms, None, true, 0)?;
            step()?;
        }
        for block in &self.blocks {
            let r = block.conv1.forward(&fused::reflect_pad(&h, 1)?)?;
            let r = norm(&r, norms, None, true, 1)?;
            step()?;
            let r = block.conv2.forward(&r)?;
            h = norm(&r, norms, Some(&h), false, 0)?;
            step()?;
        }
        for (i, conv) in self.up.iter().enumerate() {
            if self.config.layout == Layout::Seed {
                let (_, _, hh, ww) = h.dims4()?;
                h = h.upsample_nearest2d(hh * 2, ww * 2)?;
            }
            let y = conv.forward(&h)?;
            // The last norm writes the tail's padding too.
            let pad = if i + 1 == self.up.len() { 3 } else { 0 };
            h = norm(&y, norms, None, true, pad)?;
            step()?;
        }
        let y = self.tail.forward(&h)?.tanh()?;
        step()?;
        Ok(y)
    }
}

impl Module for Generator {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &mut Norms::Own)
    }
}
