//! What `cyclegan` tells the user (issue 17): one line per file, `--quiet`, `--json`,
//! `cyclegan styles`, style names in any case, `--scale 0`, `--jpeg-quality`, and the
//! common mistakes refused with an error that says the fix.

mod common;

use std::process::Output;

use common::{cyclegan, gradient_rgb, s, small_model, TempDir};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A failure whose `error:` line contains every needle.
fn assert_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail; stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    for n in needles {
        assert!(line.contains(n), "{n:?} missing from {line:?}");
    }
}

#[test]
fn one_file_prints_one_line_with_path_size_seconds_and_backend() {
    let t = TempDir::new("rep-line");
    let input = t.join("in.png");
    gradient_rgb(40, 30).save(&input).unwrap();
    let output = t.join("out.png");
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "--device",
        "cpu",
        "-o",
        s(&output),
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    let line = lines[0];
    let bytes = std::fs::metadata(&output).unwrap().len();
    assert!(line.starts_with(s(&output)), "{line:?}");
    assert!(line.contains("40x30"), "{line:?}");
    assert!(
        line.contains(&format!("{bytes} B")) || line.contains("KB"),
        "size missing: {line:?}"
    );
    assert!(line.contains(" s "), "seconds missing: {line:?}");
    assert!(line.ends_with("cpu"), "backend missing: {line:?}");

    // --quiet: nothing on stdout, nothing on stderr.
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "-o",
        s(&output),
        "--overwrite",
        "--quiet",
    ]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
}

#[test]
fn json_gives_one_object_per_file() {
    let t = TempDir::new("rep-json");
    let src = t.join("src");
    std::fs::create_dir(&src).unwrap();
    gradient_rgb(24, 16).save(src.join("a.png")).unwrap();
    gradient_rgb(16, 24).save(src.join("b.png")).unwrap();
    std::fs::write(src.join("c.png"), b"not a png").unwrap();
    let dst = t.join("dst");
    let out = cyclegan(&[
        "stylize",
        s(&src),
        "--model",
        &small_model(),
        "--device",
        "cpu",
        "-o",
        s(&dst),
        "--json",
    ]);
    assert!(!out.status.success(), "c.png is broken");
    let objects: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(objects.len(), 3, "{objects:?}");
    let a = &objects[0];
    assert_eq!(a["status"], "ok");
    assert_eq!(a["width"], 24);
    assert_eq!(a["height"], 16);
    assert_eq!(a["backend"], "cpu");
    assert_eq!(
        a["bytes"].as_u64().unwrap(),
        std::fs::metadata(dst.join("a.png")).unwrap().len()
    );
    assert!(a["seconds"].as_f64().unwrap() >= 0.0);
    assert!(a["output"].as_str().unwrap().ends_with("a.png"));
    assert_eq!(objects[1]["status"], "ok");
    assert_eq!(objects[2]["status"], "error");
    assert!(objects[2]["error"].as_str().unwrap().contains("c.png"));

    // A second run skips both, and says so per file.
    let out = cyclegan(&[
        "stylize",
        s(&src.join("a.png")),
        s(&src.join("b.png")),
        "--model",
        &small_model(),
        "-o",
        s(&dst),
        "--json",
    ]);
    assert_ok(&out);
    let skipped = stdout(&out)
        .lines()
        .filter(|l| l.contains("\"skipped\""))
        .count();
    assert_eq!(skipped, 2, "{}", stdout(&out));
}

#[test]
fn styles_lists_the_shipped_styles_and_names_are_case_insensitive() {
    let out = cyclegan(&["styles"]);
    assert_ok(&out);
    assert!(stdout(&out)
        .lines()
        .any(|l| l.starts_with("monet ") && l.contains("(default)")));
    let out = cyclegan(&["styles", "--json"]);
    assert_ok(&out);
    let list: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(list[0]["name"], "monet");

    let t = TempDir::new("rep-case");
    let input = t.join("in.png");
    gradient_rgb(20, 20).save(&input).unwrap();
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--style",
        "MONET",
        "-o",
        s(&t.join("out.png")),
        "--quiet",
    ]);
    assert_ok(&out);
    assert!(t.join("out.png").is_file());

    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--style",
        "vangogh",
        "-o",
        s(&t.join("v.png")),
    ]);
    assert_error(&out, &["vangogh", "monet", "--model"]);
    assert!(!t.join("v.png").exists());
}

