//! The GPU check of docs/performance.md, in one run (one binary to carry to a GPU machine):
//!
//!   cargo run --release --features cuda --example bench_device -- cuda [256 512 1024 2048]
//!
//! Run from the repository root: it reads the Monet style from models/, the parity vectors
//! from tests/fixtures and examples/rocket.jpg, so the binary does not embed the style and
//! stays small enough to carry to a GPU machine (scripts/gpu-check.sh). Prints the first
//! call's time (PTX compilation included), the CUDA output against PyTorch's parity vectors
//! and against the CPU engine, a whole stylize of rocket.jpg on the GPU against the CPU,
//! then median milliseconds of 10 runs after 3 warm-ups: the fused f32
//! pass (what `stylize` runs on a GPU), candle's generic f32 pass and the generic bf16
//! pass. Each run copies its result back to the host, so it times the device's whole work.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use cyclegan::nn::{Generator, Norms};
use cyclegan::Backend;
use cyclegan::Weights;

fn max_diff(a: &Tensor, b: &Tensor) -> cyclegan::Result<f32> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar()?)
}

/// Median milliseconds of `f` (10 runs after 3 warm-ups).
fn median_ms(mut f: impl FnMut() -> cyclegan::Result<Tensor>) -> cyclegan::Result<f64> {
    let mut run = || -> cyclegan::Result<f64> {
        let t = Instant::now();
        let y = f()?;
        let _ = y.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..3 {
        run()?;
    }
    let mut t: Vec<f64> = (0..10).map(|_| run()).collect::<cyclegan::Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[5])
}

fn main() -> cyclegan::Result<()> {
    let mut args = std::env::args().skip(1);
    let backend = Backend::parse(&args.next().unwrap_or_else(|| "auto".into()))?;
    let sizes: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024, 2048]
    } else {
        sizes
    };
    let device = backend.device()?;
    println!("device {device:?}");
    let weights = Weights::read(std::path::Path::new("models/monet.safetensors"))?;
    let g32 = Weights::generator(&weights, &device, DType::F32)?;
    let gbf = Weights::generator(&weights, &device, DType::BF16)?;

    let x = Tensor::randn(0f32, 0.5, (1, 3, 256, 256), &device)?;
    let t = Instant::now();
    let y = g32.forward_with(&x, &mut Norms::Own)?;
    let _ = y.sum_all()?.to_scalar::<f32>()?;
    println!("first call, 256 px: {:.2} s", t.elapsed().as_secs_f64());

    let cpu = Weights::generator(&weights, &Device::Cpu, DType::F32)?;
    let d = max_diff(
        &y,
        &cpu.forward_with(&x.to_device(&Device::Cpu)?, &mut Norms::Own)?,
    )?;
    println!("Monet, 256 px: max abs diff against the CPU reference {d:.2e}");
    parity(&device)?;
    photo(&weights, backend)?;

    println!();
    println!(
        "| size | fused f32 ms | generic f32 ms | generic bf16 ms | fused vs generic max diff |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for &s in &sizes {
        let x = Tensor::randn(0f32, 0.5, (1, 3, s, s), &device)?;
        let xb = x.to_dtype(DType::BF16)?;
        let fused = median_ms(|| Ok(g32.forward_fused(&x, &mut Norms::Own)?))?;
        let generic = median_ms(|| Ok(g32.forward_generic(&x, &mut Norms::Own)?))?;
        // candle's CPU matmul has no bf16.
        let bf16 = match device.is_cpu() {
            true => f64::NAN,
            false => median_ms(|| Ok(gbf.forward_generic(&xb, &mut Norms::Own)?))?,
        };
        let d = max_diff(
            &g32.forward_fused(&x, &mut Norms::Own)?,
            &g32.forward_generic(&x, &mut Norms::Own)?,
        )?;
        println!("| {s} | {fused:.1} | {generic:.1} | {bf16:.1} | {d:.1e} |");
    }
    Ok(())
}

/// The official-layout fixture against PyTorch's float64 outputs, when run from the
/// repository root.
fn parity(device: &Device) -> cyclegan::Result<()> {
    let dir = std::path::Path::new("tests/fixtures");
    let w = Weights::read(&dir.join("jz_ngf8_b9.pth"));
    let v = candle_core::safetensors::load(dir.join("parity_jz_ngf8_b9.safetensors"), device);
    let (w, v) = match (w, v) {
        (Ok(w), Ok(v)) => (w, v),
        (w, v) => {
            let e = w
                .err()
                .map(|e| e.to_string())
                .or(v.err().map(|e| e.to_string()));
            println!("parity: cannot read tests/fixtures (run from the repository root): {e:?}");
            return Ok(());
        }
    };
    let g: Generator = w.generator(device, DType::F32)?;
    let mut worst = 0f32;
    for i in 0.. {
        let (Some(x), Some(y)) = (v.get(&format!("input_{i}")), v.get(&format!("output_{i}")))
        else {
            break;
        };
        let x = x.to_dtype(DType::F32)?;
        worst = worst.max(max_diff(&g.forward_with(&x, &mut Norms::Own)?, y)?);
    }
    println!("parity vectors (jz_ngf8_b9): max abs diff against PyTorch {worst:.2e}");
    Ok(())
}

/// examples/rocket.jpg stylized with default options on the device and on the CPU.
fn photo(weights: &Weights, backend: Backend) -> cyclegan::Result<()> {
    let path = std::path::Path::new("examples/rocket.jpg");
    let pixels = cyclegan::io::read_image(path, &Default::default())?;
    let run = |backend| -> cyclegan::Result<(cyclegan::Pixels, f64)> {
        let model = cyclegan::Model::from_weights(weights, backend)?;
        let t = Instant::now();
        let out = cyclegan::stylize(&model, &pixels, &Default::default(), &mut |_| true)?;
        Ok((out, t.elapsed().as_secs_f64()))
    };
    let ((gpu, tg), (cpu, tc)) = (run(backend)?, run(Backend::Cpu)?);
    let levels = |p: &cyclegan::Pixels| {
        p.data()
            .iter()
            .map(|v| (v * 255.0).round())
            .collect::<Vec<_>>()
    };
    let (a, b) = (levels(&gpu), levels(&cpu));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let mean = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    println!(
        "rocket.jpg {}x{}, default options: device {tg:.2} s, CPU {tc:.2} s; \
         max {worst} levels apart, mean {mean:.3}",
        pixels.width(),
        pixels.height()
    );
    Ok(())
}
