//! The `cyclegan` command line: stylize images, inspect and import weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use cyclegan::io::{read_image, write_image, DecodeLimits};
use cyclegan::weights::{save_style, Weights};
use cyclegan::{stylize, Backend, Model, Scale, StylizeOptions};

#[path = "backends_cmd.rs"]
mod backends_cmd;
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
    output: PathBuf,
    /// A shipped style name.
    #[arg(long, default_value = cyclegan::DEFAULT_STYLE, conflicts_with = "model")]
    style: String,
    /// A style file (.safetensors or .pth) instead of a shipped style.
    #[arg(long)]
    model: Option<PathBuf>,
    /// 0 keeps the photo, 1 is the full style.
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// Working resolution as a fraction of the input (1 = native), or "auto"
    /// (long side 384 px: brush strokes at the scale the style was trained on).
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
        Command::Backends => backends_cmd::run().map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "webp"];

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Pairs each input file with its output path.
fn plan_jobs(inputs: &[PathBuf], output: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let mut files = Vec::new();
    let mut any_dir = false;
    for input in inputs {
        if input.is_dir() {
            any_dir = true;
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("{}: {e}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_name(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let to_folder = any_dir || inputs.len() > 1 || output.is_dir();
    if !to_folder {
        return Ok(vec![(files.remove(0), output.to_path_buf())]);
    }
    if output.exists() && !output.is_dir() {
        return Err(format!(
            "{}: several inputs need an output folder, but this is a file",
            output.display()
        ));
    }
    std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let mut seen = std::collections::HashSet::new();
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .ok_or_else(|| format!("{}: not a file name", f.display()))?;
            let out = output.join(name);
            if !seen.insert(out.clone()) {
                return Err(format!(
                    "two inputs would both be written to {}; stylize them separately",
                    out.display()
                ));
            }
            Ok((f, out))
        })
        .collect()
}

/// Removes the temporary files that an earlier run killed mid-write (`kill -9`, a crash)
/// left beside this run's outputs; only names of our own pattern for files this run
/// writes, and only when the process that wrote them is gone.
fn remove_stale_temps(jobs: &[(PathBuf, PathBuf)]) {
    let mut by_dir: BTreeMap<PathBuf, std::collections::HashSet<String>> = BTreeMap::new();
    for (_, out) in jobs {
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Some(name) = out.file_name().and_then(|n| n.to_str()) {
            by_dir.entry(dir).or_default().insert(name.to_owned());
        }
    }
    for (dir, names) in by_dir {
        cyclegan::io::remove_stale_temps(&dir, |target| names.contains(target));
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn run_stylize(a: StylizeArgs) -> Result<ExitCode, String> {
    let scale = if a.scale == "auto" {
        Scale::Auto
    } else {
        Scale::Fraction(a.scale.parse().map_err(|_| {
            format!(
                "--scale {:?}: give a number such as 0.5 or \"auto\"",
                a.scale
            )
        })?)
    };
    let opts = StylizeOptions {
        strength: a.strength,
        scale,
        tile: a.tile,
        max_memory: a
            .max_memory
            .as_deref()
            .map(cyclegan::pipeline::parse_size)
            .transpose()
            .map_err(|e| format!("--max-memory: {e}"))?,
        detail: a.detail,
        precision: cyclegan::Precision::parse(&a.precision).map_err(|e| e.to_string())?,
    };
    opts.validate().map_err(|e| e.to_string())?;
    let limits = DecodeLimits {
        max_pixels: (a.max_megapixels * 1e6) as u64,
        ..DecodeLimits::default()
    };
    let jobs = plan_jobs(&a.inputs, &a.output)?;
    remove_stale_temps(&jobs);
    let backend = Backend::parse(&a.device).map_err(|e| e.to_string())?;
    if let Some(notice) = backend.fallback_notice() {
        eprintln!("note: {notice}");
    }
    let model = match &a.model {
        Some(p) => Model::load(&p.to_string_lossy(), backend),
        None => Model::load(&a.style, backend),
    }
    .map_err(|e| e.to_string())?;

    let batch = jobs.len() > 1;
    let bar = ProgressBar::new(if batch { jobs.len() as u64 } else { 1000 });
    bar.set_style(
        ProgressStyle::with_template(if batch {
            "{bar:30} {pos}/{len} images  {elapsed} elapsed, {eta} left  {msg}"
        } else {
            "{bar:30} {percent}%  {elapsed} elapsed, {eta} left  {msg}"
        })
        .expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut failures = Vec::new();
    let mut skipped = 0;
    for (input, output) in &jobs {
        bar.set_message(
            input
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        if same_file(input, output) {
            failures.push(format!(
                "{}: output would overwrite the input; choose another output",
                input.display()
            ));
        } else if output.exists() && !a.overwrite {
            skipped += 1;
        } else if let Err(e) = stylize_one(&model, input, output, &opts, &limits, &bar, batch) {
            failures.push(e);
        }
        if batch {
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if skipped > 0 {
        eprintln!("skipped {skipped} existing output(s); use --overwrite to replace them");
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        eprintln!("error: {f}");
    }
    eprintln!("{} of {} image(s) failed", failures.len(), jobs.len());
    Ok(ExitCode::FAILURE)
}

fn stylize_one(
    model: &Model,
    input: &Path,
    output: &Path,
    opts: &StylizeOptions,
    limits: &DecodeLimits,
    bar: &ProgressBar,
    batch: bool,
) -> Result<(), String> {
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
    write_image(output, &styled).map_err(|e| e.to_string())
}

fn run_info(file: &str) -> Result<ExitCode, String> {
    let weights = if Path::new(file).exists() {
        Weights::read(Path::new(file)).map_err(|e| e.to_string())?
    } else {
        cyclegan::style::shipped_weights(file)
            .ok_or_else(|| format!("{file}: no such file or shipped style"))?
            .map_err(|e| e.to_string())?
    };
    println!("file:       {file}");
    println!("format:     {:?}", weights.format);
    match weights.generator_config() {
        Ok(c) => {
            println!("network:    generator");
            println!("layout:     {}", c.layout.name());
            println!("filters:    {}", c.ngf);
            println!("blocks:     {}", c.blocks);
        }
        Err(e) => println!("network:    not a single generator ({e})"),
    }
    if let Some(d) = weights.dtype() {
        println!("dtype:      {}", format!("{d:?}").to_lowercase());
    }
    println!("parameters: {}", weights.parameter_count());
    println!("tensors:    {}", weights.tensors.len());
    for (k, v) in &weights.metadata {
        println!("meta {k}: {v}");
    }
    Ok(ExitCode::SUCCESS)
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
