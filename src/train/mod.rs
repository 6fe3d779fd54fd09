//! Retraining: learn a new style from two folders of images (content photos and style
//! paintings), with the seed article's recipe so that results and hyper-parameters
//! transfer from the PyTorch reference: ResNet generators, 70x70 PatchGAN
//! discriminators, LSGAN + cycle + identity losses, Adam (0.5, 0.999), a pool of 50 past
//! fakes, constant then linearly decaying learning rate, resize/crop/flip augmentation.
//!
//! [`Trainer`] is the whole API: `new` (or `resume`), `run` with a progress callback that
//! can cancel, `save_style` / `save_inverse`, `save_checkpoint`. Domain A is the content
//! (photos), domain B the style: `style.safetensors` maps content to style and loads
//! anywhere a shipped style does.

pub mod adam;
pub mod checkpoint;
pub mod data;
pub mod history;
pub mod losses;
mod remote;
pub mod rng;
pub mod schedule;
pub mod session;
pub mod settings;
pub mod state;
pub mod trainer;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use losses::StepLosses;
pub use settings::RunSettings;
pub use state::{StepSettings, TrainState};
pub use trainer::{Progress, RunSummary, Trainer};

use crate::error::{Error, Result};
use crate::nn::{GeneratorConfig, Layout};

/// How long a run is: whole epochs (passes over the larger folder) as the seed counts,
/// or a number of iterations, which is easier to budget on a given machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Iterations(u64),
}

/// Everything that defines a training run. The defaults are the seed's (and the paper's)
/// except the length, which the caller must choose.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Domain A: the photos the style will be applied to.
    pub content_dir: PathBuf,
    /// Domain B: paintings in the style to learn.
    pub style_dir: PathBuf,
    pub length: Length,
    /// Where the learning rate starts to decay, in the unit of `length`; `None` is half
    /// way, as the paper (100 of 200 epochs).
    pub decay_from: Option<u64>,
    /// Side of the square training crops (cut from images resized to 1.12 x this).
    pub size: u32,
    pub batch: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub lambda_cycle: f64,
    /// Absolute weight of the identity loss; the seed uses 0.5 x `lambda_cycle` = 5.
    pub lambda_identity: f64,
    /// Past fakes kept for the discriminators (0 turns the pool off).
    pub pool_size: usize,
    pub generator: GeneratorConfig,
    /// Discriminator filters in the first layer.
    pub ndf: usize,
    pub seed: u64,
    /// A style file whose generator starts `g_ab` (fine-tuning a shipped style); its
    /// layout, filters and blocks must equal `generator`.
    pub init: Option<PathBuf>,
}

impl TrainConfig {
    /// The seed's recipe on the given folders, for `length`.
    pub fn new(
        content_dir: impl Into<PathBuf>,
        style_dir: impl Into<PathBuf>,
        length: Length,
    ) -> Self {
        Self {
            content_dir: content_dir.into(),
            style_dir: style_dir.into(),
            length,
            decay_from: None,
            size: 256,
            batch: 1,
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            lambda_cycle: 10.0,
            lambda_identity: 5.0,
            pool_size: 50,
            generator: GeneratorConfig::SEED,
            ndf: 64,
            seed: 0,
            init: None,
        }
    }

    /// The length as a number in its own unit.
    pub fn length_units(&self) -> u64 {
        match self.length {
            Length::Epochs(n) | Length::Iterations(n) => n,
        }
    }

    /// Where decay starts, in the unit of `length`.
    pub fn decay_start(&self) -> u64 {
        self.decay_from.unwrap_or(self.length_units() / 2)
    }

