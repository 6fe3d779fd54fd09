//! The GPU backend boundary without a GPU (issue #15): the backend crate built on candle's
//! CPU device (`cargo build -p cyclegan-backend-cuda`, which this test runs; set
//! `CYCLEGAN_TEST_BACKEND` to a built library to skip that) is loaded from a folder and
//! must give the built-in engine's pixels; a library stamped with another version, a
//! truncated one, one for another machine and a file that is no library are refused with
//! the file and the reason; an empty folder falls back to the CPU with one notice; and the
//! CLI and the C ABI keep working in every case.
//!
//! The loader looks once per process, so each case runs in a child process: the CLI, or
//! this test binary running one of its `#[ignore]`d `child_*` tests with the environment
//! of the case.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{fixture, gradient_rgb, TempDir};

const LIB: &str = "libcyclegan_backend_cuda.so";
const STAMP: &[u8] = b"cyclegan-backend-version=";

/// The test backend library, built once per run.
fn backend_library() -> &'static Path {
    static LIB_PATH: OnceLock<PathBuf> = OnceLock::new();
    LIB_PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CYCLEGAN_TEST_BACKEND") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/backends-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let target = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "cyclegan-backend-cuda",
            "--target-dir",
        ])
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .expect("run cargo build -p cyclegan-backend-cuda");
        assert!(
            status.success(),
            "cargo build -p cyclegan-backend-cuda failed"
        );
        let lib = profile_dir.join(LIB);
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
}

/// A folder holding the test backend under its file name, patched by `patch`.
fn backend_folder(tag: &str, patch: impl FnOnce(&mut Vec<u8>)) -> TempDir {
    let dir = TempDir::new(tag);
    let mut bytes = std::fs::read(backend_library()).unwrap();
    patch(&mut bytes);
    std::fs::write(dir.join(LIB), bytes).unwrap();
    dir
}

/// Rewrites every version stamp in a library to `version` (of the same length).
fn stamp_version(bytes: &mut [u8], version: &[u8]) {
    let ours = env!("CARGO_PKG_VERSION").as_bytes();
    assert_eq!(ours.len(), version.len());
    let mut found = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(STAMP.len()).position(|w| w == STAMP) {
        let v = i + at + STAMP.len();
        if bytes[v..].starts_with(ours) && bytes.get(v + ours.len()) == Some(&b';') {
            bytes[v..v + ours.len()].copy_from_slice(version);
            found += 1;
        }
        i = v;
    }
    assert!(found > 0, "no version stamp found in the backend library");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cyclegan"))
}

/// Runs `cmd` with the loader pointed at `dir` (and nowhere else).
fn with_backends(mut cmd: Command, dir: &Path, allow_cpu: bool) -> Output {
    cmd.env("CYCLEGAN_BACKEND_PATH", dir);
    if allow_cpu {
        cmd.env("CYCLEGAN_BACKEND_ALLOW_CPU", "1");
    } else {
        cmd.env_remove("CYCLEGAN_BACKEND_ALLOW_CPU");
    }
    cmd.output().unwrap()
}

/// Runs the `#[ignore]`d test `name` of this binary in a child process.
fn child(name: &str, dir: &Path, allow_cpu: bool, expect: &str) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CYCLEGAN_CHILD_EXPECT", expect);
    let out = with_backends(cmd, dir, allow_cpu);
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small picture and a small style (8 filters), so that candle's CPU device is quick.
fn small_case(dir: &TempDir) -> (PathBuf, PathBuf) {
    let input = dir.join("in.png");
    gradient_rgb(48, 40).save(&input).unwrap();
    (input, fixture("el_ngf8_b9.safetensors"))
}

/// Stylizes through the CLI: `--device` and the output file, and the run's output.
fn stylize(dir: &Path, device: &str, out_name: &str, allow_cpu: bool) -> (PathBuf, Output) {
    let work = TempDir::new("backends-stylize");
    let (input, model) = small_case(&work);
    let output =
        std::env::temp_dir().join(format!("cyclegan-be-{}-{out_name}", std::process::id()));
    let mut cmd = cli();
    // f32 everywhere: auto runs bf16 on CPUs with AMX, which the images are compared
    // against.
    cmd.args([
        "stylize",
        "--device",
        device,
        "--precision",
        "f32",
        "--overwrite",
    ])
    .arg("--model")
    .arg(&model)
    .arg(&input)
    .arg("-o")
    .arg(&output);
    let out = with_backends(cmd, dir, allow_cpu);
    (output, out)
}

