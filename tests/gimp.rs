//! The GIMP plug-in (plugins/gimp) in a real, headless GIMP, driven by Script-Fu as a batch
//! user would: the plug-in is built and installed with plugins/gimp/install.sh into a
//! temporary GIMP folder, then GIMP loads generated PNGs, selects a rectangle, runs
//! `plug-in-cyclegan` (the small random-weight fixture model, so it is quick) and
//! `plug-in-cyclegan-monet` (the shipped style), saves, and quits. The saved pixels must be
//! changed inside the selection, untouched outside, with alpha and size kept, and equal to
//! the CLI's output for the same crop.
//!
//! - GIMP 2.10: runs when `gimp-console-2.10` and `pkg-config gimp-2.0` are present (CI
//!   installs `gimp libgimp2.0-dev`).
//! - GIMP 3: runs when CYCLEGAN_GIMP3_ROOT names a Debian 13 root with GIMP 3 and
//!   libgimp-3.0-dev in it (plugins/gimp/test-gimp3.sh builds one; .ci/run exports it); the
//!   plug-in is compiled inside that root and GIMP runs there through chroot.
//!
//! Without them a test prints a SKIPPED line; with `CYCLEGAN_REQUIRE_HOSTS=1` (.ci/run sets
//! it) it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, TempDir};
use image::{DynamicImage, RgbaImage};

/// The test image and the rectangle selected in it (x, y, width, height).
const SIZE: (u32, u32) = (96, 64);
const SELECTION: (u32, u32, u32, u32) = (16, 8, 48, 40);
/// The image given to the shipped Monet style (a full-size network: keep it small).
const SMALL: (u32, u32) = (40, 28);

/// An RGBA gradient whose alpha varies between 128 and 255 (never 0, where a host may
/// rewrite the colour of invisible pixels).
fn gradient_rgba(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x * 255 / (w - 1)) as u8,
            (y * 255 / (h - 1)) as u8,
            ((x * 3 + y * 5) % 256) as u8,
            (128 + (x * 5 + y * 3) % 128) as u8,
        ])
    })
}

fn inside(x: u32, y: u32) -> bool {
    let (sx, sy, sw, sh) = SELECTION;
    (sx..sx + sw).contains(&x) && (sy..sy + sh).contains(&y)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The libcyclegan.so cargo built for this test run.
fn library() -> PathBuf {
    common::built_library()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where GIMP runs: this machine, or a chroot (paths inside it are `guest` paths).
struct Host {
    generation: u32,
    chroot: Option<PathBuf>,
}

impl Host {
    /// A command run on the host: directly, or inside the chroot with a clean environment.
    fn command(&self, program: &str, env: &[(&str, &str)]) -> Command {
        match &self.chroot {
            None => {
                let mut c = Command::new(program);
                // cargo puts its target folders on LD_LIBRARY_PATH, which the loader searches
                // before the plug-in's $ORIGIN rpath: a stale libcyclegan.so there would win.
                c.env_remove("LD_LIBRARY_PATH");
                c.envs(env.iter().copied());
                c
            }
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).args([
                    "env",
                    "-i",
                    "PATH=/usr/bin:/bin",
                    "HOME=/tmp",
                    "LANG=C.UTF-8",
                ]);
                c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
                c.arg(program);
                c
            }
        }
    }
}

/// A scratch folder visible to the host (inside the chroot for GIMP 3).
struct Scratch {
    _dir: Option<TempDir>,
    path: PathBuf,
    guest: String,
}

