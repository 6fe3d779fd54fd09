//! Stylizing an image of any size: working resolution, padding to the network's grid,
//! whole-image or tiled inference with whole-image instance-norm statistics, feathered
//! tile seams, return to full size with the photo's fine detail, strength and alpha.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::image::Pixels;
use crate::model::layers::NormStats;
use crate::model::Norms;
use crate::style::Model;

/// Long side of the working image when the scale is automatic. The styles were trained on
/// 256-px crops, so brush strokes are sized for images of a few hundred pixels; at native
/// resolution a large photo gets a fine texture instead of a painting.
pub const AUTO_WORKING_SIDE: u32 = 512;

/// Default tile side in working pixels: about 0.4 MP per tile with its margins.
pub const DEFAULT_TILE: u32 = 512;

/// Overlap on each side of a tile. Tiles are cut and blended on a 4-pixel grid so the two
/// stride-2 layers see the same pixel phases as the whole image does.
const TILE_MARGIN: usize = 96;

/// Largest image (in pixels) whose instance-norm statistics are measured at full working
/// resolution; larger ones measure them on a downscaled copy of this size.
const STATS_MAX_PIXELS: usize = 1024 * 1024;

/// Working resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Long side [`AUTO_WORKING_SIDE`], or native if the image is smaller.
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
    /// Tile side in working pixels; larger tiles are faster and use more memory.
    pub tile: u32,
    /// How much of the photo's fine luminance detail to add back when working below
    /// native resolution (0 = none: a softer, more painterly result).
    pub detail: f32,
}

