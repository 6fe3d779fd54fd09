//! Batches of images: collections walked from folders (optionally recursively), split
//! into shards across the tasks of a Slurm job array or a Kubernetes Indexed Job, with a
//! JSON Lines report per task and a merged summary. The CLI's `stylize` and `report`
//! commands are thin wrappers over [`plan`], [`run`] and [`summarize_folder`].
//!
//! See docs/scale-out.md for the user's view.

mod report;
mod shard;
mod temp;
mod walk;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use report::{summarize, Summary};
pub use shard::{shard_of, Shard};
pub use temp::host_name;
pub(crate) use temp::{own_host_writer, writer_tag};
pub use walk::{is_image_name, IMAGE_EXTENSIONS};

/// What the user asked for (the CLI's `stylize` arguments that decide the batch).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub recursive: bool,
    /// `--shard K/N`.
    pub shard: Option<String>,
    /// `--shard-count N` (with `JOB_COMPLETION_INDEX` or an explicit Slurm count).
    pub shard_count: Option<u64>,
    /// `--report FILE` instead of `OUT/.cyclegan/report-K-of-N.jsonl`.
    pub report: Option<PathBuf>,
}

/// One input of this task's share.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The output's path relative to OUT (`/`-separated): the shard key.
    pub key: String,
}

/// This task's share, ready to run.
#[derive(Debug)]
pub struct Plan {
    jobs: Vec<Job>,
    shard: Shard,
    collection: usize,
    to_folder: bool,
    report: Option<PathBuf>,
    messages: Vec<String>,
}

impl Plan {
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Whether the output is a folder (several inputs, or a folder input).
    pub fn to_folder(&self) -> bool {
        self.to_folder
    }

    pub fn report_path(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    /// What to print before any work: first the share this task took (when the output is
    /// a folder or the run is sharded), then what the walk skipped.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

/// The environment variables [`plan`] reads.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Lists the inputs, takes this task's share and pairs each with its output; creates the
/// output folder when it is one. Reads the scheduler's variables from the environment.
pub fn plan(req: &Request) -> Result<Plan, String> {
    plan_with_env(req, process_env)
}

fn plan_with_env(req: &Request, env: impl Fn(&str) -> Option<String>) -> Result<Plan, String> {
    let (shard, source) = shard::resolve(req.shard.as_deref(), req.shard_count, env)?;
    let output = &req.output;
    let any_dir = req.inputs.iter().any(|i| i.is_dir());
    let to_folder = any_dir || req.inputs.len() > 1 || output.is_dir();
    let mut messages = Vec::new();

    let mut found = Vec::new();
    let (mut sub_images, mut sub_folders) = (0, 0);
    let mut non_images = Vec::new();
    let mut problems = Vec::new();
    for input in &req.inputs {
        if input.is_dir() {
            let l = walk::walk(input, req.recursive, Some(output))?;
            sub_images += l.images_in_skipped_subfolders;
            sub_folders += l.skipped_subfolders_with_images;
            non_images.extend(l.non_images);
            problems.extend(l.problems);
            found.extend(l.images);
        } else {
            let name = input
                .file_name()
                .ok_or_else(|| format!("{}: not a file name", input.display()))?;
            found.push(walk::Found {
                path: input.clone(),
                rel: name.to_string_lossy().into_owned(),
            });
        }
    }
    if found.is_empty() && !any_dir {
        return Err("no inputs".into());
    }

    if to_folder {
        if output.exists() && !output.is_dir() {
            return Err(format!(
                "{}: several inputs need an output folder, but this is a file",
                output.display()
            ));
        }
        std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    }
    let collection = found.len();
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    for f in found {
        let out = if to_folder {
            output.join(&f.rel)
        } else {
            output.clone()
        };
        if !seen.insert(f.rel.clone()) {
            return Err(format!(
                "two inputs would both be written to {}; stylize them separately",
                out.display()
            ));
        }
        if shard.owns(&f.rel) {
            jobs.push(Job {
                input: f.path,
                output: out,
                key: f.rel,
            });
        }
    }

    if to_folder || shard != Shard::WHOLE {
        messages.push(if shard == Shard::WHOLE {
            format!("all {collection} images (no shard)")
        } else {
            format!(
                "shard {shard} ({source}): {} of {collection} images",
                jobs.len()
            )
        });
    }
    if sub_images > 0 {
        messages.push(format!(
            "{sub_images} images in {sub_folders} subfolders skipped; use --recursive"
        ));
    }
    if !non_images.is_empty() {
        let examples: Vec<String> = non_images
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        messages.push(format!(
            "{} non-image files skipped (e.g. {}); images end in {}",
            non_images.len(),
            examples.join(", "),
            IMAGE_EXTENSIONS.join(", ")
        ));
    }
    const MAX_PROBLEMS: usize = 20;
    for p in problems.iter().take(MAX_PROBLEMS) {
        messages.push(p.clone());
    }
    if problems.len() > MAX_PROBLEMS {
        messages.push(format!(
            "... and {} more folders or links skipped",
            problems.len() - MAX_PROBLEMS
        ));
    }

    let report = match &req.report {
        Some(r) => Some(r.clone()),
        None if to_folder => Some(report::default_report_path(output, shard)),
        None => None,
    };
    Ok(Plan {
        jobs,
        shard,
        collection,
        to_folder,
        report,
        messages,
    })
}

/// What processing one input produced.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Pixels of the input (width x height).
    pub pixels: u64,
    /// The backend that ran it ("cpu", "cuda", ...).
    pub backend: String,
}

/// What happened to one input.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done {
        seconds: f64,
        pixels: u64,
    },
    /// The output already existed (and `overwrite` was off).
    Skipped,
    Failed(String),
}

