//! Generator forward time on a device, for the GPU table in docs/performance.md.
//!
//!   cargo run --release --features cuda --example bench_device -- cuda [256 512 1024 2048]
//!
//! Prints median milliseconds of 10 runs after 3 warm-ups, in f32 and bf16; the result is
//! copied back to the host each run, so the time includes the device's whole work.

use std::time::Instant;

use candle_core::{DType, Module, Tensor};
use cyclegan::weights::Weights;
use cyclegan::Backend;

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
    let weights = cyclegan::style::shipped_weights("monet").expect("monet is shipped")?;
    println!("device {device:?}");
    println!("| size | f32 ms | bf16 ms |");
    println!("| --- | --- | --- |");
    for &s in &sizes {
        let mut row = format!("| {s} |");
        for dtype in [DType::F32, DType::BF16] {
            let g = Weights::generator(&weights, &device, dtype)?;
            let x = Tensor::randn(0f32, 0.5, (1, 3, s, s), &device)?.to_dtype(dtype)?;
            let run = || -> cyclegan::Result<f64> {
                let t = Instant::now();
                let y = g.forward(&x)?;
                let _ = y.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            };
            for _ in 0..3 {
                run()?;
            }
            let mut t: Vec<f64> = (0..10).map(|_| run()).collect::<cyclegan::Result<_>>()?;
            t.sort_by(f64::total_cmp);
            row += &format!(" {:.1} |", t[5]);
        }
        println!("{row}");
    }
    Ok(())
}
