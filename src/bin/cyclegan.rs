//! The `cyclegan` command line: stylize images, inspect and import weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use cyclegan::io::{read_image, write_image_with_quality, DecodeLimits};
use cyclegan::{save_style, Weights};
use cyclegan::{stylize, Backend, Model, StylizeOptions};

#[path = "backends_cmd.rs"]
mod backends_cmd;
mod report;
#[path = "train_cmd.rs"]
mod train_cmd;

#[derive(Parser)]
#[command(
    name = "cyclegan",
    version,
    about = "Repaint photos in a painter's style (CycleGAN)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stylize images or folders of images.
    Stylize(StylizeArgs),
    /// Describe a weights file: layout, filters, blocks, dtype, parameters, metadata.
    Info {
        /// A .safetensors or .pth file, or a shipped style name.
        file: String,
    },
    /// Convert a PyTorch generator checkpoint (.pth) into a style file (.safetensors).
    Import {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Stored precision of the style file.
        #[arg(long, default_value = "f16", value_parser = ["f16", "bf16", "f32"])]
        dtype: String,
        /// Style name recorded in the metadata (default: the output file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Learn a new style from a folder of photos and a folder of paintings.
    Train(train_cmd::TrainArgs),
    /// Merge the reports of every task that wrote into OUT: done, failed and missing inputs.
    /// Exits non-zero unless every input is done.
    Report {
        /// The output folder of `cyclegan stylize` (reads OUT/.cyclegan/*.jsonl).
        output: PathBuf,
        /// Further report files (written with `stylize --report`).
        #[arg(long = "report", value_name = "FILE")]
        reports: Vec<PathBuf>,
    },
    /// List the shipped styles (names for --style; any letter case).
    Styles {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// List the compute backends: the built-in CPU engine and the GPU backend libraries
    /// found on this machine (path, version, device or why not).
    Backends,
}

#[derive(Args)]
struct StylizeArgs {
    /// Image files or folders (PNG, JPEG, TIFF, WebP).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file, or folder when there are several inputs or a folder.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// A shipped style name, any letter case (`cyclegan styles` lists them).
    #[arg(long, default_value = cyclegan::DEFAULT_STYLE, conflicts_with = "model")]
    style: String,
    /// A style file (.safetensors or .pth) instead of a shipped style.
    #[arg(long)]
    model: Option<PathBuf>,
    /// 0 keeps the photo, 1 is the full style.
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// Working resolution as a fraction of the input (1 = native), or "auto" (also 0):
    /// long side 384 px, brush strokes at the scale the style was trained on.
    #[arg(long, default_value = "auto")]
    scale: String,
    /// How much of the photo's fine detail to restore when working below native size.
    #[arg(long, default_value_t = 0.5)]
    detail: f32,
    /// Force tiles of this side in working pixels (default: the whole image when it fits
    /// --max-memory, else the largest tiles that fit).
    #[arg(long)]
    tile: Option<u32>,
    /// Memory one image may use, e.g. 1500M or 2G (default: the smaller of 2 GiB and half
    /// the available memory).
    #[arg(long, value_name = "SIZE")]
    max_memory: Option<String>,
    /// auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Arithmetic: auto (bf16 where the machine is fast at it, else f32), f32 or bf16.
    #[arg(long, default_value = "auto")]
    precision: String,
    /// Replace outputs that already exist (they are skipped otherwise).
    #[arg(long)]
    overwrite: bool,
    /// Refuse images larger than this many megapixels (decompression-bomb guard).
    #[arg(long, default_value_t = 250.0)]
    max_megapixels: f64,
    /// Walk subfolders of input folders and mirror their layout under the output.
    #[arg(short, long)]
    recursive: bool,
    /// Process only share K of N (K from 0). Default: from SLURM_ARRAY_TASK_ID/_COUNT/_MIN,
    /// or JOB_COMPLETION_INDEX with --shard-count; else everything.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Number of shards for JOB_COMPLETION_INDEX (Kubernetes) or an explicit Slurm count
    /// (default: CYCLEGAN_SHARD_COUNT).
    #[arg(long, value_name = "N")]
    shard_count: Option<u64>,
    /// Append JSON Lines records here instead of OUT/.cyclegan/report-K-of-N.jsonl.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// JPEG quality of .jpg/.jpeg outputs, 1-100.
    #[arg(long, default_value_t = cyclegan::io::JPEG_QUALITY,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// Print only errors (no progress bar, no line per file).
    #[arg(short, long, conflicts_with = "json")]
    quiet: bool,
    /// Print one JSON object per file on stdout (status, input, output, bytes, width,
    /// height, seconds, backend; or the error).
    #[arg(long)]
    json: bool,
}

impl StylizeArgs {
    fn batch_request(&self, output: PathBuf) -> cyclegan::batch::Request {
        cyclegan::batch::Request {
            inputs: self.inputs.clone(),
            output,
            recursive: self.recursive,
            shard: self.shard.clone(),
            shard_count: self.shard_count,
            report: self.report.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stylize(args) => run_stylize(args),
        Command::Info { file } => run_info(&file),
        Command::Import {
            input,
            output,
            dtype,
            name,
        } => run_import(&input, &output, &dtype, name),
        Command::Train(args) => train_cmd::run(args),
        Command::Report { output, reports } => run_report(&output, &reports),
        Command::Styles { json } => {
            report::print_styles(json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Backends => backends_cmd::run().map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            // Messages quote names and text from input files; escape them so a file cannot
            // drive the terminal or forge lines.
            eprintln!("error: {}", cyclegan::error::escape_text(&msg));
            ExitCode::FAILURE
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn run_stylize(a: StylizeArgs) -> Result<ExitCode, String> {
    let scale = report::parse_scale(&a.scale)?;
    let opts = StylizeOptions {
        strength: a.strength,
        scale,
        tile: a.tile,
        max_memory: a
            .max_memory
            .as_deref()
            .map(cyclegan::parse_memory_size)
            .transpose()
            .map_err(|e| format!("--max-memory: {e}"))?,
        detail: a.detail,
        precision: cyclegan::Precision::parse(&a.precision).map_err(|e| e.to_string())?,
    };
    opts.validate().map_err(|e| e.to_string())?;
    let max_pixels = a.max_megapixels * 1e6;
    if !(max_pixels.is_finite() && max_pixels >= 1.0) {
        return Err(format!(
            "--max-megapixels {}: give a positive number of megapixels, at least 0.000001 \
             (one pixel); the default is 250",
            a.max_megapixels
        ));
    }
    let limits = DecodeLimits {
        max_pixels: max_pixels as u64,
        ..DecodeLimits::default()
    };
    let output = report::require_output(&a.inputs, a.output.as_ref())?;
    report::check_output(&a.inputs, &output)?;
    let style = match &a.model {
        Some(_) => None,
        None => Some(report::resolve_style(&a.style)?),
    };
    let plan = cyclegan::batch::plan(&a.batch_request(output))?;
    for line in plan.messages() {
        if !a.quiet {
            eprintln!("{line}");
        }
    }
    if plan.jobs().is_empty() {
        // Still record the (empty) share, so `cyclegan report` knows this task ran.
        cyclegan::batch::run(&plan, a.overwrite, |_| unreachable!(), |_, _| {})?;
        return Ok(ExitCode::SUCCESS);
    }
    let backend = Backend::parse(&a.device).map_err(|e| e.to_string())?;
    if let Some(notice) = backend.fallback_notice().filter(|_| !a.quiet) {
        eprintln!("note: {notice}");
    }
    let model = match &a.model {
        Some(p) => Model::load(&p.to_string_lossy(), backend),
        None => Model::load(style.as_deref().unwrap_or(&a.style), backend),
    }
    .map_err(|e| e.to_string())?;
    let backend_name = model.backend_name();
    let reporter = report::Reporter::new(a.quiet, a.json, backend_name.clone());

    let jobs = plan.jobs();
    let batch = plan.to_folder();
    let bar = ProgressBar::new(if batch { jobs.len() as u64 } else { 1000 });
    bar.set_style(
        ProgressStyle::with_template(if batch {
            "{bar:30} {pos}/{len} images  {elapsed} elapsed, {eta} left  {msg}"
        } else {
            "{bar:30} {percent}%  {elapsed} elapsed, {eta} left  {msg}"
        })
        .expect("static template"),
    );
    if reporter.mode() == report::Mode::Quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    // The size of the last image written, for its report line.
    let size = std::cell::Cell::new((0, 0));
    let summary = cyclegan::batch::run(
        &plan,
        a.overwrite,
        |job| {
            bar.set_message(job.key.clone());
            let (w, h) = stylize_one(
                &model,
                &job.input,
                &job.output,
                &opts,
                &limits,
                (&bar, batch),
                a.jpeg_quality,
            )?;
            size.set((w, h));
            Ok(cyclegan::batch::Processed {
                pixels: w as u64 * h as u64,
                backend: backend_name.clone(),
            })
        },
        |job, outcome| {
            match outcome {
                cyclegan::batch::Outcome::Done { seconds, .. } => reporter.written(
                    &bar,
                    &report::Written {
                        input: &job.input,
                        output: &job.output,
                        width: size.get().0,
                        height: size.get().1,
                        seconds: *seconds,
                    },
                ),
                cyclegan::batch::Outcome::Skipped => {
                    reporter.skipped(&bar, &job.input, &job.output)
                }
                cyclegan::batch::Outcome::Failed(e) => {
                    reporter.failed(&bar, &job.input, &job.output, e)
                }
            }
            if batch {
                bar.inc(1);
            }
        },
    )?;
    bar.finish_and_clear();
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if summary.skipped > 0 && reporter.mode() != report::Mode::Quiet {
        eprintln!(
            "skipped {} existing output(s); use --overwrite to replace them",
            summary.skipped
        );
    }
    if summary.failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &summary.failures {
        eprintln!("error: {}", cyclegan::error::escape_text(f));
    }
    eprintln!(
        "{} of {} image(s) failed",
        summary.failures.len(),
        jobs.len()
    );
    Ok(ExitCode::FAILURE)
}

fn run_report(output: &Path, reports: &[PathBuf]) -> Result<ExitCode, String> {
    let summary = cyclegan::batch::summarize_folder(output, reports)?;
    print!("{}", summary.render());
    Ok(if summary.all_done() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Returns the size of the image written.
fn stylize_one(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &StylizeOptions,
    limits: &DecodeLimits,
    (bar, batch): (&ProgressBar, bool),
    jpeg_quality: u8,
) -> Result<(u32, u32), String> {
    // Check the output format before spending time on the network.
    cyclegan::io::output_format(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let pixels = read_image(input, limits).map_err(|e| e.to_string())?;
    let styled = stylize(model, &pixels, opts, &mut |f| {
        if !batch {
            bar.set_position((f * 1000.0) as u64);
        }
        true
    })
    .map_err(|e| format!("{}: {e}", input.display()))?;
    // The input is not needed while the output is encoded.
    drop(pixels);
    write_image_with_quality(output, &styled, jpeg_quality).map_err(|e| e.to_string())?;
    Ok((styled.width(), styled.height()))
}

fn run_info(file: &str) -> Result<ExitCode, String> {
    let canonical = report::resolve_style(file).unwrap_or_else(|_| file.to_owned());
    let file = canonical.as_str();
    let weights = if Path::new(file).exists() {
        Weights::read(Path::new(file)).map_err(|e| e.to_string())?
    } else {
        cyclegan::shipped_weights(file)
            .ok_or_else(|| format!("{file}: no such file or shipped style"))?
            .map_err(|e| e.to_string())?
    };
    use cyclegan::error::escape_text as esc;
    let mut lines = vec![
        format!("file:       {}", esc(file)),
        format!("format:     {:?}", weights.format),
    ];
    match weights.generator_config() {
        Ok(c) => {
            lines.push("network:    generator".into());
            lines.push(format!("layout:     {}", c.layout.name()));
            lines.push(format!("filters:    {}", c.ngf));
            lines.push(format!("blocks:     {}", c.blocks));
        }
        Err(e) => lines.push(format!(
            "network:    not a single generator ({})",
            esc(&e.to_string())
        )),
    }
    if let Some(d) = weights.dtype() {
        lines.push(format!("dtype:      {}", format!("{d:?}").to_lowercase()));
    }
    lines.push(format!("parameters: {}", weights.parameter_count()));
    lines.push(format!("tensors:    {}", weights.tensors.len()));
    for (k, v) in &weights.metadata {
        // Metadata is free text from the file: a value could hold terminal escapes.
        lines.push(format!("meta {}: {}", esc(k), esc(v)));
    }
    // `cyclegan info monet | head -3` closes the pipe early: that is the reader's choice,
    // not a failure (println! would panic on it).
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in lines {
        match writeln!(out, "{l}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(format!("cannot write to standard output: {e}")),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {e}"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn run_import(
    input: &Path,
    output: &Path,
    dtype: &str,
    name: Option<String>,
) -> Result<ExitCode, String> {
    if same_file(input, output) {
        return Err(format!(
            "{}: output would overwrite the input",
            output.display()
        ));
    }
    if output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(format!(
            "{}: the output must end in .safetensors",
            output.display()
        ));
    }
    let weights = Weights::read(input).map_err(|e| e.to_string())?;
    let config = weights
        .generator_config()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    // Building the generator checks every shape and value before anything is written.
    weights
        .generator(&candle_core::Device::Cpu, candle_core::DType::F32)
        .map_err(|e| format!("{}: {}", input.display(), e))?;
    let prefix = weights.generator_prefixes().remove(0);
    let tensors = weights.subset(&prefix);
    let dtype = match dtype {
        "f16" => candle_core::DType::F16,
        "bf16" => candle_core::DType::BF16,
        _ => candle_core::DType::F32,
    };
    let mut meta = BTreeMap::new();
    meta.insert(
        "name".into(),
        name.unwrap_or_else(|| {
            output
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        }),
    );
    meta.insert(
        "source".into(),
        input
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    );
    save_style(output, &tensors, dtype, meta, config).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} generator, {} filters, {} blocks)",
        output.display(),
        config.layout.name(),
        config.ngf,
        config.blocks
    );
    Ok(ExitCode::SUCCESS)
}
