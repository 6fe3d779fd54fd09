//! cyclegan's change to candle-kernels' build: each kernel module (`src/*.cu`) becomes a
//! fatbin holding machine code (SASS) for every architecture in `CYCLEGAN_CUDA_ARCHS`
//! (compute capabilities, default `80 86 89 90`) and the PTX of the newest, which the driver
//! JIT-compiles only on a GPU newer than all of them. Upstream ships PTX for the build
//! machine's architecture alone: the driver then JIT-compiles every module on first use
//! (about 20 s for the ones a forward pass loads) and a GPU older than the build machine's
//! cannot run them at all.
//!
//! `quantized.cu` (5.7 MB of PTX, no op cyclegan uses) stays PTX for the oldest
//! architecture, so it costs no build time and still JIT-compiles if something loads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use cudaforge::Result;

const DEFAULT_ARCHS: &str = "80 86 89 90";

/// Modules that are only JIT-compiled PTX (see the module comment).
const PTX_ONLY: &[&str] = &["quantized"];

/// The architectures as numbers, checked.
fn archs() -> Vec<u32> {
    let text = std::env::var("CYCLEGAN_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.into());
    let mut v: Vec<u32> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_start_matches("sm_").parse().unwrap_or_else(|_| {
                panic!("CYCLEGAN_CUDA_ARCHS: {s:?} is not a compute capability like 90")
            })
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    assert!(!v.is_empty(), "CYCLEGAN_CUDA_ARCHS names no architecture");
    v
}

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return p.into();
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("bin/nvcc");
            if p.is_file() {
                return p;
            }
        }
    }
    "nvcc".into()
}

/// The `-gencode` arguments of a module.
fn gencode(name: &str, archs: &[u32]) -> Vec<String> {
    if PTX_ONLY.contains(&name) {
        let a = archs[0];
        return vec![format!("-gencode=arch=compute_{a},code=compute_{a}")];
    }
    let newest = *archs.last().unwrap();
    archs
        .iter()
        .map(|&a| {
            if a == newest {
                format!("-gencode=arch=compute_{a},code=[sm_{a},compute_{a}]")
            } else {
                format!("-gencode=arch=compute_{a},code=sm_{a}")
            }
        })
        .collect()
}

pub fn build(out_dir: &Path) -> Result<()> {
    println!("cargo::rerun-if-env-changed=CYCLEGAN_CUDA_ARCHS");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-changed=build_fatbins.rs");
    let archs = archs();
    let mut modules: Vec<PathBuf> = std::fs::read_dir("src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !(n.starts_with("moe_") || n.starts_with("mmq_") || n == "mmvq_gguf.cu")
        })
        .collect();
    modules.sort();
    let nvcc = nvcc();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (jobs / modules.len().max(1)).max(1);
    // One nvcc per module, all at once; nvcc's --threads spreads a module's architectures.
    // Headers count for every module: a newer one rebuilds all.
    let newest_header = std::fs::read_dir("src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cuh"))
        .filter_map(|p| p.metadata().and_then(|m| m.modified()).ok())
        .max();
    let children: Vec<_> = modules
        .iter()
        .filter_map(|src| {
            let name = src.file_stem().unwrap().to_string_lossy().into_owned();
            let out = out_dir.join(format!("{name}.fatbin"));
            let mut cmd = Command::new(&nvcc);
            cmd.arg("--fatbin")
                .args(gencode(&name, &archs))
                .args(["--default-stream", "per-thread"])
                .args(["--expt-relaxed-constexpr", "-std=c++17", "-O3"])
                .arg(format!("--threads={threads}"))
                .arg("-o")
                .arg(&out)
                .arg(src);
            if let Ok(ccbin) = std::env::var("NVCC_CCBIN") {
                cmd.arg("-allow-unsupported-compiler")
                    .args(["-ccbin", &ccbin]);
            }
            // Skipped when the fatbin was built by the same command from these sources:
            // nvcc takes minutes a module.
            let stamp = out_dir.join(format!("{name}.cmd"));
            let line = format!("{cmd:?}");
            let built = out.metadata().and_then(|m| m.modified()).ok();
            let inputs = src
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .max(newest_header);
            let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s == line)
                && built.is_some()
                && built >= inputs;
            if current {
                return None;
            }
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
            Some((src.clone(), stamp, line, child))
        })
        .collect();
    for (src, stamp, line, child) in children {
        let output = child.wait_with_output()?;
        assert!(
            output.status.success(),
            "nvcc failed on {}:\n{}\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(stamp, line)?;
    }
    let mut rs = String::new();
    for src in &modules {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        println!("cargo::rerun-if-changed={}", src.display());
        // A static, not a const: a const's bytes are copied into every place that uses
        // it (binary.fatbin, 8.9 MB, three times over).
        let len = std::fs::metadata(out_dir.join(format!("{name}.fatbin")))?.len();
        rs.push_str(&format!(
            "pub static {}: [u8; {len}] = *include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.fatbin\"));\n",
            name.to_uppercase()
        ));
    }
    let newest = archs.last().unwrap();
    let built: Vec<String> = archs.iter().map(|a| format!("sm_{a}")).collect();
    rs.push_str(&format!(
        "/// What the kernel modules hold: machine code for these architectures and PTX.\npub const BUILT_FOR: &str = \"{} + PTX compute_{newest}\";\n",
        built.join(" ")
    ));
    std::fs::write(out_dir.join("fatbins.rs"), rs)?;
    Ok(())
}
