//! A real Slurm job array over a generated collection (issue #16): `sbatch --wait
//! --array=0-2` of a script that runs `cyclegan stylize -r` with no `--shard`; every image
//! done exactly once by the task its path hashes to, shares disjoint and balanced,
//! `cyclegan report` exiting 0, and a task cancelled mid-run with `scancel` that, resubmitted,
//! finishes its share without redoing what was done.
//!
//! Needs root, slurm-wlm and munge (Debian). `scripts/slurm-local.sh` starts a single-node
//! cluster when none answers, and the test stops the daemons it started. Without the
//! packages the test is skipped with a notice, unless CYCLEGAN_REQUIRE_HOSTS=1 (CI), where
//! it fails.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, gradient_rgb, TempDir};

fn required() -> bool {
    std::env::var("CYCLEGAN_REQUIRE_HOSTS").is_ok_and(|v| v == "1")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster: started by us (and stopped on drop) or one that already answered.
struct Cluster {
    conf: String,
    started: bool,
}

impl Cluster {
    fn up() -> Option<Cluster> {
        let missing: Vec<&str> = [
            "sbatch",
            "scancel",
            "squeue",
            "slurmctld",
            "slurmd",
            "munged",
        ]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
        if !missing.is_empty() {
            let msg = format!(
                "Slurm is not installed (missing {}): apt-get install slurm-wlm munge",
                missing.join(", ")
            );
            assert!(!required(), "{msg} (CYCLEGAN_REQUIRE_HOSTS=1)");
            eprintln!("skipping: {msg}");
            return None;
        }
        let out = Command::new(repo().join("scripts/slurm-local.sh"))
            .arg("start")
            .output()
            .expect("runs scripts/slurm-local.sh");
        // Stops whatever was started, also when the start failed half-way.
        let mut cluster = Cluster {
            conf: String::new(),
            started: true,
        };
        assert!(
            out.status.success(),
            "starting Slurm failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.conf = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("SLURM_CONF=").map(str::to_owned))
            .expect("the script prints SLURM_CONF");
        Some(cluster)
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(repo().join("scripts/slurm-local.sh"))
                .arg("stop")
                .status();
        }
    }
}

/// A child process killed if the test fails while it runs.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Each result record as (key, status, shard).
fn results(out: &Path) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir(out.join(".cyclegan")) else {
        return v; // no task has started yet
    };
    for e in dir {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines() {
            let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line torn by the cancelled task
            };
            if r["type"] == "result" {
                v.push((
                    r["key"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                    r["shard"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    v
}

fn report(out: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_cyclegan"))
        .args(["report", out.to_str().unwrap()])
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn slurm_array_splits_resumes_and_reports() {
    let Some(cluster) = Cluster::up() else {
        return;
    };
    let t = TempDir::new("slurm");
    let src = t.join("photos");
    let out = t.join("out");
    // 30 images in nested folders. Shard 1's are larger, so that its task is still working
    // when it is cancelled; the others are 64x64.
    let mut keys = Vec::new();
    for i in 0..30 {
        let key = match i % 3 {
            0 => format!("2019/spring/p{i:02}.png"),
            1 => format!("2019/p{i:02}.jpg"),
            _ => format!("p{i:02}.png"),
        };
        let side = if cyclegan::batch::shard_of(&key, 3) == 1 {
            320
        } else {
            64
        };
        let p = src.join(&key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        gradient_rgb(side, side).save(&p).unwrap();
        keys.push(key);
    }
    keys.sort();
    let script = t.join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -e\nexec {bin} stylize {src} -o {out} --recursive --scale 1 --model {model}\n",
            bin = env!("CARGO_BIN_EXE_cyclegan"),
            src = src.display(),
            out = out.display(),
            model = fixture("el_ngf8_b9.safetensors").display(),
        ),
    )
    .unwrap();
    let logs = t.join("log_%a.txt");

    // The array, waited for by sbatch itself; task 1 is cancelled once it has done one
    // image and before it has done them all.
    let mut sbatch = Reaped(
        cluster
            .cmd("sbatch")
            .args(["--parsable", "--wait", "--array=0-2", "-o"])
            .arg(&logs)
            .arg(&script)
            .env_remove("CYCLEGAN_SHARD_COUNT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sbatch runs"),
    );
    let mut first = String::new();
    BufReader::new(sbatch.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let job: String = first.trim().split(';').next().unwrap().to_owned();
    assert!(job.parse::<u64>().is_ok(), "sbatch said {first:?}");
    let share1: Vec<&String> = keys
        .iter()
        .filter(|k| cyclegan::batch::shard_of(k, 3) == 1)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done_by_1 = loop {
        let n = results(&out)
            .iter()
            .filter(|r| r.2 == "1/3" && r.1 == "done")
            .count()
            .min(share1.len());
        if n >= 1 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let cancel = cluster
        .cmd("scancel")
        .arg(format!("{job}_1"))
        .status()
        .unwrap();
    assert!(cancel.success(), "scancel failed");
    let status = sbatch.0.wait().unwrap();
    let log1 = std::fs::read_to_string(t.join("log_1.txt")).unwrap_or_default();
    assert!(done_by_1 >= 1, "task 1 did nothing in 120 s: {log1}");
    assert!(
        !status.success(),
        "sbatch --wait reports the cancelled task"
    );
    let after_cancel = results(&out)
        .iter()
        .filter(|r| r.2 == "1/3" && r.1 == "done")
        .count();
    assert!(
        after_cancel < share1.len(),
        "task 1 finished all {} images before it was cancelled; not a mid-run cancel",
        share1.len()
    );
    let (ok, text) = report(&out);
    assert!(
        !ok,
        "report must fail while task 1's share is unfinished: {text}"
    );
    assert!(text.contains("missing: "), "{text}");

    // The first line of each finished task's log names its share.
    let mut sizes = BTreeMap::new();
    for k in 0..3 {
        let log = std::fs::read_to_string(t.join(&format!("log_{k}.txt"))).unwrap();
        let first = log.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("shard {k}/3 (Slurm array task {k}): ")),
            "task {k}: {log}"
        );
        let n: usize = first
            .split("): ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(first.ends_with(&format!("{n} of 30 images")), "{first}");
        sizes.insert(k, n);
    }
    assert_eq!(sizes.values().sum::<usize>(), 30, "{sizes:?}");
    let (lo, hi) = (sizes.values().min().unwrap(), sizes.values().max().unwrap());
    assert!(hi - lo <= 6, "unbalanced shares {sizes:?}");

    // Resubmit task 1 alone: with the count given, array id 1 is shard 1 of 3.
    let status = cluster
        .cmd("sbatch")
        .args(["--wait", "--array=1", "-o"])
        .arg(t.join("log_resubmitted.txt"))
        .arg(&script)
        .env("CYCLEGAN_SHARD_COUNT", "3")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let log = std::fs::read_to_string(t.join("log_resubmitted.txt")).unwrap_or_default();
    assert!(status.success(), "resubmitted task failed: {log}");
    assert!(
        log.starts_with(&format!(
            "shard 1/3 (SLURM_ARRAY_TASK_ID=1, CYCLEGAN_SHARD_COUNT=3): {} of 30 images",
            share1.len()
        )),
        "{log}"
    );
    // What was done before the cancel is skipped, not redone (one more may have been
    // written between its rename and its report line).
    let skipped: usize = log
        .lines()
        .find_map(|l| l.strip_prefix("skipped ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        skipped >= after_cancel && skipped <= after_cancel + 1,
        "{after_cancel} were done before the cancel: {log}"
    );

    // Every image exactly once, by the task its path hashes to, and decodable.
    let recs = results(&out);
    for key in &keys {
        let owner = format!("{}/3", cyclegan::batch::shard_of(key, 3));
        let mine: Vec<_> = recs.iter().filter(|r| &r.0 == key).collect();
        assert!(mine.iter().all(|r| r.2 == owner), "{key}: {mine:?}");
        let done = mine.iter().filter(|r| r.1 == "done").count();
        assert!(done <= 1, "{key} done {done} times");
        assert!(
            done == 1 || mine.iter().any(|r| r.1 == "skipped"),
            "{key}: {mine:?}"
        );
        let a = image::open(src.join(key)).unwrap();
        let b = image::open(out.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    }
    let (ok, text) = report(&out);
    assert!(ok, "{text}");
    assert!(
        text.starts_with("30 inputs: 30 done, 0 failed, 0 missing"),
        "{text}"
    );
    eprintln!(
        "shares {sizes:?}; task 1 cancelled after {after_cancel} of {} images; the resubmitted task skipped {skipped}",
        share1.len()
    );
}