/// The CLI, the C ABI and stylizing in a folder whose library is refused for `why`.
fn check_refused(dir: &TempDir, why: &str) {
    let (stdout, _) = text(&with_backends(
        {
            let mut c = cli();
            c.arg("backends");
            c
        },
        &dir.0,
        true,
    ));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("cuda"))
        .unwrap_or_else(|| panic!("no cuda row:\n{stdout}"));
    assert!(row.contains(LIB), "row names the file: {row}");
    assert!(row.contains("refused") && row.contains(why), "row: {row}");

    // --device cuda: an error naming the file and the reason.
    let (_, out) = stylize(&dir.0, "cuda", "refused-cuda.png", true);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(LIB) && stderr.contains(why), "{stderr}");

    // --device auto: the CPU, with one notice line that says why.
    let (output, out) = stylize(&dir.0, "auto", "refused-auto.png", true);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(output.exists());
    let _ = std::fs::remove_file(output);
    let notes: Vec<_> = stderr.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains(why) && notes[0].contains("running on the CPU"),
        "{stderr}"
    );

    // The C ABI says the same, and loads on the CPU.
    child("child_c_abi_refused", &dir.0, true, why);
}

#[test]
fn backend_gives_the_builtin_engines_pixels() {
    let dir = backend_folder("backends-good", |_| {});
    child("child_parity", &dir.0, true, "");

    // The CLI: `backends` lists it ready, and a stylize through it gives the CPU's image.
    let mut c = cli();
    c.arg("backends");
    let (stdout, _) = text(&with_backends(c, &dir.0, true));
    let row = stdout.lines().find(|l| l.starts_with("cuda")).unwrap();
    assert!(
        row.contains("ready") && row.contains(env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
    let (via_backend, out) = stylize(&dir.0, "cuda", "good-cuda.png", true);
    assert!(out.status.success(), "{}", text(&out).1);
    let (via_cpu, out) = stylize(&dir.0, "cpu", "good-cpu.png", true);
    assert!(out.status.success(), "{}", text(&out).1);
    let a = image::open(&via_backend).unwrap().to_rgb8();
    let b = image::open(&via_cpu).unwrap().to_rgb8();
    let worst = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap();
    assert!(worst <= 1, "8-bit outputs differ by {worst}");
    let _ = std::fs::remove_file(via_backend);
    let _ = std::fs::remove_file(via_cpu);
}

#[test]
fn a_cpu_build_is_not_picked_by_auto() {
    let dir = backend_folder("backends-nogpu", |_| {});
    let (output, out) = stylize(&dir.0, "auto", "nogpu-auto.png", false);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let _ = std::fs::remove_file(output);
    let notes: Vec<_> = stderr.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(notes[0].contains("without a GPU"), "{stderr}");
    // Nor by --device cuda unless asked to (CYCLEGAN_BACKEND_ALLOW_CPU=1).
    let (_, out) = stylize(&dir.0, "cuda", "nogpu-cuda.png", false);
    assert!(!out.status.success());
}

#[test]
fn another_version_is_refused() {
    let dir = backend_folder("backends-version", |b| stamp_version(b, b"9.9.9"));
    check_refused(&dir, "version 9.9.9");
}

#[test]
fn a_truncated_library_is_refused() {
    let dir = backend_folder("backends-truncated", |b| b.truncate(b.len() / 2));
    check_refused(&dir, "truncated");
}

#[test]
fn a_library_for_another_machine_is_refused() {
    // e_machine: AArch64 on x86-64, x86-64 elsewhere.
    let other: u16 = if cfg!(target_arch = "x86_64") {
        183
    } else {
        62
    };
    let dir = backend_folder("backends-foreign", |b| {
        b[18..20].copy_from_slice(&other.to_le_bytes())
    });
    let name = if other == 183 { "AArch64" } else { "x86-64" };
    check_refused(&dir, &format!("built for {name}"));
}

#[test]
fn a_file_that_is_no_library_is_refused() {
    let dir = TempDir::new("backends-garbage");
    std::fs::write(dir.join(LIB), vec![0x5au8; 4096]).unwrap();
    check_refused(&dir, "not an ELF");
}

#[test]
fn an_empty_folder_falls_back_to_the_cpu_with_a_notice() {
    let dir = TempDir::new("backends-empty");
    let (output, out) = stylize(&dir.0, "auto", "empty-auto.png", false);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let _ = std::fs::remove_file(output);
    let notes: Vec<_> = stderr.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains(LIB) && notes[0].contains("running on the CPU"),
        "{stderr}"
    );

    let (_, out) = stylize(&dir.0, "cuda", "empty-cuda.png", false);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(LIB) && stderr.contains("is not in"),
        "{stderr}"
    );

    let mut c = cli();
    c.arg("backends");
    let (stdout, _) = text(&with_backends(c, &dir.0, false));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("cuda") && l.contains("not found")),
        "{stdout}"
    );
    // Training asks for the same library: an error naming it, nothing written.
    let data = training_data(&dir);
    let run = dir.join("run");
    let out = train(&dir.0, &data, &run, "cuda", &["--iterations", "2"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(LIB), "{stderr}");
    assert!(!run.join("checkpoint.safetensors").exists());
    child("child_c_abi_missing", &dir.0, false, "");
}

