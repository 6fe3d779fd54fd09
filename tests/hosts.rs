//! The host adapters in `plugins/` on the hosts Debian ships: the GEGL operation through the
//! `gegl` command and the ImageMagick 6 filter through `convert -process` and
//! `mogrify -process`. Each test builds the adapter with its install script, against
//! include/cyclegan.h and the libcyclegan.so of this very build (cargo builds the cdylib
//! with the tests), runs the host on generated pictures, and checks the pixels against the
//! `cyclegan` CLI with the same settings: one engine, the same result through every door.
//!
//! A host whose program or development files are missing is skipped with a SKIPPED line, or
//! fails the test when `CYCLEGAN_REQUIRE_HOSTS=1` (.ci/run sets it and installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixture, gradient_rgb, TempDir};

/// Settings used through every door: a strength that blends, and a working scale below
/// native so the resampling and detail paths run too.
const STRENGTH: &str = "0.8";
const SCALE: &str = "0.5";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Small random-weight generator: fast, and not a shipped style, so it goes through the
/// file-path route of each adapter.
fn small_model() -> String {
    fixture("el_ngf8_b9.safetensors")
        .to_string_lossy()
        .into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first of `names` found on PATH.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn pkg_config_has(package: &str) -> bool {
    Command::new("pkg-config")
        .args(["--exists", package])
        .status()
        .is_ok_and(|s| s.success())
}

/// This build's libcyclegan.so.
fn library() -> PathBuf {
    common::built_library()
}

/// Builds an adapter with its install script into `dest`, warnings as errors, linking the
/// library where it is.
fn install(host: &str, dest: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins")
        .join(host)
        .join("install.sh");
    let out = Command::new("sh")
        .arg(&script)
        .args(["--lib", s(&library()), "--dest", s(dest), "--link-in-place"])
        .env("CFLAGS", "-O2 -Wall -Wextra -Werror")
        .output()
        .expect("runs sh");
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

fn have_compiler() -> bool {
    find_program(&["cc"]).is_some()
}

// ---------------------------------------------------------------------------------------
// Pixels

/// An image as 8-bit RGBA samples (16-bit files rounded to 8 bits), with its size.
struct Pixels8 {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

fn load8(path: &Path) -> Pixels8 {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba16();
    let (width, height) = img.dimensions();
    let data = img
        .into_raw()
        .into_iter()
        .map(|v| ((v as u32 * 255 + 32767) / 65535) as u8)
        .collect();
    Pixels8 {
        width,
        height,
        data,
    }
}

/// The largest difference between two images' samples, in 8-bit levels: colour and alpha
/// separately.
fn worst_difference(a: &Path, b: &Path) -> (u8, u8) {
    let (x, y) = (load8(a), load8(b));
    assert_eq!(
        (x.width, x.height),
        (y.width, y.height),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    let mut colour = 0;
    let mut alpha = 0;
    for (i, (p, q)) in x.data.iter().zip(&y.data).enumerate() {
        let d = p.abs_diff(*q);
        if i % 4 == 3 {
            alpha = alpha.max(d);
        } else {
            colour = colour.max(d);
        }
    }
    (colour, alpha)
}

fn mean_difference(a: &Pixels8, b: &Pixels8) -> f64 {
    let sum: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.data.len() as f64
}

fn assert_same_within_one_level(got: &Path, want: &Path) {
    let (colour, alpha) = worst_difference(got, want);
    eprintln!(
        "{} vs {}: colour within {colour}, alpha within {alpha} levels",
        got.display(),
        want.display()
    );
    assert!(
        colour <= 1 && alpha == 0,
        "{} vs {}: colour differs by up to {colour} levels, alpha by {alpha}",
        got.display(),
        want.display()
    );
}

/// A picture with a soft alpha ramp and a fully transparent corner.
fn gradient_rgba(w: u32, h: u32) -> image::RgbaImage {
    image::RgbaImage::from_fn(w, h, |x, y| {
        let a = if x < w / 4 && y < h / 4 {
            0
        } else {
            (64 + x * 191 / w) as u8
        };
        image::Rgba([(x * 7 % 256) as u8, (y * 255 / h) as u8, 200, a])
    })
}

/// The CLI's output for `input` with the shared settings (`model`: a style file, or None
/// for the shipped Monet style).
fn cli_reference(input: &Path, output: &Path, model: Option<&str>) {
    cli_reference_with(input, output, model, &[]);
}

/// `cli_reference` with more CLI arguments (e.g. `--max-memory 300M`).
fn cli_reference_with(input: &Path, output: &Path, model: Option<&str>, extra: &[&str]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cyclegan"));
    cmd.args(["stylize", s(input), "-o", s(output)]);
    cmd.args(extra);
    cmd.args(["--strength", STRENGTH, "--scale", SCALE]);
    match model {
        Some(m) => cmd.args(["--model", m]),
        None => cmd.args(["--style", "monet"]),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "cyclegan: {}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// GEGL

struct Gegl {
    program: PathBuf,
    /// GEGL_PATH: our operation's folder, then the system's (the variable replaces it).
    path: String,
    _dir: TempDir,
}

fn gegl() -> Option<Gegl> {
    let program = find_program(&["gegl"]);
    if !common::require(program.is_some(), "the gegl program (Debian: gegl)")
        || !common::require(
            pkg_config_has("gegl-0.4") && have_compiler(),
            "gegl-0.4 development files or cc (Debian: libgegl-dev libbabl-dev gcc)",
        )
    {
        return None;
    }
    let program = program.unwrap();
    let system = Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gegl-0.4"])
        .output()
        .unwrap();
    let system = String::from_utf8_lossy(&system.stdout).trim().to_string();
    let dir = TempDir::new("gegl-op");
    install("gegl", &dir.0);
    assert!(dir.join("cyclegan-stylize.so").is_file());
    Some(Gegl {
        program,
        path: format!("{}:{system}", dir.0.display()),
        _dir: dir,
    })
}

impl Gegl {
    fn run(&self, input: &Path, output: &Path, props: &[&str]) -> Output {
        Command::new(&self.program)
            .arg(input)
            .arg("-o")
            .arg(output)
            .arg("--")
            .arg("cyclegan:stylize")
            .args(props)
            .env("GEGL_PATH", &self.path)
            // cargo's LD_LIBRARY_PATH is searched before the op's $ORIGIN rpath.
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("runs gegl")
    }
}

#[test]
fn gegl_operation_matches_the_cli() {
    let Some(gegl) = gegl() else { return };
    let t = TempDir::new("hosts-gegl");
    let input = t.join("in.png");
    gradient_rgb(72, 52).save(&input).unwrap();
    let want = t.join("cli.png");
    cli_reference(&input, &want, Some(&small_model()));

    let got = t.join("gegl.png");
    let style = format!("style={}", small_model());
    let strength = format!("strength={STRENGTH}");
    let scale = format!("scale={SCALE}");
    let out = gegl.run(&input, &got, &[&style, &strength, &scale, "device=cpu"]);
    assert!(out.status.success(), "gegl: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("cyclegan:stylize"),
        "unexpected warning: {}",
        stderr(&out)
    );
    // gegl writes 16-bit PNGs from a 16-bit buffer: compared at 8 bits.
    assert_same_within_one_level(&got, &want);
}

#[test]
fn gegl_operation_shipped_style_needs_no_setup() {
    let Some(gegl) = gegl() else { return };
    let t = TempDir::new("hosts-gegl-monet");
    let input = t.join("in.png");
    gradient_rgb(64, 40).save(&input).unwrap();
    let want = t.join("cli.png");
    cli_reference(&input, &want, None);

    let got = t.join("gegl.png");
    let strength = format!("strength={STRENGTH}");
    let scale = format!("scale={SCALE}");
    // No style property: the default is the shipped Monet style, embedded in the library.
    let out = gegl.run(&input, &got, &[&strength, &scale]);
    assert!(out.status.success(), "gegl: {}", stderr(&out));
    assert_same_within_one_level(&got, &want);
}

#[test]
fn gegl_operation_bad_style_warns_and_passes_the_input_through() {
    let Some(gegl) = gegl() else { return };
    let t = TempDir::new("hosts-gegl-bad");
    let input = t.join("in.png");
    gradient_rgb(50, 30).save(&input).unwrap();
    for props in [
        vec!["style=no-such-style"],
        vec!["device=abacus"],
        vec!["style=/nonexistent/style.safetensors"],
    ] {
        let got = t.join("out.png");
        let out = gegl.run(&input, &got, &props);
        let err = stderr(&out);
        assert!(
            err.contains("WARNING") && err.contains("cyclegan:stylize"),
            "{props:?}: no GEGL warning in: {err}"
        );
        let (colour, alpha) = worst_difference(&got, &input);
        assert!(
            colour == 0 && alpha == 0,
            "{props:?}: output differs from the input by {colour}/{alpha} levels"
        );
    }
}

/// The library's messages for a memory limit below its minimum and an unknown device name:
/// the plug-ins hand these values to libcyclegan instead of checking them themselves.
const BELOW_MINIMUM: &str = "is below the minimum of";
const UNKNOWN_DEVICE: &str = "unknown device \"abacus\": use auto, cpu, cuda or metal";
/// The plug-ins' message for a precision name that is none of the CLI's.
const UNKNOWN_PRECISION: &str = "precision=fp64: needs auto, f32 or bf16";

/// The library's refusal of bf16 on a CPU without fast bf16 instructions.
const NO_BF16: &str = "no bf16 instructions";

/// Writes the CLI's `--precision bf16` result for `input` and returns true, or returns false
/// where this CPU has no bf16 path (the CLI then fails with [`NO_BF16`]). A plug-in given
/// `precision=bf16` must do the same.
fn cli_bf16(input: &Path, output: &Path, model: &str) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(["stylize", s(input), "-o", s(output), "--precision", "bf16"])
        .args(["--strength", STRENGTH, "--scale", SCALE, "--model", model])
        .output()
        .unwrap();
    assert!(
        out.status.success() || stderr(&out).contains(NO_BF16),
        "cyclegan --precision bf16: {}",
        stderr(&out)
    );
    out.status.success()
}

#[test]
fn gegl_operation_max_memory_device_and_precision_reach_the_library() {
    let Some(gegl) = gegl() else { return };
    let t = TempDir::new("hosts-gegl-mem");
    let input = t.join("in.png");
    gradient_rgb(72, 52).save(&input).unwrap();
    let model = small_model();
    let want = t.join("cli.png");
    cli_reference_with(
        &input,
        &want,
        Some(&model),
        &["--max-memory", "300M", "--precision", "f32"],
    );

    let style = format!("style={model}");
    let strength = format!("strength={STRENGTH}");
    let scale = format!("scale={SCALE}");
    // A normal limit, and a device name only the library knows ("gpu"), in any case.
    let got = t.join("gegl.png");
    let out = gegl.run(
        &input,
        &got,
        &[
            &style,
            &strength,
            &scale,
            "max-memory=300M",
            "device=CPU",
            "precision=F32",
        ],
    );
    assert!(out.status.success(), "gegl: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("cyclegan:stylize"),
        "{}",
        stderr(&out)
    );
    assert_same_within_one_level(&got, &want);

    // bf16: the CLI's result where this CPU has the path, else the library's refusal.
    let (cli, got) = (t.join("cli-bf16.png"), t.join("gegl-bf16.png"));
    let out = gegl.run(&input, &got, &[&style, &strength, &scale, "precision=bf16"]);
    if cli_bf16(&input, &cli, &model) {
        assert!(out.status.success(), "gegl: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("cyclegan:stylize"),
            "{}",
            stderr(&out)
        );
        assert_same_within_one_level(&got, &cli);
    } else {
        assert!(
            stderr(&out).contains(NO_BF16),
            "precision=bf16: no \"{NO_BF16}\" in: {}",
            stderr(&out)
        );
    }

    for (prop, message) in [
        ("max-memory=1M", BELOW_MINIMUM),
        ("max-memory=lots", "max-memory=lots: needs a memory size"),
        ("device=abacus", UNKNOWN_DEVICE),
        ("precision=fp64", UNKNOWN_PRECISION),
    ] {
        let got = t.join("bad.png");
        let out = gegl.run(&input, &got, &[&style, prop]);
        let err = stderr(&out);
        assert!(
            err.contains("cyclegan:stylize") && err.contains(message),
            "{prop}: no \"{message}\" in: {err}"
        );
        let (colour, alpha) = worst_difference(&got, &input);
        assert!(
            colour == 0 && alpha == 0,
            "{prop}: the input was not passed through"
        );
    }
}

// ---------------------------------------------------------------------------------------
// ImageMagick

struct Magick {
    convert: PathBuf,
    mogrify: PathBuf,
    dir: TempDir,
}

fn magick() -> Option<Magick> {
    // Debian's real binaries first (convert may be a wrapper or an alternative).
    let convert = find_program(&["convert-im6.q16", "convert"]);
    let mogrify = find_program(&["mogrify-im6.q16", "mogrify"]);
    if !common::require(
        convert.is_some() && mogrify.is_some(),
        "ImageMagick's convert and mogrify (Debian: imagemagick)",
    ) || !common::require(
        pkg_config_has("MagickCore-6.Q16") && have_compiler(),
        "MagickCore-6.Q16 development files or cc (Debian: libmagickcore-6.q16-dev gcc)",
    ) {
        return None;
    }
    let (convert, mogrify) = (convert.unwrap(), mogrify.unwrap());
    let dir = TempDir::new("im-filter");
    install("imagemagick", &dir.0);
    assert!(dir.join("cyclegan.so").is_file() && dir.join("cyclegan.la").is_file());
    Some(Magick {
        convert,
        mogrify,
        dir,
    })
}

impl Magick {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("MAGICK_CODER_FILTER_PATH", &self.dir.0);
        // cargo's LD_LIBRARY_PATH is searched before the module's $ORIGIN rpath.
        cmd.env_remove("LD_LIBRARY_PATH");
        cmd
    }

    fn convert(&self, input: &Path, process: &str, output: &Path) -> Output {
        self.command(&self.convert)
            .arg(input)
            .args(["-process", process])
            .arg(output)
            .output()
            .expect("runs convert")
    }
}

fn process_args(model: Option<&str>) -> String {
    let style = model.map(|m| format!(" style={m}")).unwrap_or_default();
    format!("cyclegan{style} strength={STRENGTH} scale={SCALE}")
}

#[test]
fn imagemagick_filter_matches_the_cli() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-im");
    let model = small_model();

    // RGB, and RGBA whose alpha must come through untouched.
    let rgb = t.join("rgb.png");
    gradient_rgb(72, 52).save(&rgb).unwrap();
    let rgba = t.join("rgba.png");
    gradient_rgba(61, 47).save(&rgba).unwrap();
    for input in [&rgb, &rgba] {
        let name = input.file_name().unwrap().to_str().unwrap();
        let want = t.join(&format!("cli-{name}"));
        cli_reference(input, &want, Some(&model));
        let got = t.join(&format!("im-{name}"));
        let out = im.convert(input, &process_args(Some(&model)), &got);
        assert!(out.status.success(), "convert: {}", stderr(&out));
        assert_same_within_one_level(&got, &want);
    }
}

#[test]
fn imagemagick_max_memory_device_and_precision_reach_the_library() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-im-mem");
    let model = small_model();
    let input = t.join("in.png");
    gradient_rgb(72, 52).save(&input).unwrap();
    let want = t.join("cli.png");
    cli_reference_with(
        &input,
        &want,
        Some(&model),
        &["--max-memory", "300M", "--precision", "f32"],
    );
    let got = t.join("im.png");
    let args = format!(
        "{} max-memory=300M device=Cpu precision=f32",
        process_args(Some(&model))
    );
    let out = im.convert(&input, &args, &got);
    assert!(out.status.success(), "convert: {}", stderr(&out));
    assert_same_within_one_level(&got, &want);

    // bf16: the CLI's result where this CPU has the path, else the library's refusal.
    let (cli, got) = (t.join("cli-bf16.png"), t.join("im-bf16.png"));
    let args = format!("{} precision=bf16", process_args(Some(&model)));
    let out = im.convert(&input, &args, &got);
    if cli_bf16(&input, &cli, &model) {
        assert!(out.status.success(), "convert: {}", stderr(&out));
        assert_same_within_one_level(&got, &cli);
    } else {
        assert!(!out.status.success(), "precision=bf16: convert succeeded");
        assert!(
            stderr(&out).contains(NO_BF16),
            "precision=bf16: no \"{NO_BF16}\" in: {}",
            stderr(&out)
        );
    }

    for (arg, message) in [
        ("max-memory=1M", BELOW_MINIMUM),
        ("max-memory=2X", "max-memory=2X: needs a memory size"),
        ("device=abacus", UNKNOWN_DEVICE),
        ("precision=fp64", UNKNOWN_PRECISION),
    ] {
        let output = t.join("out.png");
        let out = im.convert(&input, &format!("cyclegan style={model} {arg}"), &output);
        let err = stderr(&out);
        assert!(!out.status.success(), "{arg}: convert succeeded");
        assert!(err.contains(message), "{arg}: no \"{message}\" in: {err}");
        assert!(!output.exists(), "{arg}: convert wrote an output");
    }
}

#[test]
fn imagemagick_filter_keeps_sixteen_bits() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-im16");
    let model = small_model();
    let input = t.join("in16.png");
    image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(40, 36, |x, y| {
        image::Rgba([
            (x * 1601) as u16,
            (y * 1777) as u16,
            ((x * y * 37) % 65536) as u16,
            (20000 + x * 1000) as u16,
        ])
    })
    .save(&input)
    .unwrap();
    let want = t.join("cli.png");
    cli_reference(&input, &want, Some(&model));
    let got = t.join("im.png");
    let out = im.convert(&input, &process_args(Some(&model)), &got);
    assert!(out.status.success(), "convert: {}", stderr(&out));

    let got16 = image::open(&got).unwrap().to_rgba16();
    let want16 = image::open(&want).unwrap().to_rgba16();
    assert!(
        matches!(
            image::open(&got).unwrap(),
            image::DynamicImage::ImageRgba16(_)
        ),
        "ImageMagick wrote fewer than 16 bits"
    );
    // The same 16-bit samples go in through both doors: the results agree to a fraction of
    // an 8-bit level, and are not 8-bit values in disguise.
    let worst = got16
        .as_raw()
        .iter()
        .zip(want16.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 64, "16-bit samples differ by up to {worst}");
    assert!(
        got16.as_raw().iter().any(|v| v % 257 != 0),
        "all samples are 8-bit values"
    );
    let alpha_same = got16
        .pixels()
        .zip(image::open(&input).unwrap().to_rgba16().pixels())
        .all(|(a, b)| a[3] == b[3]);
    assert!(alpha_same, "alpha changed");
}

#[test]
fn imagemagick_filter_shipped_style_needs_no_setup() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-im-monet");
    let input = t.join("in.png");
    gradient_rgb(64, 40).save(&input).unwrap();
    let want = t.join("cli.png");
    cli_reference(&input, &want, None);
    let got = t.join("im.png");
    let out = im.convert(&input, &process_args(None), &got);
    assert!(out.status.success(), "convert: {}", stderr(&out));
    assert_same_within_one_level(&got, &want);
}

