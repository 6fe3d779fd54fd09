//! Seconds per training step of the seed loop (both generators, both discriminators,
//! three Adam updates, pools), without data loading. Prints a markdown table.
//!
//!   cargo run --release --example train_speed -- [--device cpu|cuda] [--sizes 128 256]
//!       [--ngf 64] [--blocks 9] [--ndf 64] [--batch 1] [--reps 5]
//!
//! PyTorch on one H200 (models/README.md): 0.105 s fp32 batch 1, 256 px, ngf 64.

use std::time::Instant;

use candle_core::{DType, Tensor};
use cyclegan::nn::{GeneratorConfig, Layout};
use cyclegan::train::rng::{Rng, Stream};
use cyclegan::train::{StepSettings, TrainState};
use cyclegan::Backend;

fn main() -> cyclegan::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect(name));
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--sizes") {
        Some(i) => args[i + 1..]
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .map(|a| a.parse().expect("--sizes"))
            .collect(),
        None => vec![128, 256],
    };
    let backend = Backend::parse(&value("--device").unwrap_or_else(|| "cpu".into()))?;
    let device = backend.device()?;
    let generator = GeneratorConfig {
        layout: Layout::Seed,
        ngf: num("--ngf", 64),
        blocks: num("--blocks", 9),
    };
    let (ndf, batch, reps) = (num("--ndf", 64), num("--batch", 1), num("--reps", 5));
    println!(
        "device {device:?}, ngf {}, blocks {}, ndf {ndf}, batch {batch}, f32",
        generator.ngf, generator.blocks
    );
    println!("| size | s/step (median of {reps}) | images/s |");
    println!("| --- | --- | --- |");
    for size in sizes {
        let mut state = TrainState::new(
            generator,
            ndf,
            StepSettings::default(),
            &device,
            DType::F32,
            0,
        )?;
        let mut rng = Rng::derive(0, Stream::Pool, 0);
        let shape = (batch, 3, size, size);
        let a = Tensor::rand(-1f32, 1., shape, &device)?;
        let b = Tensor::rand(-1f32, 1., shape, &device)?;
        // Warm-up: kernel compilation, allocator, pool filling.
        for _ in 0..2 {
            state.step(&a, &b, 2e-4, &mut rng)?;
        }
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            // The losses come back to the host, so the step is complete when this returns.
            state.step(&a, &b, 2e-4, &mut rng)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("| {size} | {median:.3} | {:.2} |", batch as f64 / median);
    }
    Ok(())
}
