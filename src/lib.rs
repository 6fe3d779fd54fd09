//! cyclegan: CycleGAN style transfer (Monet and other painters) on candle.
//!
//! The Rust API: load a [`Model`] (a shipped style name or a weights file), then
//! [`stylize`] [`Pixels`] with [`StylizeOptions`]. The C ABI in [`capi`] wraps exactly this.

// Every `unsafe` block says why it is sound (SECURITY.md); clippy enforces it.
#![warn(clippy::undocumented_unsafe_blocks)]

// The doors and the user-level APIs.
pub mod batch;
pub mod capi;
pub mod error;
pub mod io;
pub mod train;

// Not part of the API: the engine boundary and the networks, public only for the GPU
// backend libraries (backends/), the tests and the benchmarks.
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod nn;

mod device;
mod model;
mod pipeline;
mod pixels;
mod styles;
mod weights;

pub use device::Backend;
pub use engine::Precision;
pub use error::{Error, Result};
pub use model::Model;
pub use pipeline::{
    default_budget, parse_size as parse_memory_size, run_plan, stylize, RunPlan, Scale,
    StylizeOptions, DEFAULT_MAX_MEMORY, MIN_MEMORY,
};
pub use pixels::{BitDepth, Pixels};
pub use styles::{shipped_styles, shipped_weights, style_label, DEFAULT_STYLE};
pub use train::{TrainConfig, Trainer};
pub use weights::{save_style, to_safetensors_bytes, SourceFormat, Weights};