#[test]
fn scale_zero_is_auto() {
    let t = TempDir::new("rep-scale");
    let input = t.join("in.png");
    gradient_rgb(48, 40).save(&input).unwrap();
    let run = |scale: &str, name: &str| {
        let out = cyclegan(&[
            "stylize",
            s(&input),
            "--model",
            &small_model(),
            "--scale",
            scale,
            "-o",
            s(&t.join(name)),
        ]);
        assert_ok(&out);
        std::fs::read(t.join(name)).unwrap()
    };
    assert_eq!(run("0", "zero.png"), run("auto", "auto.png"));
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "--scale",
        "big",
        "-o",
        s(&t.join("x.png")),
    ]);
    assert_error(&out, &["--scale", "auto"]);
}

#[test]
fn jpeg_quality_changes_the_file() {
    let t = TempDir::new("rep-jpeg");
    let input = t.join("in.png");
    gradient_rgb(64, 64).save(&input).unwrap();
    let size = |q: &str| {
        let path = t.join(&format!("q{q}.jpg"));
        let out = cyclegan(&[
            "stylize",
            s(&input),
            "--model",
            &small_model(),
            "--jpeg-quality",
            q,
            "-o",
            s(&path),
            "--quiet",
        ]);
        assert_ok(&out);
        std::fs::metadata(&path).unwrap().len()
    };
    let (low, default_q, high) = (size("20"), size("95"), size("100"));
    assert!(
        low < default_q && default_q < high,
        "{low} {default_q} {high}"
    );
    // Without the flag: quality 95.
    let path = t.join("default.jpg");
    assert_ok(&cyclegan(&[
        "stylize",
        s(&input),
        "--model",
        &small_model(),
        "-o",
        s(&path),
        "--quiet",
    ]));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), default_q);
    let out = cyclegan(&[
        "stylize",
        s(&input),
        "--jpeg-quality",
        "0",
        "-o",
        s(&t.join("z.jpg")),
    ]);
    assert!(!out.status.success());
}

#[test]
fn common_mistakes_say_the_fix() {
    let t = TempDir::new("rep-mistakes");
    let a = t.join("a.png");
    let b = t.join("b.png");
    gradient_rgb(16, 16).save(&a).unwrap();
    gradient_rgb(16, 16).save(&b).unwrap();

    // Several inputs and a file name: no folder called two.png.
    let two = t.join("two.png");
    let out = cyclegan(&[
        "stylize",
        s(&a),
        s(&b),
        "--model",
        &small_model(),
        "-o",
        s(&two),
    ]);
    assert_error(&out, &["two.png", "folder"]);
    assert!(!two.exists(), "a folder named two.png was created");

    // No -o: the error suggests one.
    let out = cyclegan(&["stylize", s(&a), "--model", &small_model()]);
    assert_error(&out, &["no output", "-o a-monet.png"]);

    // One file and a folder that does not exist.
    let out = cyclegan(&[
        "stylize",
        s(&a),
        "--model",
        &small_model(),
        "-o",
        s(&t.join("outdir")),
    ]);
    assert_error(&out, &["outdir", "mkdir"]);
    assert!(!t.join("outdir").exists());

    // One file and an existing folder: written inside it under the input's name.
    let dir = t.join("existing");
    std::fs::create_dir(&dir).unwrap();
    let out = cyclegan(&[
        "stylize",
        s(&a),
        "--model",
        &small_model(),
        "-o",
        s(&dir),
        "--quiet",
    ]);
    assert_ok(&out);
    assert!(dir.join("a.png").is_file());
}
