//! Only for GPU builds that must start without the CUDA libraries
//! (scripts/build-cuda-portable.sh): when `CYCLEGAN_CUDART_STATIC` names
//! `libcudart_static.a`, the `-lcudart` that candle-kernels asks for finds a linker script
//! of that name which pulls the static runtime in instead, so the binary does not list
//! libcudart.so as NEEDED. Every other build is untouched.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CYCLEGAN_CUDART_STATIC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
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
