//! The two layers candle lacks, written once: reflection padding and instance norm.
//! Everything else (convolutions, upsampling) is candle's own.

use candle_core::{DType, Device, Result, Tensor, D};

/// Instance norm epsilon, as PyTorch's `InstanceNorm2d` default.
pub const EPS: f64 = 1e-5;

/// Index of `i` (possibly outside `0..n`) under reflection without repeating the edge,
/// as `ReflectionPad2d`, mirrored again as often as needed so tiny inputs still work.
pub(crate) fn reflect_index(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Reflection padding of `pad` pixels on all four sides of an NCHW tensor.
///
/// Done as one `index_select` per axis so it stays differentiable (the trainer needs it)
/// and runs on every backend.
pub fn reflection_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let (_, _, h, w) = x.dims4()?;
    let x = x.index_select(&reflect_indices(h, pad, x.device())?, 2)?;
    x.index_select(&reflect_indices(w, pad, x.device())?, 3)
}

fn reflect_indices(n: usize, pad: usize, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = (-(pad as isize)..(n + pad) as isize)
        .map(|i| reflect_index(i, n) as u32)
        .collect();
    Tensor::from_vec(idx, n + 2 * pad, device)
}

/// Per-channel statistics of one instance norm: mean and biased variance, each `(N, C, 1, 1)`.
#[derive(Debug, Clone)]
pub struct NormStats {
    pub mean: Tensor,
    pub var: Tensor,
}

/// The dtype statistics are computed in: f32 for half-precision inputs (their sums lose
/// too much), f64 kept as is so that float64 runs (training parity) stay exact.
fn stats_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Measures the statistics `InstanceNorm2d` would use on `x` (NCHW), in f32 (f64 for f64).
pub fn instance_stats(x: &Tensor) -> Result<NormStats> {
    let x = x.to_dtype(stats_dtype(x.dtype()))?;
    let (n, c, _, _) = x.dims4()?;
    let flat = x.flatten_from(2)?;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(NormStats {
        mean: mean.reshape((n, c, 1, 1))?,
        var: var.reshape((n, c, 1, 1))?,
    })
}

/// Normalizes `x` with the given statistics (no affine, as the seed and official models).
pub fn normalize(x: &Tensor, stats: &NormStats) -> Result<Tensor> {
    let dtype = x.dtype();
    let inv_std = (stats.var.clone() + EPS)?.sqrt()?.recip()?;
    x.to_dtype(stats_dtype(dtype))?
        .broadcast_sub(&stats.mean)?
        .broadcast_mul(&inv_std)?
        .to_dtype(dtype)
}

/// `InstanceNorm2d(affine=False, track_running_stats=False)`.
pub fn instance_norm2d(x: &Tensor) -> Result<Tensor> {
    normalize(x, &instance_stats(x)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_pytorch_rule() {
        // ReflectionPad2d(2) of [0 1 2 3] is [2 1 0 1 2 3 2 1].
        let got: Vec<usize> = (-2..6).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(got, vec![2, 1, 0, 1, 2, 3, 2, 1]);
        // Wider than the input: keeps mirroring instead of failing.
        let got: Vec<usize> = (-3..5).map(|i| reflect_index(i, 2)).collect();
        assert_eq!(got, vec![1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn pad_and_norm_values() -> Result<()> {
        let x = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((1, 1, 2, 3))?;
        let p = reflection_pad2d(&x, 1)?;
        assert_eq!(p.dims4()?, (1, 1, 4, 5));
        let rows = p.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(rows[0], vec![4., 3., 4., 5., 4.]);
        assert_eq!(rows[1], vec![1., 0., 1., 2., 1.]);
        let y = instance_norm2d(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let mean: f32 = y.iter().sum::<f32>() / 6.;
        let var: f32 = y.iter().map(|v| v * v).sum::<f32>() / 6.;
        assert!(mean.abs() < 1e-6, "mean {mean}");
        assert!((var - 1.).abs() < 1e-4, "var {var}");
        Ok(())
    }
}