/// `content/` and `style/` folders of small generated pictures of a few sizes (no photo
/// data), beside a folder for the run.
fn training_data(root: &TempDir) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("content"), root.join("style"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for (i, (w, h)) in [(40u32, 36u32), (36, 44), (44, 40)].into_iter().enumerate() {
        gradient_rgb(w, h)
            .save(a.join(format!("p{i}.png")))
            .unwrap();
        let stripes = image::RgbImage::from_fn(h, w, |x, y| {
            let v = (((x + 2 * y + i as u32) / 3) % 2 * 200 + 30) as u8;
            image::Rgb([v, 255 - v, 90])
        });
        stripes.save(b.join(format!("s{i}.png"))).unwrap();
    }
    (a, b)
}

/// `cyclegan train` of tiny networks (every layer type, seconds on the CPU) on `data`
/// into `out`, with the loader pointed at `dir` (a CPU build allowed). A resumed run
/// (`--resume` in `extra`) takes its settings from the checkpoint.
fn train(
    dir: &Path,
    data: &(PathBuf, PathBuf),
    out: &Path,
    device: &str,
    extra: &[&str],
) -> Output {
    let mut cmd = cli();
    cmd.arg("train").arg("--out").arg(out);
    if !extra.contains(&"--resume") {
        cmd.arg("--content")
            .arg(&data.0)
            .arg("--style")
            .arg(&data.1);
        cmd.args([
            "--size", "32", "--batch", "2", "--ngf", "4", "--blocks", "2",
        ]);
        cmd.args(["--ndf", "4", "--pool", "3", "--seed", "11"]);
    }
    cmd.args([
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--device",
        device,
    ]);
    cmd.args(extra);
    with_backends(cmd, dir, true)
}

