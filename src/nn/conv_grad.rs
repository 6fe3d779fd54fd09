//! A convolution whose backward pass is fast on the CPU, for training.
//!
//! candle differentiates `conv2d` with respect to its input through `conv_transpose2d`,
//! whose CPU kernel is a direct loop of short dot products: it took two thirds of a CPU
//! training step (ten times the forward convolutions). The same gradient is an ordinary
//! convolution of the (zero-dilated, padded) output gradient with the flipped, transposed
//! kernel, which candle runs as im2col + GEMM. This op computes its forward with candle's
//! `conv2d` (bit-identical to the inference path) and its input gradient that way; the
//! kernel gradient is candle's own formula. GPUs keep candle's path (cuDNN is fast there).

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};

/// Whether `x.conv2d(w)` will be differentiated on the CPU in a dtype this op handles:
/// only then is [`conv2d`] worth its extra copies.
pub fn wants_fast_backward(x: &Tensor, w: &Tensor) -> bool {
    (x.track_op() || w.track_op())
        && x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.dtype() == w.dtype()
}

/// `x.conv2d(w, padding, stride, 1, 1)` with the fast backward pass.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2dFastGrad { padding, stride })
}

#[derive(Debug, Clone, Copy)]
struct Conv2dFastGrad {
    padding: usize,
    stride: usize,
}

/// A CPU tensor holding a copy of a contiguous storage slice.
fn to_tensor(s: &CpuStorage, l: &Layout) -> Result<Tensor> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("conv2d_fast_grad: non-contiguous input".into()))?;
    match s {
        CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], l.shape(), &Device::Cpu),
        CpuStorage::F64(v) => Tensor::from_slice(&v[start..end], l.shape(), &Device::Cpu),
        _ => candle_core::bail!("conv2d_fast_grad: only f32 and f64"),
    }
}

impl CustomOp2 for Conv2dFastGrad {
    fn name(&self) -> &'static str {
        "conv2d-fast-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = to_tensor(s1, l1)?.conv2d(&to_tensor(s2, l2)?, self.padding, self.stride, 1, 1)?;
        let shape = y.shape().clone();
        let flat = y.flatten_all()?;
        let storage = match flat.dtype() {
            DType::F32 => CpuStorage::F32(flat.to_vec1()?),
            _ => CpuStorage::F64(flat.to_vec1()?),
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (x, w, grad) = (x.detach(), w.detach(), grad.detach());
        let grad_x = input_grad(&x, &w, &grad, self.padding, self.stride)?;
        // candle's kernel gradient: the input (channels as batch) convolved with the
        // output gradient dilated by the stride.
        let (_, _, kh, kw) = w.dims4()?;
        let gw = x
            .transpose(0, 1)?
            .conv2d(&grad.transpose(0, 1)?, self.padding, 1, self.stride, 1)?
            .transpose(0, 1)?;
        let (_, _, gh, gww) = gw.dims4()?;
        let gw = if (gh, gww) != (kh, kw) {
            gw.narrow(2, 0, kh)?.narrow(3, 0, kw)?
        } else {
            gw
        };
        Ok((Some(grad_x), Some(gw.contiguous()?)))
    }
}

/// Inserts `s - 1` zeros between neighbouring elements along `dim`.
fn dilate(t: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    let n = t.dim(dim)?;
    if s == 1 || n <= 1 {
        return Ok(t.clone());
    }
    let zeros = t.zeros_like()?;
    let mut parts = vec![t.clone()];
    parts.extend(std::iter::repeat_n(zeros, s - 1));
    // Interleave: stack on a new axis after `dim`, merge the two, drop the tail zeros.
    let stacked = Tensor::stack(&parts, dim + 1)?;
    let mut dims = t.dims().to_vec();
    dims[dim] = n * s;
    stacked.reshape(dims)?.narrow(dim, 0, (n - 1) * s + 1)
}

