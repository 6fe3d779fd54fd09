//! Which share of a collection this task takes: `--shard K/N`, or the scheduler's
//! environment (Slurm job arrays, Kubernetes Indexed Jobs). Every input belongs to exactly
//! one shard, chosen by a stable hash of its path relative to the input root, so adding
//! files never moves the ones already assigned.

use std::fmt;

/// Share `index` of `count` (counted from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole collection.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether the input whose relative path is `key` belongs to this share.
    pub fn owns(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (of `count`) that owns `key`: FNV-1a over the UTF-8 bytes of the relative path
/// (`/` separators on every system), finished with a 64-bit mixer so that names differing
/// only in their last characters spread evenly. Fixed forever: changing it would reassign
/// inputs between tasks of a collection half done.
pub fn shard_of(key: &str, count: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h % count.max(1)
}

/// Parses `K/N` with K counted from 0.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || {
        format!(
            "--shard {s:?}: give K/N, this task's share K of N, counted from 0 (e.g. 0/4 ... 3/4)"
        )
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("--shard {s:?}: N must be at least 1"));
    }
    if index >= count {
        return Err(format!(
            "--shard {s:?}: K counts from 0, so it must be below N (0/{count} ... {}/{count})",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// The share this task takes and where it came from (for the first line of output):
/// `--shard` first, then Slurm's array variables, then Kubernetes' `JOB_COMPLETION_INDEX`,
/// else the whole collection. `shard_count` is `--shard-count`; `env` reads a variable
/// (the process environment in the CLI, a map in tests).
pub fn resolve(
    flag: Option<&str>,
    shard_count: Option<u64>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Shard, String), String> {
    if let Some(s) = flag {
        return Ok((parse_shard(s)?, "--shard".into()));
    }
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let num = |name: &str| -> Result<Option<u64>, String> {
        match var(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a whole number")),
        }
    };
    let count = match shard_count {
        Some(0) => return Err("--shard-count must be at least 1".into()),
        Some(n) => Some((n, "--shard-count")),
        None => match num("CYCLEGAN_SHARD_COUNT")? {
            Some(0) => return Err("CYCLEGAN_SHARD_COUNT must be at least 1".into()),
            Some(n) => Some((n, "CYCLEGAN_SHARD_COUNT")),
            None => None,
        },
    };

    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let shard = match count {
            // An explicit count: array ids are the shard numbers themselves (0..N-1), which
            // is what lets `sbatch --array=5` redo shard 5 alone.
            Some((n, from)) => {
                if id >= n {
                    return Err(format!(
                        "SLURM_ARRAY_TASK_ID={id} but {from} is {n}: with an explicit count the \
                         array ids must be the shard numbers 0..{}",
                        n - 1
                    ));
                }
                Shard {
                    index: id,
                    count: n,
                }
            }
            None => {
                let n = num("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard K/N",
                )?;
                let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
                let offset = id
                    .checked_sub(min)
                    .ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN; pass --shard K/N")?;
                let index = offset / step;
                if offset % step != 0 || index >= n || n == 0 {
                    return Err(format!(
                        "the Slurm array ids are not a plain range (task {id}, min {min}, \
                         step {step}, count {n}); use --array=0-{} with CYCLEGAN_SHARD_COUNT \
                         or pass --shard K/N",
                        n.max(1) - 1
                    ));
                }
                Shard { index, count: n }
            }
        };
        let how = match count {
            Some((n, from)) => format!("SLURM_ARRAY_TASK_ID={id}, {from}={n}"),
            None => format!("Slurm array task {id}"),
        };
        return Ok((shard, how));
    }

    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let (n, from) = count.ok_or(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the number of shards is \
             unknown: pass --shard-count N or set CYCLEGAN_SHARD_COUNT to the Job's completions",
        )?;
        if index >= n {
            return Err(format!(
                "JOB_COMPLETION_INDEX={index} but {from} is {n}: the Job's completions and the \
                 shard count must agree"
            ));
        }
        return Ok((
            Shard { index, count: n },
            format!("JOB_COMPLETION_INDEX={index}, {from}={n}"),
        ));
    }

    if let Some((n, from)) = count {
        return Err(format!(
            "{from} is {n} but neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set, so \
             this task's share is unknown; pass --shard K/{n}"
        ));
    }
    Ok((Shard::WHOLE, "no shard".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_hash_is_fixed_forever() {
        // These values are part of the on-disk contract: a collection half done by one
        // version must be finished by the next without reassigning inputs.
        let got: Vec<u64> = ["a.png", "b.png", "dir/c.jpg", "x/y/z.tiff", ""]
            .iter()
            .map(|k| shard_of(k, 1000))
            .collect();
        assert_eq!(got, FIXED);
        assert_eq!(shard_of("anything", 1), 0);
    }
    const FIXED: [u64; 5] = [222, 751, 293, 278, 203];

    #[test]
    fn shares_are_disjoint_complete_and_balanced() {
        let keys: Vec<String> = (0..30_000)
            .map(|i| format!("d{}/img_{i:05}.png", i % 7))
            .collect();
        for n in [1u64, 2, 3, 7, 16] {
            let mut sizes = vec![0usize; n as usize];
            for k in &keys {
                let owners: Vec<u64> = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.owns(k))
                    .collect();
                assert_eq!(owners.len(), 1, "{k} in {owners:?} of {n}");
                sizes[owners[0] as usize] += 1;
            }
            let mean = keys.len() as f64 / n as f64;
            for s in &sizes {
                // Binomial spread is about sqrt(mean); allow 5 sigma.
                assert!(
                    (*s as f64 - mean).abs() < 5.0 * mean.sqrt() + 1.0,
                    "{sizes:?}"
                );
            }
        }
    }

    #[test]
    fn flag_parses_and_rejects_clearly() {
        assert_eq!(parse_shard("2/5").unwrap(), Shard { index: 2, count: 5 });
        assert!(parse_shard("5/5").unwrap_err().contains("counts from 0"));
        assert!(parse_shard("1/0").unwrap_err().contains("at least 1"));
        assert!(parse_shard("one/3").unwrap_err().contains("K/N"));
        assert!(parse_shard("3").unwrap_err().contains("K/N"));
        // The flag wins over any environment.
        let (s, how) = resolve(Some("1/2"), None, env(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap();
        assert_eq!((s, how.as_str()), (Shard { index: 1, count: 2 }, "--shard"));
    }

    #[test]
    fn slurm_arrays() {
        let r = |p: &[(&str, &str)]| resolve(None, None, env(p));
        let base = [
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ];
        let with = |id: &'static str| {
            let mut v = base.to_vec();
            v.push(("SLURM_ARRAY_TASK_ID", id));
            v
        };
        assert_eq!(r(&with("2")).unwrap().0, Shard { index: 2, count: 3 });
        // --array=1-3: ids are offset by the minimum.
        let p = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(r(&p).unwrap().0, Shard { index: 2, count: 3 });
        // --array=0-8:4 (ids 0, 4, 8).
        let p = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ];
        assert_eq!(r(&p).unwrap().0, Shard { index: 1, count: 3 });
        // --array=0,5: not a plain range.
        let p = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ];
        assert!(r(&p).unwrap_err().contains("not a plain range"));
        // A resubmitted single task (--array=1) with the count given keeps its shard.
        let p = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("CYCLEGAN_SHARD_COUNT", "3"),
        ];
        let (s, how) = r(&p).unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert!(how.contains("CYCLEGAN_SHARD_COUNT=3"), "{how}");
        let p = [("SLURM_ARRAY_TASK_ID", "3"), ("CYCLEGAN_SHARD_COUNT", "3")];
        assert!(r(&p).unwrap_err().contains("0..2"));
        assert!(r(&[("SLURM_ARRAY_TASK_ID", "x")])
            .unwrap_err()
            .contains("not a whole number"));
    }

    #[test]
    fn kubernetes_indexed_jobs() {
        let p = [("JOB_COMPLETION_INDEX", "4")];
        assert!(resolve(None, None, env(&p))
            .unwrap_err()
            .contains("--shard-count"));
        let (s, how) = resolve(None, Some(5), env(&p)).unwrap();
        assert_eq!(s, Shard { index: 4, count: 5 });
        assert!(how.contains("JOB_COMPLETION_INDEX=4"), "{how}");
        let p = [("JOB_COMPLETION_INDEX", "4"), ("CYCLEGAN_SHARD_COUNT", "5")];
        assert_eq!(
            resolve(None, None, env(&p)).unwrap().0,
            Shard { index: 4, count: 5 }
        );
        let p = [("JOB_COMPLETION_INDEX", "5"), ("CYCLEGAN_SHARD_COUNT", "5")];
        assert!(resolve(None, None, env(&p)).unwrap_err().contains("agree"));
    }

    #[test]
    fn no_scheduler_means_the_whole_collection() {
        assert_eq!(resolve(None, None, env(&[])).unwrap().0, Shard::WHOLE);
        let p = [("CYCLEGAN_SHARD_COUNT", "4")];
        assert!(resolve(None, None, env(&p))
            .unwrap_err()
            .contains("--shard K/4"));
    }
}
