//! Styles: the shipped ones (embedded in the library, so every door — CLI, C ABI, plugins —
//! finds them without set-up) and style files given by path.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device};

use crate::device::{compute_dtype, Backend};
use crate::error::{Error, Result};
use crate::model::{CpuGenerator, Generator, GeneratorConfig};
use crate::weights::{GeneratorWeights, Weights};

/// Shipped styles: name, menu label, weights.
const SHIPPED: &[(&str, &str, &[u8])] = &[(
    "monet",
    "Monet style",
    include_bytes!("../models/monet.safetensors"),
)];

/// The style used when none is named.
pub const DEFAULT_STYLE: &str = "monet";

/// Names of the shipped styles, for menus.
pub fn shipped_styles() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(n, _, _)| *n)
}

/// Human label of a shipped style ("Monet style").
pub fn style_label(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, l, _)| *l)
}

/// A loaded generator, ready to stylize. Immutable once loaded, so one model may serve
/// many threads at once.
#[derive(Debug, Clone)]
pub struct Model {
    /// The weights as stored (f16 for the shipped styles).
    source: GeneratorWeights,
    /// The candle network in the compute dtype: built at load on a GPU, where it does the
    /// work; on the CPU, where the fast path does, only when something asks for it, which
    /// keeps start-up time and memory down.
    generator: OnceLock<Generator>,
    /// The same weights packed for the CPU fast path, present when the model runs on the CPU.
    cpu: Option<Arc<CpuGenerator>>,
    device: Device,
    dtype: DType,
    metadata: BTreeMap<String, String>,
}

impl Model {
    /// Loads a shipped style by name (`"monet"`) or a `.safetensors` / `.pth` file by path.
    pub fn load(name_or_path: &str, backend: Backend) -> Result<Self> {
        if let Some((_, _, bytes)) = SHIPPED.iter().find(|(n, _, _)| *n == name_or_path) {
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
        let device = backend.device()?;
        let dtype = compute_dtype(&device);
        let source = weights.generator_weights()?;
        let generator = OnceLock::new();
        let cpu = if device.is_cpu() {
            // Packing converts each layer itself, so a network in the stored dtype (no copy)
            // serves, and it also checks every shape.
            let stored = source.build(&device, source.stored_dtype())?;
            Some(Arc::new(CpuGenerator::new(&stored)?))
        } else {
            let _ = generator.set(source.build(&device, dtype)?);
            None
        };
        Ok(Self {
            source,
            generator,
            cpu,
            device,
            dtype,
            metadata: weights.metadata.clone(),
        })
    }

    /// The candle network (the reference implementation on the CPU, the engine on a GPU).
    pub fn generator(&self) -> Result<&Generator> {
        if let Some(g) = self.generator.get() {
            return Ok(g);
        }
        let built = self.source.build(&self.device, self.dtype)?;
        // Two threads racing here each build one; one is kept.
        Ok(self.generator.get_or_init(|| built))
    }

    /// The CPU fast path; `None` when the model lives on a GPU.
    pub fn cpu_generator(&self) -> Option<&CpuGenerator> {
        self.cpu.as_deref()
    }

    pub fn config(&self) -> GeneratorConfig {
        self.source.config()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Metadata stored in the style file (direction, training settings...).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}

/// The parsed weights of a shipped style, for `info`.
pub fn shipped_weights(name: &str) -> Option<crate::Result<Weights>> {
    SHIPPED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, b)| Weights::from_bytes(b))
}
