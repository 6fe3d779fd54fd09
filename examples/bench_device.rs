//! The GPU check of docs/performance.md through what users run: the backend library
//! (`libcyclegan_backend_cuda.so`) loaded by a default build, so this binary links no CUDA
//! and stays small enough to carry to a GPU machine (scripts/gpu-check.sh):
//!
//!   CYCLEGAN_BACKEND_PATH=DIR cargo run --release --example bench_device -- [cuda] [256 512 1024 2048]
//!
//! Run from the repository root: it reads the Monet style from models/, the parity vectors
//! from tests/fixtures and examples/rocket.jpg. Prints the backend's status; the first
//! call's time (library load, weights upload and a 256-px forward: what a fresh process
//! pays); the output against PyTorch's parity vectors; a whole stylize of rocket.jpg in f32
//! against the CPU engine and in bf16 against f32; then median milliseconds of 10 forward
//! passes after 3 warm-ups in f32 and bf16 at each size, each with its host-device copies.

use std::time::Instant;

use cyclegan::engine::{Engine, Stats};
use cyclegan::{Backend, Model, Precision};

/// A deterministic planar input in [-1, 1].
fn planar(s: usize) -> Vec<f32> {
    (0..3 * s * s)
        .map(|i| ((i as f32 * 0.618_034).fract() * 2.0 - 1.0) * 0.8)
        .collect()
}

fn forward(e: &dyn Engine, x: &[f32], s: usize, p: Precision) -> cyclegan::Result<Vec<f32>> {
    e.forward(x, s, s, Stats::Measure, p, &mut |_, _| true)
}

/// Median milliseconds of 10 passes after 3 warm-ups.
fn median_ms(e: &dyn Engine, s: usize, p: Precision) -> cyclegan::Result<f64> {
    let x = planar(s);
    for _ in 0..3 {
        forward(e, &x, s, p)?;
    }
    let mut t = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        forward(e, &x, s, p)?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[5])
}

fn main() -> cyclegan::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let backend = match args.peek().map(|a| a.parse::<usize>().is_err()) {
        Some(true) => Backend::parse(&args.next().unwrap())?,
        _ => Backend::Cuda,
    };
    let sizes: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024, 2048]
    } else {
        sizes
    };
    println!("{}", backend.describe_status());

    let t = Instant::now();
    let model = Model::load("models/monet.safetensors", backend)?;
    let loaded = t.elapsed().as_secs_f64();
    let first = forward(model.engine(), &planar(256), 256, Precision::F32)?;
    println!(
        "first call: load {loaded:.2} s, then a 256-px forward: {:.2} s in all ({})",
        t.elapsed().as_secs_f64(),
        model.engine().describe()
    );
    let cpu = Model::load("models/monet.safetensors", Backend::Cpu)?;
    let reference = forward(cpu.engine(), &planar(256), 256, Precision::F32)?;
    println!(
        "Monet, 256 px: max abs diff against the CPU engine {:.2e}",
        max_diff(&first, &reference)
    );
    parity(backend)?;
    photo(backend)?;

    println!();
    println!("| size | f32 ms | bf16 ms |");
    println!("| --- | --- | --- |");
    for &s in &sizes {
        let f = median_ms(model.engine(), s, Precision::F32)?;
        let b = median_ms(model.engine(), s, Precision::Bf16)?;
        println!("| {s} | {f:.1} | {b:.1} |");
    }
    Ok(())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The official-layout fixture against PyTorch's float64 outputs.
fn parity(backend: Backend) -> cyclegan::Result<()> {
    let dir = std::path::Path::new("tests/fixtures");
    let vectors = match candle_core::safetensors::load(
        dir.join("parity_jz_ngf8_b9.safetensors"),
        &candle_core::Device::Cpu,
    ) {
        Ok(v) => v,
        Err(e) => {
            println!("parity: cannot read tests/fixtures (run from the repository root): {e}");
            return Ok(());
        }
    };
    let model = Model::load(dir.join("jz_ngf8_b9.pth").to_str().unwrap(), backend)?;
    let mut worst = 0f32;
    for i in 0.. {
        let (Some(x), Some(y)) = (
            vectors.get(&format!("input_{i}")),
            vectors.get(&format!("output_{i}")),
        ) else {
            break;
        };
        let (_, _, h, w) = x.dims4()?;
        let flat = |t: &candle_core::Tensor| -> cyclegan::Result<Vec<f32>> {
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()?)
        };
        let out = model.engine().forward(
            &flat(x)?,
            w,
            h,
            Stats::Measure,
            Precision::F32,
            &mut |_, _| true,
        )?;
        worst = worst.max(max_diff(&out, &flat(y)?));
    }
    println!("parity vectors (jz_ngf8_b9): max abs diff against PyTorch {worst:.2e}");
    Ok(())
}

/// examples/rocket.jpg stylized whole on the device in f32 and bf16, and on the CPU in f32.
fn photo(backend: Backend) -> cyclegan::Result<()> {
    let path = std::path::Path::new("examples/rocket.jpg");
    let pixels = cyclegan::io::read_image(path, &Default::default())?;
    let run = |backend, precision| -> cyclegan::Result<(Vec<f32>, f64)> {
        let model = Model::load("models/monet.safetensors", backend)?;
        let opts = cyclegan::StylizeOptions {
            precision,
            ..Default::default()
        };
        let t = Instant::now();
        let out = cyclegan::stylize(&model, &pixels, &opts, &mut |_| true)?;
        let levels = out.data().iter().map(|v| (v * 255.0).round()).collect();
        Ok((levels, t.elapsed().as_secs_f64()))
    };
    let (gpu, tg) = run(backend, Precision::F32)?;
    let (cpu, tc) = run(Backend::Cpu, Precision::F32)?;
    let (bf16, tb) = run(backend, Precision::Bf16)?;
    let stats = |a: &[f32], b: &[f32]| {
        let mut d: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
        let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
        d.sort_by(f32::total_cmp);
        (mean, d[(d.len() - 1) * 999 / 1000], d[d.len() - 1])
    };
    let (mean, _, max) = stats(&gpu, &cpu);
    println!(
        "rocket.jpg {}x{}, f32: device {tg:.2} s, CPU {tc:.2} s; {max} levels apart at most, mean {mean:.3}",
        pixels.width(),
        pixels.height()
    );
    let (mean, p999, max) = stats(&bf16, &gpu);
    println!(
        "rocket.jpg, bf16 on the device: {tb:.2} s; against f32 mean {mean:.3}, p99.9 {p999}, \
         max {max} levels (bounds 0.5 / 2 / 8)"
    );
    Ok(())
}