    /// Rejects settings that cannot train, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.length_units() == 0 {
            return bad("the run length must be at least 1 epoch or iteration".into());
        }
        if self.decay_start() >= self.length_units() {
            return bad(format!(
                "the learning rate must start decaying before the end: decay from {} of {}",
                self.decay_start(),
                self.length_units()
            ));
        }
        if self.size < 32 || self.size % 4 != 0 {
            return bad(format!(
                "crop size {} must be a multiple of 4 and at least 32",
                self.size
            ));
        }
        if self.batch == 0 {
            return bad("the batch size must be at least 1".into());
        }
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if !finite_pos(self.lr) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} {b} must be in [0, 1)"));
            }
        }
        for (name, l) in [
            ("lambda_cycle", self.lambda_cycle),
            ("lambda_identity", self.lambda_identity),
        ] {
            if !(l.is_finite() && l >= 0.0) {
                return bad(format!("{name} {l} must be zero or positive"));
            }
        }
        if self.generator.ngf == 0 || self.ndf == 0 {
            return bad("filter counts must be at least 1".into());
        }
        Ok(())
    }

    /// The settings as metadata strings (`config.*`), the form checkpoints and style
    /// files carry them in.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(format!("config.{k}"), v);
        };
        put("content_dir", self.content_dir.display().to_string());
        put("style_dir", self.style_dir.display().to_string());
        let (unit, n) = match self.length {
            Length::Epochs(n) => ("epochs", n),
            Length::Iterations(n) => ("iterations", n),
        };
        put("length", format!("{n} {unit}"));
        put("decay_from", self.decay_start().to_string());
        put("size", self.size.to_string());
        put("batch", self.batch.to_string());
        put("lr", self.lr.to_string());
        put("beta1", self.beta1.to_string());
        put("beta2", self.beta2.to_string());
        put("lambda_cycle", self.lambda_cycle.to_string());
        put("lambda_identity", self.lambda_identity.to_string());
        put("pool_size", self.pool_size.to_string());
        put("layout", self.generator.layout.name().into());
        put("ngf", self.generator.ngf.to_string());
        put("blocks", self.generator.blocks.to_string());
        put("ndf", self.ndf.to_string());
        put("seed", self.seed.to_string());
        if let Some(p) = &self.init {
            put("init", p.display().to_string());
        }
        m
    }

    /// Reads what [`TrainConfig::to_metadata`] wrote.
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<Self> {
        let get = |k: &str| -> Result<&str> {
            m.get(&format!("config.{k}"))
                .map(String::as_str)
                .ok_or_else(|| Error::format_mem(format!("checkpoint metadata lacks config.{k}")))
        };
        fn parse<T: std::str::FromStr>(k: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| {
                Error::format_mem(format!(
                    "checkpoint metadata config.{k} = {v:?} is not valid"
                ))
            })
        }
        let num = |k: &str| -> Result<f64> { parse(k, get(k)?) };
        let int = |k: &str| -> Result<u64> { parse(k, get(k)?) };
        let length = {
            let v = get("length")?;
            match v.split_once(' ') {
                Some((n, "epochs")) => Length::Epochs(parse("length", n)?),
                Some((n, "iterations")) => Length::Iterations(parse("length", n)?),
                _ => {
                    return Err(Error::format_mem(format!(
                        "checkpoint metadata config.length = {v:?} is not valid"
                    )))
                }
            }
        };
        let layout = Layout::parse(get("layout")?)
            .ok_or_else(|| Error::format_mem("checkpoint metadata config.layout is not valid"))?;
        Ok(Self {
            content_dir: get("content_dir")?.into(),
            style_dir: get("style_dir")?.into(),
            length,
            decay_from: Some(int("decay_from")?),
            size: int("size")? as u32,
            batch: int("batch")? as usize,
            lr: num("lr")?,
            beta1: num("beta1")?,
            beta2: num("beta2")?,
            lambda_cycle: num("lambda_cycle")?,
            lambda_identity: num("lambda_identity")?,
            pool_size: int("pool_size")? as usize,
            generator: GeneratorConfig {
                layout,
                ngf: int("ngf")? as usize,
                blocks: int("blocks")? as usize,
            },
            ndf: int("ndf")? as usize,
            seed: int("seed")?,
            init: m.get("config.init").map(PathBuf::from),
        })
    }

    /// The step's settings (optimiser, losses, pool).
    pub fn step_settings(&self) -> StepSettings {
        StepSettings {
            lambda_cycle: self.lambda_cycle,
            lambda_identity: self.lambda_identity,
            adam: adam::AdamParams {
                beta1: self.beta1,
                beta2: self.beta2,
                ..adam::AdamParams::default()
            },
            pool_size: self.pool_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trip() {
        let mut c = TrainConfig::new("a dir", "b", Length::Epochs(7));
        c.lr = 1.5e-4;
        c.init = Some("x.safetensors".into());
        let back = TrainConfig::from_metadata(&c.to_metadata()).unwrap();
        // decay_from is stored resolved.
        c.decay_from = Some(3);
        assert_eq!(back, c);
        assert!(c.validate().is_ok());
        c.decay_from = Some(7);
        assert!(c.validate().is_err());
    }
}
