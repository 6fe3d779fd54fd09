//! The pipeline: everything between a front end's pixels and the engine's forward passes.
//! Working resolution, padding to the network's grid, the memory plan (whole image, or
//! tiles normalized with whole-image statistics, blended without seams), return to full
//! size with the photo's fine detail, strength, alpha, progress and cancel. It never names
//! a backend: it talks to the model's [`Engine`].

pub(crate) mod plan;
pub(crate) mod tiles;

use crate::engine::{Engine, NormStat, Precision, Stats};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::pixels::Pixels;

pub use self::plan::{default_budget, parse_size, DEFAULT_MAX_MEMORY, MIN_MEMORY};
use self::plan::{Fixed, Plan};
use self::tiles::Axis;

/// Long side of the working image when the scale is automatic. The styles were trained on
/// 256-px crops, so brush strokes are sized for images of a few hundred pixels: on 44 photos
/// a held-out Monet-vs-photo judge scored 0.68 at 384 px, 0.455 at 512 and 0.449 at native
/// size (issue #17), while content similarity fell only from 0.76 to 0.69.
pub const AUTO_WORKING_SIDE: u32 = 384;

/// The smallest `tile` override accepted; tiles narrower than their two overlap margins
/// plus 32 pixels are widened to that (160).
pub const MIN_TILE_OVERRIDE: u32 = 64;

/// Working resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Long side `AUTO_WORKING_SIDE` (384), or native if the image is smaller.
    Auto,
    /// A fraction of the input size: 1 is native, 0.5 halves each side.
    Fraction(f32),
}

/// Settings of one stylize call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StylizeOptions {
    /// 0 returns the input, 1 the full style; between, a linear blend.
    pub strength: f32,
    pub scale: Scale,
    /// Tile side in working pixels, overriding the memory plan; `None` lets the plan run
    /// the image whole when it fits the memory budget and in the largest tiles that fit
    /// otherwise.
    pub tile: Option<u32>,
    /// Bytes the call may use, the image and the model included; `None` for
    /// [`default_budget`] (the smaller of 2 GiB and half the available memory).
    pub max_memory: Option<u64>,
    /// The arithmetic of the forward passes (`Auto`: bf16 where the machine is fast at it
    /// and the result stays within the documented bounds of f32, f32 elsewhere).
    pub precision: Precision,
    /// How much of the photo's fine luminance detail to add back when working below
    /// native resolution (0 = none: a softer, more painterly result).
    pub detail: f32,
}

impl Default for StylizeOptions {
    fn default() -> Self {
        Self {
            strength: 1.0,
            scale: Scale::Auto,
            tile: None,
            max_memory: None,
            precision: Precision::Auto,
            detail: 0.5,
        }
    }
}

impl StylizeOptions {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(Error::InvalidArgument(format!(
                "strength {} is outside 0..1",
                self.strength
            )));
        }
        if let Scale::Fraction(f) = self.scale {
            if !(f > 0.0 && f <= 4.0) {
                return Err(Error::InvalidArgument(format!(
                    "scale {f} must be above 0 and at most 4 (1 = native resolution)"
                )));
            }
        }
        if let Some(t) = self.tile {
            if t < MIN_TILE_OVERRIDE {
                return Err(Error::InvalidArgument(format!(
                    "tile size {t} is below the minimum of {MIN_TILE_OVERRIDE} pixels"
                )));
            }
        }
        if let Some(m) = self.max_memory {
            if m < MIN_MEMORY {
                return Err(Error::InvalidArgument(format!(
                    "memory limit {} is below the minimum of {}",
                    plan::human(m),
                    plan::human(MIN_MEMORY)
                )));
            }
        }
        if !(0.0..=4.0).contains(&self.detail) {
            return Err(Error::InvalidArgument(format!(
                "detail {} is outside 0..4",
                self.detail
            )));
        }
        Ok(())
    }

    /// The working size for an input of `width` x `height`.
    pub fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
        let f = match self.scale {
            Scale::Fraction(f) => f as f64,
            Scale::Auto => {
                let long = width.max(height);
                if long <= AUTO_WORKING_SIDE {
                    1.0
                } else {
                    AUTO_WORKING_SIDE as f64 / long as f64
                }
            }
        };
        let side = |v: u32| ((v as f64 * f).round() as u32).max(1);
        (side(width), side(height))
    }
}

