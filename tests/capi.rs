//! The C ABI as C and C++ callers see it: the programs in `tests/c` are compiled against
//! `include/cyclegan.h` with warnings as errors, linked to the `libcyclegan` cdylib that
//! `cargo test` has just built, and run — natively, and under valgrind.
//!
//! Needs `cc` and `c++` on PATH. Without valgrind, nm or the pinned cbindgen the tests that
//! need them skip with a SKIPPED line, or fail when `CYCLEGAN_REQUIRE_HOSTS=1` (`.ci/run`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::fixture;

const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wpedantic",
    "-Wstrict-prototypes",
    "-g",
];
const CXX_FLAGS: &[&str] = &[
    "-x",
    "c++",
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wpedantic",
    "-g",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A private directory holding the cdylib built for this test run, linked (or copied) from
/// where cargo put it: the test binary lives in `<target>/<profile>/deps` and cargo links the
/// library there. A private link keeps the programs on this build even if another checkout
/// sharing the target directory rebuilds the library while the tests run.
fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let built = common::built_library();
        let name = built.file_name().expect("library file name");
        let dir = scratch_dir("capi-lib");
        let private = dir.join(name);
        let _ = std::fs::remove_file(&private);
        if std::fs::hard_link(&built, &private).is_err() {
            std::fs::copy(&built, &private).expect("copy the library");
        }
        // The programs ask for the SONAME (libcyclegan.so.0).
        common::soname_link(&private);
        dir
    })
    .clone()
}

/// A scratch directory of this checkout: tests running in parallel, or other checkouts
/// sharing the target directory, never share a file.
fn scratch_dir(name: &str) -> PathBuf {
    let checkout = root()
        .to_string_lossy()
        .bytes()
        .fold(5381u64, |h, b| h.wrapping_mul(33) ^ u64::from(b));
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{checkout:016x}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compiles `source` (C, or C++ for `.cpp`) into an executable linked to the library, in
/// scratch directory `dir`.
fn build(source: &str, dir: &str) -> PathBuf {
    let out_dir = scratch_dir(dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let src = root().join("tests/c").join(source);
    let exe = out_dir.join(Path::new(source).file_stem().unwrap());
    let cpp = source.ends_with(".cpp");
    let libs = lib_dir();
    let out = Command::new(if cpp { "c++" } else { "cc" })
        .args(if cpp { CXX_FLAGS } else { C_FLAGS })
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&libs)
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .args(["-lcyclegan", "-lpthread", "-lm"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the {} compiler: {e}",
                if cpp { "C++" } else { "C" }
            )
        });
    assert!(
        out.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a test program, optionally under valgrind, and returns its stdout after checking
/// that it exited 0 and printed its `ok` line.
fn run(exe: &Path, args: &[&str], valgrind: bool) -> String {
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,possible",
            "--quiet",
        ])
        .arg(format!(
            "--suppressions={}",
            root().join("tests/c/valgrind.supp").display()
        ))
        .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    // cargo's library path lists the profile directory, whose copy of the library may be
    // another checkout's; the programs find theirs through their rpath.
    let out = cmd
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYLD_LIBRARY_PATH")
        .output()
        .expect("test program runs");
    let report = show(&name, &out);
    eprintln!("{report}");
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains(&format!("{name}: ok")), "{report}");
    stdout
}

fn small_model() -> String {
    fixture("el_ngf8_b9.safetensors").display().to_string()
}

fn have_valgrind() -> bool {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::require(found, "valgrind (Debian: valgrind)")
}

#[test]
fn c_api_basics() {
    let exe = build("test_api.c", "capi");
    run(
        &exe,
        &[
            &small_model(),
            &scratch_dir("capi-api").display().to_string(),
        ],
        false,
    );
}

#[test]
fn c_stylize() {
    let exe = build("test_stylize.c", "capi");
    run(&exe, &[&small_model()], false);
}

#[test]
fn c_threads_share_one_model() {
    let exe = build("test_threads.c", "capi");
    run(&exe, &[&small_model()], false);
}

