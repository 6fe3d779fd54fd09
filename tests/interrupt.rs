//! `kill -9` at seeded random moments: a folder batch and a training run are killed while
//! they write, rerun, and must end exactly as an uninterrupted run would: every output
//! whole, none written twice, no temporary files left behind, training resumed from a
//! checkpoint at most one interval old.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{fixture, TempDir};

/// splitmix64: the kill moments are random but the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn cyclegan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cyclegan"))
}

/// The files in `dir`, without the batch's report folder `.cyclegan`.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".cyclegan")
        .collect()
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// A temporary name as a killed writer on this host (process `pid`, now gone) would have
/// left it.
fn dead_writers_temp(target: &str, pid: u32) -> String {
    let host = cyclegan::batch::host_name();
    format!(".{target}.cyclegan-{host}-{pid}-0badf00d.tmp")
}

/// Sends SIGKILL and reaps the process; returns its pid, now free.
fn kill9(child: &mut Child) -> u32 {
    let pid = child.id();
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the process finished before it was killed"
    );
    pid
}

#[test]
fn batch_killed_at_random_moments_finishes_without_rewrites_or_leftovers() {
    const N: usize = 200;
    let t = TempDir::new("kill-batch");
    let input = t.join("in");
    let output = t.join("out");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Rng(0x5eed_0001);
    let mut sizes = BTreeMap::new();
    for i in 0..N {
        let (w, h) = (rng.range(24, 65) as u32, rng.range(24, 65) as u32);
        let seed = rng.next();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = seed.wrapping_mul(u64::from(x * 131 + y * 71 + 1)) >> 40;
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, n as u8])
        });
        let name = format!("img{i:03}.{}", if i % 3 == 0 { "jpg" } else { "png" });
        img.save(input.join(&name)).unwrap();
        sizes.insert(name, (w, h));
    }
    let model = fixture("el_ngf8_b9.safetensors");
    let run = || {
        cyclegan()
            .arg("stylize")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .arg("--model")
            .arg(&model)
            .args(["--device", "cpu"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let outputs = |dir: &Path| -> BTreeSet<String> {
        if !dir.exists() {
            return BTreeSet::new();
        }
        names(dir).into_iter().filter(|n| !is_temp(n)).collect()
    };

    // Kill after k outputs exist, k increasing, then rerun.
    let mut kills: Vec<u64> = (0..3)
        .map(|i| rng.range(20 + 55 * i, 60 + 55 * i))
        .collect();
    kills.sort_unstable();
    let mut before_kill: BTreeMap<String, (Vec<u8>, SystemTime)> = BTreeMap::new();
    let mut temps_left = 0;
    let mut last_pid = 0;
    for &k in &kills {
        let mut child = run();
        let start = Instant::now();
        while (outputs(&output).len() as u64) < k {
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before {k} outputs existed"
            );
            assert!(start.elapsed() < Duration::from_secs(120), "no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A few milliseconds on: decoding, computing or writing the next image.
        std::thread::sleep(Duration::from_millis(rng.range(0, 15)));
        last_pid = kill9(&mut child);
        let present = names(&output);
        temps_left += present.iter().filter(|n| is_temp(n)).count();
        // Whatever was killed, every output present is whole and decodes.
        for name in present.iter().filter(|n| !is_temp(n)) {
            let path = output.join(name);
            let img = image::open(&path)
                .unwrap_or_else(|e| panic!("{name} is torn after kill -9 at {k}: {e}"));
            assert_eq!((img.width(), img.height()), sizes[name], "{name}");
            let meta = std::fs::metadata(&path).unwrap();
            before_kill
                .entry(name.clone())
                .or_insert_with(|| (std::fs::read(&path).unwrap(), meta.modified().unwrap()));
        }
        assert!(before_kill.len() as u64 >= k);
    }
    eprintln!(
        "killed at {kills:?} outputs; {} outputs existed, {temps_left} temporaries were left",
        before_kill.len()
    );

    // Leftovers as a killed writer leaves them: one for an output of this run (removed) and
    // one for a file this run does not write (not ours to touch).
    let stale = dead_writers_temp("img001.png", last_pid);
    let foreign = dead_writers_temp("notes.png", last_pid);
    std::fs::write(output.join(&stale), b"half an image").unwrap();
    std::fs::write(output.join(&foreign), b"someone else's").unwrap();

    let done = run().wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stderr).contains("skipped"));

    let mut want: BTreeSet<String> = sizes.keys().cloned().collect();
    want.insert(foreign);
    let got = names(&output);
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "want one output per input and no temporaries; extra {extra:?}, missing {missing:?}"
    );
    for (name, &(w, h)) in &sizes {
        let img = image::open(output.join(name)).unwrap();
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
    for (name, (bytes, mtime)) in &before_kill {
        let path = output.join(name);
        assert_eq!(
            &std::fs::read(&path).unwrap(),
            bytes,
            "{name} was rewritten"
        );
        let now = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(now, *mtime, "{name} was rewritten");
    }
}

#[test]
fn training_killed_at_random_moments_resumes_from_a_recent_checkpoint() {
    const TOTAL: u64 = 40;
    const EVERY: u64 = 2;
    let t = TempDir::new("kill-train");
    let (content, style, out) = (t.join("content"), t.join("style"), t.join("out"));
    for (d, base) in [(&content, 40u32), (&style, 200)] {
        std::fs::create_dir_all(d).unwrap();
        for i in 0..6u32 {
            let img = image::RgbImage::from_fn(40, 40, |x, y| {
                image::Rgb([
                    (base + x * 5 + i * 9) as u8,
                    (y * 6 + i * 30) as u8,
                    ((x ^ y) * 8 + base) as u8,
                ])
            });
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
    let ckpt = out.join("checkpoint.safetensors");
    let spawn = |resume: bool| -> (Child, Arc<AtomicU64>, std::thread::JoinHandle<String>) {
        let mut cmd = cyclegan();
        cmd.arg("train")
            .arg("--content")
            .arg(&content)
            .arg("--style")
            .arg(&style)
            .arg("--out")
            .arg(&out)
            .args(["--iterations", &TOTAL.to_string()])
            .args(["--size", "32", "--ngf", "4", "--ndf", "4", "--blocks", "1"])
            .args(["--checkpoint-every", &EVERY.to_string()])
            .args(["--sample-every", "0", "--seed", "1", "--device", "cpu"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if resume {
            cmd.arg("--resume");
        }
        let mut child = cmd.spawn().unwrap();
        // The last "iteration N/TOTAL" line the process printed: it prints one per
        // checkpoint interval, just before writing that checkpoint.
        let reached = Arc::new(AtomicU64::new(0));
        let stderr = child.stderr.take().unwrap();
        let r = reached.clone();
        let reader = std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if let Some(rest) = line.strip_prefix("iteration ") {
                    if let Some(n) = rest.split('/').next().and_then(|n| n.parse().ok()) {
                        r.store(n, Ordering::SeqCst);
                    }
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        (child, reached, reader)
    };
    let checkpoint_iteration = || -> u64 {
        let (_, meta) = cyclegan::train::checkpoint::read(&ckpt)
            .unwrap_or_else(|e| panic!("the checkpoint does not load after kill -9: {e}"));
        meta["iteration"].parse().unwrap()
    };

    let mut rng = Rng(0x5eed_0002);
    let mut targets: Vec<u64> = (0..4).map(|i| rng.range(3 + 8 * i, 10 + 8 * i)).collect();
    targets.sort_unstable();
    let mut last_pid = 0;
    let mut resumed_from = Vec::new();
    for &target in &targets {
        let resume = ckpt.exists();
        let (mut child, reached, reader) = spawn(resume);
        let start = Instant::now();
        while reached.load(Ordering::SeqCst) < target {
            if child.try_wait().unwrap().is_some() {
                panic!("training ended early:\n{}", reader.join().unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(180), "no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Somewhere inside the next interval: computing, or writing the three files.
        std::thread::sleep(Duration::from_millis(rng.range(0, 150)));
        last_pid = kill9(&mut child);
        let log = reader.join().unwrap();
        let reached = reached.load(Ordering::SeqCst);
        let at = checkpoint_iteration();
        assert_eq!(at % EVERY, 0, "checkpoint at iteration {at}");
        assert!(
            at <= reached && reached - at <= EVERY,
            "checkpoint at {at}, but the run had reached {reached}:\n{log}"
        );
        resumed_from.push((reached, at));
        // The style file beside it is whole too (possibly one interval older).
        cyclegan::Model::load(
            out.join("style.safetensors").to_str().unwrap(),
            cyclegan::Backend::Cpu,
        )
        .unwrap();
    }
    eprintln!("(reached, checkpoint) at each kill: {resumed_from:?}");

    // A temporary that a killed writer left is neither read as the checkpoint nor left.
    std::fs::write(
        out.join(dead_writers_temp("checkpoint.safetensors", last_pid)),
        b"torn",
    )
    .unwrap();
    let (child, _, reader) = spawn(true);
    let done = child.wait_with_output().unwrap();
    let log = reader.join().unwrap();
    assert!(done.status.success(), "{log}");
    assert_eq!(checkpoint_iteration(), TOTAL);
    let left: Vec<String> = names(&out).into_iter().filter(|n| is_temp(n)).collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");

    // The style file works in `cyclegan stylize`.
    let photo = content.join("0.png");
    let styled = t.join("styled.png");
    let st = cyclegan()
        .arg("stylize")
        .arg(&photo)
        .arg("-o")
        .arg(&styled)
        .arg("--model")
        .arg(out.join("style.safetensors"))
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(image::open(&styled).unwrap().width(), 40);
}