/// Stylizes `input`, returning an image of the same size, channels and depth.
/// `progress` gets fractions in 0..=1 and returns false to cancel ([`Error::Cancelled`]).
pub fn stylize(
    model: &Model,
    input: &Pixels,
    opts: &StylizeOptions,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Pixels> {
    opts.validate()?;
    let engine = model.engine();
    let budget = opts.max_memory.unwrap_or_else(default_budget);
    let (w, h) = (input.width(), input.height());
    let (ww, wh) = opts.working_size(w, h);
    let native = (ww, wh) == (w, h);
    let work = if native {
        None
    } else {
        Some(input.try_resized(ww, wh)?)
    };
    let work_ref = work.as_ref().unwrap_or(input);
    let fixed = Fixed::for_call(
        4 * input.data().len() as u64,
        4 * work_ref.data().len() as u64,
        native,
    );
    let styled = run_network(engine, work_ref, budget, fixed, opts, progress)?;
    let mut out = if native {
        styled
    } else {
        let mut up = styled.try_resized(w, h)?;
        drop(styled);
        if opts.detail > 0.0 {
            let low = work_ref.try_resized(w, h)?;
            add_detail(&mut up, input, &low, opts.detail);
        }
        up
    };
    finish(&mut out, input, opts.strength);
    Ok(out)
}

/// How a stylize call would run, for front ends that show it and for tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    /// The working size the network sees.
    pub working: (u32, u32),
    /// `None` for one piece; otherwise the largest tile, `(width, height)` in working
    /// pixels (square, or strips when one axis fits whole).
    pub tile: Option<(u32, u32)>,
    /// The scale of the statistics pass when tiled (1 = the whole working image).
    pub stats_scale: f64,
}

/// The plan [`stylize`] follows for a `width` x `height` input.
pub fn run_plan(model: &Model, width: u32, height: u32, opts: &StylizeOptions) -> Result<RunPlan> {
    opts.validate()?;
    let (ww, wh) = opts.working_size(width, height);
    let (pw, ph) = (round_up4(ww as usize), round_up4(wh as usize));
    // RGBA f32 (16 bytes a pixel): the largest an image of this size can be.
    let px = |w: u32, h: u32| (w as u64) * (h as u64) * 16;
    let native = (ww, wh) == (width, height);
    let fixed = Fixed::for_call(px(width, height), px(ww, wh), native);
    let budget = opts.max_memory.unwrap_or_else(default_budget);
    let tile = opts.tile.map(|t| t as usize);
    Ok(
        match plan::plan(model.engine(), pw, ph, budget, fixed, tile)? {
            Plan::Whole => RunPlan {
                working: (ww, wh),
                tile: None,
                stats_scale: 1.0,
            },
            Plan::Tiled { tile, stats_scale } => RunPlan {
                working: (ww, wh),
                tile: Some((tile.0 as u32, tile.1 as u32)),
                stats_scale,
            },
        },
    )
}

/// Adds `amount` x the photo's high-frequency luminance (input minus its low-passed copy).
fn add_detail(out: &mut Pixels, input: &Pixels, low: &Pixels, amount: f32) {
    let c = input.channels() as usize;
    let lc = low.channels() as usize;
    let oc = out.channels() as usize;
    let luma = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    for ((o, i), l) in out
        .data_mut()
        .chunks_exact_mut(oc)
        .zip(input.data().chunks_exact(c))
        .zip(low.data().chunks_exact(lc))
    {
        let d = amount * (luma(i) - luma(l));
        for v in &mut o[..3] {
            *v += d;
        }
    }
}

/// Blends with the input by `strength`, restores alpha and depth, clamps to 0..1.
fn finish(out: &mut Pixels, input: &Pixels, strength: f32) {
    let c = input.channels() as usize;
    debug_assert_eq!(out.channels(), input.channels());
    for (o, i) in out
        .data_mut()
        .chunks_exact_mut(c)
        .zip(input.data().chunks_exact(c))
    {
        for k in 0..3 {
            o[k] = (i[k] + strength * (o[k] - i[k])).clamp(0.0, 1.0);
        }
        if c == 4 {
            o[3] = i[3];
        }
    }
    out.set_depth(input.depth());
}

/// Counts forward-pass layers across a call's passes for the caller's progress fraction.
struct Progress<'a> {
    report: &'a mut dyn FnMut(f32) -> bool,
    precision: Precision,
    /// Work done by finished passes and in all, in pixel-layers.
    done: f64,
    total: f64,
}

impl Progress<'_> {
    /// Runs one forward pass of `px` pixels on `engine`, reporting per layer.
    fn forward(
        &mut self,
        engine: &dyn Engine,
        x: &[f32],
        (w, h): (usize, usize),
        stats: Stats,
    ) -> Result<Vec<f32>> {
        let (done, total, px) = (self.done, self.total, (w * h) as f64);
        let report = &mut *self.report;
        let y = engine.forward(x, w, h, stats, self.precision, &mut |layer, layers| {
            report(((done + px * layer as f64 / layers as f64) / total) as f32)
        })?;
        self.done += px;
        Ok(y)
    }
}

