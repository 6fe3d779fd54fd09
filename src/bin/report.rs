//! What `cyclegan stylize` tells the user about each file: one line per file (output path,
//! size, seconds, backend) by default, nothing but errors with `--quiet`, one JSON object per
//! file on stdout with `--json`. Also the checks of the command line that turn common
//! mistakes into errors that say the fix.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

/// How results are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One human line per file on stdout, a progress bar on stderr.
    Text,
    /// Errors only.
    Quiet,
    /// One JSON object per file on stdout (a progress bar on stderr, when it is a terminal).
    Json,
}

pub struct Reporter {
    mode: Mode,
    backend: String,
}

/// What was done to one input.
pub struct Written<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub width: u32,
    pub height: u32,
    pub seconds: f64,
}

impl Reporter {
    /// `backend` is where the model runs, as `Model::backend_name` says it ("cpu", "cuda").
    pub fn new(quiet: bool, json: bool, backend: String) -> Self {
        let mode = if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else {
            Mode::Text
        };
        Self { mode, backend }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Prints `line` on stdout without tearing the progress bar.
    fn emit(&self, bar: &ProgressBar, line: String) {
        bar.suspend(|| println!("{line}"));
    }

    pub fn written(&self, bar: &ProgressBar, w: &Written) {
        let bytes = std::fs::metadata(w.output).map(|m| m.len()).unwrap_or(0);
        match self.mode {
            Mode::Quiet => {}
            Mode::Text => self.emit(
                bar,
                format!(
                    "{}  {}  {}x{}  {:.1} s  {}",
                    w.output.display(),
                    human_size(bytes),
                    w.width,
                    w.height,
                    w.seconds,
                    self.backend
                ),
            ),
            Mode::Json => self.emit(
                bar,
                serde_json::json!({
                    "status": "ok",
                    "input": w.input.to_string_lossy(),
                    "output": w.output.to_string_lossy(),
                    "bytes": bytes,
                    "width": w.width,
                    "height": w.height,
                    "seconds": (w.seconds * 1000.0).round() / 1000.0,
                    "backend": self.backend,
                })
                .to_string(),
            ),
        }
    }

    pub fn skipped(&self, bar: &ProgressBar, input: &Path, output: &Path) {
        if self.mode == Mode::Json {
            self.emit(
                bar,
                serde_json::json!({
                    "status": "skipped",
                    "input": input.to_string_lossy(),
                    "output": output.to_string_lossy(),
                    "reason": "the output exists (--overwrite replaces it)",
                })
                .to_string(),
            );
        }
    }

    pub fn failed(&self, bar: &ProgressBar, input: &Path, output: &Path, error: &str) {
        if self.mode == Mode::Json {
            self.emit(
                bar,
                serde_json::json!({
                    "status": "error",
                    "input": input.to_string_lossy(),
                    "output": output.to_string_lossy(),
                    "error": error,
                })
                .to_string(),
            );
        }
    }
}

/// 1234567 -> "1.2 MB".
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} KB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// `--scale`: "auto" or 0 mean auto (as in GIMP, GEGL and the C API), else a fraction.
pub fn parse_scale(s: &str) -> Result<cyclegan::Scale, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(cyclegan::Scale::Auto);
    }
    match s.parse::<f32>() {
        Ok(0.0) => Ok(cyclegan::Scale::Auto),
        Ok(f) => Ok(cyclegan::Scale::Fraction(f)),
        Err(_) => Err(format!(
            "--scale {s:?}: give a number such as 0.5 (1 = native resolution), or 0 or \"auto\""
        )),
    }
}

/// A `--style` value as `Model::load` wants it: a shipped style in any letter case becomes
/// its canonical name; an existing file passes through; anything else is an error listing
/// the shipped styles.
pub fn resolve_style(name: &str) -> Result<String, String> {
    if let Some(canonical) = cyclegan::shipped_styles().find(|s| s.eq_ignore_ascii_case(name)) {
        return Ok(canonical.to_owned());
    }
    if Path::new(name).is_file() {
        return Ok(name.to_owned());
    }
    let known: Vec<&str> = cyclegan::shipped_styles().collect();
    Err(format!(
        "unknown style {name:?}; the shipped styles are: {} (`cyclegan styles` lists them; \
         use --model FILE for a style file)",
        known.join(", ")
    ))
}

/// The output path, or an error that says what to give.
pub fn require_output(inputs: &[PathBuf], output: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(o) = output {
        return Ok(o.clone());
    }
    let example = match inputs {
        [one] if one.is_file() => {
            let stem = one.file_stem().unwrap_or_default().to_string_lossy();
            let ext = one
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .filter(|e| ["png", "jpg", "jpeg", "tif", "tiff", "webp"].contains(&e.as_str()))
                .unwrap_or_else(|| "png".into());
            format!("-o {stem}-{}.{ext}", cyclegan::DEFAULT_STYLE)
        }
        _ => "-o FOLDER".to_owned(),
    };
    Err(format!(
        "no output given: add {example} (one input: an image file name; several inputs or a \
         folder: an output folder)"
    ))
}

/// Catches the output mistakes `plan_jobs` would otherwise turn into a surprise: a file
/// name for several inputs (it would become a folder named `two.png/`), and a folder that
/// does not exist for one input.
pub fn check_output(inputs: &[PathBuf], output: &Path) -> Result<(), String> {
    let several = inputs.len() > 1 || inputs.iter().any(|i| i.is_dir());
    let looks_like_image = output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| {
            ["png", "jpg", "jpeg", "tif", "tiff", "webp"].contains(&e.to_ascii_lowercase().as_str())
        });
    let trailing_slash = output.as_os_str().to_string_lossy().ends_with('/');
    if several && !output.exists() && looks_like_image && !trailing_slash {
        return Err(format!(
            "-o {}: several inputs are written into a folder, and this is an image file \
             name; give a folder (-o {}/) or stylize one file at a time",
            output.display(),
            output.with_extension("").display()
        ));
    }
    if !several && !output.exists() && (trailing_slash || output.extension().is_none()) {
        let name = inputs
            .first()
            .and_then(|i| i.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out.png".into());
        return Err(format!(
            "-o {}: no such folder, and not an image file name; give a file name such as \
             -o {} or create the folder first (mkdir -p {})",
            output.display(),
            Path::new(&output).join(&name).display(),
            output.display()
        ));
    }
    Ok(())
}

/// `cyclegan styles`: the shipped styles, one a line (or a JSON array).
pub fn print_styles(json: bool) {
    let styles: Vec<(&str, &str)> = cyclegan::shipped_styles()
        .map(|n| (n, cyclegan::style_label(n).unwrap_or("")))
        .collect();
    if json {
        let list: Vec<_> = styles
            .iter()
            .map(|(n, l)| {
                serde_json::json!({
                    "name": n, "label": l, "default": *n == cyclegan::DEFAULT_STYLE
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    let width = styles.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, label) in styles {
        let default = if name == cyclegan::DEFAULT_STYLE {
            " (default)"
        } else {
            ""
        };
        println!("{name:width$}  {label}{default}");
    }
}
