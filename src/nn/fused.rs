//! The generator's per-pixel layers fused for the GPU: reflection padding, instance-norm
//! statistics, and normalize + ReLU (+ residual add, + the next layer's padding), one kernel
//! each (`fused.cu`).
//!
//! Why: with candle's generic ops these took a dozen launches and as many full-size
//! temporaries per layer (`index_select` padding, mean/var/sub/mul/relu/add), which left a
//! CUDA forward pass at 54 ms for a 1024-pixel image where PyTorch takes 22 ms
//! (../shared/models/README.md). Inference only: training needs gradients and keeps the
//! differentiable ops of `layers.rs`.
//!
//! Every op also runs on the CPU by the same formulas, so the fused forward pass is checked
//! against the reference one on machines without a GPU (`tests/parity.rs`).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

use super::layers::{reflect_index, NormStats, EPS};
#[cfg(feature = "cuda")]
use candle_core::{
    backend::BackendStorage,
    cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg},
    cuda_backend::WrapErr,
    CudaStorage,
};

/// The kernels of `fused.cu`, compiled by build.rs into a fatbin (machine code for the
/// GPU generations in `CYCLEGAN_CUDA_ARCHS` and PTX of the newest).
#[cfg(feature = "cuda")]
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fused.fatbin"));

/// Kernel `name` of `fused.cu` on `dev`, and the stream to launch it on. The module is
/// loaded once per device. (candle's `get_or_load_custom_func` takes PTX text only.)
#[cfg(feature = "cuda")]
fn kernel(
    dev: &candle_core::CudaDevice,
    name: &str,
) -> Result<(
    candle_core::cuda_backend::cudarc::driver::CudaFunction,
    std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
)> {
    use candle_core::cuda_backend::cudarc::driver::CudaModule;
    use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
    use std::sync::{Arc, Mutex, OnceLock};
    /// A device's ordinal and the module loaded on it.
    type Loaded = (usize, Arc<CudaModule>);
    static MODULES: OnceLock<Mutex<Vec<Loaded>>> = OnceLock::new();
    let stream = dev.cuda_stream();
    let ctx = stream.context().clone();
    let module = {
        let mut loaded = MODULES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match loaded.iter().find(|(o, _)| *o == ctx.ordinal()) {
            Some((_, m)) => m.clone(),
            None => {
                let m = ctx.load_module(Ptx::from_binary(FATBIN.to_vec())).w()?;
                loaded.push((ctx.ordinal(), m.clone()));
                m
            }
        }
    };
    Ok((module.load_function(name).w()?, stream))
}

/// Reflection padding of an f32 NCHW tensor, as `ReflectionPad2d(pad)`.
pub fn reflect_pad(x: &Tensor, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    x.contiguous()?.apply_op1_no_bwd(&ReflectPad { pad })
}

/// Instance-norm statistics of an f32 NCHW tensor: `(2, N*C)`, the planes' means, then
/// their biased variances (summed in f64).
pub fn plane_stats(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&PlaneStats)
}

/// `(x - mean) / sqrt(var + eps)` with `stats` from [`plane_stats`] (or `(2, C)`, shared by
/// every image of the batch), then ReLU when `relu`, plus `residual` when given, the result
/// reflection-padded by `pad`.
pub fn norm_act(
    x: &Tensor,
    stats: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
    pad: usize,
) -> Result<Tensor> {
    let op = NormAct { relu, pad };
    let (x, stats) = (x.contiguous()?, stats.contiguous()?);
    match residual {
        None => x.apply_op2_no_bwd(&stats, &op),
        Some(r) => {
            if r.dims() != x.dims() {
                candle_core::bail!("residual {:?} does not match {:?}", r.dims(), x.dims());
            }
            x.apply_op3_no_bwd(&stats, &r.contiguous()?, &op)
        }
    }
}

/// [`plane_stats`]' layout for statistics measured elsewhere (a recorded pass).
pub fn stats_tensor(s: &NormStats) -> Result<Tensor> {
    let mean = s.mean.to_dtype(DType::F32)?.flatten_all()?;
    let var = s.var.to_dtype(DType::F32)?.flatten_all()?;
    Tensor::stack(&[mean, var], 0)
}

/// [`plane_stats`]' result as the [`NormStats`] of an `n x c` batch.
pub fn norm_stats(stats: &Tensor, n: usize, c: usize) -> Result<NormStats> {
    Ok(NormStats {
        mean: stats.get(0)?.reshape((n, c, 1, 1))?,
        var: stats.get(1)?.reshape((n, c, 1, 1))?,
    })
}

