//! The user's choices for a training run, as the `cyclegan train` flags and the C ABI's JSON
//! give them, and how they become a [`TrainConfig`]: settings left out take the seed recipe's
//! value on a new run and the checkpoint's on resume. One place for that rule, so the two
//! front ends cannot drift apart.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::remote::RemoteTrainer;
use super::{checkpoint, Length, TrainConfig, Trainer};
use crate::device::Backend;
use crate::error::{Error, Result};
use crate::nn::GeneratorConfig;
use crate::weights::Weights;

/// Checkpoint interval when none is given: often enough that an interrupted run loses
/// minutes, rarely enough that writing (~100 MB for the seed networks) stays cheap.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

/// Upper limits of the settings, checked by [`RunSettings::check_limits`] before anything is
/// allocated: far above any useful value (the seed recipe's is in brackets), low enough that
/// a mistyped or hostile value is an error rather than a process that allocates until the
/// system kills it.
///
/// | setting | range | seed |
/// | --- | --- | --- |
/// | `size` (crop side, px) | 32 ..= 2048, a multiple of 4 | 256 |
/// | `batch` | 1 ..= 64 | 1 |
/// | `batch` x `size`² (pixels per step) | at most 16 Mi (e.g. 16 crops of 1024) | |
/// | `pool` (past fakes kept) | 0 ..= 1000, and `pool` x `size`² at most 256 Mi px | 50 |
/// | `ngf`, `ndf` (filters) | 1 ..= 256 | 64 |
/// | `blocks` (residual blocks) | 1 ..= 64 | 9 |
/// | `epochs` | 1 ..= 1 000 000 | |
/// | `iterations`, `decay_from`, `checkpoint_every` | at most 1 000 000 000 | |
/// | `lr` | above 0, at most 1 | 0.0002 |
/// | `lambda_cycle`, `lambda_identity` | 0 ..= 10 000 | 10, 5 |
pub mod limits {
    pub const SIZE: u32 = 2048;
    pub const BATCH: usize = 64;
    pub const BATCH_PIXELS: u64 = 16 << 20;
    pub const POOL: usize = 1000;
    pub const POOL_PIXELS: u64 = 256 << 20;
    pub const FILTERS: usize = 256;
    pub const BLOCKS: usize = 64;
    pub const EPOCHS: u64 = 1_000_000;
    pub const ITERATIONS: u64 = 1_000_000_000;
    pub const LR: f64 = 1.0;
    pub const LAMBDA: f64 = 10_000.0;
}

/// Checks a whole training configuration against [`limits`]: what a resumed run's stored
/// configuration (which comes from the checkpoint file) must pass before any network or pool
/// is built. [`RunSettings::open`] calls it for new runs; a new run's settings are also
/// checked one by one with their names by [`RunSettings::check_limits`].
pub fn check_config_limits(c: &TrainConfig) -> Result<()> {
    let (unit, n) = match c.length {
        Length::Epochs(n) => ("epochs", n),
        Length::Iterations(n) => ("iterations", n),
    };
    let given = RunSettings {
        epochs: (unit == "epochs").then_some(n),
        iterations: (unit == "iterations").then_some(n),
        decay_from: c.decay_from,
        size: Some(c.size),
        batch: Some(c.batch),
        lr: Some(c.lr),
        lambda_cycle: Some(c.lambda_cycle),
        lambda_identity: Some(c.lambda_identity),
        pool: Some(c.pool_size),
        ngf: Some(c.generator.ngf),
        blocks: Some(c.generator.blocks),
        ndf: Some(c.ndf),
        ..RunSettings::new(PathBuf::from("."))
    };
    given.check_limits()
}

/// Every setting of a run; `None` means "not given".
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Folder of photos (domain A).
    pub content: Option<PathBuf>,
    /// Folder of paintings (domain B).
    pub style: Option<PathBuf>,
    /// Output folder: holds the checkpoint (and, from the CLI, the exported styles).
    pub out: PathBuf,
    pub epochs: Option<u64>,
    pub iterations: Option<u64>,
    pub decay_from: Option<u64>,
    pub size: Option<u32>,
    pub batch: Option<usize>,
    pub lr: Option<f64>,
    pub lambda_cycle: Option<f64>,
    pub lambda_identity: Option<f64>,
    pub pool: Option<usize>,
    pub ngf: Option<usize>,
    pub blocks: Option<usize>,
    pub ndf: Option<usize>,
    pub seed: Option<u64>,
    /// Style file that starts the content -> style generator (fine-tuning).
    pub init: Option<PathBuf>,
    /// Continue the run in `out` instead of starting one.
    pub resume: bool,
    /// Write the checkpoint every this many iterations.
    pub checkpoint_every: u64,
}

