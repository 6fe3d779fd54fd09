//! Generator speed and memory on the CPU: the fast path against candle's own path, and
//! against PyTorch when it is installed. Prints a markdown table.
//!
//!   cargo bench --bench stylize -- [--sizes 256 512 1024] [--reps 5] [--candle-max 512]
//!                                  [--e2e] [--big] [--no-torch]
//!
//! `--e2e` also times what users run: the `cyclegan stylize --scale 1` command, from JPEG
//! decode to JPEG encode, at each size (a picture made from examples/rocket.jpg), next to
//! PyTorch's forward pass alone. `--big` runs a 6000x4000 JPEG with the default memory
//! budget and with `--max-memory 1G`, and compares its time per pixel with the engine's
//! whole-image forward pass at the largest size.
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
    let mut e2e = false;
    let mut big = false;
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
            "--e2e" => e2e = true,
            "--big" => big = true,
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
    let mut engine_secs = Vec::new();
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
        engine_secs.push((s, tf));
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
    if e2e {
        end_to_end(&sizes, reps, torch.as_deref(), &engine_secs);
    }
    if big {
        big_photo(&engine_secs);
    }
}

/// A photo-like test picture: the example photo resized to `w` x `h`, as a JPEG in `dir`.
fn picture(dir: &std::path::Path, w: u32, h: u32) -> std::path::PathBuf {
    use cyclegan::io::{read_image, write_image, DecodeLimits};
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rocket.jpg");
    let img = read_image(std::path::Path::new(src), &DecodeLimits::default()).unwrap();
    let path = dir.join(format!("photo-{w}x{h}.jpg"));
    write_image(&path, &img.resized(w, h)).unwrap();
    path
}

/// Runs the CLI once; returns (seconds, peak RSS in MiB) of the child process.
// `wait4` reaps the child (std's `wait` cannot report its resource usage).
#[allow(clippy::zombie_processes)]
fn run_cli(args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the CLI starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing only the two out-values passed by pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(
        pid > 0 && status == 0,
        "cyclegan {args:?} failed (status {status})"
    );
    (secs, usage.ru_maxrss as f64 / 1024.0)
}

fn median_cli(reps: usize, args: &[&str]) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..reps.max(1)).map(|_| run_cli(args)).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[runs.len() / 2]
}

fn end_to_end(
    sizes: &[usize],
    reps: usize,
    torch: Option<&[(usize, f64)]>,
    engine: &[(usize, f64)],
) {
    let dir = std::env::temp_dir().join(format!("cyclegan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!();
    println!("End to end: `cyclegan stylize photo.jpg -o out.jpg --scale 1 --device cpu` (decode, stylize, encode; median of {reps}):");
    println!();
    println!("| size | CLI s | engine forward s | CLI peak RSS MiB | torch forward s | CLI / torch forward |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for &s in sizes {
        let input = picture(&dir, s as u32, s as u32);
        let out = dir.join("out.jpg");
        let (secs, rss) = median_cli(
            reps,
            &[
                "stylize",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--scale",
                "1",
                "--device",
                "cpu",
                "--overwrite",
            ],
        );
        let tt = torch.and_then(|v| v.iter().find(|(ts, _)| *ts == s).map(|p| p.1));
        let te = engine.iter().find(|(es, _)| *es == s).map(|p| p.1);
        println!(
            "| {s} | {secs:.3} | {} | {rss:.0} | {} | {} |",
            te.map_or("-".into(), |v| format!("{v:.3}")),
            tt.map_or("-".into(), |v| format!("{v:.3}")),
            tt.map_or("-".into(), |v| format!("{:.2}", secs / v)),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn big_photo(engine: &[(usize, f64)]) {
    let dir = std::env::temp_dir().join(format!("cyclegan-bench-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = picture(&dir, 6000, 4000);
    let out = dir.join("out.jpg");
    let base = [
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--scale",
        "1",
        "--device",
        "cpu",
        "--overwrite",
    ];
    // The engine's whole-image rate at the largest size measured, per pixel.
    let rate = engine.last().map(|&(s, t)| t / (s * s) as f64);
    println!();
    println!("6000x4000 JPEG at `--scale 1` (one run each):");
    println!();
    println!("| settings | s | peak RSS MiB | s per MP | vs engine whole-image rate |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, extra) in [
        ("default", &[][..]),
        ("--max-memory 1G", &["--max-memory", "1G"][..]),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (secs, rss) = run_cli(&args);
        let per_px = secs / 24e6;
        println!(
            "| {name} | {secs:.1} | {rss:.0} | {:.3} | {} |",
            per_px * 1e6,
            rate.map_or("-".into(), |r| format!("{:.2}x", per_px / r)),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
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