impl Default for StylizeOptions {
    fn default() -> Self {
        Self {
            strength: 1.0,
            scale: Scale::Auto,
            tile: DEFAULT_TILE,
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
        if self.tile < 64 {
            return Err(Error::InvalidArgument(format!(
                "tile size {} is below the minimum of 64 pixels",
                self.tile
            )));
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
    let (w, h) = (input.width, input.height);
    let (ww, wh) = opts.working_size(w, h);
    let native = (ww, wh) == (w, h);
    let work = if native {
        None
    } else {
        Some(input.resized(ww, wh))
    };
    let work_ref = work.as_ref().unwrap_or(input);
    let planar = run_network(model, work_ref, opts.tile as usize, progress)?;
    let mut styled = work_ref.clone();
    styled.set_rgb_from_planar(&planar);
    drop(planar);
    let mut out = if native {
        styled
    } else {
        let mut up = styled.resized(w, h);
        drop(styled);
        if opts.detail > 0.0 {
            let low = work_ref.resized(w, h);
            add_detail(&mut up, input, &low, opts.detail);
        }
        up
    };
    finish(&mut out, input, opts.strength);
    Ok(out)
}

/// Adds `amount` x the photo's high-frequency luminance (input minus its low-passed copy).
fn add_detail(out: &mut Pixels, input: &Pixels, low: &Pixels, amount: f32) {
    let c = input.channels as usize;
    let lc = low.channels as usize;
    let oc = out.channels as usize;
    let luma = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    for ((o, i), l) in out
        .data
        .chunks_exact_mut(oc)
        .zip(input.data.chunks_exact(c))
        .zip(low.data.chunks_exact(lc))
    {
        let d = amount * (luma(i) - luma(l));
        for v in &mut o[..3] {
            *v += d;
        }
    }
}

/// Blends with the input by `strength`, restores alpha and depth, clamps to 0..1.
fn finish(out: &mut Pixels, input: &Pixels, strength: f32) {
    let c = input.channels as usize;
    debug_assert_eq!(out.channels, input.channels);
    for (o, i) in out.data.chunks_exact_mut(c).zip(input.data.chunks_exact(c)) {
        for k in 0..3 {
            o[k] = (i[k] + strength * (o[k] - i[k])).clamp(0.0, 1.0);
        }
        if c == 4 {
            o[3] = i[3];
        }
    }
    out.depth = input.depth;
}

/// Runs the generator over `img`'s RGB; returns planar CHW output in [-1, 1].
fn run_network(
    model: &Model,
    img: &Pixels,
    tile: usize,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Vec<f32>> {
    let (w, h) = (img.width as usize, img.height as usize);
    let (pw, ph) = (round_up4(w), round_up4(h));
    let padded = pad_planar(&img.to_planar_rgb(), w, h, pw, ph);
    let out = if pw * ph <= tile * tile {
        let y = forward(model, &padded, pw, ph, &mut Norms::Own)?;
        if !progress(1.0) {
            return Err(Error::Cancelled);
        }
        y
    } else {
        run_tiled(model, img, &padded, pw, ph, tile, progress)?
    };
    Ok(crop_planar(&out, pw, ph, w, h))
}

fn run_tiled(
    model: &Model,
    img: &Pixels,
    padded: &[f32],
    pw: usize,
    ph: usize,
    tile: usize,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Vec<f32>> {
    let stats = measure_stats(model, img, padded, pw, ph)?;
    if let Some(cpu) = model.cpu_generator() {
        // The statistics pass ran on up to 1 MP: its buffers are 4x a tile's and would
        // otherwise sit beside the blended output for the whole run.
        cpu.release_buffers();
    }
    let core = tile.saturating_sub(2 * TILE_MARGIN).max(32) / 4 * 4;
    let xs: Vec<usize> = (0..pw).step_by(core).collect();
    let ys: Vec<usize> = (0..ph).step_by(core).collect();
    let total = (xs.len() * ys.len() + 1) as f32;
    if !progress(1.0 / total) {
        return Err(Error::Cancelled);
    }
    let mut acc = vec![0f32; 3 * pw * ph];
    let mut wsum = vec![0f32; pw * ph];
    let mut done = 1;
    for &y0 in &ys {
        for &x0 in &xs {
            let (ax, bx) = (
                x0.saturating_sub(TILE_MARGIN),
                (x0 + core + TILE_MARGIN).min(pw),
            );
            let (ay, by) = (
                y0.saturating_sub(TILE_MARGIN),
                (y0 + core + TILE_MARGIN).min(ph),
            );
            let (tw, th) = (bx - ax, by - ay);
            let mut sub = vec![0f32; 3 * tw * th];
            for c in 0..3 {
                for y in 0..th {
                    let src = c * pw * ph + (ay + y) * pw + ax;
                    sub[(c * th + y) * tw..][..tw].copy_from_slice(&padded[src..src + tw]);
                }
            }
            let out = forward(model, &sub, tw, th, &mut Norms::Frozen(&stats, 0))?;
            let wx = ramp(ax, bx, pw);
            let wy = ramp(ay, by, ph);
            for y in 0..th {
                for x in 0..tw {
                    let wgt = wx[x] * wy[y];
                    let i = (ay + y) * pw + ax + x;
                    wsum[i] += wgt;
                    for c in 0..3 {
                        acc[c * pw * ph + i] += wgt * out[(c * th + y) * tw + x];
                    }
                }
            }
            done += 1;
            if !progress(done as f32 / total) {
                return Err(Error::Cancelled);
            }
        }
    }
    for c in 0..3 {
        for (a, s) in acc[c * pw * ph..][..pw * ph].iter_mut().zip(&wsum) {
            *a /= s;
        }
    }
    Ok(acc)
}

/// Blend weights along one axis of a tile spanning `a..b` of `0..n`: linear ramps over the
/// overlap with neighbours, flat 1 at the image's own edges. Always above 0.
fn ramp(a: usize, b: usize, n: usize) -> Vec<f32> {
    let span = (2 * TILE_MARGIN) as f32;
    (a..b)
        .map(|i| {
            let from_start = if a == 0 {
                1.0
            } else {
                ((i - a) as f32 + 0.5) / span
            };
            let to_end = if b == n {
                1.0
            } else {
                ((b - i) as f32 - 0.5) / span
            };
            from_start.min(to_end).min(1.0)
        })
        .collect()
}

/// Records the statistics of every instance norm over the whole image (or a downscaled copy
/// when the image is too large), so that tiles are normalised as the whole image would be.
fn measure_stats(
    model: &Model,
    img: &Pixels,
    padded: &[f32],
    pw: usize,
    ph: usize,
) -> Result<Vec<NormStats>> {
    let mut stats = Vec::with_capacity(model.config().norm_count());
    if pw * ph <= STATS_MAX_PIXELS {
        forward(model, padded, pw, ph, &mut Norms::Record(&mut stats))?;
    } else {
        let f = (STATS_MAX_PIXELS as f64 / (pw * ph) as f64).sqrt();
        let sw = ((img.width as f64 * f) as u32).max(4);
        let sh = ((img.height as f64 * f) as u32).max(4);
        let small = img.resized(sw, sh);
        let (spw, sph) = (round_up4(sw as usize), round_up4(sh as usize));
        let sp = pad_planar(&small.to_planar_rgb(), sw as usize, sh as usize, spw, sph);
        forward(model, &sp, spw, sph, &mut Norms::Record(&mut stats))?;
    }
    Ok(stats)
}

/// One forward pass of planar CHW data.
fn forward(
    model: &Model,
    planar: &[f32],
    w: usize,
    h: usize,
    norms: &mut Norms,
) -> Result<Vec<f32>> {
    if let Some(cpu) = model.cpu_generator() {
        return Ok(cpu.forward_planar(planar, w, h, norms)?);
    }
    let x = Tensor::from_slice(planar, (1, 3, h, w), model.device())?.to_dtype(model.dtype())?;
    let y = model.generator()?.forward_with(&x, norms)?;
    Ok(y.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn round_up4(v: usize) -> usize {
    v.max(4).div_ceil(4) * 4
}

/// Extends planar data from `w x h` to `pw x ph` by mirroring the right and bottom edges,
/// which disturbs the image statistics less than zeros or repeated edges.
fn pad_planar(src: &[f32], w: usize, h: usize, pw: usize, ph: usize) -> Vec<f32> {
    if (w, h) == (pw, ph) {
        return src.to_vec();
    }
    let mirror = |i: usize, n: usize| -> usize {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i % period;
        if m < n {
            m
        } else {
            period - m
        }
    };
    let mut out = vec![0f32; 3 * pw * ph];
    for c in 0..3 {
        for y in 0..ph {
            let sy = mirror(y, h);
            for x in 0..pw {
                out[(c * ph + y) * pw + x] = src[(c * h + sy) * w + mirror(x, w)];
            }
        }
    }
    out
}

fn crop_planar(src: &[f32], pw: usize, ph: usize, w: usize, h: usize) -> Vec<f32> {
    if (w, h) == (pw, ph) {
        return src.to_vec();
    }
    let mut out = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        for y in 0..h {
            out.extend_from_slice(&src[(c * ph + y) * pw..][..w]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_sum_to_one_in_overlaps() {
        // Two tiles over 0..400 whose cores split at 200, each with its margin.
        let (n, m) = (400, TILE_MARGIN);
        let a = ramp(0, 200 + m, n);
        let b = ramp(200 - m, n, n);
        for i in 200 - m..200 + m {
            let s = a[i] + b[i - (200 - m)];
            assert!((s - 1.0).abs() < 1e-5, "at {i}: {s}");
        }
        assert!(a.iter().chain(&b).all(|&w| w > 0.0));
    }

    #[test]
    fn pad_then_crop_is_identity() {
        let (w, h) = (5, 3);
        let src: Vec<f32> = (0..3 * w * h).map(|v| v as f32).collect();
        let p = pad_planar(&src, w, h, 8, 4);
        assert_eq!(p[7], src[1], "x=7 mirrors x=1 in a 5-wide row");
        assert_eq!(crop_planar(&p, 8, 4, w, h), src);
    }

    #[test]
    fn working_size_auto_and_fraction() {
        let o = StylizeOptions::default();
        assert_eq!(o.working_size(300, 200), (300, 200));
        assert_eq!(o.working_size(6000, 4000), (512, 341));
        let o = StylizeOptions {
            scale: Scale::Fraction(0.5),
            ..o
        };
        assert_eq!(o.working_size(301, 3), (151, 2));
    }
}