/// The f32 values of a contiguous CPU tensor.
fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let (Some((a, b)), CpuStorage::F32(v)) = (l.contiguous_offsets(), s) else {
        candle_core::bail!("fused ops take contiguous f32 tensors");
    };
    Ok(&v[a..b])
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

/// A size as the kernels' `int` argument, checked: they index planes with 32-bit sizes.
#[cfg(feature = "cuda")]
fn arg(v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| candle_core::Error::Msg(format!("{v} is too large for the fused kernels")))
}

/// Launch shape of a grid-stride loop over `total` elements.
#[cfg(feature = "cuda")]
fn grid(total: usize) -> LaunchConfig {
    const BLOCK: usize = 256;
    LaunchConfig {
        grid_dim: (total.div_ceil(BLOCK).clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The f32 device slice of a contiguous CUDA tensor.
#[cfg(feature = "cuda")]
fn cuda_f32<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("fused ops take contiguous tensors");
    };
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}

struct ReflectPad {
    pad: usize,
}

impl ReflectPad {
    fn out_shape(&self, l: &Layout) -> Result<Shape> {
        let (n, c, h, w) = dims4(l)?;
        Ok(Shape::from((n, c, h + 2 * self.pad, w + 2 * self.pad)))
    }
}

impl CustomOp1 for ReflectPad {
    fn name(&self) -> &'static str {
        "reflect-pad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l)?;
        let (n, c, h, w) = dims4(l)?;
        let p = self.pad;
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let mut y = Vec::with_capacity(n * c * hp * wp);
        for plane in x.chunks_exact(h * w) {
            for oy in 0..hp {
                let row = &plane[reflect_index(oy as isize - p as isize, h) * w..][..w];
                y.extend((0..wp).map(|ox| row[reflect_index(ox as isize - p as isize, w)]));
            }
        }
        Ok((CpuStorage::F32(y), self.out_shape(l)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (n, c, h, w) = dims4(l)?;
        let shape = self.out_shape(l)?;
        let x = cuda_f32(s, l)?;
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<f32>(shape.elem_count())? };
        let (func, stream) = kernel(&dev, "reflect_pad_f32")?;
        let mut b = stream.launch_builder(&func);
        b.arg(&x);
        b.arg(&y);
        candle_core::builder_arg!(b, arg(n * c)?, arg(h)?, arg(w)?, arg(self.pad)?);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(shape.elem_count())) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(y, dev), shape))
    }
}

struct PlaneStats;

impl CustomOp1 for PlaneStats {
    fn name(&self) -> &'static str {
        "plane-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l)?;
        let (n, c, h, w) = dims4(l)?;
        let planes = n * c;
        let mut out = vec![0f32; 2 * planes];
        for (p, plane) in x.chunks_exact(h * w).enumerate() {
            let (mut sum, mut sq) = (0f64, 0f64);
            for &v in plane {
                sum += v as f64;
                sq += v as f64 * v as f64;
            }
            let mean = sum / (h * w) as f64;
            out[p] = mean as f32;
            out[planes + p] = (sq / (h * w) as f64 - mean * mean).max(0.0) as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from((2, planes))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = s.device().clone();
        let (n, c, h, w) = dims4(l)?;
        let planes = n * c;
        let x = cuda_f32(s, l)?;
        // SAFETY: the kernel writes both halves.
        let y = unsafe { dev.alloc::<f32>(2 * planes)? };
        let (func, stream) = kernel(&dev, "plane_stats_f32")?;
        let mut b = stream.launch_builder(&func);
        b.arg(&x);
        b.arg(&y);
        candle_core::builder_arg!(b, arg(planes)?, arg(h * w)?);
        let cfg = LaunchConfig {
            grid_dim: (arg(planes)? as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature; 256 is a power of two.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((2, planes)),
        ))
    }
}

struct NormAct {
    relu: bool,
    pad: usize,
}

impl NormAct {
    /// Checks the statistics against `x` and gives the output shape and the number of
    /// planes the statistics cover.
    fn check(&self, l: &Layout, stats: &Layout) -> Result<(Shape, usize)> {
        let (n, c, h, w) = dims4(l)?;
        let (two, sp) = stats.shape().dims2()?;
        if two != 2 || (sp != n * c && sp != c) {
            candle_core::bail!(
                "norm statistics {:?} do not fit a {n}x{c} batch",
                stats.shape().dims()
            );
        }
        let p = self.pad;
        Ok((Shape::from((n, c, h + 2 * p, w + 2 * p)), sp))
    }

