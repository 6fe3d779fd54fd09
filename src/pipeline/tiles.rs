//! Tiles: where they go, how they are read out of the image and how their outputs are
//! blended back without seams.
//!
//! Tiles overlap by at least `2 * MARGIN` and are laid out evenly (no sliver at the end),
//! on the 4-pixel grid so the two stride-2 layers see the pixel phases the whole image
//! does. Each axis gets blend weights that form a partition of unity (linear ramps over
//! each overlap, normalized to sum to exactly 1), so a tile's output is simply added, times
//! its weights, into the output image: no accumulator or weight-sum image.

use crate::error::{try_vec, Result};
use crate::pixels::Pixels;

/// Overlap kept on each side of a tile's core. The network's effective receptive field
/// at the working resolution: seams stay far below 1/255 (tests/stylize.rs).
pub(crate) const MARGIN: usize = 64;

/// The smallest tile the planner picks.
pub(crate) const MIN_TILE: usize = 256;

/// One axis of a tile grid: the spans `start..start + len` and their blend weights.
#[derive(Debug)]
pub(crate) struct Axis {
    pub spans: Vec<(usize, usize)>,
    /// Per span, its weight at each of its positions; over the axis they sum to 1.
    pub weights: Vec<Vec<f32>>,
}

impl Axis {
    /// Spans of at most `tile` (a multiple of 4) covering `0..n` (`n` a multiple of 4).
    pub fn new(n: usize, tile: usize) -> Self {
        let tile = tile.max(2 * MARGIN + 4) / 4 * 4;
        let spans = if n <= tile {
            vec![(0, n)]
        } else {
            // k tiles of length L overlapping by 2M cover k L - (k - 1) 2M pixels.
            let k = (n - 2 * MARGIN).div_ceil(tile - 2 * MARGIN);
            let len = (n + (k - 1) * 2 * MARGIN)
                .div_ceil(k)
                .next_multiple_of(4)
                .min(n);
            let step = (len - 2 * MARGIN) / 4 * 4;
            (0..k)
                .map(|i| {
                    let start = if i + 1 == k { n - len } else { i * step };
                    (start, len)
                })
                .collect()
        };
        let ramps: Vec<Vec<f32>> = spans
            .iter()
            .enumerate()
            .map(|(i, &(a, len))| {
                let b = a + len;
                // The overlaps with the neighbours, ramped across their whole width.
                let left = (i > 0).then(|| spans[i - 1].0 + spans[i - 1].1 - a);
                let right = spans.get(i + 1).map(|&(na, _)| b - na);
                (a..b)
                    .map(|x| {
                        let up = left.map_or(1.0, |o| ((x - a) as f32 + 0.5) / o as f32);
                        let down = right.map_or(1.0, |o| ((b - x) as f32 - 0.5) / o as f32);
                        up.min(down).clamp(1e-3, 1.0)
                    })
                    .collect()
            })
            .collect();
        let mut sum = vec![0f32; n];
        for (&(a, _), r) in spans.iter().zip(&ramps) {
            for (s, w) in sum[a..].iter_mut().zip(r) {
                *s += w;
            }
        }
        let weights = spans
            .iter()
            .zip(ramps)
            .map(|(&(a, _), r)| r.iter().zip(&sum[a..]).map(|(w, s)| w / s).collect())
            .collect();
        Self { spans, weights }
    }
}

/// Index of `i` in `0..n` mirrored at the far edge: the padding to the network's grid.
#[inline]
pub(crate) fn mirror(i: usize, n: usize) -> usize {
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
}

/// Reads the `tw` x `th` window at (`x0`, `y0`) of `img` padded by mirroring its right and
/// bottom edges, as planar RGB in [-1, 1]: a forward pass's input.
pub(crate) fn read_window(
    img: &Pixels,
    x0: usize,
    y0: usize,
    tw: usize,
    th: usize,
) -> Result<Vec<f32>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let ch = img.channels() as usize;
    let plane = tw * th;
    let mut out = try_vec(3 * plane, 0f32, "the network's input planes")?;
    for y in 0..th {
        let row = &img.data()[mirror(y0 + y, h) * w * ch..][..w * ch];
        for x in 0..tw {
            let px = &row[mirror(x0 + x, w) * ch..][..3];
            for (c, &v) in px.iter().enumerate() {
                out[c * plane + y * tw + x] = v * 2.0 - 1.0;
            }
        }
    }
    Ok(out)
}

/// Adds a forward pass's output `y` (planar, `tw` x `th` at (`x0`, `y0`), in [-1, 1]) into
/// `out`'s RGB as `weight(x, y) * (y + 1) / 2`, skipping the padding beyond the image.
pub(crate) fn add_window(
    out: &mut Pixels,
    y: &[f32],
    (x0, y0, tw, th): (usize, usize, usize, usize),
    wx: &[f32],
    wy: &[f32],
) {
    let (w, h) = (out.width() as usize, out.height() as usize);
    let ch = out.channels() as usize;
    let plane = tw * th;
    let cols = tw.min(w.saturating_sub(x0));
    for r in 0..th.min(h.saturating_sub(y0)) {
        let row = &mut out.data_mut()[(y0 + r) * w * ch..][..w * ch];
        for x in 0..cols {
            let wgt = wx[x] * wy[r];
            let px = &mut row[(x0 + x) * ch..][..3];
            for (c, o) in px.iter_mut().enumerate() {
                *o += wgt * (y[c * plane + r * tw + x] + 1.0) * 0.5;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_partition_unity_and_spans_cover() {
        for (n, tile) in [
            (400, 300),
            (4000, 1024),
            (1028, 1024),
            (1032, 512),
            (256, 512),
        ] {
            let axis = Axis::new(n, tile);
            let mut sum = vec![0f32; n];
            for (&(a, len), w) in axis.spans.iter().zip(&axis.weights) {
                assert!(len <= tile.max(2 * MARGIN + 4), "{n}/{tile}: span {len}");
                assert_eq!(a % 4, 0, "{n}/{tile}: start {a} off the grid");
                assert_eq!(w.len(), len);
                for (s, v) in sum[a..a + len].iter_mut().zip(w) {
                    assert!(*v > 0.0);
                    *s += v;
                }
            }
            for (i, s) in sum.iter().enumerate() {
                assert!((s - 1.0).abs() < 1e-5, "{n}/{tile} at {i}: {s}");
            }
            for pair in axis.spans.windows(2) {
                let overlap = pair[0].0 + pair[0].1 - pair[1].0;
                assert!(overlap >= 2 * MARGIN, "{n}/{tile}: overlap {overlap}");
            }
        }
    }

    #[test]
    fn windows_mirror_the_far_edges() {
        let mut img = Pixels::new(5, 3, 3, crate::pixels::BitDepth::Eight).unwrap();
        for (i, v) in img.data_mut().iter_mut().enumerate() {
            *v = (i % 256) as f32 / 255.0;
        }
        let win = read_window(&img, 0, 0, 8, 4).unwrap();
        // x = 7 mirrors x = 1 in a 5-wide row; y = 3 mirrors y = 1.
        assert_eq!(win[7], img.get(1, 0, 0) * 2.0 - 1.0);
        assert_eq!(win[3 * 8], img.get(0, 1, 0) * 2.0 - 1.0);
        assert_eq!(win[32 + 8 + 2], img.get(2, 1, 1) * 2.0 - 1.0);
    }
}
