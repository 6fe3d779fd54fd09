//! The engine reproduces PyTorch: every fixture layout and the trained reference style.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use common::{fixture, load_tensors, max_abs_diff, shared};
use cyclegan::model::{Discriminator, GeneratorConfig, Layout};
use cyclegan::weights::Weights;

/// Runs every `input_i` of `parity` through the generator in `model` and checks `output_i`.
fn check_generator(model: &std::path::Path, parity: &std::path::Path, tol: f32) -> usize {
    let weights = Weights::read(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let g = weights.generator(&Device::Cpu, DType::F32).unwrap();
    let vectors = load_tensors(parity);
    let mut n = 0;
    while let Some(input) = vectors.get(&format!("input_{n}")) {
        let want = &vectors[&format!("output_{n}")];
        let got = g.forward(input).unwrap();
        let d = max_abs_diff(&got, want);
        assert!(
            d <= tol,
            "{} input_{n} {:?}: max abs diff {d} > {tol}",
            model.display(),
            input.dims()
        );
        n += 1;
    }
    assert!(n > 0, "no vectors in {}", parity.display());
    n
}

#[test]
fn seed_layout_safetensors_and_pth() {
    let p = fixture("parity_el_ngf8_b9.safetensors");
    assert_eq!(
        check_generator(&fixture("el_ngf8_b9.safetensors"), &p, 1e-4),
        3
    );
    check_generator(&fixture("el_ngf8_b9.pth"), &p, 1e-4);
}

#[test]
fn official_layouts_zip_and_legacy_pth() {
    let p9 = fixture("parity_jz_ngf8_b9.safetensors");
    check_generator(&fixture("jz_ngf8_b9.pth"), &p9, 1e-4);
    check_generator(&fixture("jz_ngf8_b9_legacy.pth"), &p9, 1e-4);
    check_generator(
        &fixture("jz_ngf8_b6.pth"),
        &fixture("parity_jz_ngf8_b6.safetensors"),
        1e-4,
    );
}

#[test]
fn layouts_filters_and_blocks_come_from_the_weights() {
    let cases = [
        ("el_ngf8_b9.safetensors", Layout::Seed, 9),
        ("el_ngf8_b9.pth", Layout::Seed, 9),
        ("jz_ngf8_b9.pth", Layout::Official, 9),
        ("jz_ngf8_b9_legacy.pth", Layout::Official, 9),
        ("jz_ngf8_b6.pth", Layout::Official, 6),
    ];
    for (file, layout, blocks) in cases {
        let cfg = Weights::read(&fixture(file))
            .unwrap()
            .generator_config()
            .unwrap();
        assert_eq!(
            cfg,
            GeneratorConfig {
                layout,
                ngf: 8,
                blocks
            },
            "{file}"
        );
    }
}

#[test]
fn discriminator_matches_pytorch() {
    let t = load_tensors(&fixture("disc_el_ngf64.safetensors"));
    let vb = VarBuilder::from_tensors(t.clone(), DType::F32, &Device::Cpu);
    let d = Discriminator::new(&vb, 64).unwrap();
    let got = d.forward(&t["input_0"]).unwrap();
    assert_eq!(got.dims(), &[1, 1, 4, 6]);
    let diff = max_abs_diff(&got, &t["output_0"]);
    assert!(diff <= 1e-4, "max abs diff {diff}");
}

#[test]
fn shipped_monet_is_the_reference_generator() {
    // The shipped style must produce what PyTorch produces from the reference weights.
    let Some(parity) = shared("models/reference/parity_photo2monet.safetensors") else {
        return;
    };
    let vectors = load_tensors(&parity);
    let model = cyclegan::Model::load("monet", cyclegan::Backend::Cpu).unwrap();
    for i in 0..2 {
        let input = &vectors[&format!("input_{i}")];
        let got = model.generator().forward(input).unwrap();
        let d = max_abs_diff(&got, &vectors[&format!("output_{i}")]);
        assert!(d <= 1e-3, "reference input_{i}: max abs diff {d}");
    }
}

#[test]
fn reference_style_file_matches_pytorch() {
    let (Some(model), Some(parity)) = (
        shared("models/reference/photo2monet.safetensors"),
        shared("models/reference/parity_photo2monet.safetensors"),
    ) else {
        return;
    };
    check_generator(&model, &parity, 1e-3);
}

#[test]
fn reference_examples_within_one_level() {
    let Some(dir) = shared("models/reference/examples") else {
        return;
    };
    let model = cyclegan::Model::load("monet", cyclegan::Backend::Cpu).unwrap();
    let opts = cyclegan::StylizeOptions {
        scale: cyclegan::Scale::Fraction(1.0),
        ..Default::default()
    };
    for stem in ["0_01135e4771", "1_0b6b4bfc29"] {
        let limits = cyclegan::io::DecodeLimits::default();
        let input = cyclegan::io::read_image(&dir.join(format!("{stem}_in.png")), &limits).unwrap();
        let want =
            cyclegan::io::read_image(&dir.join(format!("{stem}_monet.png")), &limits).unwrap();
        let got = cyclegan::stylize(&model, &input, &opts, &mut |_| true).unwrap();
        assert_eq!((got.width, got.height), (want.width, want.height));
        let worst = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| ((a * 255.0).round() - (b * 255.0).round()).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1.0, "{stem}: worst difference {worst} levels");
    }
}

#[test]
fn reflection_and_norm_are_differentiable() {
    // The trainer backpropagates through the same layers.
    let x = candle_core::Var::from_tensor(
        &Tensor::randn(0f32, 1., (1, 2, 5, 6), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let y = cyclegan::model::layers::instance_norm2d(
        &cyclegan::model::layers::reflection_pad2d(x.as_tensor(), 2).unwrap(),
    )
    .unwrap();
    let loss = y.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    assert!(grads.get(x.as_tensor()).is_some());
}

/// On a CUDA build with a GPU: the same vectors through the CUDA backend.
#[cfg(feature = "cuda")]
#[test]
fn cuda_matches_pytorch() {
    if !cyclegan::Backend::Cuda.is_available() {
        eprintln!("skipping: no CUDA device");
        return;
    }
    let dev = cyclegan::Backend::Cuda.device().unwrap();
    let weights = Weights::read(&fixture("jz_ngf8_b9.pth")).unwrap();
    let g = weights.generator(&dev, DType::F32).unwrap();
    let v = load_tensors(&fixture("parity_jz_ngf8_b9.safetensors"));
    for i in 0..3 {
        let x = v[&format!("input_{i}")].to_device(&dev).unwrap();
        let got = g.forward(&x).unwrap().to_device(&Device::Cpu).unwrap();
        let d = max_abs_diff(&got, &v[&format!("output_{i}")]);
        // cuBLAS may use TF32 tensor cores for f32 convolutions: 10-bit mantissas.
        assert!(d <= 2e-3, "CUDA input_{i}: max abs diff {d}");
    }
}