impl RunSettings {
    /// Nothing chosen yet but the output folder.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            content: None,
            style: None,
            out: out.into(),
            epochs: None,
            iterations: None,
            decay_from: None,
            size: None,
            batch: None,
            lr: None,
            lambda_cycle: None,
            lambda_identity: None,
            pool: None,
            ngf: None,
            blocks: None,
            ndf: None,
            seed: None,
            init: None,
            resume: false,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        }
    }

    /// Reads settings from a JSON object whose keys are the CLI's long flags with `_` for
    /// `-` (`{"content": "photos", "style": "monet", "out": "run", "iterations": 5000}`).
    /// `out` is required; `null` counts as not given; unknown keys and wrong types are
    /// errors, so a typo cannot silently train with a default.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::InvalidArgument(format!("the training settings are not valid JSON: {e}"))
        })?;
        let Value::Object(map) = value else {
            return Err(Error::InvalidArgument(
                "the training settings must be a JSON object, e.g. {\"content\": \"photos\", \"style\": \"paintings\", \"out\": \"run\", \"iterations\": 1000}".into(),
            ));
        };
        if let Some(k) = duplicate_top_level_key(text) {
            return Err(Error::InvalidArgument(format!(
                "training setting {k:?} is given twice; keep one"
            )));
        }
        let out = match map.get("out") {
            Some(Value::Null) | None => {
                return Err(Error::InvalidArgument(
                    "the training settings lack \"out\", the folder for the checkpoint".into(),
                ))
            }
            Some(v) => PathBuf::from(string("out", v)?),
        };
        let mut s = Self::new(out);
        s.read_fields(&map)?;
        if s.epochs.is_some() && s.iterations.is_some() {
            return Err(Error::InvalidArgument(
                "give either \"epochs\" or \"iterations\", not both".into(),
            ));
        }
        if s.checkpoint_every == 0 {
            return Err(Error::InvalidArgument(
                "\"checkpoint_every\" must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    /// The settings as [`RunSettings::from_json`] reads them: how a run crosses into a
    /// backend library. Paths must be UTF-8 there (JSON strings are); one that is not is
    /// an error naming it rather than a run on another folder.
    pub fn to_json(&self) -> Result<String> {
        let path = |k: &str, p: &Path| -> Result<Value> {
            p.to_str().map(|s| Value::String(s.into())).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "training setting {k} ({}) is not valid UTF-8, which a run on a backend \
                     library needs: rename it, or train with --device cpu",
                    p.display()
                ))
            })
        };
        let mut m = Map::new();
        m.insert("out".into(), path("out", &self.out)?);
        for (k, p) in [
            ("content", &self.content),
            ("style", &self.style),
            ("init", &self.init),
        ] {
            if let Some(p) = p {
                m.insert(k.into(), path(k, p)?);
            }
        }
        let uints = [
            ("epochs", self.epochs),
            ("iterations", self.iterations),
            ("decay_from", self.decay_from),
            ("size", self.size.map(u64::from)),
            ("batch", self.batch.map(|v| v as u64)),
            ("pool", self.pool.map(|v| v as u64)),
            ("ngf", self.ngf.map(|v| v as u64)),
            ("blocks", self.blocks.map(|v| v as u64)),
            ("ndf", self.ndf.map(|v| v as u64)),
            ("seed", self.seed),
            ("checkpoint_every", Some(self.checkpoint_every)),
        ];
        for (k, v) in uints {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        for (k, v) in [
            ("lr", self.lr),
            ("lambda_cycle", self.lambda_cycle),
            ("lambda_identity", self.lambda_identity),
        ] {
            if let Some(v) = v {
                let n = serde_json::Number::from_f64(v).ok_or_else(|| {
                    Error::InvalidArgument(format!("training setting {k} = {v} is not a number"))
                })?;
                m.insert(k.into(), Value::Number(n));
            }
        }
        m.insert("resume".into(), Value::Bool(self.resume));
        Ok(Value::Object(m).to_string())
    }

    fn read_fields(&mut self, map: &Map<String, Value>) -> Result<()> {
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            let k = k.as_str();
            match k {
                "out" => {}
                "content" => self.content = Some(string(k, v)?.into()),
                "style" => self.style = Some(string(k, v)?.into()),
                "init" => self.init = Some(string(k, v)?.into()),
                "epochs" => self.epochs = Some(uint(k, v)?),
                "iterations" => self.iterations = Some(uint(k, v)?),
                "decay_from" => self.decay_from = Some(uint(k, v)?),
                "size" => self.size = Some(narrow(k, uint(k, v)?)?),
                "batch" => self.batch = Some(narrow(k, uint(k, v)?)?),
                "pool" => self.pool = Some(narrow(k, uint(k, v)?)?),
                "ngf" => self.ngf = Some(narrow(k, uint(k, v)?)?),
                "blocks" => self.blocks = Some(narrow(k, uint(k, v)?)?),
                "ndf" => self.ndf = Some(narrow(k, uint(k, v)?)?),
                "seed" => self.seed = Some(uint(k, v)?),
                "checkpoint_every" => self.checkpoint_every = uint(k, v)?,
                "lr" => self.lr = Some(float(k, v)?),
                "lambda_cycle" => self.lambda_cycle = Some(float(k, v)?),
                "lambda_identity" => self.lambda_identity = Some(float(k, v)?),
                "resume" => {
                    self.resume = v
                        .as_bool()
                        .ok_or_else(|| wrong_type(k, v, "true or false"))?
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown training setting {k:?}; the settings are: {}",
                        KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(())
    }

    /// Refuses settings outside [`limits`] (and `blocks` 0, which trains a network the loader
    /// cannot read back), naming the setting, its value and its range.
    pub fn check_limits(&self) -> Result<()> {
        fn over<T: PartialOrd + std::fmt::Display>(
            k: &str,
            v: Option<T>,
            lo: T,
            hi: T,
        ) -> Result<()> {
            match v {
                Some(v) if !(v >= lo && v <= hi) => Err(Error::InvalidArgument(format!(
                    "training setting {k} = {v} is outside its range {lo} ..= {hi}; \
                     see train::settings::limits"
                ))),
                _ => Ok(()),
            }
        }
        over("size", self.size, 32, limits::SIZE)?;
        over("batch", self.batch, 1, limits::BATCH)?;
        over("pool", self.pool, 0, limits::POOL)?;
        over("ngf", self.ngf, 1, limits::FILTERS)?;
        over("ndf", self.ndf, 1, limits::FILTERS)?;
        over("blocks", self.blocks, 1, limits::BLOCKS)?;
        over("epochs", self.epochs, 1, limits::EPOCHS)?;
        over("iterations", self.iterations, 1, limits::ITERATIONS)?;
        over("decay_from", self.decay_from, 0, limits::ITERATIONS)?;
        over(
            "checkpoint_every",
            Some(self.checkpoint_every),
            1,
            limits::ITERATIONS,
        )?;
        // Only the upper limits of the floats: `TrainConfig::validate` explains the lower
        // ones ("learning rate -1 must be positive").
        for (k, v, hi) in [
            ("lr", self.lr, limits::LR),
            ("lambda_cycle", self.lambda_cycle, limits::LAMBDA),
            ("lambda_identity", self.lambda_identity, limits::LAMBDA),
        ] {
            if v.is_some_and(|v| v > hi) {
                return Err(Error::InvalidArgument(format!(
                    "training setting {k} = {} is over its limit of {hi}; see \
                     train::settings::limits",
                    v.unwrap_or_default()
                )));
            }
        }
        let size = u64::from(self.size.unwrap_or(256));
        let area = size * size;
        let batch = self.batch.unwrap_or(1) as u64;
        if batch * area > limits::BATCH_PIXELS {
            return Err(Error::InvalidArgument(format!(
                "batch {batch} of {size}x{size} crops is {} pixels per step, over the limit of {}; \
                 use a smaller batch or size",
                batch * area,
                limits::BATCH_PIXELS
            )));
        }
        let pool = self.pool.unwrap_or(50) as u64;
        if pool * area > limits::POOL_PIXELS {
            return Err(Error::InvalidArgument(format!(
                "a pool of {pool} {size}x{size} images is {} pixels, over the limit of {}; \
                 use a smaller pool or size",
                pool * area,
                limits::POOL_PIXELS
            )));
        }
        for (k, p) in [
            ("out", Some(&self.out)),
            ("content", self.content.as_ref()),
            ("style", self.style.as_ref()),
            ("init", self.init.as_ref()),
        ] {
            if p.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(Error::InvalidArgument(format!(
                    "training setting {k} is an empty path; give a folder or file name"
                )));
            }
        }
        Ok(())
    }

    /// Where the run's checkpoint lives.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out.join(checkpoint::FILE_NAME)
    }

    /// The configuration of a new run: the seed recipe, the `init` file's network shape,
    /// then the settings given.
    pub fn new_config(&self) -> Result<TrainConfig> {
        let missing = |m: &str| Err(Error::InvalidArgument(m.into()));
        let Some(content) = self.content.clone() else {
            return missing(
                "the content folder is required (the photos the style will be applied to)",
            );
        };
        let Some(style) = self.style.clone() else {
            return missing("the style folder is required (paintings in the style to learn)");
        };
        let length = match (self.epochs, self.iterations) {
            (Some(n), _) => Length::Epochs(n),
            (_, Some(n)) => Length::Iterations(n),
            _ => return missing("the run length is required: a number of epochs or iterations"),
        };
        let mut c = TrainConfig::new(content, style, length);
        c.generator = GeneratorConfig::SEED;
        if let Some(init) = &self.init {
            // The network's shape follows the file being fine-tuned unless told otherwise.
            let w = Weights::read(init)?;
            c.generator = w.generator_config().map_err(|e| e.with_path(init))?;
            c.init = Some(init.clone());
        }
        let mut c = self.apply(c);
        if self.lambda_identity.is_none() {
            c.lambda_identity = 0.5 * c.lambda_cycle;
        }
        Ok(c)
    }

    /// `c` with the settings given here laid over it (used on a checkpoint's stored
    /// configuration when resuming).
    pub fn apply(&self, mut c: TrainConfig) -> TrainConfig {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut c.content_dir, &self.content);
        set(&mut c.style_dir, &self.style);
        let length = self
            .epochs
            .map(Length::Epochs)
            .or(self.iterations.map(Length::Iterations));
        if let Some(l) = length {
            if l != c.length {
                // A new length gets its own default decay point unless one is given.
                c.decay_from = None;
            }
            c.length = l;
        }
        if self.decay_from.is_some() {
            c.decay_from = self.decay_from;
        }
        set(&mut c.size, &self.size);
        set(&mut c.batch, &self.batch);
        set(&mut c.lr, &self.lr);
        set(&mut c.lambda_cycle, &self.lambda_cycle);
        set(&mut c.lambda_identity, &self.lambda_identity);
        set(&mut c.pool_size, &self.pool);
        set(&mut c.generator.ngf, &self.ngf);
        set(&mut c.generator.blocks, &self.blocks);
        set(&mut c.ndf, &self.ndf);
        set(&mut c.seed, &self.seed);
        c
    }

    /// Starts the run, or resumes it from `out`'s checkpoint when `resume` is set. Refuses to
    /// start over an existing run and to resume a missing one, so no checkpoint is ever
    /// replaced by accident.
    ///
    /// A GPU that a backend library serves ([`Backend::library`]) gets the whole run: these
    /// settings go across as JSON and the library opens them with this same function on
    /// its device.
    pub fn open(&self, backend: Backend) -> Result<Trainer> {
        self.check_limits()?;
        if let Some(name) = backend.library() {
            return Ok(Trainer::from_remote(RemoteTrainer::open(name, self)?));
        }
        let ckpt = self.checkpoint_path();
        if self.resume {
            if !ckpt.is_file() {
                return Err(Error::InvalidArgument(format!(
                    "{}: no checkpoint to resume; start a new run instead",
                    ckpt.display()
                )));
            }
            let trainer = Trainer::resume_with(&ckpt, backend, |stored| self.apply(stored))?;
            writable_folder(&self.out)?;
            return Ok(trainer);
        }
        if ckpt.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a training run; resume it or choose another output folder",
                self.out.display()
            )));
        }
        // Everything that can fail on the inputs is checked before the folder is made.
        let config = self.new_config()?;
        check_config_limits(&config)?;
        let trainer = Trainer::new(config, backend)?;
        writable_folder(&self.out)?;
        Ok(trainer)
    }
}

