//! The CycleGAN networks.

pub mod conv;
pub mod conv_grad;
pub mod discriminator;
pub mod fused;
pub mod generator;
pub mod layers;
pub mod layout;

pub use discriminator::Discriminator;
pub use generator::{Generator, GeneratorConfig, Layout, Norms};
