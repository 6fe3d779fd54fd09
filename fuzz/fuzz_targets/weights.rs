//! Weights loader: arbitrary bytes through `Weights::from_bytes` (safetensors, zip `.pth` and
//! legacy `.pth`, told apart by content) and, when they parse, the whole model load on the
//! CPU. Errors are expected; a panic, an abort or an allocation beyond the RSS limit is a bug.

#![no_main]

use cyclegan::Weights;
use cyclegan::{Backend, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(weights) = Weights::from_bytes(data) else {
        return;
    };
    let _ = weights.generator_prefixes();
    let _ = weights.dtype();
    let _ = weights.parameter_count();
    if weights.generator_config().is_ok() {
        // What `Model::from_bytes(data, Backend::Cpu)` does after parsing, without parsing
        // the same bytes twice.
        if let Ok(model) = Model::from_weights(&weights, Backend::Cpu) {
            let _ = model.config();
        }
    }
});