/// Every tensor and metadata entry of two safetensors files, which must be equal bit for
/// bit: the run that wrote one is the run that wrote the other.
fn assert_same_safetensors(a: &Path, b: &Path) {
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (_, ma) = safetensors::SafeTensors::read_metadata(&ba).unwrap();
    let (_, mb) = safetensors::SafeTensors::read_metadata(&bb).unwrap();
    assert_eq!(
        ma.metadata(),
        mb.metadata(),
        "{} vs {}",
        a.display(),
        b.display()
    );
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&ba).unwrap(),
        safetensors::SafeTensors::deserialize(&bb).unwrap(),
    );
    let mut names = ta.names();
    names.sort();
    let mut names_b = tb.names();
    names_b.sort();
    assert_eq!(names, names_b);
    assert!(
        names.len() >= 10,
        "{}: {} tensors",
        a.display(),
        names.len()
    );
    for n in names {
        let (x, y) = (ta.tensor(n).unwrap(), tb.tensor(n).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{n}");
        assert!(
            x.data() == y.data(),
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn training_runs_in_the_backend_library_and_resumes_anywhere() {
    let dir = backend_folder("backends-train", |_| {});
    let data = training_data(&dir);
    let (lib_run, cpu_run) = (dir.join("run-lib"), dir.join("run-cpu"));

    // Four iterations through the library, four on the built-in trainer.
    let out = train(&dir.0, &data, &lib_run, "cuda", &["--iterations", "4"]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("with cuda backend on the candle CPU device"),
        "{stderr}"
    );
    let out = train(&dir.0, &data, &cpu_run, "cpu", &["--iterations", "4"]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("with cpu:"), "{stderr}");

    // The same files, bit for bit: checkpoint, both styles, the sample grids.
    for f in [
        "checkpoint.safetensors",
        "style.safetensors",
        "inverse.safetensors",
    ] {
        assert_same_safetensors(&lib_run.join(f), &cpu_run.join(f));
    }
    for f in ["samples/iter_0000002.png", "samples/iter_0000004.png"] {
        let (a, b) = (lib_run.join(f), cpu_run.join(f));
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{f}"
        );
    }

    // Each run resumes on the other side, and they stay equal.
    let out = train(
        &dir.0,
        &data,
        &lib_run,
        "cpu",
        &["--resume", "--iterations", "6"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let out = train(
        &dir.0,
        &data,
        &cpu_run,
        "cuda",
        &["--resume", "--iterations", "6"],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("from iteration 4"), "{stderr}");
    assert_same_safetensors(
        &lib_run.join("checkpoint.safetensors"),
        &cpu_run.join("checkpoint.safetensors"),
    );

    // Errors found in the library come back as the built-in trainer's: a run over an
    // existing one is refused, and the checkpoint is left alone.
    let before = std::fs::read(lib_run.join("checkpoint.safetensors")).unwrap();
    let out = train(&dir.0, &data, &lib_run, "cuda", &["--iterations", "4"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("already holds a training run"), "{stderr}");
    assert!(std::fs::read(lib_run.join("checkpoint.safetensors")).unwrap() == before);

    child("child_c_abi_trains", &dir.0, true, "");
}

/// What `progress` of `cg_trainer_run` counts and when it cancels.
struct Calls {
    seen: Vec<f32>,
    stop_at: usize,
}

unsafe extern "C" fn count_calls(user_data: *mut std::ffi::c_void, fraction: f32) -> bool {
    // SAFETY: `user_data` is the `Calls` the test passes with this function.
    let calls = unsafe { &mut *(user_data as *mut Calls) };
    calls.seen.push(fraction);
    calls.seen.len() < calls.stop_at
}

#[test]
#[ignore = "run by training_runs_in_the_backend_library_and_resumes_anywhere in a child process"]
fn child_c_abi_trains() {
    use cyclegan::capi::options::*;
    use cyclegan::capi::status::*;
    use cyclegan::capi::train::*;
    let dir = TempDir::new("backends-c-train");
    let data = training_data(&dir);
    let settings = |out: &str, resume: bool| {
        let p = |p: &Path| p.to_str().unwrap().to_string();
        format!(
            r#"{{"content": "{}", "style": "{}", "out": "{}", "iterations": 3, "size": 32,
            "batch": 2, "ngf": 4, "blocks": 2, "ndf": 4, "pool": 3, "seed": 5,
            "checkpoint_every": 100, "resume": {resume}}}"#,
            p(&data.0),
            p(&data.1),
            p(&dir.join(out))
        )
    };

    // The Rust API opens the run in the library: no networks on this side.
    let lib = cyclegan::train::RunSettings::from_json(&settings("probe", false))
        .unwrap()
        .open(cyclegan::Backend::Cuda)
        .unwrap();
    assert!(lib.describe().contains("test build"), "{}", lib.describe());
    assert!(lib.state().is_none());
    assert_eq!(lib.data_sizes(), (3, 3));
    // A panic in the progress callback comes back as that panic, on this side.
    let mut lib = lib;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = lib.run(1, &mut |_| panic!("callback panic"));
    }));
    assert!(r.is_err());
    drop(lib);

    // The same calls on both sides; the library's run is cancelled once on the way.
    let run = |backend: u32, out: &str| -> (Vec<f32>, cg_train_losses) {
        let mut opts = std::ptr::null_mut();
        assert_eq!(cg_options_new(&mut opts), CG_OK);
        assert_eq!(cg_options_set_backend(opts, backend), CG_OK);
        let json = std::ffi::CString::new(settings(out, false)).unwrap();
        let mut t = std::ptr::null_mut();
        assert_eq!(cg_trainer_new(json.as_ptr(), opts, &mut t), CG_OK);
        assert_eq!(cg_trainer_total_iterations(t), 3);
        let mut calls = Calls {
            seen: Vec::new(),
            stop_at: usize::MAX,
        };
        let data = &mut calls as *mut Calls as *mut std::ffi::c_void;
        assert_eq!(cg_trainer_run(t, 1, Some(count_calls), data), CG_OK);
        assert_eq!(cg_trainer_iteration(t), 1);
        calls.stop_at = calls.seen.len() + 1;
        assert_eq!(
            cg_trainer_run(t, u64::MAX, Some(count_calls), data),
            CG_ERR_CANCELLED
        );
        assert_eq!(cg_trainer_iteration(t), 2);
        calls.stop_at = usize::MAX;
        assert_eq!(cg_trainer_run(t, u64::MAX, Some(count_calls), data), CG_OK);
        assert_eq!(cg_trainer_iteration(t), 3);
        let mut losses = cg_train_losses::default();
        assert_eq!(cg_trainer_last_losses(t, &mut losses), CG_OK);
        let style =
            std::ffi::CString::new(dir.join(out).join("mine.safetensors").to_str().unwrap())
                .unwrap();
        assert_eq!(cg_trainer_save_style(t, style.as_ptr()), CG_OK);
        cg_trainer_free(t);
        cg_options_free(opts);
        (calls.seen, losses)
    };
    let (seen_lib, losses_lib) = run(CG_BACKEND_CUDA, "c-lib");
    let (seen_cpu, losses_cpu) = run(CG_BACKEND_CPU, "c-cpu");
    assert_eq!(seen_lib, seen_cpu);
    assert_eq!(seen_lib, [1.0 / 3.0, 2.0 / 3.0, 1.0]);
    assert_eq!(losses_lib.g.to_bits(), losses_cpu.g.to_bits());
    assert!(losses_lib.g.is_finite() && losses_lib.d_b > 0.0);
    for f in [
        "checkpoint.safetensors",
        "style.safetensors",
        "mine.safetensors",
    ] {
        assert_same_safetensors(&dir.join("c-lib").join(f), &dir.join("c-cpu").join(f));
    }

    // Bad settings are refused the same way on both sides, nothing created.
    let missing = format!(
        r#"{{"content": "{}", "style": "{}", "out": "{}", "iterations": 3}}"#,
        dir.join("no-such-folder").display(),
        data.1.display(),
        dir.join("c-bad").display()
    );
    let json = std::ffi::CString::new(missing).unwrap();
    let mut statuses = Vec::new();
    for backend in [CG_BACKEND_CUDA, CG_BACKEND_CPU] {
        let mut opts = std::ptr::null_mut();
        assert_eq!(cg_options_new(&mut opts), CG_OK);
        assert_eq!(cg_options_set_backend(opts, backend), CG_OK);
        let mut t = std::ptr::null_mut();
        statuses.push(cg_trainer_new(json.as_ptr(), opts, &mut t));
        assert!(t.is_null());
        // SAFETY: the library's own NUL-terminated message.
        let msg = unsafe { std::ffi::CStr::from_ptr(cg_last_error_message()) };
        assert!(msg.to_string_lossy().contains("no-such-folder"), "{msg:?}");
        cg_options_free(opts);
    }
    assert_ne!(statuses[0], CG_OK);
    assert_eq!(statuses[0], statuses[1]);
    assert!(!dir.join("c-bad").exists());
}

