//! Every build: gives the shared library (cdylib) the SONAME `libcyclegan.so.MAJOR` on ELF
//! targets, MAJOR being Cargo.toml's major version, so programs linked with `-lcyclegan` ask
//! for `libcyclegan.so.0` and the next incompatible release can sit beside this one
//! (scripts/install-lib.sh installs the usual `libcyclegan.so -> .so.0 -> .so.0.x.y` links).
//!
//! Only for GPU builds (`cuda` feature):
//! - compiles the fused kernels (src/nn/fused.cu) with nvcc (`NVCC`, else
//!   `$CUDA_HOME/bin/nvcc`, else `nvcc` on PATH) into a fatbin: machine code for the
//!   compute capabilities in `CYCLEGAN_CUDA_ARCHS` (default `80 86 89 90`, as candle's
//!   kernels in third_party/candle-kernels) and PTX of the newest, so the driver loads it
//!   without JIT-compiling on those GPUs;
//! - for builds that must start without the CUDA libraries
//!   (scripts/build-cuda-portable.sh): when `CYCLEGAN_CUDART_STATIC` names
//!   `libcudart_static.a`, the `-lcudart` that candle-kernels asks for finds a linker
//!   script of that name which pulls the static runtime in instead, so the binary does not
//!   list libcudart.so as NEEDED.
//!
//! Nothing else changes for CPU builds.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CYCLEGAN_CUDART_STATIC");
    println!("cargo:rerun-if-env-changed=CYCLEGAN_NO_EMBEDDED_STYLES");
    println!("cargo:rustc-check-cfg=cfg(cyclegan_no_embedded_styles)");
    if std::env::var_os("CYCLEGAN_NO_EMBEDDED_STYLES").is_some_and(|v| v == "1") {
        // src/styles.rs: no shipped style compiled in (scripts/gpu-check.sh pack).
        println!("cargo:rustc-cfg=cyclegan_no_embedded_styles");
    }
    set_soname();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    compile_fused_kernels();
    let Some(archive) = std::env::var_os("CYCLEGAN_CUDART_STATIC") else {
        return;
    };
    let archive = PathBuf::from(archive);
    assert!(
        archive.is_file(),
        "CYCLEGAN_CUDART_STATIC={} is not a file",
        archive.display()
    );
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("cudart-static");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/cudart-static");
    // The static runtime needs libdl, libpthread and librt (part of libc since glibc 2.34).
    std::fs::write(
        dir.join("libcudart.so"),
        format!("INPUT({} -ldl -lpthread -lrt)\n", archive.display()),
    )
    .expect("write the cudart linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// `-Wl,-soname,libcyclegan.so.MAJOR` for the cdylib on ELF targets (not for the rlib,
/// the static library, the CLI or test programs).
fn set_soname() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos"
    );
    if elf {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcyclegan.so.{major}");
    }
}

fn compile_fused_kernels() {
    const SRC: &str = "src/nn/fused.cu";
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CUDA_HOME")
                .map(|h| PathBuf::from(h).join("bin/nvcc"))
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    println!("cargo:rerun-if-env-changed=CYCLEGAN_CUDA_ARCHS");
    let archs = std::env::var("CYCLEGAN_CUDA_ARCHS").unwrap_or_else(|_| "80 86 89 90".into());
    let mut archs: Vec<u32> = archs
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_start_matches("sm_").parse().unwrap_or_else(|_| {
                panic!("CYCLEGAN_CUDA_ARCHS: {s:?} is not a compute capability like 90")
            })
        })
        .collect();
    archs.sort_unstable();
    archs.dedup();
    let newest = *archs
        .last()
        .expect("CYCLEGAN_CUDA_ARCHS names no architecture");
    let gencode = archs.iter().map(|&a| {
        if a == newest {
            format!("-gencode=arch=compute_{a},code=[sm_{a},compute_{a}]")
        } else {
            format!("-gencode=arch=compute_{a},code=sm_{a}")
        }
    });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("fused.fatbin");
    let status = std::process::Command::new(&nvcc)
        .args(["--fatbin", "-O3"])
        .args(gencode)
        .arg("-o")
        .arg(&out)
        .arg(SRC)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {} (set NVCC or CUDA_HOME): {e}", nvcc.display()));
    assert!(status.success(), "{} failed on {SRC}", nvcc.display());
}