#[test]
fn imagemagick_bad_arguments_fail_without_output() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-im-bad");
    let input = t.join("in.png");
    gradient_rgb(40, 30).save(&input).unwrap();
    let model = small_model();
    let cases = [
        "cyclegan strength=1.5".to_string(),
        "cyclegan strength=lots".to_string(),
        "cyclegan scale=-1".to_string(),
        "cyclegan tile=10".to_string(),
        "cyclegan device=abacus".to_string(),
        "cyclegan colour=blue".to_string(),
        "cyclegan monet".to_string(),
        "cyclegan style=no-such-style".to_string(),
        "cyclegan style=/nonexistent/style.safetensors".to_string(),
        format!("cyclegan style={}", input.display()), // not a style file
        format!("cyclegan style={model} detail=9"),
    ];
    for args in &cases {
        let output = t.join("out.png");
        let out = im.convert(&input, args, &output);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args}: convert succeeded");
        assert!(
            err.contains("cyclegan"),
            "{args}: no cyclegan error in: {err}"
        );
        assert!(!output.exists(), "{args}: convert wrote an output");
    }

    // mogrify: nothing written either.
    let outdir = t.join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = im
        .command(&im.mogrify)
        .args(["-path", s(&outdir), "-process", "cyclegan strength=2"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success(), "mogrify succeeded");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);
}

