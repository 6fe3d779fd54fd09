//! Generator speed and memory on the CPU: the fast path against candle's own path, and
//! against PyTorch when it is installed. Prints a markdown table.
//!
//!   cargo bench --bench stylize -- [--sizes 256 512 1024] [--reps 5] [--candle-max 512]
//!
//! Threads come from rayon (`RAYON_NUM_THREADS`), which both engines use.

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use cyclegan::engine::Stats;
use cyclegan::{Backend, Model};

/// Multiply-accumulates of one forward on an `h x w` image, as `gen_macs` in
/// `reference/ref_cyclegan.py`, so GFLOP/s figures compare across engines.
fn gen_macs(h: usize, w: usize, blocks: usize, ngf: usize) -> f64 {
    let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);
    let macs = h * w * 3 * ngf * 49
        + h2 * w2 * ngf * 2 * ngf * 9
        + h4 * w4 * ngf * 2 * ngf * 4 * 9
        + blocks * 2 * h4 * w4 * (ngf * 4) * (ngf * 4) * 9
        + h2 * w2 * ngf * 4 * ngf * 2 * 9
        + h * w * ngf * 2 * ngf * 9
        + h * w * ngf * 3 * 49;
    macs as f64
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Resets the peak-RSS counter (Linux `clear_refs` 5), so each row reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: page faults, gemm's packing buffers
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Runs the PyTorch reference with the same threads; `None` when torch is not installed.
fn torch_times(sizes: &[usize], threads: usize, reps: usize) -> Option<Vec<(usize, f64)>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/bench_torch.py"
    );
    if !std::path::Path::new(script).exists() {
        return None;
    }
    let ok = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        eprintln!("PyTorch is not installed: no torch column");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("--threads").arg(threads.to_string());
    cmd.arg("--reps").arg(reps.to_string()).arg("--sizes");
    cmd.args(sizes.iter().map(|s| s.to_string()));
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f.as_slice() {
                    ["size", s, "median_ms", ms, ..] => {
                        Some((s.parse().ok()?, ms.parse::<f64>().ok()? / 1e3))
                    }
                    _ => None,
                }
            })
            .collect(),
    )
}

fn main() {
    let mut sizes = vec![256, 512, 1024];
    let mut reps = 5;
    let mut candle_max = 512;
    let mut torch = true;
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes.clear();
                while let Some(v) = args.peek().and_then(|v| v.parse().ok()) {
                    sizes.push(v);
                    args.next();
                }
            }
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).unwrap_or(reps),
            "--candle-max" => candle_max = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--no-torch" => torch = false,
            _ => {} // cargo bench passes --bench
        }
    }
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let model = Model::load("monet", Backend::Cpu).expect("shipped style loads");
    let load = t.elapsed().as_secs_f64();
    let fast = model.engine();
    let t = Instant::now();
    cyclegan::engine::cpu_engine(model.reference_generator().unwrap()).unwrap();
    let pack = t.elapsed().as_secs_f64();
    let cfg = model.config();
    let torch = if torch {
        torch_times(&sizes, threads, reps)
    } else {
        None
    };
    println!(
        "CPU: {}; threads {threads}; model load {:.0} ms (of which CPU packing {:.0} ms); \
         median of {reps}",
        cpu_name(),
        load * 1e3,
        pack * 1e3
    );
    println!();
    println!("| size | fast s | GFLOP/s | candle s | fast vs candle | torch s | fast vs torch | fast peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &s in &sizes {
        let x = Tensor::rand(-1f32, 1., (1, 3, s, s), &Device::Cpu).unwrap();
        let planar: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        reset_peak_rss();
        let tf = median_secs(reps, || {
            fast.forward(
                &planar,
                s,
                s,
                Stats::Measure,
                cyclegan::Precision::F32,
                &mut |_, _| true,
            )
            .unwrap();
        });
        let rss = peak_rss_mib();
        let gflops = 2.0 * gen_macs(s, s, cfg.blocks, cfg.ngf) / tf / 1e9;
        let tc = (s <= candle_max).then(|| {
            median_secs(reps.min(3), || {
                model.reference_generator().unwrap().forward(&x).unwrap();
            })
        });
        let tt = torch
            .as_ref()
            .and_then(|v| v.iter().find(|(ts, _)| *ts == s).map(|p| p.1));
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
        println!(
            "| {s} | {tf:.3} | {gflops:.0} | {} | {} | {} | {} | {:.0} |",
            opt(tc, &|v| format!("{v:.3}")),
            opt(tc, &|v| format!("{:.2}x", v / tf)),
            opt(tt, &|v| format!("{v:.3}")),
            opt(tt, &|v| format!("{:.2}x", v / tf)),
            rss
        );
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
