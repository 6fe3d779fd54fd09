//! The CycleGAN networks.

pub mod conv;
pub mod conv_grad;
pub mod cpu;
pub mod discriminator;
pub mod fused;
pub mod generator;
pub mod layers;

pub use cpu::CpuGenerator;
pub use discriminator::Discriminator;
pub use generator::{Generator, GeneratorConfig, Layout, Norms};
