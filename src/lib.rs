//! cyclegan: CycleGAN style transfer (Monet and other painters) on candle.
//!
//! The Rust API: load a [`Model`] (a shipped style name or a weights file), then
//! [`stylize`] [`Pixels`] with [`StylizeOptions`]. The C ABI in [`capi`] wraps exactly this.

// Every `unsafe` block says why it is sound (SECURITY.md); clippy enforces it.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod batch;
pub mod capi;
pub mod device;
pub mod engine;
pub mod error;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod pixels;
pub mod style;
pub mod train;
pub mod weights;

pub use device::Backend;
pub use engine::Precision;
pub use error::{Error, Result};
pub use pipeline::{stylize, Scale, StylizeOptions};
pub use pixels::Pixels;
pub use style::{Model, DEFAULT_STYLE};
pub use train::{TrainConfig, Trainer};