impl Scratch {
    fn new(host: &Host, tag: &str) -> Self {
        match &host.chroot {
            None => {
                let dir = TempDir::new(tag);
                let path = dir.0.clone();
                let guest = path.to_str().unwrap().to_owned();
                Scratch {
                    _dir: Some(dir),
                    path,
                    guest,
                }
            }
            Some(root) => {
                let guest = format!("/tmp/cyclegan-{tag}-{}", std::process::id());
                let path = root.join(&guest[1..]);
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).unwrap();
                Scratch {
                    _dir: None,
                    path,
                    guest,
                }
            }
        }
    }

    fn host(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn guest(&self, name: &str) -> String {
        format!("{}/{name}", self.guest)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self._dir.is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Builds and installs the plug-in with install.sh; returns the GIMP folder (guest path).
fn install(host: &Host, t: &Scratch) -> String {
    let home = t.guest("home");
    std::fs::create_dir_all(t.host("home")).unwrap();
    for d in [
        "brushes",
        "dynamics",
        "fonts",
        "gradients",
        "palettes",
        "patterns",
        "tool-presets",
    ] {
        std::fs::create_dir_all(t.host("home").join(d)).unwrap();
    }
    let (script, lib) = match &host.chroot {
        None => (
            repo().join("plugins/gimp/install.sh"),
            library().to_str().unwrap().to_owned(),
        ),
        Some(_) => {
            // The sources the script needs, and the library built here (Debian 12's glibc
            // is older than the chroot's, so it runs there).
            let src = t.host("src");
            copy_tree(&repo().join("plugins/gimp"), &src.join("plugins/gimp"));
            copy_tree(&repo().join("include"), &src.join("include"));
            std::fs::copy(library(), t.host("libcyclegan.so")).unwrap();
            (
                PathBuf::from(t.guest("src/plugins/gimp/install.sh")),
                t.guest("libcyclegan.so"),
            )
        }
    };
    let var = format!("GIMP{}_DIRECTORY", host.generation);
    let out = host
        .command("bash", &[(&var, &home)])
        .arg(&script)
        .arg(format!("--gimp{}", host.generation))
        .args(["--lib", &lib])
        .output()
        .expect("runs install.sh");
    assert!(
        out.status.success(),
        "install.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let plug_in = t.host("home/plug-ins/cyclegan/cyclegan");
    assert!(plug_in.exists(), "{} was not installed", plug_in.display());
    let lib = common::soname().unwrap_or_else(|| "libcyclegan.so".into());
    assert!(
        t.host("home/plug-ins/cyclegan").join(&lib).exists(),
        "{lib} was not installed beside the plug-in"
    );
    home
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The Script-Fu batch commands for one GIMP generation.
fn script(host: &Host, t: &Scratch, model: &str) -> Vec<String> {
    let (sx, sy, sw, sh) = SELECTION;
    let (input, small) = (t.guest("in.png"), t.guest("small.png"));
    let (out, out_monet, out_grey) = (
        t.guest("out.png"),
        t.guest("out-monet.png"),
        t.guest("out-grey.png"),
    );
    // GIMP 2.10 and 3 differ in how files are loaded and saved and in how drawables are
    // passed (one drawable vs. an array, positional vs. named arguments).
    type Fmt = fn(&str) -> String;
    let (load, drawable, save): (Fmt, &str, Fmt) = if host.generation == 2 {
        (
            |f: &str| format!("(car (gimp-file-load RUN-NONINTERACTIVE \"{f}\" \"{f}\"))"),
            "(car (gimp-image-get-active-drawable img))",
            |f: &str| format!("(gimp-file-save RUN-NONINTERACTIVE img d \"{f}\" \"{f}\")"),
        )
    } else {
        (
            |f: &str| format!("(car (gimp-file-load RUN-NONINTERACTIVE \"{f}\"))"),
            "(car (gimp-image-get-layers img))",
            |f: &str| format!("(gimp-file-save RUN-NONINTERACTIVE img \"{f}\" -1)"),
        )
    };
    let call = |proc: &str, extra: &[(&str, String)]| {
        if host.generation == 2 {
            let args: Vec<&str> = extra.iter().map(|(_, v)| v.as_str()).collect();
            format!("({proc} RUN-NONINTERACTIVE img d {})", args.join(" "))
        } else {
            let args: Vec<String> = extra.iter().map(|(k, v)| format!("#:{k} {v}")).collect();
            format!(
                "({proc} #:run-mode RUN-NONINTERACTIVE #:image img #:drawables d {})",
                args.join(" ")
            )
        }
    };
    // GIMP 3's general procedure takes a precision too (GIMP 2.10's positional arguments
    // stay as they were: its dialog has the field, scripts get auto).
    let general = |strength: &str, scale: &str, precision: Option<&str>| {
        let mut args = vec![
            ("style", format!("\"{model}\"")),
            ("strength", strength.to_owned()),
            ("scale", scale.to_owned()),
        ];
        if let Some(p) = precision.filter(|_| host.generation == 3) {
            args.push(("precision", format!("\"{p}\"")));
        }
        call("plug-in-cyclegan", &args)
    };
    let with_image = |file: &str, body: String| {
        format!(
            "(let* ((img {}) (d {drawable})) {body} (gimp-image-delete img))",
            load(file)
        )
    };
    let mut commands = vec![
        // The selection, the fixture style file.
        with_image(
            &input,
            format!(
                "(gimp-image-select-rectangle img CHANNEL-OP-REPLACE {sx} {sy} {sw} {sh}) {} {}",
                general("1.0", "0.0", Some("f32")),
                save(&out)
            ),
        ),
        // The shipped Monet style, whole image.
        with_image(
            &small,
            format!(
                "{} {}",
                call("plug-in-cyclegan-monet", &[]),
                save(&out_monet)
            ),
        ),
        // A grey image stays grey.
        with_image(
            &input,
            format!(
                "(gimp-image-convert-grayscale img) {} {}",
                general("0.5", "1.0", None),
                save(&out_grey)
            ),
        ),
        // An indexed layer is refused (the error is caught: the command must succeed).
        with_image(
            &input,
            format!(
                "(gimp-image-convert-indexed img CONVERT-DITHER-NONE CONVERT-PALETTE-GENERATE \
                 16 FALSE FALSE \"\") \
                 (if (catch #f {} #t) (error \"an indexed layer was accepted\"))",
                call("plug-in-cyclegan-monet", &[])
            ),
        ),
    ];
    if host.generation == 3 {
        // An unknown precision is refused by the plug-in; its message is recorded (the
        // error hook sees it before `catch` swallows it) and written to the log.
        commands.push(with_image(
            &input,
            format!(
                "(define cg-error \"\") \
                 (define cg-hook *error-hook*) \
                 (set! *error-hook* (lambda x (set! cg-error (car x)) (apply cg-hook x))) \
                 (if (catch #f {} #t) (error \"precision fp64 was accepted\")) \
                 (set! *error-hook* cg-hook) \
                 (gimp-message (string-append \"cg-refusal: \" cg-error))",
                general("1.0", "0.0", Some("fp64"))
            ),
        ));
    }
    commands
}

fn run_gimp(host: &Host, t: &Scratch, home: &str, commands: &[String]) -> String {
    let var = format!("GIMP{}_DIRECTORY", host.generation);
    let mut cmd = host.command("timeout", &[(&var, home)]);
    if host.generation == 2 {
        cmd.args([
            "300",
            "gimp-console-2.10",
            "-i",
            "-d",
            "-f",
            "--batch-interpreter",
            "plug-in-script-fu-eval",
        ]);
    } else {
        cmd.args([
            "300",
            "gimp-console-3.0",
            "-i",
            "-d",
            "-f",
            "--quit",
            "--batch-interpreter=plug-in-script-fu-eval",
        ]);
    }
    for c in commands {
        cmd.args(["-b", c]);
    }
    if host.generation == 2 {
        cmd.args(["-b", "(gimp-quit 0)"]);
    }
    let started = std::time::Instant::now();
    let out = cmd.output().expect("runs GIMP");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "GIMP {} ran {} commands in {:.1} s",
        host.generation,
        commands.len(),
        started.elapsed().as_secs_f64()
    );
    std::fs::write(t.host("gimp.log"), &log).unwrap();
    // GIMP 2.10 exits 0 even when a command fails: the log says so.
    assert!(
        out.status.success() && !log.contains("execution error"),
        "GIMP {} failed ({}):\n{log}",
        host.generation,
        out.status
    );
    log
}

fn load_rgba(path: &Path) -> RgbaImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8()
}

/// The checks shared by both generations; `precision` is what the selection's call asked
/// for (GIMP 3 passes f32, GIMP 2.10's scripts get auto).
fn check_outputs(t: &Scratch, model: &str, precision: &str) {
    let input = load_rgba(&t.host("in.png"));

    // 1. The selection with the fixture model.
    let out = load_rgba(&t.host("out.png"));
    assert_eq!(out.dimensions(), input.dimensions(), "size changed");
    let (mut changed, mut total) = (0, 0);
    for (x, y, p) in out.enumerate_pixels() {
        let q = input.get_pixel(x, y);
        assert_eq!(p[3], q[3], "alpha changed at {x},{y}");
        if inside(x, y) {
            total += 1;
            changed += (p.0[..3] != q.0[..3]) as u32;
        } else {
            assert_eq!(p, q, "pixel {x},{y} outside the selection changed");
        }
    }
    assert!(
        changed * 10 >= total * 9,
        "only {changed} of {total} selected pixels changed"
    );

    // The same engine through the CLI on the selected crop (the plug-in stylizes the
    // selection's bounding box as one image) gives the same pixels, within one level.
    let (sx, sy, sw, sh) = SELECTION;
    let crop = image::imageops::crop_imm(&input, sx, sy, sw, sh).to_image();
    crop.save(t.host("crop.png")).unwrap();
    let cli = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(["stylize", t.host("crop.png").to_str().unwrap(), "-o"])
        .arg(t.host("cli.png"))
        .args(["--model", model, "--scale", "auto", "--strength", "1"])
        .args(["--precision", precision])
        .output()
        .expect("runs the CLI");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli = load_rgba(&t.host("cli.png"));
    let mut worst = 0;
    for (x, y, p) in cli.enumerate_pixels() {
        let q = out.get_pixel(sx + x, sy + y);
        for c in 0..4 {
            worst = worst.max((p[c] as i32 - q[c] as i32).abs());
        }
    }
    assert!(worst <= 1, "plug-in and CLI differ by {worst} levels");

    // 2. The shipped Monet style on a small image: changed everywhere, alpha kept.
    let small = load_rgba(&t.host("small.png"));
    let monet = load_rgba(&t.host("out-monet.png"));
    assert_eq!(monet.dimensions(), small.dimensions());
    let mut changed = 0;
    for (x, y, p) in monet.enumerate_pixels() {
        let q = small.get_pixel(x, y);
        assert_eq!(p[3], q[3], "alpha changed at {x},{y}");
        changed += (p.0[..3] != q.0[..3]) as u32;
    }
    assert!(
        changed * 10 >= SMALL.0 * SMALL.1 * 9,
        "Monet changed {changed} pixels"
    );

    // 3. Grey in, grey out, painted.
    let grey = image::open(t.host("out-grey.png")).unwrap();
    assert!(
        matches!(
            grey,
            DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma8(_)
        ),
        "the grey result is {:?}",
        grey.color()
    );
    assert_eq!((grey.width(), grey.height()), SIZE);
    let grey_in: Vec<u8> = input
        .pixels()
        .map(|p| {
            // GIMP's own conversion, only to see that the plug-in changed something.
            (0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32) as u8
        })
        .collect();
    let grey_out = grey.to_luma_alpha8();
    let differing = grey_out
        .pixels()
        .zip(&grey_in)
        .filter(|(p, &g)| (p[0] as i32 - g as i32).abs() > 2)
        .count();
    assert!(differing > 0, "the grey image was not painted");
}

fn run_suite(host: Host) {
    let t = Scratch::new(&host, &format!("gimp{}", host.generation));
    let started = std::time::Instant::now();
    let home = install(&host, &t);
    eprintln!(
        "built and installed the GIMP {} plug-in in {:.1} s",
        host.generation,
        started.elapsed().as_secs_f64()
    );
    gradient_rgba(SIZE.0, SIZE.1)
        .save(t.host("in.png"))
        .unwrap();
    gradient_rgba(SMALL.0, SMALL.1)
        .save(t.host("small.png"))
        .unwrap();
    let model_host = fixture("el_ngf8_b9.safetensors");
    let model = if host.chroot.is_some() {
        std::fs::copy(&model_host, t.host("model.safetensors")).unwrap();
        t.guest("model.safetensors")
    } else {
        model_host.to_str().unwrap().to_owned()
    };
    let commands = script(&host, &t, &model);
    let log = run_gimp(&host, &t, &home, &commands);
    let precision = if host.generation == 3 { "f32" } else { "auto" };
    check_outputs(&t, model_host.to_str().unwrap(), precision);
    if host.generation == 3 {
        // The plug-in refused precision "fp64", with a message naming the argument.
        let refusal = log
            .lines()
            .find(|l| l.contains("cg-refusal: "))
            .unwrap_or_else(|| panic!("no cg-refusal line in the GIMP 3 log:\n{log}"));
        assert!(
            refusal.contains("precision") && refusal.contains("fp64"),
            "the refusal does not name the argument and value: {refusal}"
        );
    }
}

#[test]
fn gimp2_plug_in_in_headless_gimp() {
    if !common::require(
        have("gimp-console-2.10") && have("cc"),
        "gimp-console-2.10 or cc (apt-get install gimp libgimp2.0-dev gcc)",
    ) || !common::require(
        common::pkg_config_has(&["gimp-2.0"]),
        "pkg-config gimp-2.0 (apt-get install libgimp2.0-dev pkg-config)",
    ) {
        return;
    }
    run_suite(Host {
        generation: 2,
        chroot: None,
    });
}

#[test]
fn gimp3_plug_in_in_headless_gimp_in_a_chroot() {
    let root = std::env::var_os("CYCLEGAN_GIMP3_ROOT").map(PathBuf::from);
    if !common::require(
        root.is_some(),
        "a GIMP 3 root in CYCLEGAN_GIMP3_ROOT (plugins/gimp/test-gimp3.sh builds one)",
    ) {
        return;
    }
    let root = root.unwrap();
    assert!(
        root.join("usr/bin/gimp-console-3.0").exists(),
        "{} has no GIMP 3",
        root.display()
    );
    // The plug-in finds libcyclegan.so through $ORIGIN, which the loader resolves with
    // /proc/self/exe.
    assert!(
        root.join("proc/self").exists(),
        "mount /proc in {} first (test-gimp3.sh does)",
        root.display()
    );
    run_suite(Host {
        generation: 3,
        chroot: Some(root),
    });
}