/// A folder of mixed sizes and formats with one corrupt file, through mogrify and through
/// the CLI's folder mode: the corrupt one is reported, the others are done, and both doors
/// give the same pixels.
#[test]
fn batch_with_a_corrupt_file_through_mogrify_and_the_cli() {
    let Some(im) = magick() else { return };
    let t = TempDir::new("hosts-batch");
    let model = small_model();
    let input = t.join("in");
    std::fs::create_dir(&input).unwrap();
    // The TIFF comes before the corrupt file: ImageMagick 6.9.11's mogrify drops any TIFF
    // read after a failed read (its TIFF reader sees the stale error), filter or not.
    gradient_rgb(72, 52).save(input.join("a.png")).unwrap();
    gradient_rgb(30, 45).save(input.join("b.tif")).unwrap();
    gradient_rgb(64, 48).save(input.join("c.jpg")).unwrap();
    std::fs::write(input.join("d.png"), b"this is not a PNG").unwrap();
    gradient_rgba(33, 80).save(input.join("e.png")).unwrap();
    let names = ["a.png", "b.tif", "c.jpg", "d.png", "e.png"];

    let by_mogrify = t.join("mogrify");
    std::fs::create_dir(&by_mogrify).unwrap();
    let out = im
        .command(&im.mogrify)
        .args([
            "-path",
            s(&by_mogrify),
            "-process",
            &process_args(Some(&model)),
        ])
        .args(names.iter().map(|n| input.join(n)))
        .output()
        .unwrap();
    // mogrify reports the corrupt file through its exit status. (Its message is lost when
    // more files follow: ImageMagick clears pending exceptions before each -process call.)
    assert!(
        !out.status.success(),
        "mogrify should fail for the corrupt file: {}",
        stderr(&out)
    );

    let by_cli = t.join("cli");
    let out = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(["stylize", s(&input), "-o", s(&by_cli), "--model", &model])
        .args(["--strength", STRENGTH, "--scale", SCALE])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "the CLI should report the corrupt file"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error:") && l.contains("d.png")),
        "the corrupt file is not named: {err}"
    );

    for name in names {
        let (m, c) = (by_mogrify.join(name), by_cli.join(name));
        if name == "d.png" {
            assert!(!m.exists() && !c.exists(), "an output for the corrupt file");
            continue;
        }
        assert!(m.is_file(), "mogrify did not write {name}");
        assert!(c.is_file(), "the CLI did not write {name}");
        if name.ends_with(".jpg") {
            // Each door encodes JPEG with its own quality: same size, and far closer to
            // each other than to the photo.
            let (x, y, photo) = (load8(&m), load8(&c), load8(&input.join(name)));
            assert_eq!((x.width, x.height), (y.width, y.height));
            let (between, styled) = (mean_difference(&x, &y), mean_difference(&photo, &y));
            eprintln!("{name}: mogrify vs CLI {between:.2} levels, photo vs CLI {styled:.2}");
            assert!(
                between < 8.0 && between < styled / 4.0,
                "{name}: mogrify vs CLI {between:.2} levels, photo vs CLI {styled:.2}"
            );
        } else {
            assert_same_within_one_level(&m, &c);
        }
    }
}