/// The trainer from C: bad settings, cancel + resume in a new handle == an uninterrupted run,
/// exported styles load. The folders hold a few generated pictures (no photos needed).
#[test]
fn c_trains_and_resumes() {
    let dir = scratch_dir("capi-train");
    let _ = std::fs::remove_dir_all(&dir);
    let (content, style) = (dir.join("content"), dir.join("style"));
    for d in [&content, &style] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..3u32 {
        common::gradient_rgb(40 + 4 * i, 44)
            .save(content.join(format!("c{i}.png")))
            .unwrap();
        image::RgbImage::from_fn(44, 40 + 4 * i, |x, y| {
            image::Rgb([((x / 3 + i) % 2 * 200) as u8, (y * 5) as u8, 90])
        })
        .save(style.join(format!("s{i}.png")))
        .unwrap();
    }
    let exe = build("test_train.c", "capi");
    let arg = |p: &Path| p.display().to_string();
    run(&exe, &[&arg(&content), &arg(&style), &arg(&dir)], false);
}

#[test]
fn c_stress_eight_threads_share_one_model() {
    let exe = build("test_stress.c", "capi");
    run(&exe, &[&small_model()], false);
}

#[test]
fn c_abuse_matrix_gives_documented_statuses() {
    let exe = build("test_abuse.c", "capi");
    run(
        &exe,
        &[
            &small_model(),
            &scratch_dir("capi-abuse").display().to_string(),
        ],
        false,
    );
}

#[test]
fn cxx_uses_the_header() {
    let exe = build("header_cxx.cpp", "capi");
    run(&exe, &[&small_model()], false);
}

#[test]
fn doc_example_compiles_runs_and_is_in_the_docs() {
    let exe = build("example.c", "capi");
    // The shipped style, as the documentation shows it.
    let out = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show("example", &out));
    let example = std::fs::read_to_string(root().join("tests/c/example.c")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/c-api.md")).unwrap();
    assert!(
        doc.contains(&format!("```c\n{example}```")),
        "docs/c-api.md must quote tests/c/example.c verbatim"
    );
}

#[test]
fn c_tests_under_valgrind() {
    if !have_valgrind() {
        return;
    }
    let model = small_model();
    let api = build("test_api.c", "capi-vg");
    // The embedded Monet model is skipped: loading it under valgrind takes minutes.
    run(
        &api,
        &[
            &model,
            &scratch_dir("capi-api-vg").display().to_string(),
            "--no-shipped",
        ],
        true,
    );
    // --quick: each code path once; under valgrind every stylize call takes seconds.
    run(
        &build("test_stylize.c", "capi-vg"),
        &[&model, "--quick"],
        true,
    );
    run(
        &build("test_threads.c", "capi-vg"),
        &[&model, "--quick"],
        true,
    );
    run(
        &build("test_stress.c", "capi-vg"),
        &[&model, "--quick"],
        true,
    );
    // --no-freed: the use-after-free safeguard reads freed memory on purpose.
    run(
        &build("test_abuse.c", "capi-vg"),
        &[
            &model,
            &scratch_dir("capi-abuse-vg").display().to_string(),
            "--no-freed",
        ],
        true,
    );
}

#[test]
fn header_matches_a_fresh_generation() {
    let out = Command::new(root().join("scripts/check-header.sh"))
        .output()
        .expect("run scripts/check-header.sh");
    match out.status.code() {
        Some(0) => {}
        // The pinned cbindgen is not installed here (.ci/run installs it).
        Some(2) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            common::require(
                false,
                "cbindgen 0.29.4 (cargo install cbindgen --version 0.29.4)",
            );
        }
        _ => panic!("{}", show("check-header.sh", &out)),
    }
}

#[test]
fn library_exports_exactly_the_declared_functions() {
    let header = std::fs::read_to_string(root().join("include/cyclegan.h")).unwrap();
    let mut declared: Vec<&str> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("typedef") && !l.starts_with('#'))
        .filter_map(|l| {
            let name = l.split('(').next()?.rsplit([' ', '*']).next()?;
            (l.contains('(') && name.starts_with("cg_")).then_some(name)
        })
        .collect();
    declared.sort_unstable();
    assert!(declared.len() >= 20, "{declared:?}");

    let lib = lib_dir().join(if cfg!(target_os = "macos") {
        "libcyclegan.dylib"
    } else {
        "libcyclegan.so"
    });
    if !common::require(common::on_path("nm"), "nm (Debian: binutils)") {
        return;
    }
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "{}", show("nm", &out));
    let symbols = String::from_utf8_lossy(&out.stdout);
    let mut exported: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("cg_"))
        .collect();
    exported.sort_unstable();
    assert_eq!(
        exported, declared,
        "exported cg_ symbols vs header declarations"
    );
}
