//! Generator speed and memory on the CPU: the fast path against candle's own path, and
//! against PyTorch when it is installed. Prints a markdown table.
//!
//!   cargo bench --bench stylize -- [--sizes 256 512 1024] [--reps 5] [--candle-max 512]
//!                                  [--e2e] [--big] [--no-torch]
//!                                  [--precision auto|f32|bf16] [--layers] [--compare]
//!
//! `--e2e` also times what users run: the `cyclegan stylize --scale 1` command, from JPEG
//! decode to JPEG encode, at each size (a picture made from examples/rocket.jpg), next to
//! PyTorch's forward pass alone. `--big` runs a 6000x4000 JPEG with the default memory
//! budget and with `--max-memory 1G`, and compares its time per pixel with the engine's
//! whole-image forward pass at the largest size.
//!
//! `--precision` picks the engine's arithmetic (auto by default, as users run it: bf16 on
//! CPUs with AMX, else f32); `--layers` adds a table
//! per size of the time, effective GFLOP/s and fraction of nominal peak per layer type.
//!
//! `--compare` also times torch.compile (inductor) and onnxruntime with the same threads
//! (`scripts/bench_torch_cpu.py`; `pip install onnxruntime onnx onnxscript`), adds their
//! columns to the table and prints their one-off compile and export times under it.
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

/// One line of `scripts/bench_torch_cpu.py`: a variant's steady-state median at a size,
/// and its one-off setup (torch.compile's compile, or the ONNX export and session).
struct Variant {
    name: String,
    size: usize,
    secs: f64,
    setup: f64,
}

/// Runs `scripts/bench_torch_cpu.py` for torch.compile and onnxruntime with the same
/// sizes, threads and repetitions; empty when Python cannot run it. The script skips,
/// with a notice, a variant whose package is missing; its notes go to our stderr.
fn compare_times(sizes: &[usize], threads: usize, reps: usize) -> Vec<Variant> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch_cpu.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--variants", "compile,ort"])
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--reps")
        .arg(reps.to_string())
        .arg("--sizes")
        .args(sizes.iter().map(|s| s.to_string()))
        .stderr(std::process::Stdio::inherit())
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!(
                "{script} failed ({}): no compile and ort columns",
                out.status
            );
            return Vec::new();
        }
        Err(e) => {
            eprintln!("cannot run python3 {script}: {e}");
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["variant", name, "size", s, "median_ms", ms, "setup_s", setup, ..] => {
                    Some(Variant {
                        name: name.to_string(),
                        size: s.parse().ok()?,
                        secs: ms.parse::<f64>().ok()? / 1e3,
                        setup: setup.parse().ok()?,
                    })
                }
                _ => None,
            }
        })
        .collect()
}