// ---- run in child processes, with the environment of a case ----

fn planar(w: usize, h: usize) -> Vec<f32> {
    (0..3 * w * h)
        .map(|i| ((i * 37 % 200) as f32 / 100.0) - 1.0)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
#[ignore = "run by backend_gives_the_builtin_engines_pixels in a child process"]
fn child_parity() {
    use cyclegan::engine::{NormStat, Stats};
    use cyclegan::{Backend, Error, Model, Precision};
    let style = fixture("el_ngf8_b9.safetensors");
    let style = style.to_str().unwrap();
    let dynamic = Model::load(style, Backend::Cuda).unwrap();
    let builtin = Model::load(style, Backend::Cpu).unwrap();
    let (d, c) = (dynamic.engine(), builtin.engine());
    assert!(d.describe().contains("test build"), "{}", d.describe());
    assert_eq!(d.config(), c.config());
    assert!(d.memory_for(64, 64) > 0 && d.resident_memory() > 0);

    let (w, h) = (40, 32);
    let x = planar(w, h);
    let run = |e: &dyn cyclegan::engine::Engine, stats: Stats| {
        e.forward(&x, w, h, stats, Precision::F32, &mut |_, _| true)
            .unwrap()
    };
    // Measured statistics.
    let diff = max_diff(&run(d, Stats::Measure), &run(c, Stats::Measure));
    assert!(diff <= 1e-4, "measured: max abs diff {diff}");
    // The precision crosses too: bf16 runs the backend's mixed-precision network, close to
    // f32 but not equal (tests/precision.rs bounds it on photos).
    let bf16 = d
        .forward(&x, w, h, Stats::Measure, Precision::Bf16, &mut |_, _| true)
        .unwrap();
    let diff = max_diff(&bf16, &run(d, Stats::Measure));
    assert!(
        diff > 0.0 && diff <= 0.1,
        "bf16 against f32: max abs diff {diff}"
    );
    // Recorded statistics: the same numbers, and the same pixels when given back.
    let (mut rd, mut rc): (Vec<NormStat>, Vec<NormStat>) = (Vec::new(), Vec::new());
    let yd = run(d, Stats::Record(&mut rd));
    let yc = run(c, Stats::Record(&mut rc));
    assert!(max_diff(&yd, &yc) <= 1e-4);
    assert_eq!(rd.len(), rc.len());
    // Relative: variances of deep layers run into the hundreds.
    let rel = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f32::max)
    };
    for (i, (a, b)) in rd.iter().zip(&rc).enumerate() {
        let (m, v) = (rel(&a.mean, &b.mean), rel(&a.var, &b.var));
        assert!(m <= 1e-4 && v <= 1e-4, "norm {i}: mean {m}, var {v}");
    }
    let diff = max_diff(&run(d, Stats::Given(&rc)), &run(c, Stats::Given(&rc)));
    assert!(diff <= 1e-4, "given: max abs diff {diff}");

    // Progress: every layer reported in order; false cancels.
    let mut seen = Vec::new();
    d.forward(
        &x,
        w,
        h,
        Stats::Measure,
        Precision::F32,
        &mut |done, total| {
            seen.push((done, total));
            true
        },
    )
    .unwrap();
    assert!(!seen.is_empty() && seen.windows(2).all(|p| p[0].0 < p[1].0));
    assert_eq!(seen.last().unwrap().0, seen.last().unwrap().1);
    let r = d.forward(&x, w, h, Stats::Measure, Precision::F32, &mut |done, _| {
        done < 3
    });
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    // A panic in the callback comes back as that panic, on this side of the boundary.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = d.forward(&x, w, h, Stats::Measure, Precision::F32, &mut |_, _| {
            panic!("callback panic")
        });
    }));
    assert!(r.is_err());
    // Bad arguments are errors from either side, never a crash.
    let bad = vec![NormStat {
        mean: vec![0.0; 3],
        var: vec![1.0; 3],
    }];
    assert!(d
        .forward(&x, w, h, Stats::Given(&bad), Precision::F32, &mut |_, _| {
            true
        })
        .is_err());
    assert!(d
        .forward(
            &x[1..],
            w,
            h,
            Stats::Measure,
            Precision::F32,
            &mut |_, _| true
        )
        .is_err());

    // The whole pipeline through the backend, against the built-in engine.
    let img = gradient_rgb(52, 44);
    let mut px = cyclegan::Pixels::new(52, 44, 3, cyclegan::BitDepth::Eight).unwrap();
    for (d, s) in px.data_mut().iter_mut().zip(img.as_raw()) {
        *d = *s as f32 / 255.0;
    }
    // f32 on both sides: auto runs bf16 where the CPU has AMX, and that path has its own
    // bounds (tests/precision.rs).
    let opts = cyclegan::StylizeOptions {
        precision: Precision::F32,
        ..Default::default()
    };
    let a = cyclegan::stylize(&dynamic, &px, &opts, &mut |_| true).unwrap();
    let b = cyclegan::stylize(&builtin, &px, &opts, &mut |_| true).unwrap();
    let diff = max_diff(a.data(), b.data());
    assert!(diff <= 1e-4, "stylized pixels differ by {diff}");

    // The C ABI reports it available.
    use cyclegan::capi::options::*;
    assert!(cg_backend_is_available(CG_BACKEND_CUDA));
    assert!(describe(CG_BACKEND_CUDA).contains("ready"));
}

