//! Styles: the shipped ones (embedded in the library, so every door — CLI, C ABI, plugins —
//! finds them without set-up) and style files given by path.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};

use crate::device::{compute_dtype, Backend};
use crate::error::{Error, Result};
use crate::model::{CpuGenerator, Generator, GeneratorConfig};
use crate::weights::Weights;

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
    generator: Generator,
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
        let generator = weights.generator(&device, dtype)?;
        let cpu = if device.is_cpu() {
            Some(Arc::new(CpuGenerator::new(&generator)?))
        } else {
            None
        };
        Ok(Self {
            generator,
            cpu,
            device,
            dtype,
            metadata: weights.metadata.clone(),
        })
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// The CPU fast path; `None` when the model lives on a GPU.
    pub fn cpu_generator(&self) -> Option<&CpuGenerator> {
        self.cpu.as_deref()
    }

    pub fn config(&self) -> GeneratorConfig {
        self.generator.config()
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
