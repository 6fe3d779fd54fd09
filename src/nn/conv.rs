//! Convolutions with bias, built from a `VarBuilder` so the same code serves inference
//! (weights from a file) and training (fresh variables initialised as the seed does).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// The seed's `weights_init_normal`: N(0, 0.02) weights, zero bias.
const WEIGHT_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// How a convolution moves over its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// `Conv2d(k, stride, padding)` with zero padding.
    Forward { stride: usize, padding: usize },
    /// `ConvTranspose2d(k, stride 2, padding 1, output_padding 1)`: doubles the size.
    Transposed,
}

/// A 2-D convolution with bias.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    kind: ConvKind,
}

impl Conv {
    /// Loads `name.weight` and `name.bias`. PyTorch stores transposed kernels as
    /// `[in, out, k, k]`, which candle's `conv_transpose2d` expects as is.
    pub fn new(
        vb: &VarBuilder,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        kind: ConvKind,
    ) -> Result<Self> {
        let vb = vb.pp(name);
        let shape = match kind {
            ConvKind::Forward { .. } => (c_out, c_in, k, k),
            ConvKind::Transposed => (c_in, c_out, k, k),
        };
        let weight = vb.get_with_hints(shape, "weight", WEIGHT_INIT)?;
        let bias = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, kind })
    }

    /// `[out, in, k, k]` for forward kernels, `[in, out, k, k]` for transposed ones.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn kind(&self) -> ConvKind {
        self.kind
    }

    /// This convolution with its weight in `dtype` (the bias stays as it is): it then
    /// multiplies in `dtype` and returns the input's dtype (see [`Module::forward`] below).
    pub fn with_weight_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_dtype(dtype)?,
            bias: self.bias.clone(),
            kind: self.kind,
        })
    }

    pub fn out_channels(&self) -> usize {
        match self.kind {
            ConvKind::Forward { .. } => self.weight.dims()[0],
            ConvKind::Transposed => self.weight.dims()[1],
        }
    }
}

impl Module for Conv {
    /// A weight in another dtype than `x` (bf16 against f32 activations) makes a
    /// mixed-precision convolution: `x` is rounded to the weight's dtype, the product
    /// accumulates as the device does (f32 in cuBLAS and cuDNN) into the weight's dtype,
    /// and the result returns to `x`'s dtype before the f32 bias, as PyTorch's autocast
    /// runs a convolution.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.reshape((1, (), 1, 1))?;
        let (low, dtype) = (self.weight.dtype(), x.dtype());
        if low == dtype {
            return self.product(x, &self.weight)?.broadcast_add(&bias);
        }
        let y = if x.device().is_cpu() {
            // candle's CPU matmul has no bf16: the same roundings (operands, then the
            // result) around an f32 product.
            let x = x.to_dtype(low)?.to_dtype(dtype)?;
            self.product(&x, &self.weight.to_dtype(dtype)?)?
                .to_dtype(low)?
        } else {
            self.product(&x.to_dtype(low)?, &self.weight)?
        };
        y.to_dtype(dtype)?.broadcast_add(&bias)
    }
}

impl Conv {
    /// The convolution of `x` with `weight` (this one's, maybe in another dtype), no bias.
    fn product(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        Ok(match self.kind {
            // Training on the CPU takes the convolution with the fast backward pass.
            ConvKind::Forward { stride, padding }
                if super::conv_grad::wants_fast_backward(x, weight) =>
            {
                super::conv_grad::conv2d(x, weight, padding, stride)?
            }
            ConvKind::Forward { stride, padding } => x.conv2d(weight, padding, stride, 1, 1)?,
            ConvKind::Transposed => x.conv_transpose2d(weight, 1, 1, 2, 1)?,
        })
    }
}