/// `cg_backend_describe` as a String, checking its snprintf contract on the way.
fn describe(backend: u32) -> String {
    use cyclegan::capi::options::cg_backend_describe;
    let n = cg_backend_describe(backend, std::ptr::null_mut(), 0);
    let mut buf = vec![0x7f_u8; n + 1];
    assert_eq!(
        cg_backend_describe(backend, buf.as_mut_ptr().cast(), buf.len()),
        n
    );
    assert_eq!(buf[n], 0);
    let mut small = [0x7f_u8; 8];
    assert_eq!(
        cg_backend_describe(backend, small.as_mut_ptr().cast(), 8),
        n
    );
    assert_eq!(small[7], 0);
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn c_abi_falls_back(expect: &str) {
    use cyclegan::capi::model::*;
    use cyclegan::capi::options::*;
    use cyclegan::capi::status::*;
    let expect = std::env::var("CYCLEGAN_CHILD_EXPECT").unwrap_or_else(|_| expect.into());
    assert!(!cg_backend_is_available(CG_BACKEND_CUDA));
    assert!(cg_backend_is_available(CG_BACKEND_CPU));
    let cuda = describe(CG_BACKEND_CUDA);
    assert!(cuda.contains(LIB) && cuda.contains(&expect), "{cuda}");
    assert!(describe(CG_BACKEND_CPU).contains("ready"));
    assert!(describe(CG_BACKEND_AUTO).contains("cpu"));
    assert!(describe(99).contains("99"));
    // Loading: CUDA is an error naming the file, auto loads on the CPU.
    let style =
        std::ffi::CString::new(fixture("el_ngf8_b9.safetensors").to_str().unwrap()).unwrap();
    let mut opts = std::ptr::null_mut();
    assert_eq!(cg_options_new(&mut opts), CG_OK);
    assert_eq!(cg_options_set_backend(opts, CG_BACKEND_CUDA), CG_OK);
    let mut model = std::ptr::null_mut();
    assert_eq!(
        cg_model_load(style.as_ptr(), opts, &mut model),
        CG_ERR_BACKEND_UNAVAILABLE
    );
    assert!(model.is_null());
    // SAFETY: the library's own NUL-terminated message.
    let msg = unsafe { std::ffi::CStr::from_ptr(cg_last_error_message()) };
    assert!(msg.to_string_lossy().contains(LIB), "{msg:?}");
    assert_eq!(cg_options_set_backend(opts, CG_BACKEND_AUTO), CG_OK);
    assert_eq!(cg_model_load(style.as_ptr(), opts, &mut model), CG_OK);
    cg_model_free(model);
    // Training on CUDA is the same error; the settings are not even looked at.
    assert_eq!(cg_options_set_backend(opts, CG_BACKEND_CUDA), CG_OK);
    let json = std::ffi::CString::new(r#"{"out": "never-made"}"#).unwrap();
    let mut trainer = std::ptr::null_mut();
    assert_eq!(
        cyclegan::capi::train::cg_trainer_new(json.as_ptr(), opts, &mut trainer),
        CG_ERR_BACKEND_UNAVAILABLE
    );
    assert!(trainer.is_null());
    assert!(!Path::new("never-made").exists());
    cg_options_free(opts);
}

#[test]
#[ignore = "run by the refusal tests in a child process"]
fn child_c_abi_refused() {
    c_abi_falls_back("refused");
}

#[test]
#[ignore = "run by an_empty_folder_falls_back_to_the_cpu_with_a_notice in a child process"]
fn child_c_abi_missing() {
    c_abi_falls_back("is not in");
}

#[test]
fn versions_move_together() {
    // The loader refuses a backend whose version differs: the crates are released together.
    let read = |p: &str| {
        let s = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap();
        s.lines()
            .find(|l| l.starts_with("version = "))
            .unwrap()
            .to_string()
    };
    let root = read("Cargo.toml");
    assert_eq!(read("backends/api/Cargo.toml"), root);
    assert_eq!(read("backends/cuda/Cargo.toml"), root);
}

#[test]
#[cfg(target_os = "linux")]
fn the_main_library_and_cli_link_no_gpu_library() {
    if !common::require(common::on_path("ldd"), "ldd (libc-bin)") {
        return;
    }
    let gpu = ["cuda", "cublas", "curand", "cudnn", "nvrtc", "nvidia"];
    for file in [
        PathBuf::from(env!("CARGO_BIN_EXE_cyclegan")),
        common::built_library(),
    ] {
        let out = Command::new("ldd").arg(&file).output().unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            !gpu.iter().any(|g| listed.contains(g)),
            "{} links a GPU library:\n{listed}",
            file.display()
        );
    }
}
