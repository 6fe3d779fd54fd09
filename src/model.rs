//! A loaded style: the [`Model`] every door stylizes with. It holds the weights as stored
//! and the engine the chosen backend loaded them into; nothing here knows which backend
//! that is.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device};

use crate::device::Backend;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::nn::{Generator, GeneratorConfig};
use crate::styles::{shipped_bytes, shipped_styles};
use crate::weights::{GeneratorWeights, Weights};

/// A loaded generator, ready to stylize. Immutable once loaded, so one model may serve
/// many threads at once.
#[derive(Debug, Clone)]
pub struct Model {
    /// The weights as stored (f16 for the shipped styles), for the reference network.
    source: GeneratorWeights,
    /// The backend's engine, which does the work.
    engine: Arc<dyn Engine>,
    /// The candle network on the CPU, built only when something asks for the reference.
    reference: OnceLock<Generator>,
    metadata: BTreeMap<String, String>,
}

impl Model {
    /// Loads a shipped style by name (`"monet"`, any case) or a `.safetensors` / `.pth`
    /// file by path.
    pub fn load(name_or_path: &str, backend: Backend) -> Result<Self> {
        if let Some(bytes) = shipped_bytes(name_or_path) {
            return Self::from_bytes(bytes, backend);
        }
        let path = Path::new(name_or_path);
        if !path.exists() && !name_or_path.contains(['/', '\\', '.']) {
            return Err(Error::InvalidArgument(format!(
                "no style named {name_or_path:?}: shipped styles are {}; or give a .safetensors/.pth path",
                shipped_styles().collect::<Vec<_>>().join(", ")
            )));
        }
        let weights = Weights::read(path)?;
        Self::from_weights(&weights, backend).map_err(|e| e.with_path(path))
    }

    /// Loads weights held in memory.
    pub fn from_bytes(bytes: &[u8], backend: Backend) -> Result<Self> {
        Self::from_weights(&Weights::from_bytes(bytes)?, backend)
    }

    pub fn from_weights(weights: &Weights, backend: Backend) -> Result<Self> {
        let source = weights.generator_weights()?;
        let engine = crate::engine::load(&source, backend)?;
        Ok(Self {
            source,
            engine: Arc::from(engine),
            reference: OnceLock::new(),
            metadata: weights.metadata.clone(),
        })
    }

    /// The engine that runs this model's forward passes.
    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// Where this model runs, as users see it ("cpu", "cuda", ...).
    pub fn backend_name(&self) -> String {
        self.engine.describe()
    }

    /// The candle network on the CPU in f32: the reference the engines are tested against.
    #[doc(hidden)]
    pub fn reference_generator(&self) -> Result<&Generator> {
        if let Some(g) = self.reference.get() {
            return Ok(g);
        }
        let built = self.source.build(&Device::Cpu, DType::F32)?;
        // Two threads racing here each build one; one is kept.
        Ok(self.reference.get_or_init(|| built))
    }

    pub fn config(&self) -> GeneratorConfig {
        self.source.config()
    }

    /// Metadata stored in the style file (direction, training settings...).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}
