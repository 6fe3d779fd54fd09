//! JSON Lines reports: each task appends what it planned and what happened to each input;
//! `cyclegan report OUT` merges every task's file and tells done from failed and missing.
//!
//! Two kinds of line, one JSON object each:
//! - `{"type":"plan","shard":"K/N","collection":T,"share":S,"host":..,"pid":..,"time":..,
//!   "inputs":[{"key":..,"input":..,"output":..},...]}` when a task starts: its share of
//!   the inputs, so the summary knows what should exist even for inputs never attempted;
//! - `{"type":"result","key":..,"input":..,"output":..,"status":"done|skipped|failed",
//!   "error":..,"seconds":..,"pixels":..,"backend":..,"host":..,"pid":..,"shard":..,
//!   "time":..}` after each input.
//!
//! A line is written with a single `write` on a file opened for appending, so tasks that
//! share a `--report FILE` on a local disk do not interleave (NFS gives no such promise for
//! appends: there, keep the default, one file per task).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::shard::Shard;
use super::temp::host_name;

/// The folder under OUT that holds the reports.
pub const REPORT_DIR: &str = ".cyclegan";

/// Where task `shard` reports by default.
pub fn default_report_path(out: &Path, shard: Shard) -> PathBuf {
    out.join(REPORT_DIR)
        .join(format!("report-{}-of-{}.jsonl", shard.index, shard.count))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An open report file.
pub struct ReportWriter {
    file: File,
    path: PathBuf,
    shard: String,
}

impl ReportWriter {
    pub fn open(path: &Path, shard: Shard) -> Result<Self, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("report folder {}: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("report {}: {e}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            shard: shard.to_string(),
        })
    }

    fn line(&mut self, v: &Value) -> Result<(), String> {
        let mut s = v.to_string();
        s.push('\n');
        self.file
            .write_all(s.as_bytes())
            .map_err(|e| format!("report {}: {e}", self.path.display()))
    }

    /// Records the share this task is about to do: `(key, input, output)` per input.
    pub fn plan(&mut self, collection: usize, jobs: &[(&str, &Path, &Path)]) -> Result<(), String> {
        let inputs: Vec<Value> = jobs
            .iter()
            .map(|(k, i, o)| json!({"key": k, "input": i.to_string_lossy(), "output": o.to_string_lossy()}))
            .collect();
        let v = json!({
            "type": "plan",
            "shard": self.shard,
            "collection": collection,
            "share": jobs.len(),
            "host": host_name(),
            "pid": std::process::id(),
            "time": now(),
            "inputs": inputs,
        });
        self.line(&v)
    }

    /// Records what happened to one input.
    #[allow(clippy::too_many_arguments)]
    pub fn result(
        &mut self,
        key: &str,
        input: &Path,
        output: &Path,
        status: &str,
        error: Option<&str>,
        seconds: f64,
        pixels: Option<u64>,
        backend: Option<&str>,
    ) -> Result<(), String> {
        let v = json!({
            "type": "result",
            "key": key,
            "input": input.to_string_lossy(),
            "output": output.to_string_lossy(),
            "status": status,
            "error": error,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "pixels": pixels,
            "backend": backend,
            "host": host_name(),
            "pid": std::process::id(),
            "shard": self.shard,
            "time": now(),
        });
        self.line(&v)
    }
}

