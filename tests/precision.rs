//! The reduced-precision (bf16) path against f32 on real photos, in 8-bit levels: mean
//! absolute difference at most 0.5, 99.9th percentile at most 2, maximum at most 8
//! (issue #18). Skips where the CPU has no bf16 instructions.

use std::path::{Path, PathBuf};

use cyclegan::io::{read_image, DecodeLimits};
use cyclegan::{stylize, Backend, Error, Model, Precision, Scale, StylizeOptions};

/// The photos: the repository's examples and, when the shared data set is present, a few
/// of its held-out photos (`CYCLEGAN_PRECISION_PHOTOS` of them, 4 by default).
fn photos() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![root.join("examples/rocket.jpg")];
    let n: usize = std::env::var("CYCLEGAN_PRECISION_PHOTOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let shared = root.join("../shared/data/monet2photo/testB");
    if let Ok(dir) = std::fs::read_dir(&shared) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        more.sort();
        v.extend(more.into_iter().take(n));
    }
    v
}

/// Mean, 99.9th percentile and maximum of the absolute differences in 8-bit levels.
fn level_stats(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let mut d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x * 255.0).round() - (y * 255.0).round()).abs() as f64)
        .collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    d.sort_by(f64::total_cmp);
    let p999 = d[((d.len() - 1) as f64 * 0.999).round() as usize];
    (mean, p999, *d.last().unwrap())
}

#[test]
fn bf16_stays_within_the_bounds_of_f32_on_photos() {
    let model = Model::load("monet", Backend::Cpu).unwrap();
    let opts = |precision| StylizeOptions {
        scale: Scale::Fraction(1.0),
        precision,
        ..Default::default()
    };
    let limits = DecodeLimits::default();
    for path in photos() {
        let input = read_image(&path, &limits).unwrap();
        let f32_out = stylize(&model, &input, &opts(Precision::F32), &mut |_| true).unwrap();
        let bf16_out = match stylize(&model, &input, &opts(Precision::Bf16), &mut |_| true) {
            Err(Error::Unsupported(why)) => {
                eprintln!("skipped: {why}");
                return;
            }
            r => r.unwrap(),
        };
        let (mean, p999, max) = level_stats(f32_out.data(), bf16_out.data());
        eprintln!(
            "{}: {}x{}: mean {mean:.3}, p99.9 {p999:.0}, max {max:.0} levels",
            path.display(),
            input.width(),
            input.height()
        );
        assert!(mean <= 0.5, "{}: mean {mean}", path.display());
        assert!(p999 <= 2.0, "{}: 99.9th percentile {p999}", path.display());
        assert!(max <= 8.0, "{}: max {max}", path.display());
    }
}

/// The GPU backends' bf16 path (the candle engine with bf16 weights in the residual
/// blocks, `Generator::with_bf16_body`) against the same engine in f32, on candle's CPU
/// device, which rounds operands and results to bf16 around an f32 product as cuBLAS and
/// cuDNN do (`scripts/gpu-check.sh` measures the error on a GPU too). Each photo whole, up
/// to 640 px a side (candle's CPU device is slow); the bound is the issue's: at most 2
/// levels anywhere.
#[test]
fn the_gpu_engines_bf16_path_stays_within_2_levels_of_f32() {
    use cyclegan::engine::{candle_engine_on, Stats};
    let weights = cyclegan::shipped_weights("monet")
        .unwrap()
        .unwrap()
        .generator_weights()
        .unwrap();
    let engine = candle_engine_on(&weights, candle_core::Device::Cpu).unwrap();
    let limits = DecodeLimits::default();
    for path in photos().into_iter().take(3) {
        let input = read_image(&path, &limits).unwrap();
        let (w, h) = (input.width() as usize, input.height() as usize);
        let (cw, ch) = (w.min(640) / 4 * 4, h.min(640) / 4 * 4);
        let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
        let channels = input.channels() as usize;
        let mut planar = vec![0f32; 3 * cw * ch];
        for y in 0..ch {
            for x in 0..cw {
                for c in 0..3 {
                    let v = input.data()[((y0 + y) * w + x0 + x) * channels + c];
                    planar[c * cw * ch + y * cw + x] = v * 2.0 - 1.0;
                }
            }
        }
        let run = |precision| {
            engine
                .forward(&planar, cw, ch, Stats::Measure, precision, &mut |_, _| true)
                .unwrap()
                .into_iter()
                .map(|v| (v + 1.0) / 2.0)
                .collect::<Vec<f32>>()
        };
        let (f32_out, bf16_out) = (run(Precision::F32), run(Precision::Bf16));
        assert!(f32_out != bf16_out, "the bf16 pass computed in f32");
        let (mean, p999, max) = level_stats(&f32_out, &bf16_out);
        eprintln!(
            "{} (candle engine, {cw}x{ch}): mean {mean:.3}, p99.9 {p999:.0}, max {max:.0} levels",
            path.display()
        );
        assert!(mean <= 0.5, "{}: mean {mean}", path.display());
        assert!(max <= 2.0, "{}: max {max}", path.display());
    }
}