/// The counts of a [`run`].
#[derive(Debug, Default)]
pub struct RunSummary {
    pub done: usize,
    pub skipped: usize,
    /// One message per failed input, naming it.
    pub failures: Vec<String>,
    /// Report lines that could not be written.
    pub warnings: Vec<String>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Removes the temporaries that an earlier run killed mid-write left beside this share's
/// outputs: only names of our pattern, for files this share writes, written on this host
/// by a process that is gone (see [`crate::io::remove_stale_temps`]).
fn remove_stale_temps(jobs: &[Job]) {
    let mut by_dir: BTreeMap<PathBuf, HashSet<String>> = BTreeMap::new();
    for j in jobs {
        let dir = match j.output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Some(name) = j.output.file_name().and_then(|n| n.to_str()) {
            by_dir.entry(dir).or_default().insert(name.to_owned());
        }
    }
    for (dir, names) in by_dir {
        crate::io::remove_stale_temps(&dir, |target| names.contains(target));
    }
}

/// Runs this task's share: records the plan in the report, then for each input skips it
/// when its output exists (unless `overwrite`), else calls `process` (which must write
/// the output atomically) and records the outcome; `observe` sees every outcome (progress
/// display). A failed input does not stop the others.
pub fn run(
    plan: &Plan,
    overwrite: bool,
    mut process: impl FnMut(&Job) -> Result<Processed, String>,
    mut observe: impl FnMut(&Job, &Outcome),
) -> Result<RunSummary, String> {
    remove_stale_temps(&plan.jobs);
    let mut report = match &plan.report {
        Some(p) => Some(report::ReportWriter::open(p, plan.shard)?),
        None => None,
    };
    if let Some(r) = report.as_mut() {
        let list: Vec<(&str, &Path, &Path)> = plan
            .jobs
            .iter()
            .map(|j| (j.key.as_str(), j.input.as_path(), j.output.as_path()))
            .collect();
        r.plan(plan.collection, &list)?;
    }
    let mut summary = RunSummary::default();
    for job in &plan.jobs {
        let start = Instant::now();
        let mut backend = None;
        let outcome = if same_file(&job.input, &job.output) {
            Outcome::Failed(format!(
                "{}: output would overwrite the input; choose another output",
                job.input.display()
            ))
        } else if job.output.is_dir() {
            Outcome::Failed(format!(
                "{}: a folder of that name is where this output would be written; rename or \
                 move the folder, or choose another output",
                job.output.display()
            ))
        } else if job.output.exists() && !overwrite {
            Outcome::Skipped
        } else {
            let made = match job.output.parent() {
                Some(d) if !d.as_os_str().is_empty() && plan.to_folder => {
                    std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))
                }
                _ => Ok(()),
            };
            match made.and_then(|()| process(job)) {
                Ok(p) => {
                    backend = Some(p.backend);
                    Outcome::Done {
                        seconds: start.elapsed().as_secs_f64(),
                        pixels: p.pixels,
                    }
                }
                Err(e) => Outcome::Failed(e),
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        let (status, error, pixels) = match &outcome {
            Outcome::Done { pixels, .. } => {
                summary.done += 1;
                ("done", None, Some(*pixels))
            }
            Outcome::Skipped => {
                summary.skipped += 1;
                ("skipped", None, None)
            }
            Outcome::Failed(e) => {
                summary.failures.push(e.clone());
                ("failed", Some(e.as_str()), None)
            }
        };
        if let Some(r) = report.as_mut() {
            if let Err(e) = r.result(
                &job.key,
                &job.input,
                &job.output,
                status,
                error,
                seconds,
                pixels,
                backend.as_deref(),
            ) {
                summary.warnings.push(e);
            }
        }
        observe(job, &outcome);
    }
    Ok(summary)
}

/// `cyclegan report OUT`: merges `OUT/.cyclegan/*.jsonl` and any `extra` report files.
pub fn summarize_folder(out: &Path, extra: &[PathBuf]) -> Result<Summary, String> {
    let mut files = if extra.is_empty() || out.join(report::REPORT_DIR).is_dir() {
        report::report_files(out)?
    } else {
        Vec::new()
    };
    files.extend(extra.iter().cloned());
    if files.is_empty() {
        return Err(format!(
            "{}: no report files; run `cyclegan stylize ... -o {}` first",
            out.display(),
            out.display()
        ));
    }
    summarize(&files, Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_driven_plans_split_a_folder_disjointly() {
        let root = std::env::temp_dir().join(format!("cyclegan-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let src = root.join("src");
        for i in 0..40 {
            let p = src.join(format!("d{}/img{i}.png", i % 4));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let req = Request {
            inputs: vec![src.clone()],
            output: root.join("out"),
            recursive: true,
            ..Request::default()
        };
        let mut all = Vec::new();
        for k in 0..3 {
            let id = k.to_string();
            let p = plan_with_env(&req, |n| match n {
                "JOB_COMPLETION_INDEX" => Some(id.clone()),
                "CYCLEGAN_SHARD_COUNT" => Some("3".into()),
                _ => None,
            })
            .unwrap();
            assert_eq!(p.shard(), Shard { index: k, count: 3 });
            assert!(
                p.messages()[0].starts_with(&format!("shard {k}/3 (JOB_COMPLETION_INDEX={k}")),
                "{:?}",
                p.messages()
            );
            assert!(p.messages()[0].ends_with(&format!("{} of 40 images", p.jobs().len())));
            assert_eq!(
                p.report_path().unwrap(),
                root.join(format!("out/.cyclegan/report-{k}-of-3.jsonl"))
            );
            for j in p.jobs() {
                assert_eq!(j.output, root.join("out").join(&j.key));
                all.push(j.key.clone());
            }
        }
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (40, 40), "every input exactly once");
        let _ = std::fs::remove_dir_all(&root);
    }
}
