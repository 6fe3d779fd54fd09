//! Shared helpers of the integration tests: where fixtures live, tensor comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// Fixtures copied into the project (random-weight models and their PyTorch outputs).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The variable `.ci/run` sets: with it, a test whose host tool is missing fails instead of
/// skipping, so a CI machine without the tools cannot report green.
pub const REQUIRE_HOSTS: &str = "CYCLEGAN_REQUIRE_HOSTS";

/// Whether missing host tools must fail the tests (`CYCLEGAN_REQUIRE_HOSTS=1`).
pub fn hosts_required() -> bool {
    std::env::var(REQUIRE_HOSTS).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Decides what a test does when a tool it needs is absent. `present` is the check's
/// result, `what` names the tool and how to install it. Returns true to go on. When the tool
/// is missing: panics if `CYCLEGAN_REQUIRE_HOSTS` is set, else prints a SKIPPED line that
/// `cargo test` shows even while it captures output, and returns false (the caller returns).
pub fn require(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if hosts_required() {
        panic!("{what} is missing, and {REQUIRE_HOSTS} is set: {test} cannot be skipped");
    }
    // Written to the stream directly: libtest captures only print!/eprint!.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {what} is missing (set {REQUIRE_HOSTS}=1 to make this a failure)"
    );
    false
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let p = dir.join(program);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Whether `pkg-config --exists` finds every package.
pub fn pkg_config_has(packages: &[&str]) -> bool {
    std::process::Command::new("pkg-config")
        .arg("--exists")
        .args(packages)
        .status()
        .is_ok_and(|s| s.success())
}

/// A file under `../shared`, present on developer machines and CI but not on every clone.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

pub fn load_tensors(path: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture loads")
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A scratch folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("cyclegan-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PNG holding only a signature and an IHDR that declares `w` x `h` RGB pixels.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    // A tiny, valid zlib stream: the decoder sees a complete header and one data chunk.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A smooth, deterministic RGB test picture (no photo data needed).
pub fn gradient_rgb(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            (((x + y) * 7) % 256) as u8,
        ])
    })
}

/// The cdylib cargo built for this test run. `cargo test` links it in `<target>/<profile>/deps`
/// beside the test binary and copies it up to `<profile>/` only on `cargo build`, so the
/// copy in `deps` is the fresh one.
pub fn built_library() -> PathBuf {
    let name = if cfg!(target_os = "macos") {
        "libcyclegan.dylib"
    } else {
        "libcyclegan.so"
    };
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let found = [deps, deps.parent().expect("profile directory")]
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists());
    let lib = found.unwrap_or_else(|| panic!("{name} not found next to {}", exe.display()));
    soname_link(&lib);
    lib
}

/// The library's SONAME (build.rs sets `libcyclegan.so.MAJOR` on ELF targets).
pub fn soname() -> Option<String> {
    (!cfg!(target_os = "macos"))
        .then(|| format!("libcyclegan.so.{}", env!("CARGO_PKG_VERSION_MAJOR")))
}

/// Programs linked to the library ask the loader for its SONAME, which cargo does not
/// create: a `libcyclegan.so.0 -> libcyclegan.so` link beside `lib` lets programs with an
/// rpath to that folder start. Safe to call from tests running at once.
pub fn soname_link(lib: &Path) {
    let Some(soname) = soname() else { return };
    let link = lib.with_file_name(&soname);
    let target = lib.file_name().expect("library file name");
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(target)) {
        return;
    }
    // Create under a unique name, then rename over: never a moment without the link.
    let tmp = lib.with_file_name(format!(".{soname}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("create the SONAME link");
    std::fs::rename(&tmp, &link).expect("place the SONAME link");
}

/// Where [`run_engine`]'s norms get their statistics (one [`Stats`] per image of a batch).
pub enum Norm<'a> {
    Measure,
    Record(&'a mut Vec<cyclegan::engine::NormStat>),
    Given(&'a [cyclegan::engine::NormStat]),
}

/// Runs `engine` over an NCHW tensor, one image at a time, as the pipeline does.
pub fn run_engine(engine: &dyn cyclegan::engine::Engine, x: &Tensor, mut norm: Norm) -> Tensor {
    use cyclegan::engine::Stats;
    let (n, c, h, w) = x.dims4().unwrap();
    assert_eq!(c, 3);
    let mut out = Vec::with_capacity(n * 3 * h * w);
    for i in 0..n {
        let planar: Vec<f32> = x
            .get(i)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let stats = match &mut norm {
            Norm::Measure => Stats::Measure,
            Norm::Record(v) => Stats::Record(v),
            Norm::Given(g) => Stats::Given(g),
        };
        out.extend(
            engine
                .forward(
                    &planar,
                    w,
                    h,
                    stats,
                    cyclegan::Precision::F32,
                    &mut |_, _| true,
                )
                .unwrap(),
        );
    }
    Tensor::from_vec(out, (n, 3, h, w), &Device::Cpu).unwrap()
}

/// The small random-weight generator of the fixtures: fast enough for CLI tests.
pub fn small_model() -> String {
    fixture("el_ngf8_b9.safetensors")
        .to_string_lossy()
        .into_owned()
}

/// Runs the `cyclegan` binary built for these tests.
pub fn cyclegan(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(args)
        .output()
        .expect("runs the binary")
}

/// A path as the CLI takes it.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
