//! The `cyclegan` command as a user runs it: outputs, batches, and every kind of bad input
//! giving a one-line error that names the file, a non-zero exit and no partial output.

mod common;

use std::path::Path;
use std::process::Output;

use candle_core::{DType, Device, Module, Tensor};
use common::{cyclegan, fixture, gradient_rgb, png_header_only, s, shared, small_model, TempDir};

/// Asserts a failure with one `error:` line that mentions `needle`.
fn assert_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(!lines.is_empty(), "no error line in: {err}");
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no error line mentions {needle:?}: {err}"
    );
}

fn no_files_but(dir: &Path, allowed: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(allowed.contains(&name.as_str()), "unexpected file {name}");
    }
}

#[test]
fn scale_one_output_equals_the_network_within_one_level() {
    let t = TempDir::new("cli-parity");
    let (w, h) = (72, 52); // not multiples of 4: padding and cropping are exercised
    let img = gradient_rgb(w, h);
    let input = t.join("in.png");
    img.save(&input).unwrap();
    let output = t.join("out.png");
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "--scale",
        "1",
        // f32: auto runs bf16 on CPUs with AMX (tests/precision.rs bounds that path).
        "--precision",
        "f32",
        "-o",
        s(&output),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = image::open(&output).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), (w, h));

    // The network applied directly (parity-tested against PyTorch in tests/parity.rs) on the
    // same pixels, reflect-padded to 72x52 -> multiples of 4 is a no-op in width.
    let weights = cyclegan::Weights::read(&fixture("el_ngf8_b9.safetensors")).unwrap();
    let g = weights.generator(&Device::Cpu, DType::F32).unwrap();
    let planar: Vec<f32> = (0..3)
        .flat_map(|c| img.pixels().map(move |p| p[c] as f32 / 127.5 - 1.0))
        .collect();
    let x = Tensor::from_vec(planar, (1, 3, h as usize, w as usize), &Device::Cpu).unwrap();
    let y = g
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let plane = (w * h) as usize;
    let mut worst = 0i32;
    for (i, p) in got.pixels().enumerate() {
        for c in 0..3 {
            let want = ((y[c * plane + i] + 1.0) * 127.5).round().clamp(0.0, 255.0) as i32;
            worst = worst.max((p[c] as i32 - want).abs());
        }
    }
    assert!(worst <= 1, "worst difference {worst} levels");
}

#[test]
fn reference_examples_through_the_cli() {
    let Some(dir) = shared("models/reference/examples") else {
        return;
    };
    let t = TempDir::new("cli-ref");
    let input = dir.join("1_0b6b4bfc29_in.png");
    let output = t.join("out.png");
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--style",
        "monet",
        "--scale",
        "1",
        "-o",
        s(&output),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = image::open(&output).unwrap().to_rgb8();
    let want = image::open(dir.join("1_0b6b4bfc29_monet.png"))
        .unwrap()
        .to_rgb8();
    let worst = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "worst difference {worst} levels");
}

#[test]
fn odd_size_rgba16_keeps_size_alpha_and_depth() {
    let t = TempDir::new("cli-rgba16");
    let (w, h) = (37, 23);
    let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(w, h, |x, y| {
        image::Rgba([
            (x * 1700) as u16,
            (y * 2800) as u16,
            30000,
            ((x * y * 97) % 65536) as u16,
        ])
    });
    let input = t.join("in.png");
    img.save(&input).unwrap();
    let output = t.join("out.png");
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "-o",
        s(&output),
        "--strength",
        "0.7",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = image::open(&output).unwrap();
    assert_eq!(
        got.color(),
        image::ColorType::Rgba16,
        "depth and alpha kept"
    );
    let got = got.to_rgba16();
    assert_eq!(got.dimensions(), (w, h));
    for (a, b) in got.pixels().zip(img.pixels()) {
        assert_eq!(a[3], b[3], "alpha passes through");
    }
    assert!(
        got.pixels().zip(img.pixels()).any(|(a, b)| a[0] != b[0]),
        "colours changed"
    );
}

#[test]
fn strength_zero_returns_the_input() {
    let t = TempDir::new("cli-strength");
    let input = t.join("in.png");
    gradient_rgb(40, 30).save(&input).unwrap();
    let output = t.join("out.png");
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "--strength",
        "0",
        "-o",
        s(&output),
    ]);
    assert!(out.status.success());
    assert_eq!(
        image::open(&output).unwrap().to_rgb8(),
        gradient_rgb(40, 30)
    );
}

