//! Library-level stylize behaviour: tiling matches the whole image, progress and cancel,
//! working scale, alpha.

mod common;

use cyclegan::{stylize, Backend, Error, Model, Scale, StylizeOptions};
use cyclegan::{BitDepth, Pixels};

fn small_model() -> Model {
    let p = common::fixture("el_ngf8_b9.safetensors");
    Model::load(p.to_str().unwrap(), Backend::Cpu).unwrap()
}

/// A deterministic picture with structure at several scales.
fn picture(w: u32, h: u32, channels: u8) -> Pixels {
    let mut p = Pixels::new(w, h, channels, BitDepth::Eight).unwrap();
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * channels as u32) as usize;
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            p.data_mut()[i] = fx;
            p.data_mut()[i + 1] = 0.5 + 0.5 * (fx * 23.0 + fy * 7.0).sin();
            p.data_mut()[i + 2] = ((x / 13 + y / 13) % 2) as f32 * 0.6 + 0.2 * fy;
            if channels == 4 {
                p.data_mut()[i + 3] = (x % 7) as f32 / 6.0;
            }
        }
    }
    p
}

fn mean_abs_diff(a: &Pixels, b: &Pixels) -> f32 {
    assert_eq!(
        (a.width(), a.height(), a.channels()),
        (b.width(), b.height(), b.channels())
    );
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .sum::<f32>()
        / a.data().len() as f32
}

/// Native scale; `tile` forces tiles, `None` lets the memory plan choose.
fn native(tile: Option<u32>) -> StylizeOptions {
    StylizeOptions {
        scale: Scale::Fraction(1.0),
        tile,
        ..Default::default()
    }
}

#[test]
fn tiled_matches_whole_image_within_one_level() {
    let model = small_model();
    let img = picture(400, 300, 3);
    let plan = |o: &StylizeOptions| cyclegan::run_plan(&model, 400, 300, o).unwrap();
    assert_eq!(
        plan(&native(None)).tile,
        None,
        "400x300 fits the default budget"
    );
    assert_eq!(plan(&native(Some(256))).tile, Some((256, 256)));
    let whole = stylize(&model, &img, &native(None), &mut |_| true).unwrap();
    let tiled = stylize(&model, &img, &native(Some(256)), &mut |_| true).unwrap();
    let mad = mean_abs_diff(&whole, &tiled);
    assert!(mad <= 1.0 / 255.0, "tiled vs whole mean abs diff {mad}");
}

#[test]
fn progress_rises_to_one_and_cancel_stops() {
    let model = small_model();
    let img = picture(300, 200, 4);
    let mut seen = Vec::new();
    for tile in [None, Some(160)] {
        // One piece reports each layer; tiles report each layer of each tile.
        seen.clear();
        stylize(&model, &img, &native(tile), &mut |f| {
            seen.push(f);
            true
        })
        .unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(
            seen.len() >= 20,
            "{tile:?}: per-layer progress, got {seen:?}"
        );
        assert_eq!(*seen.last().unwrap(), 1.0);

        // Cancel is prompt inside a single piece: the next layer does not start.
        let mut calls = 0;
        let r = stylize(&model, &img, &native(tile), &mut |_| {
            calls += 1;
            calls < 3
        });
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        assert_eq!(calls, 3, "stops at the first refusal");
    }
}

#[test]
fn working_scale_keeps_full_size_alpha_and_detail_setting_matters() {
    let model = small_model();
    let img = picture(333, 211, 4);
    let opts = StylizeOptions {
        scale: Scale::Fraction(0.5),
        ..Default::default()
    };
    let out = stylize(&model, &img, &opts, &mut |_| true).unwrap();
    assert_eq!((out.width(), out.height(), out.channels()), (333, 211, 4));
    for (o, i) in out.data().chunks(4).zip(img.data().chunks(4)) {
        assert_eq!(o[3], i[3]);
    }
    let soft = stylize(
        &model,
        &img,
        &StylizeOptions {
            detail: 0.0,
            ..opts
        },
        &mut |_| true,
    )
    .unwrap();
    assert!(
        mean_abs_diff(&out, &soft) > 1e-3,
        "detail restore changes the result"
    );
}

#[test]
fn bad_options_are_refused() {
    let model = small_model();
    let img = picture(16, 16, 3);
    for opts in [
        StylizeOptions {
            strength: 1.5,
            ..Default::default()
        },
        StylizeOptions {
            strength: f32::NAN,
            ..Default::default()
        },
        StylizeOptions {
            scale: Scale::Fraction(0.0),
            ..Default::default()
        },
        StylizeOptions {
            scale: Scale::Fraction(f32::NAN),
            ..Default::default()
        },
        StylizeOptions {
            tile: Some(8),
            ..Default::default()
        },
        StylizeOptions {
            max_memory: Some(1 << 20),
            ..Default::default()
        },
    ] {
        let r = stylize(&model, &img, &opts, &mut |_| true);
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{opts:?}: {r:?}"
        );
    }
}

#[test]
fn tiny_images_work() {
    let model = small_model();
    for (w, h) in [(1, 1), (2, 7), (5, 3)] {
        let out = stylize(&model, &picture(w, h, 3), &native(None), &mut |_| true).unwrap();
        assert_eq!((out.width(), out.height()), (w, h));
        assert!(out.data().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn large_image_tiles_without_seams() {
    // 1.3 MP at native scale in 128 MiB: statistics come from a downscaled copy (so the
    // global tone may differ a little from an untiled run), but every tile uses the same
    // ones: across each seam the output is as smooth as inside the tiles.
    let model = small_model();
    let img = picture(1300, 1000, 3);
    let opts = StylizeOptions {
        max_memory: Some(128 << 20),
        ..native(Some(512))
    };
    let plan = cyclegan::run_plan(&model, 1300, 1000, &opts).unwrap();
    assert!(plan.stats_scale < 1.0, "{plan:?}");
    let out = stylize(&model, &img, &opts, &mut |_| true).unwrap();
    let w = out.width() as usize;
    let col_step = |x: usize| -> f32 {
        (0..out.height() as usize)
            .map(|y| (out.data()[(y * w + x + 1) * 3] - out.data()[(y * w + x) * 3]).abs())
            .sum::<f32>()
            / out.height() as f32
    };
    // Four 424-px tiles start at x = 0, 296, 592 and 876: each overlap's edges and middle.
    let typical: f32 = (100..280).map(col_step).sum::<f32>() / 180.0;
    for seam in [295, 359, 423, 591, 655, 719, 875, 945, 1015] {
        let s = col_step(seam);
        assert!(
            s < 2.0 * typical + 1.0 / 255.0,
            "step {s} at seam {seam} vs typical {typical}"
        );
    }
}