fn main() {
    let mut sizes = vec![256, 512, 1024];
    let mut reps = 5;
    let mut candle_max = 512;
    let mut torch = true;
    let mut e2e = false;
    let mut big = false;
    let mut precision = cyclegan::Precision::Auto;
    let mut layers = false;
    let mut compare = false;
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
            "--layers" => layers = true,
            "--compare" => compare = true,
            "--precision" => {
                precision = args
                    .next()
                    .map(|v| cyclegan::Precision::parse(&v).expect("auto, f32 or bf16"))
                    .unwrap_or(precision)
            }
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
    let variants = if compare {
        compare_times(&sizes, threads, reps)
    } else {
        Vec::new()
    };
    let variant = |name: &str, s: usize| variants.iter().find(|v| v.name == name && v.size == s);
    println!(
        "CPU: {}; threads {threads}; model load {:.0} ms (of which CPU packing {:.0} ms); \
         precision {}; median of {reps}",
        cpu_name(),
        load * 1e3,
        pack * 1e3,
        precision.name(),
    );
    println!();
    let (extra_head, extra_rule) = if compare {
        (
            " compile s | fast vs compile | ort s | fast vs ort |",
            " --- | --- | --- | --- |",
        )
    } else {
        ("", "")
    };
    println!("| size | fast s | GFLOP/s | candle s | fast vs candle | torch s | fast vs torch |{extra_head} fast peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- |{extra_rule} --- |");
    let mut engine_secs = Vec::new();
    for &s in &sizes {
        let x = Tensor::rand(-1f32, 1., (1, 3, s, s), &Device::Cpu).unwrap();
        let planar: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        reset_peak_rss();
        let tf = median_secs(reps, || {
            fast.forward(&planar, s, s, Stats::Measure, precision, &mut |_, _| true)
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
        // A `time | fast vs time |` pair of cells, `-` where not measured.
        let time_and_ratio = |v: Option<f64>| match v {
            Some(v) => format!(" {v:.3} | {:.2}x |", v / tf),
            None => " - | - |".into(),
        };
        let extra = if compare {
            ["compile", "ort"]
                .map(|n| time_and_ratio(variant(n, s).map(|v| v.secs)))
                .concat()
        } else {
            String::new()
        };
        println!(
            "| {s} | {tf:.3} | {gflops:.0} |{}{}{extra} {rss:.0} |",
            time_and_ratio(tc),
            time_and_ratio(tt),
        );
    }
    for (name, what) in [
        ("compile", "torch.compile (inductor) compile"),
        ("ort", "onnxruntime export + session"),
    ] {
        let setups: Vec<String> = sizes
            .iter()
            .filter_map(|&s| variant(name, s).map(|v| format!("{s} px {:.1} s", v.setup)))
            .collect();
        if !setups.is_empty() {
            println!();
            println!("{what}, once per size: {}", setups.join(", "));
        }
    }
    if e2e {
        end_to_end(&sizes, reps, torch.as_deref(), &engine_secs);
    }
    if big {
        big_photo(&engine_secs);
    }
    if layers {
        for &s in &sizes {
            layer_table(fast, s, precision, reps, cfg.blocks, cfg.ngf);
        }
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
///
/// The peak comes from GNU time (`/usr/bin/time -f %M`), not from our own `wait4`: Linux
/// carries a process's peak RSS across `exec` into the child of a (v)fork, so a child of
/// this bench would report the bench's own peak.
fn run_cli(args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib %M"])
        .arg(env!("CARGO_BIN_EXE_cyclegan"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("/usr/bin/time runs (Debian: apt-get install time)");
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cyclegan {args:?} failed: {err}");
    let kib: f64 = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("maxrss_kib ")?.trim().parse().ok())
        .unwrap_or(f64::NAN);
    (secs, kib / 1024.0)
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

/// One layer type of the generator, for the per-layer table: its steps in the engine's
/// progress callback (1-based, as the callback counts them) and multiply-adds per step.
struct LayerType {
    name: &'static str,
    steps: std::ops::RangeInclusive<usize>,
    macs: f64,
    /// Whether the engine runs it as Winograd F(4x4, 3x3), whose products bf16 speeds up.
    winograd: bool,
}

fn layer_types(h: usize, w: usize, blocks: usize, ngf: usize) -> Vec<LayerType> {
    let (hw, hw2, hw4) = ((h * w) as f64, (h * w / 4) as f64, (h * w / 16) as f64);
    let g = ngf as f64;
    let nb = blocks;
    vec![
        LayerType {
            name: "head 7x7",
            steps: 1..=1,
            macs: hw * 3.0 * g * 49.0,
            winograd: false,
        },
        LayerType {
            name: "down 3x3 s2",
            steps: 2..=3,
            macs: (hw2 * g * 2.0 * g + hw4 * 2.0 * g * 4.0 * g) * 9.0,
            winograd: false,
        },
        LayerType {
            name: "residual 3x3",
            steps: 4..=3 + 2 * nb,
            macs: hw4 * 16.0 * g * g * 9.0 * (2 * nb) as f64,
            winograd: true,
        },
        LayerType {
            name: "up 3x3 (1/2 res)",
            steps: 4 + 2 * nb..=4 + 2 * nb,
            macs: hw2 * 4.0 * g * 2.0 * g * 9.0,
            winograd: true,
        },
        LayerType {
            name: "up 3x3 (full res)",
            steps: 5 + 2 * nb..=5 + 2 * nb,
            macs: hw * 2.0 * g * g * 9.0,
            winograd: true,
        },
        LayerType {
            name: "tail 7x7",
            steps: 6 + 2 * nb..=6 + 2 * nb,
            macs: hw * g * 3.0 * 49.0,
            winograd: false,
        },
    ]
}

/// Nominal peak GFLOP/s of this machine for `threads` cores: f32 FMA (two 16-lane units)
/// and, where present, AMX bf16 (`tdpbf16ps`: 1024 flops per cycle) or AVX-512 BF16
/// (two 32-multiply-add `vdpbf16ps` per cycle), at the clock `/proc/cpuinfo` reports.
fn peaks(threads: usize) -> (f64, Option<(&'static str, f64)>) {
    let ghz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        })
        .map_or(2.0, |mhz| mhz / 1e3);
    let f32_peak = threads as f64 * ghz * 64.0;
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpu.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let bf16 = if has("amx_bf16") && std::env::var_os("CYCLEGAN_NO_AMX").is_none() {
        Some(("AMX bf16", threads as f64 * ghz * 1024.0))
    } else if has("avx512_bf16") {
        Some(("AVX-512 bf16", threads as f64 * ghz * 128.0))
    } else {
        None
    };
    (f32_peak, bf16)
}

/// Time per layer type at size `s` (median per step over `reps` calls, timed between the
/// engine's per-layer progress callbacks), with effective GFLOP/s (direct-convolution
/// flops over time, as the totals) and the fraction of the machine's nominal peak.
fn layer_table(
    fast: &dyn cyclegan::engine::Engine,
    s: usize,
    precision: cyclegan::Precision,
    reps: usize,
    blocks: usize,
    ngf: usize,
) {
    let x = Tensor::rand(-1f32, 1., (1, 3, s, s), &Device::Cpu).unwrap();
    let planar: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let mut per_step: Vec<Vec<f64>> = Vec::new();
    for rep in 0..=reps {
        let mut marks = vec![(Instant::now(), cpu_secs())];
        fast.forward(&planar, s, s, Stats::Measure, precision, &mut |_, _| {
            marks.push((Instant::now(), cpu_secs()));
            true
        })
        .unwrap();
        if rep == 0 {
            continue; // warm-up
        }
        // Wall and CPU seconds of each step, side by side.
        let d: Vec<f64> = marks
            .windows(2)
            .flat_map(|p| [(p[1].0 - p[0].0).as_secs_f64(), p[1].1 - p[0].1])
            .collect();
        per_step.resize(d.len(), Vec::new());
        for (acc, v) in per_step.iter_mut().zip(d) {
            acc.push(v);
        }
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let steps: Vec<f64> = per_step.iter().map(med).collect();
    let threads = rayon::current_num_threads();
    let (f32_peak, bf16_peak) = peaks(threads);
    println!();
    println!(
        "Per layer type at {s} px, precision {} (nominal peak: f32 {f32_peak:.0} GFLOP/s{}):",
        precision.name(),
        bf16_peak.map_or(String::new(), |(n, p)| format!(", {n} {p:.0} GFLOP/s"))
    );
    println!();
    println!(
        "| layer type | wall s | CPU s | share of CPU | effective GFLOP/s | of f32 peak | of bf16 peak |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let (wall, cpu): (Vec<f64>, Vec<f64>) = steps.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    let total: f64 = cpu.iter().sum();
    for t in layer_types(s, s, blocks, ngf) {
        let pick = |v: &[f64]| -> f64 { t.steps.clone().filter_map(|i| v.get(i - 1)).sum() };
        let (secs, cpu_s) = (pick(&wall), pick(&cpu));
        // Per CPU time: what the threads would reach without other processes' load.
        let gflops = 2.0 * t.macs / (cpu_s / threads as f64) / 1e9;
        let bf = match (
            bf16_peak,
            t.winograd && precision != cyclegan::Precision::F32,
        ) {
            (Some((_, p)), true) => format!("{:.1}%", 100.0 * gflops / p),
            _ => "-".into(),
        };
        println!(
            "| {} | {secs:.3} | {cpu_s:.3} | {:.0}% | {gflops:.0} | {:.0}% | {bf} |",
            t.name,
            100.0 * cpu_s / total,
            100.0 * gflops / f32_peak
        );
    }
}

/// CPU time of this process so far (all threads), in seconds.
fn cpu_secs() -> f64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    f64::NAN
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