    fn cpu(
        &self,
        x: (&CpuStorage, &Layout),
        stats: (&CpuStorage, &Layout),
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (shape, sp) = self.check(x.1, stats.1)?;
        let (_, _, h, w) = dims4(x.1)?;
        let (xs, st) = (cpu_f32(x.0, x.1)?, cpu_f32(stats.0, stats.1)?);
        let res = residual.map(|(s, l)| cpu_f32(s, l)).transpose()?;
        let p = self.pad;
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let mut y = Vec::with_capacity(shape.elem_count());
        for (plane, xp) in xs.chunks_exact(h * w).enumerate() {
            let s = plane % sp;
            let inv = 1.0 / (st[sp + s] + EPS as f32).sqrt();
            for oy in 0..hp {
                let sy = reflect_index(oy as isize - p as isize, h);
                for ox in 0..wp {
                    let at = sy * w + reflect_index(ox as isize - p as isize, w);
                    let mut v = (xp[at] - st[s]) * inv;
                    if self.relu {
                        v = v.max(0.0);
                    }
                    if let Some(r) = res {
                        v += r[plane * h * w + at];
                    }
                    y.push(v);
                }
            }
        }
        Ok((CpuStorage::F32(y), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        x: (&CudaStorage, &Layout),
        stats: (&CudaStorage, &Layout),
        residual: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let (shape, sp) = self.check(x.1, stats.1)?;
        let (n, c, h, w) = dims4(x.1)?;
        let dev = x.0.device().clone();
        let (xs, st) = (cuda_f32(x.0, x.1)?, cuda_f32(stats.0, stats.1)?);
        let res = residual.map(|(s, l)| cuda_f32(s, l)).transpose()?;
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<f32>(shape.elem_count())? };
        let (func, stream) = kernel(&dev, "norm_act_f32")?;
        let mut b = stream.launch_builder(&func);
        b.arg(&xs);
        b.arg(&st);
        let null = 0u64; // a null `const float*`: no residual
        match &res {
            Some(r) => b.arg(r),
            None => b.arg(&null),
        };
        b.arg(&y);
        candle_core::builder_arg!(
            b,
            arg(n * c)?,
            arg(sp)?,
            arg(h)?,
            arg(w)?,
            arg(self.pad)?,
            self.relu as i32,
            EPS as f32
        );
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(shape.elem_count())) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(y, dev), shape))
    }
}

impl CustomOp2 for NormAct {
    fn name(&self) -> &'static str {
        "norm-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for NormAct {
    fn name(&self) -> &'static str {
        "norm-act-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), Some((s3, l3)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layers::{instance_stats, normalize, reflection_pad2d};
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn ops_match_the_reference_layers() -> Result<()> {
        let x = Tensor::randn(0.3f32, 1.5, (2, 3, 5, 7), &Device::Cpu)?;
        let res = Tensor::randn(0f32, 1., (2, 3, 5, 7), &Device::Cpu)?;
        for pad in [1, 3, 6] {
            assert_eq!(
                max_diff(&reflect_pad(&x, pad)?, &reflection_pad2d(&x, pad)?),
                0.0
            );
        }
        let stats = plane_stats(&x)?;
        let reference = instance_stats(&x)?;
        let ours = norm_stats(&stats, 2, 3)?;
        assert!(max_diff(&ours.mean, &reference.mean) < 1e-6);
        assert!(max_diff(&ours.var, &reference.var) < 1e-5);
        let normed = normalize(&x, &reference)?;
        let relu_pad = norm_act(&x, &stats, None, true, 1)?;
        assert!(max_diff(&relu_pad, &reflection_pad2d(&normed.relu()?, 1)?) < 1e-5);
        let summed = norm_act(&x, &stats, Some(&res), false, 0)?;
        assert!(max_diff(&summed, &(&res + &normed)?) < 1e-5);
        // One image's statistics serve the whole batch.
        let first = stats_tensor(&instance_stats(&x.narrow(0, 0, 1)?)?)?;
        let shared = norm_act(&x, &first, None, false, 0)?;
        let by_hand = normalize(&x, &instance_stats(&x.narrow(0, 0, 1)?)?)?;
        assert!(max_diff(&shared, &by_hand) < 1e-5);
        assert!(norm_act(
            &x,
            &Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?,
            None,
            true,
            0
        )
        .is_err());
        Ok(())
    }
}
