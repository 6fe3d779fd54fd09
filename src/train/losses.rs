//! The CycleGAN objective: least-squares GAN (Mao et al.), whose gradients do not vanish
//! for confidently rejected fakes, plus L1 cycle and identity terms that keep the
//! translation tied to its input.

use candle_core::{Result, Tensor};

/// Least-squares GAN loss: mean of `(x - target)^2`; target 1 for "real", 0 for "fake".
pub fn mse_to(x: &Tensor, target: f64) -> Result<Tensor> {
    x.affine(1.0, -target)?.sqr()?.mean_all()
}

/// Mean absolute difference, the seed's `nn.L1Loss()`.
pub fn l1(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a - b)?.abs()?.mean_all()
}

/// The losses of one iteration, named as the seed logs them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLosses {
    /// Everything the generators minimise: `gan + lambda_cycle * cycle + lambda_identity * identity`.
    pub g: f64,
    /// Mean of the two generators' adversarial losses.
    pub gan: f64,
    /// Mean of the two reconstruction (A -> B -> A, B -> A -> B) L1 losses.
    pub cycle: f64,
    /// Mean of the two identity L1 losses (a generator fed its own target domain).
    pub identity: f64,
    /// Content-domain discriminator: `(MSE(real, 1) + MSE(fake, 0)) / 2`.
    pub d_a: f64,
    /// Style-domain discriminator, likewise.
    pub d_b: f64,
}

/// Reads a scalar loss back to the host in f64 whatever the training dtype.
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn values() -> Result<()> {
        let x = Tensor::new(&[1f32, 3.], &Device::Cpu)?;
        let y = Tensor::new(&[2f32, 1.], &Device::Cpu)?;
        assert_eq!(scalar(&mse_to(&x, 1.0)?)?, 2.0);
        assert_eq!(scalar(&mse_to(&x, 0.0)?)?, 5.0);
        assert_eq!(scalar(&l1(&x, &y)?)?, 1.5);
        Ok(())
    }
}
