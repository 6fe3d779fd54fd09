//! C and C++ projects consuming an installed libcyclegan the way the docs tell them to:
//! `scripts/install-lib.sh --from` installs the libraries this test run built into a scratch
//! prefix, then
//! - the installed layout: SONAME, links, stripped libraries, pkg-config and CMake files;
//! - a C program (tests/c/example.c) built with `pkg-config cyclegan` (shared) and
//!   `pkg-config cyclegan-static` (static: no libcyclegan in NEEDED);
//! - a C++17 program using include/cyclegan.hpp (tests/consumer), built by CMake through
//!   `find_package(cyclegan CONFIG)`, shared and static, and run under valgrind.
//!
//! Needs cc, c++, pkg-config, cmake, readelf, strip and valgrind; a missing one skips with
//! a SKIPPED line, or fails when `CYCLEGAN_REQUIRE_HOSTS=1` (`.ci/run` sets it).
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{fixture, on_path, require};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(out.status.success(), "{}", show(what, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A scratch folder of this checkout and test binary.
fn scratch(name: &str) -> PathBuf {
    let checkout = root()
        .to_string_lossy()
        .bytes()
        .fold(5381u64, |h, b| h.wrapping_mul(33) ^ u64::from(b));
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("consumers-{name}-{checkout:016x}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tools(extra: &[&str]) -> bool {
    ["cc", "c++", "strip", "objcopy", "readelf", "pkg-config"]
        .iter()
        .chain(extra)
        .all(|t| {
            require(
                on_path(t),
                &format!("{t} (Debian: gcc g++ binutils pkg-config cmake valgrind)"),
            )
        })
}

/// The prefix that install-lib.sh filled from this run's libraries (once per test binary).
fn prefix() -> PathBuf {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let built = common::built_library();
            let dir = built.parent().unwrap();
            assert!(
                dir.join("libcyclegan.a").is_file(),
                "cargo did not build libcyclegan.a beside {}",
                built.display()
            );
            let prefix = scratch("prefix");
            // Debug info split off, so valgrind names the frames its suppressions match.
            ok(
                "scripts/install-lib.sh",
                Command::new("sh")
                    .arg(root().join("scripts/install-lib.sh"))
                    .arg("--from")
                    .arg(dir)
                    .arg(&prefix)
                    .env("CYCLEGAN_SPLIT_DEBUG", "1"),
            );
            prefix
        })
        .clone()
}

fn readelf(args: &[&str], file: &Path) -> String {
    ok("readelf", Command::new("readelf").args(args).arg(file))
}

fn needed(exe: &Path) -> Vec<String> {
    readelf(&["-d"], exe)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    ok(
        "pkg-config",
        Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

fn small_model() -> String {
    fixture("el_ngf8_b9.safetensors").display().to_string()
}

/// Runs a built program with a clean loader path (cargo's would find the test build).
fn run(exe: &Path, args: &[&str], ld_library_path: Option<&Path>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYLD_LIBRARY_PATH");
    if let Some(p) = ld_library_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    cmd.output().expect("run the program")
}

#[test]
fn installed_libraries_have_a_soname_links_and_no_debug_info() {
    if !tools(&[]) {
        return;
    }
    let lib = prefix().join("lib");
    let real = lib.join(format!("libcyclegan.so.{}", version()));
    let soname = common::soname().unwrap();
    assert!(real.is_file(), "{} is missing", real.display());
    assert!(
        readelf(&["-d"], &real).contains(&format!("Library soname: [{soname}]")),
        "{} has no SONAME {soname}",
        real.display()
    );
    assert_eq!(
        std::fs::read_link(lib.join(&soname)).unwrap(),
        Path::new(real.file_name().unwrap())
    );
    assert_eq!(
        std::fs::read_link(lib.join("libcyclegan.so")).unwrap(),
        Path::new(&soname)
    );
    for file in [real.clone(), lib.join("libcyclegan.a")] {
        // Section names only: code sections are named for their functions, and some
        // function names contain ".debug_" (abi_stable's `vtable::debug_impl_details`).
        let sections = readelf(&["-S", "-W"], &file);
        let debug = sections
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest.trim_start()))
            .find(|name| name.starts_with(".debug_"));
        assert!(
            debug.is_none(),
            "{} still has debug sections ({debug:?})",
            file.display()
        );
    }
    // CYCLEGAN_SPLIT_DEBUG=1 kept the symbols beside it, linked by name.
    let debug = lib
        .join(".debug")
        .join(format!("libcyclegan.so.{}.debug", version()));
    assert!(debug.is_file(), "{} is missing", debug.display());
    assert!(
        readelf(&["-S", "-W"], &real).contains(".gnu_debuglink"),
        "no debug link"
    );
    // The export list survives stripping.
    let dynsym = readelf(&["--dyn-syms", "-W"], &real);
    assert!(dynsym.contains("cg_model_stylize"), "cg_ symbols lost");
    // Headers, pkg-config and CMake files.
    for f in [
        "include/cyclegan.h",
        "include/cyclegan.hpp",
        "lib/pkgconfig/cyclegan.pc",
        "lib/pkgconfig/cyclegan-static.pc",
        "lib/cmake/cyclegan/cycleganConfig.cmake",
        "lib/cmake/cyclegan/cycleganConfigVersion.cmake",
    ] {
        assert!(prefix().join(f).is_file(), "{f} was not installed");
    }
    let size = std::fs::metadata(&real).unwrap().len();
    eprintln!("installed {}: {:.1} MB", real.display(), size as f64 / 1e6);
}

/// The doc example through `pkg-config cyclegan`: NEEDED names the SONAME; without an rpath
/// the program fails to start as docs/c-api.md says, and LD_LIBRARY_PATH or an rpath fix it.
#[test]
fn pkg_config_shared_consumer() {
    if !tools(&[]) {
        return;
    }
    let prefix = prefix();
    let dir = scratch("pc-shared");
    let flags = pkg_config(&prefix, &["--cflags", "--libs", "cyclegan"]);
    assert!(flags.contains(&"-lcyclegan".to_owned()), "{flags:?}");
    let plain = dir.join("example");
    let with_rpath = dir.join("example-rpath");
    for (exe, rpath) in [(&plain, None), (&with_rpath, Some(prefix.join("lib")))] {
        let mut cc = Command::new("cc");
        cc.args(["-std=c11", "-Wall", "-Werror"])
            .arg(root().join("tests/c/example.c"))
            .arg("-o")
            .arg(exe)
            .args(&flags);
        if let Some(r) = rpath {
            cc.arg(format!("-Wl,-rpath,{}", r.display()));
        }
        ok("cc (pkg-config cyclegan)", &mut cc);
    }
    assert!(
        needed(&plain).contains(&common::soname().unwrap()),
        "{:?}",
        needed(&plain)
    );
    let out = run(&plain, &[&small_model()], None);
    assert!(
        !out.status.success(),
        "{}",
        show("example without rpath", &out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open shared object file"),
        "{}",
        show("example without rpath", &out)
    );
    let out = run(&plain, &[&small_model()], Some(&prefix.join("lib")));
    assert!(
        out.status.success(),
        "{}",
        show("example with LD_LIBRARY_PATH", &out)
    );
    let out = run(&with_rpath, &[&small_model()], None);
    assert!(
        out.status.success(),
        "{}",
        show("example with an rpath", &out)
    );
}

/// The doc example through `pkg-config cyclegan-static`: runs with the prefix gone from
/// every search path, and does not ask for libcyclegan at all.
#[test]
fn pkg_config_static_consumer() {
    if !tools(&[]) {
        return;
    }
    let prefix = prefix();
    let dir = scratch("pc-static");
    let flags = pkg_config(
        &prefix,
        &["--cflags", "--libs", "--static", "cyclegan-static"],
    );
    let exe = dir.join("example");
    ok(
        "cc (pkg-config cyclegan-static)",
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Werror"])
            .arg(root().join("tests/c/example.c"))
            .arg("-o")
            .arg(&exe)
            .args(&flags),
    );
    let libs = needed(&exe);
    assert!(
        !libs.iter().any(|l| l.starts_with("libcyclegan")),
        "a static link still needs {libs:?}"
    );
    let out = run(&exe, &[&small_model()], None);
    assert!(out.status.success(), "{}", show("static example", &out));
}

fn cmake_build(kind: &str) -> PathBuf {
    let build = scratch(&format!("cmake-{kind}"));
    ok(
        "cmake configure",
        Command::new("cmake")
            .arg("-S")
            .arg(root().join("tests/consumer"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix().display()))
            .arg(format!(
                "-DCYCLEGAN_USE_STATIC_LIBS={}",
                if kind == "static" { "ON" } else { "OFF" }
            ))
            .arg("-DCMAKE_BUILD_TYPE=Debug"),
    );
    ok(
        "cmake --build",
        Command::new("cmake").arg("--build").arg(&build),
    );
    build.join("consumer")
}

#[test]
fn cmake_consumer_shared_under_valgrind() {
    if !tools(&["cmake", "valgrind"]) {
        return;
    }
    let exe = cmake_build("shared");
    assert!(
        needed(&exe).contains(&common::soname().unwrap()),
        "{:?}",
        needed(&exe)
    );
    // CMake gives build-tree programs an rpath to the imported library's folder.
    let out = run(&exe, &[&small_model()], None);
    assert!(out.status.success(), "{}", show("consumer", &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("consumer: ok"));
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,possible",
            "--quiet",
        ])
        .arg(format!(
            "--suppressions={}",
            root().join("tests/c/valgrind.supp").display()
        ))
        .arg(&exe)
        .arg(small_model())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run valgrind");
    assert!(
        out.status.success(),
        "{}",
        show("consumer under valgrind", &out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("consumer: ok"));
}

#[test]
fn cmake_consumer_static() {
    if !tools(&["cmake"]) {
        return;
    }
    let exe = cmake_build("static");
    let libs = needed(&exe);
    assert!(
        !libs.iter().any(|l| l.starts_with("libcyclegan")),
        "a static link still needs {libs:?}"
    );
    // The shipped style, built into the library.
    let out = run(&exe, &["monet"], None);
    assert!(out.status.success(), "{}", show("static consumer", &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("consumer: ok"));
}