/// Runs the generator over `img`'s RGB as the memory plan says; returns `img` with its RGB
/// replaced by the network's output (alpha and depth untouched).
fn run_network(
    engine: &dyn Engine,
    img: &Pixels,
    budget: u64,
    fixed: Fixed,
    opts: &StylizeOptions,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Pixels> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (pw, ph) = (round_up4(w), round_up4(h));
    let plan = plan::plan(engine, pw, ph, budget, fixed, opts.tile.map(|t| t as usize))?;
    let mut out = img.try_clone()?;
    match plan {
        Plan::Whole => {
            let mut p = Progress {
                report: progress,
                precision: opts.precision,
                done: 0.0,
                total: (pw * ph) as f64,
            };
            let x = tiles::read_window(img, 0, 0, pw, ph)?;
            let y = p.forward(engine, &x, (pw, ph), Stats::Measure)?;
            drop(x);
            clear_rgb(&mut out);
            tiles::add_window(&mut out, &y, (0, 0, pw, ph), &vec![1.0; pw], &vec![1.0; ph]);
        }
        Plan::Tiled { tile, stats_scale } => {
            let (xs, ys) = (Axis::new(pw, tile.0), Axis::new(ph, tile.1));
            let (sw, sh) = if stats_scale >= 1.0 {
                (pw, ph)
            } else {
                (
                    round_up4(plan::scaled(w, stats_scale)),
                    round_up4(plan::scaled(h, stats_scale)),
                )
            };
            let tiles_px: usize = xs.spans.iter().map(|s| s.1).sum::<usize>()
                * ys.spans.iter().map(|s| s.1).sum::<usize>();
            let mut p = Progress {
                report: progress,
                precision: opts.precision,
                done: 0.0,
                total: (sw * sh + tiles_px) as f64,
            };
            let stats = measure_stats(engine, img, (sw, sh), stats_scale >= 1.0, &mut p)?;
            // The statistics pass ran on the largest image that fits; its buffers would
            // otherwise sit beside the tiles' for the whole run.
            engine.release_buffers();
            clear_rgb(&mut out);
            for (&(y0, th), wy) in ys.spans.iter().zip(&ys.weights) {
                for (&(x0, tw), wx) in xs.spans.iter().zip(&xs.weights) {
                    let x = tiles::read_window(img, x0, y0, tw, th)?;
                    let y = p.forward(engine, &x, (tw, th), Stats::Given(&stats))?;
                    drop(x);
                    tiles::add_window(&mut out, &y, (x0, y0, tw, th), wx, wy);
                }
            }
        }
    }
    let ch = usize::from(out.channels());
    for px in out.data_mut().chunks_exact_mut(ch) {
        for v in &mut px[..3] {
            *v = crate::pixels::sanitize(*v);
        }
    }
    Ok(out)
}

/// Records the statistics of every instance norm over the whole image, or over a copy
/// scaled to `sw` x `sh` when the whole image does not fit, so tiles are normalized as the
/// whole image would be.
fn measure_stats(
    engine: &dyn Engine,
    img: &Pixels,
    (sw, sh): (usize, usize),
    whole: bool,
    p: &mut Progress,
) -> Result<Vec<NormStat>> {
    let mut stats = Vec::with_capacity(engine.config().norm_count());
    let small;
    let (src, w, h) = if whole {
        (img, sw, sh)
    } else {
        small = img.try_resized(sw as u32, sh as u32)?;
        (&small, sw, sh)
    };
    let x = tiles::read_window(src, 0, 0, w, h)?;
    p.forward(engine, &x, (w, h), Stats::Record(&mut stats))?;
    Ok(stats)
}

/// Zeroes RGB for tiles to be added into, keeping alpha (the input's, which the working
/// copy's resampling to full size needs).
fn clear_rgb(out: &mut Pixels) {
    let ch = usize::from(out.channels());
    for px in out.data_mut().chunks_exact_mut(ch) {
        px[..3].fill(0.0);
    }
}

fn round_up4(v: usize) -> usize {
    v.max(4).div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_size_auto_and_fraction() {
        let o = StylizeOptions::default();
        assert_eq!(o.working_size(300, 200), (300, 200));
        assert_eq!(o.working_size(6000, 4000), (384, 256));
        let o = StylizeOptions {
            scale: Scale::Fraction(0.5),
            ..o
        };
        assert_eq!(o.working_size(301, 3), (151, 2));
    }
}