#[test]
fn folder_batch_continues_past_a_bad_file_and_skips_existing() {
    let t = TempDir::new("cli-batch");
    let src = t.join("src");
    std::fs::create_dir(&src).unwrap();
    gradient_rgb(30, 20).save(src.join("a.png")).unwrap();
    gradient_rgb(20, 30).save(src.join("b.jpg")).unwrap();
    let mut broken = std::fs::read(src.join("a.png")).unwrap();
    broken.truncate(broken.len() / 2);
    std::fs::write(src.join("c.png"), broken).unwrap();
    std::fs::write(src.join("notes.txt"), "not an image").unwrap();
    let dst = t.join("dst");
    let out = cyclegan(&["stylize", s(&src), "--model", &small_model(), "-o", s(&dst)]);
    assert_error(&out, "c.png");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 image(s) failed"));
    no_files_but(&dst, &["a.png", "b.jpg", ".cyclegan"]);
    assert_eq!(image::open(dst.join("b.jpg")).unwrap().width(), 20);

    // A second run skips what exists and still reports the bad file.
    let before = std::fs::metadata(dst.join("a.png"))
        .unwrap()
        .modified()
        .unwrap();
    let out = cyclegan(&["stylize", s(&src), "--model", &small_model(), "-o", s(&dst)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 2 existing"));
    assert_eq!(
        std::fs::metadata(dst.join("a.png"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn never_overwrites_the_input() {
    let t = TempDir::new("cli-self");
    let input = t.join("in.png");
    gradient_rgb(16, 16).save(&input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "-o",
        s(&input),
        "--overwrite",
    ]);
    assert_error(&out, "overwrite the input");
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn bad_inputs_fail_with_a_named_one_line_error_and_no_output() {
    let t = TempDir::new("cli-bad");
    let out_path = t.join("out.png");
    let run = |input: &Path| {
        cyclegan(&[
            "stylize",
            s(input),
            "--model",
            &small_model(),
            "-o",
            s(&out_path),
        ])
    };

    assert_error(&run(&t.join("missing.png")), "missing.png");

    let good = t.join("good.png");
    gradient_rgb(32, 32).save(&good).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() * 2 / 3);
    let truncated = t.join("truncated.png");
    std::fs::write(&truncated, bytes).unwrap();
    assert_error(&run(&truncated), "truncated.png");

    let text = t.join("words.txt");
    std::fs::write(&text, "hello").unwrap();
    assert_error(&run(&text), "words.txt");

    let bomb = t.join("bomb.png");
    std::fs::write(&bomb, png_header_only(100_000, 100_000)).unwrap();
    let out = run(&bomb);
    assert_error(&out, "bomb.png");
    assert_error(&out, "100000x100000");

    let empty = t.join("zero.png");
    std::fs::write(&empty, png_header_only(0, 0)).unwrap();
    assert_error(&run(&empty), "zero.png");

    assert!(!out_path.exists(), "no output was written");
    no_files_but(
        &t.0,
        &[
            "good.png",
            "truncated.png",
            "words.txt",
            "bomb.png",
            "zero.png",
        ],
    );

    let nowhere = t.join("no-such-folder/out.png");
    let out = cyclegan(&[
        "stylize",
        s(&good),
        "--model",
        &small_model(),
        "-o",
        s(&nowhere),
    ]);
    assert_error(&out, "no-such-folder");

    let gif = t.join("out.gif");
    let out = cyclegan(&[
        "stylize",
        s(&good),
        "--model",
        &small_model(),
        "-o",
        s(&gif),
    ]);
    assert_error(&out, "out.gif");
    assert!(!gif.exists());
}

#[test]
fn bad_weights_fail_with_a_named_error() {
    let t = TempDir::new("cli-weights");
    let input = t.join("in.png");
    gradient_rgb(16, 16).save(&input).unwrap();
    let output = t.join("out.png");
    let full = std::fs::read(fixture("el_ngf8_b9.safetensors")).unwrap();
    let truncated = t.join("truncated.safetensors");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        s(&truncated),
        "-o",
        s(&output),
    ]);
    assert_error(&out, "truncated.safetensors");

    // A discriminator is a valid file but not a generator.
    let disc = fixture("disc_el_ngf64.safetensors");
    let out = cyclegan(&["stylize", s(&input), "--model", s(&disc), "-o", s(&output)]);
    assert_error(&out, "no CycleGAN ResNet generator");

    // Right keys, wrong shape: one residual conv with the wrong number of channels.
    let w = cyclegan::Weights::read(&fixture("el_ngf8_b9.safetensors")).unwrap();
    let mut tensors = w.tensors.clone();
    tensors.insert(
        "model.12.block.1.weight".into(),
        Tensor::zeros((32, 16, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let bytes = cyclegan::to_safetensors_bytes(&tensors, &Default::default()).unwrap();
    let wrong = t.join("wrong_shape.safetensors");
    std::fs::write(&wrong, bytes).unwrap();
    let out = cyclegan(&["stylize", s(&input), "--model", s(&wrong), "-o", s(&output)]);
    assert_error(&out, "wrong_shape.safetensors");
    assert_error(&out, "model.12.block.1.weight");
    assert!(!output.exists());
}

/// Every kind of damaged weights file, in both formats: a one-line error naming the file
/// (and the tensor, where one is at fault), no panic, no output.
#[test]
fn damaged_weights_fail_with_clear_errors() {
    let t = TempDir::new("cli-damaged");
    let input = t.join("in.png");
    gradient_rgb(16, 16).save(&input).unwrap();
    let output = t.join("out.png");
    let check = |name: &str, bytes: &[u8], needles: &[&str]| {
        let path = t.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = cyclegan(&["stylize", s(&input), "--model", s(&path), "-o", s(&output)]);
        assert_error(&out, name);
        for n in needles {
            assert_error(&out, n);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{name}: {}", err.trim());
        assert!(!err.contains("panic"), "{name}: {err}");
        assert!(!output.exists(), "{name}");
    };
    let w = cyclegan::Weights::read(&fixture("el_ngf8_b9.safetensors")).unwrap();
    let with = |key: &str, t: Tensor| {
        let mut tensors = w.tensors.clone();
        tensors.insert(key.into(), t);
        cyclegan::to_safetensors_bytes(&tensors, &Default::default()).unwrap()
    };
    let key = "model.12.block.1.weight";
    let shape = w.tensors[key].dims().to_vec();

    // Zero-length files, whatever their extension.
    check("empty.safetensors", b"", &["empty"]);
    check("empty.pth", b"", &["empty"]);
    // Header lengths: far too large, larger than the file, and one that overflows.
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}      ");
    check("huge_header.safetensors", &huge, &["safetensors"]);
    let mut beyond = 1000u64.to_le_bytes().to_vec();
    beyond.extend_from_slice(br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
    check("short_header.safetensors", &beyond, &["safetensors"]);
    let mut wrap = (u64::MAX - 3).to_le_bytes().to_vec();
    wrap.extend_from_slice(b"{}");
    check("wrapping_header.safetensors", &wrap, &["safetensors"]);
    // Integer weights.
    let ints = Tensor::zeros(shape.as_slice(), DType::I64, &Device::Cpu).unwrap();
    check("int.safetensors", &with(key, ints), &[key, "dtype"]);
    // NaN and infinite weights: refused at load, naming the tensor.
    let nan = Tensor::full(f32::NAN, shape.as_slice(), &Device::Cpu).unwrap();
    check("nan.safetensors", &with(key, nan), &[key, "NaN"]);
    let inf = Tensor::full(f32::INFINITY, shape.as_slice(), &Device::Cpu).unwrap();
    check("inf.safetensors", &with(key, inf), &[key, "infinite"]);
    // The same in a (legacy-format) .pth: its last four bytes are the last float of the last
    // storage.
    let legacy = std::fs::read(fixture("jz_ngf8_b9_legacy.pth")).unwrap();
    let mut nan_pth = legacy.clone();
    let n = nan_pth.len();
    nan_pth[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    check("nan.pth", &nan_pth, &["NaN", "tensor model."]);
    // Every storage declared as 16-bit integers instead of floats.
    let at = legacy
        .windows(12)
        .position(|w| w == b"FloatStorage")
        .unwrap();
    let mut short_pth = legacy.clone();
    short_pth[at..at + 12].copy_from_slice(b"ShortStorage");
    check("short.pth", &short_pth, &[]);
    // A .pth cut anywhere in its data.
    check("cut.pth", &legacy[..legacy.len() * 2 / 3], &[]);
}

#[test]
fn import_and_info() {
    let t = TempDir::new("cli-import");
    let out_file = t.join("jz.safetensors");
    let out = cyclegan(&[
        "import",
        s(&fixture("jz_ngf8_b9_legacy.pth")),
        "-o",
        s(&out_file),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cyclegan(&["info", s(&out_file)]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "layout:     official",
        "filters:    8",
        "blocks:     9",
        "dtype:      f16",
        "meta source: jz_ngf8_b9_legacy.pth",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // The imported file gives PyTorch's outputs (f16 storage: within f16 rounding).
    let g = cyclegan::Weights::read(&out_file)
        .unwrap()
        .generator(&Device::Cpu, DType::F32)
        .unwrap();
    let v = common::load_tensors(&fixture("parity_jz_ngf8_b9.safetensors"));
    let d = common::max_abs_diff(&g.forward(&v["input_0"]).unwrap(), &v["output_0"]);
    assert!(d < 2e-2, "max abs diff {d}");

    let out = cyclegan(&["info", "monet"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("parameters: 11378179"));
}