/// d loss / d x of `y = conv2d(x, w, padding, stride)`: the transposed convolution of
/// `grad`, written as a plain convolution.
fn input_grad(x: &Tensor, w: &Tensor, grad: &Tensor, p: usize, s: usize) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (_, _, oh, ow) = grad.dims4()?;
    if p + 1 > kh || p + 1 > kw {
        // Padding wider than the kernel has no plain-convolution form; rare, so slow.
        let op_h = h - ((oh - 1) * s + kh - 2 * p);
        return grad.conv_transpose2d(w, p, op_h, s, 1);
    }
    let g = dilate(&dilate(grad, 2, s)?, 3, s)?;
    // Output padding: rows/columns of x that no output position covered.
    let extra_h = h + 2 * p - ((oh - 1) * s + kh);
    let extra_w = wd + 2 * p - ((ow - 1) * s + kw);
    let g = g
        .pad_with_zeros(2, kh - 1 - p, kh - 1 - p + extra_h)?
        .pad_with_zeros(3, kw - 1 - p, kw - 1 - p + extra_w)?;
    let rev = |n: usize| Tensor::from_vec((0..n as u32).rev().collect::<Vec<u32>>(), n, w.device());
    let flipped = w
        .index_select(&rev(kh)?, 2)?
        .index_select(&rev(kw)?, 3)?
        .transpose(0, 1)?
        .contiguous()?;
    g.conv2d(&flipped, 0, 1, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The gradients are the adjoints of the (linear) convolution: for random `r`,
    /// `<dx, r> = <mix, conv(r, w)>` and `<dw, r> = <mix, conv(x, r)>`. Checked for every
    /// shape the networks use and for odd, non-square sizes where a stride-2 convolution
    /// leaves a row or column uncovered (candle's own backward pass gets those wrong when
    /// height and width differ, so it cannot be the reference there). The forward pass
    /// is candle's bit for bit.
    #[test]
    fn gradients_are_the_adjoints() -> Result<()> {
        let dev = Device::Cpu;
        let dot =
            |a: &Tensor, b: &Tensor| -> Result<f64> { (a * b)?.sum_all()?.to_scalar::<f64>() };
        for &(cin, cout, k, s, p, h, w) in &[
            (3, 4, 7, 1, 0, 12, 10),
            (4, 5, 3, 2, 1, 9, 8),
            (4, 5, 3, 2, 1, 8, 8),
            (5, 3, 3, 1, 1, 6, 7),
            (3, 2, 4, 2, 1, 11, 10),
            (2, 1, 4, 1, 1, 5, 6),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1., (2, cin, h, w), &dev)?)?;
            let wt = Var::from_tensor(&Tensor::randn(0f64, 1., (cout, cin, k, k), &dev)?)?;
            let y = conv2d(&x, &wt, p, s)?;
            let z = x.conv2d(&wt, p, s, 1, 1)?;
            assert_eq!((&y - &z)?.abs()?.sum_all()?.to_scalar::<f64>()?, 0.0);
            let mix = Tensor::randn(0f64, 1., y.shape(), &dev)?;
            let grads = (y * &mix)?.sum_all()?.backward()?;
            let dx = grads.get(x.as_tensor()).expect("dx");
            let dw = grads.get(wt.as_tensor()).expect("dw");
            let rx = Tensor::randn(0f64, 1., x.shape(), &dev)?;
            let rw = Tensor::randn(0f64, 1., wt.shape(), &dev)?;
            let lhs = [dot(dx, &rx)?, dot(dw, &rw)?];
            let rhs = [
                dot(&mix, &rx.conv2d(wt.as_tensor(), p, s, 1, 1)?)?,
                dot(&mix, &x.as_tensor().conv2d(&rw, p, s, 1, 1)?)?,
            ];
            for (a, b) in lhs.iter().zip(rhs) {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "k{k} s{s} p{p} {h}x{w}: {a} vs {b}"
                );
            }
        }
        Ok(())
    }
}