/// Creates `dir` if needed and proves that files can be made in it, so a read-only or
/// mistyped output folder fails now rather than at the first checkpoint, hours in.
fn writable_folder(dir: &Path) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::InvalidArgument(format!(
            "{}: cannot write the training outputs there ({e}); choose a writable output folder",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".cyclegan-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The first key that appears twice at the top level of a JSON object already known to be
/// valid. serde_json keeps the last of duplicate keys silently, which would let a settings
/// file say two different things and train with one of them.
fn duplicate_top_level_key(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut seen = std::collections::HashSet::new();
    let (mut depth, mut i, mut expect_key) = (0usize, 0usize, false);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    let key: String = serde_json::from_str(text.get(start..=i)?).ok()?;
                    if !seen.insert(key.clone()) {
                        return Some(key);
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The JSON keys, for the message about an unknown one.
const KEYS: [&str; 19] = [
    "content",
    "style",
    "out",
    "epochs",
    "iterations",
    "decay_from",
    "size",
    "batch",
    "lr",
    "lambda_cycle",
    "lambda_identity",
    "pool",
    "ngf",
    "blocks",
    "ndf",
    "seed",
    "init",
    "resume",
    "checkpoint_every",
];

fn wrong_type(k: &str, v: &Value, want: &str) -> Error {
    Error::InvalidArgument(format!("training setting {k:?} is {v}, expected {want}"))
}

fn string<'a>(k: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| wrong_type(k, v, "a string"))
}

fn uint(k: &str, v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| wrong_type(k, v, "a whole number of at least 0"))
}

fn narrow<T: TryFrom<u64>>(k: &str, n: u64) -> Result<T> {
    T::try_from(n)
        .map_err(|_| Error::InvalidArgument(format!("training setting {k:?} = {n} is too large")))
}

fn float(k: &str, v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| wrong_type(k, v, "a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut s = RunSettings::new("run dir/ü");
        s.content = Some("photos".into());
        s.style = Some("paint\"ings".into());
        s.init = Some("x.safetensors".into());
        s.iterations = Some(7);
        s.decay_from = Some(3);
        s.size = Some(64);
        s.batch = Some(2);
        s.lr = Some(1.5e-4);
        s.lambda_cycle = Some(10.0);
        s.lambda_identity = Some(0.1 + 0.2);
        s.pool = Some(0);
        s.ngf = Some(8);
        s.blocks = Some(3);
        s.ndf = Some(16);
        s.seed = Some(u64::MAX);
        s.resume = true;
        s.checkpoint_every = 9;
        assert_eq!(RunSettings::from_json(&s.to_json().unwrap()).unwrap(), s);
        let bare = RunSettings::new("out");
        assert_eq!(
            RunSettings::from_json(&bare.to_json().unwrap()).unwrap(),
            bare
        );
    }

    #[test]
    #[cfg(unix)]
    fn json_refuses_paths_it_cannot_carry() {
        use std::os::unix::ffi::OsStrExt;
        let mut s = RunSettings::new("out");
        s.content = Some(std::ffi::OsStr::from_bytes(b"ph\xffotos").into());
        let e = s.to_json().unwrap_err().to_string();
        assert!(e.contains("content") && e.contains("UTF-8"), "{e}");
    }

    fn err(json: &str) -> String {
        RunSettings::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn json_fields_become_settings() {
        let s = RunSettings::from_json(
            r#"{"content": "a", "style": "b", "out": "o", "iterations": 20, "size": 64,
                "lr": 1e-4, "lambda_cycle": 8, "ngf": 8, "blocks": 2, "ndf": 8, "seed": 3,
                "pool": 0, "batch": 2, "decay_from": 5, "resume": false, "init": null,
                "checkpoint_every": 4}"#,
        )
        .unwrap();
        let c = s.new_config().unwrap();
        assert_eq!(c.length, Length::Iterations(20));
        assert_eq!(
            (c.size, c.batch, c.pool_size, c.ndf, c.seed),
            (64, 2, 0, 8, 3)
        );
        assert_eq!((c.generator.ngf, c.generator.blocks), (8, 2));
        assert_eq!((c.lr, c.lambda_cycle, c.lambda_identity), (1e-4, 8.0, 4.0));
        assert_eq!((c.decay_start(), s.checkpoint_every), (5, 4));
        assert_eq!(
            s.checkpoint_path(),
            PathBuf::from("o").join("checkpoint.safetensors")
        );
    }

    #[test]
    fn bad_json_is_explained() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[1]").contains("must be a JSON object"));
        assert!(err(r#"{"content": "a"}"#).contains("lack \"out\""));
        let e = err(r#"{"out": "o", "iteratons": 5}"#);
        assert!(
            e.contains("\"iteratons\"") && e.contains("iterations"),
            "{e}"
        );
        assert!(err(r#"{"out": "o", "size": -4}"#).contains("whole number"));
        assert!(err(r#"{"out": "o", "size": 1.5}"#).contains("whole number"));
        assert!(err(r#"{"out": 3}"#).contains("a string"));
        assert!(err(r#"{"out": "o", "lr": "fast"}"#).contains("a number"));
        assert!(err(r#"{"out": "o", "resume": 1}"#).contains("true or false"));
        assert!(err(r#"{"out": "o", "size": 99999999999}"#).contains("too large"));
        assert!(err(r#"{"out": "o", "epochs": 1, "iterations": 2}"#).contains("not both"));
        assert!(err(r#"{"out": "o", "checkpoint_every": 0}"#).contains("at least 1"));
        let dup = err(r#"{"out": "o", "size": 64, "nested": {"size": 1}, "size": 128}"#);
        assert!(dup.contains("\"size\" is given twice"), "{dup}");
        let missing = RunSettings::from_json(r#"{"out": "o", "style": "b", "epochs": 1}"#)
            .unwrap()
            .new_config()
            .unwrap_err()
            .to_string();
        assert!(missing.contains("content folder"), "{missing}");
    }

    fn limit_err(json: &str) -> String {
        RunSettings::from_json(json)
            .and_then(|s| s.check_limits())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn settings_beyond_their_limits_are_refused_by_name() {
        for (json, what) in [
            (r#"{"out": "o", "ngf": 100000}"#, "ngf = 100000"),
            (r#"{"out": "o", "ndf": 1000000}"#, "ndf = 1000000"),
            (
                r#"{"out": "o", "pool": 1000000000000}"#,
                "pool = 1000000000000",
            ),
            (r#"{"out": "o", "blocks": 100000000}"#, "blocks = 100000000"),
            (r#"{"out": "o", "blocks": 0}"#, "blocks = 0"),
            (r#"{"out": "o", "batch": 1000000000}"#, "batch = 1000000000"),
            (r#"{"out": "o", "size": 4294967292}"#, "size = 4294967292"),
            (
                r#"{"out": "o", "iterations": 18446744073709551615}"#,
                "iterations",
            ),
            (r#"{"out": "o", "lr": 1e300}"#, "lr"),
            (r#"{"out": "o", "lambda_cycle": 1e300}"#, "lambda_cycle"),
            (
                r#"{"out": "o", "size": 2048, "batch": 64}"#,
                "pixels per step",
            ),
            (
                r#"{"out": "o", "size": 2048, "pool": 1000}"#,
                "use a smaller pool",
            ),
            (r#"{"out": ""}"#, "empty path"),
            (r#"{"out": "o", "content": ""}"#, "empty path"),
        ] {
            let e = limit_err(json);
            assert!(e.contains(what), "{json}: {e}");
        }
        let seed = RunSettings::from_json(
            r#"{"out": "o", "size": 256, "batch": 1, "pool": 50, "ngf": 64, "ndf": 64,
                "blocks": 9, "iterations": 1000, "lr": 0.0002}"#,
        )
        .unwrap();
        seed.check_limits().unwrap();
        let mut c = seed.clone();
        c.content = Some("a".into());
        c.style = Some("b".into());
        check_config_limits(&c.new_config().unwrap()).unwrap();
    }

    #[test]
    fn an_unwritable_output_folder_is_refused_up_front() {
        let file = std::env::temp_dir().join(format!("cyclegan-settings-{}", std::process::id()));
        std::fs::write(&file, "a file, not a folder").unwrap();
        let e = writable_folder(&file.join("run")).unwrap_err().to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(e.contains("cannot write the training outputs"), "{e}");
        let ok = std::env::temp_dir().join(format!("cyclegan-settings-ok-{}", std::process::id()));
        writable_folder(&ok).unwrap();
        let left: Vec<_> = std::fs::read_dir(&ok).unwrap().collect();
        std::fs::remove_dir(&ok).unwrap();
        assert!(left.is_empty(), "the probe file is removed");
    }
}