/// The report files of an output folder: `OUT/.cyclegan/*.jsonl`.
pub fn report_files(out: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = out.join(REPORT_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "{}: no reports here ({e}); was this the -o folder of `cyclegan stylize`?",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// One input's merged state.
#[derive(Debug, Default, Clone)]
struct Entry {
    input: String,
    output: String,
    planned_by: BTreeSet<String>,
    /// (time, status, error, host, shard) of every result, in file order.
    results: Vec<(f64, String, Option<String>, String, String)>,
}

/// The merged state of a collection.
#[derive(Debug, Default)]
pub struct Summary {
    pub done: Vec<String>,
    /// key, last error, where it failed
    pub failed: Vec<(String, String, String)>,
    /// key, why
    pub missing: Vec<(String, String)>,
    /// Shards known to exist (from a plan's `K/N`) that never wrote a plan.
    pub unstarted: Vec<String>,
    /// Inputs of unstarted shards: the largest collection size seen minus what was planned.
    pub unplanned: usize,
    pub warnings: Vec<String>,
    pub total: usize,
}

impl Summary {
    pub fn all_done(&self) -> bool {
        self.failed.is_empty()
            && self.missing.is_empty()
            && self.unstarted.is_empty()
            && self.unplanned == 0
            && self.total > 0
    }

    /// The human-readable summary `cyclegan report` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let known = self.total + self.unplanned;
        s.push_str(&format!(
            "{known} inputs: {} done, {} failed, {} missing\n",
            self.done.len(),
            self.failed.len(),
            self.missing.len() + self.unplanned
        ));
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        for (k, e, at) in &self.failed {
            s.push_str(&format!("failed:  {k}: {e} ({at})\n"));
        }
        for (k, why) in &self.missing {
            s.push_str(&format!("missing: {k} ({why})\n"));
        }
        if !self.unstarted.is_empty() {
            s.push_str(&format!(
                "missing: shard(s) {} never started, so {} of their inputs are unknown; run them\n",
                self.unstarted.join(", "),
                self.unplanned
            ));
        } else if self.unplanned > 0 {
            s.push_str(&format!(
                "missing: {} inputs were never planned by any task\n",
                self.unplanned
            ));
        }
        if self.all_done() {
            s.push_str("all done\n");
        }
        s
    }
}

/// Merges report files. `out`: the output folder whose files are checked for existence
/// (outputs recorded as done but absent count as missing); `None` trusts the recorded path.
pub fn summarize(files: &[PathBuf], out: Option<&Path>) -> Result<Summary, String> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut shards_planned: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut collection = 0usize;
    let mut warnings = Vec::new();
    for f in files {
        let file = File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", f.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    // A task killed mid-line leaves a torn last line; the others still count.
                    warnings.push(format!(
                        "{}:{}: not a report line ({e}); ignored",
                        f.display(),
                        n + 1
                    ));
                    continue;
                }
            };
            let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            match v.get("type").and_then(Value::as_str) {
                Some("plan") => {
                    let shard = str_of("shard");
                    if let Some((k, n)) = shard
                        .split_once('/')
                        .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
                    {
                        shards_planned.entry(n).or_default().insert(k);
                    }
                    collection = collection
                        .max(v.get("collection").and_then(Value::as_u64).unwrap_or(0) as usize);
                    for i in v
                        .get("inputs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let g = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                        let e = entries.entry(g("key")).or_default();
                        e.input = g("input");
                        e.output = g("output");
                        e.planned_by.insert(shard.clone());
                    }
                }
                Some("result") => {
                    let e = entries.entry(str_of("key")).or_default();
                    if e.input.is_empty() {
                        e.input = str_of("input");
                        e.output = str_of("output");
                    }
                    e.results.push((
                        v.get("time").and_then(Value::as_f64).unwrap_or(0.0),
                        str_of("status"),
                        v.get("error").and_then(Value::as_str).map(str::to_owned),
                        str_of("host"),
                        str_of("shard"),
                    ));
                }
                _ => warnings.push(format!(
                    "{}:{}: unknown record type; ignored",
                    f.display(),
                    n + 1
                )),
            }
        }
    }

    let mut s = Summary {
        warnings,
        total: entries.len(),
        ..Summary::default()
    };
    for (key, e) in &entries {
        let output = match out {
            Some(o) => o.join(key),
            None => PathBuf::from(&e.output),
        };
        let succeeded = e.results.iter().any(|r| r.1 == "done" || r.1 == "skipped");
        let last = e.results.iter().max_by(|a, b| a.0.total_cmp(&b.0));
        if succeeded && output.is_file() {
            s.done.push(key.clone());
        } else if succeeded {
            s.missing.push((
                key.clone(),
                format!("recorded done but {} is absent", output.display()),
            ));
        } else if let Some((_, status, err, host, shard)) = last.filter(|r| r.1 == "failed") {
            let _ = status;
            s.failed.push((
                key.clone(),
                err.clone().unwrap_or_else(|| "failed".into()),
                format!("shard {shard} on {host}"),
            ));
        } else if output.is_file() {
            // Written, then the task died before its report line.
            s.done.push(key.clone());
        } else {
            let by: Vec<&str> = e.planned_by.iter().map(String::as_str).collect();
            s.missing.push((
                key.clone(),
                if by.is_empty() {
                    "no result".to_owned()
                } else {
                    format!("planned by shard {}, no result yet", by.join(", "))
                },
            ));
        }
    }
    // Shards a plan names (K of N) that never planned anything themselves.
    for (n, ks) in &shards_planned {
        if *n == 1 && ks.contains(&0) {
            continue;
        }
        for k in 0..*n {
            if !ks.contains(&k) {
                s.unstarted.push(format!("{k}/{n}"));
            }
        }
    }
    s.unplanned = collection.saturating_sub(entries.len());
    // A shard of one layout may be covered by another (re-run with a different N, or one
    // whole-collection run): only flag unstarted shards when inputs are really unaccounted.
    if s.unplanned == 0 {
        s.unstarted.clear();
    }
    Ok(s)
}
