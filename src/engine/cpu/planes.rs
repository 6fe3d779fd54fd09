//! A padded NHWC activation buffer, reused from layer to layer.

use crate::nn::layers::reflect_index;

/// Pixels of zeros after the last row: a convolution computes whole padded-width rows, so
/// the junk columns of its last output row read up to `k - 1` pixels past the buffer's end.
const SLACK_PIXELS: usize = 8;

/// `h x w` pixels of `c` channels inside a border of `pad` pixels, rows of `w + 2 pad`.
#[derive(Debug, Default)]
pub(super) struct Planes {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub pad: usize,
    pub data: super::buffer::Buf,
}

impl Planes {
    pub fn wp(&self) -> usize {
        self.w + 2 * self.pad
    }

    pub fn hp(&self) -> usize {
        self.h + 2 * self.pad
    }

    /// Floats per padded row.
    pub fn row_len(&self) -> usize {
        self.wp() * self.c
    }

    /// Floats a buffer of this shape holds, slack included.
    pub fn len_for(h: usize, w: usize, c: usize, pad: usize) -> usize {
        ((h + 2 * pad) * (w + 2 * pad) + SLACK_PIXELS) * c
    }

    /// Makes room for `n` floats, so that later [`Planes::reset`]s up to that size reuse
    /// the allocation instead of faulting in fresh pages. The contents become scratch.
    pub fn reserve(&mut self, n: usize) {
        self.data.reserve(n);
    }

    /// Re-shapes the buffer and zeroes it, keeping its allocation.
    #[cfg(test)]
    pub fn reset(&mut self, h: usize, w: usize, c: usize, pad: usize) {
        (self.h, self.w, self.c, self.pad) = (h, w, c, pad);
        self.data.reset(Self::len_for(h, w, c, pad));
    }

    /// [`Planes::reset`] for a caller that then writes every interior value: only the
    /// border and the slack are zeroed. Zeroing the whole buffer before each layer was 5%
    /// of a stylize (`perf record`: `memset`).
    pub fn reset_border(&mut self, h: usize, w: usize, c: usize, pad: usize) {
        (self.h, self.w, self.c, self.pad) = (h, w, c, pad);
        self.data.resize_scratch(Self::len_for(h, w, c, pad));
        let (rl, end) = (self.row_len(), (pad + h) * self.row_len());
        self.data[..pad * rl].fill(0.0);
        self.data[end..].fill(0.0);
        if pad > 0 {
            for row in self.data[pad * rl..end].chunks_exact_mut(rl) {
                row[..pad * c].fill(0.0);
                row[(pad + w) * c..].fill(0.0);
            }
        }
    }

    /// Zeroes the border and the slack, keeping the interior: a reflected border becomes a
    /// zero padding.
    pub fn zero_border(&mut self) {
        self.reset_border(self.h, self.w, self.c, self.pad);
    }

    /// Loads planar `c x h x w` data into the interior.
    pub fn fill_from_planar(&mut self, planar: &[f32]) {
        let (h, w, c, pad, wp) = (self.h, self.w, self.c, self.pad, self.wp());
        assert_eq!(planar.len(), c * h * w);
        for r in 0..h {
            let row = &mut self.data[((pad + r) * wp + pad) * c..][..w * c];
            for (x, px) in row.chunks_exact_mut(c).enumerate() {
                for (ch, v) in px.iter_mut().enumerate() {
                    *v = planar[(ch * h + r) * w + x];
                }
            }
        }
    }

    /// Fills the border by reflecting the interior, as `ReflectionPad2d`.
    pub fn reflect_border(&mut self) {
        let (h, w, c, pad, wp, rl) = (self.h, self.w, self.c, self.pad, self.wp(), self.row_len());
        if pad == 0 {
            return;
        }
        for r in pad..pad + h {
            let row = &mut self.data[r * rl..][..rl];
            for x in (0..pad).chain(pad + w..wp) {
                let sx = pad + reflect_index(x as isize - pad as isize, w);
                row.copy_within(sx * c..(sx + 1) * c, x * c);
            }
        }
        for r in (0..pad).chain(pad + h..pad * 2 + h) {
            let sr = pad + reflect_index(r as isize - pad as isize, h);
            self.data.copy_within(sr * rl..(sr + 1) * rl, r * rl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflected_border_matches_pytorch() {
        let mut p = Planes::default();
        p.reset(2, 3, 1, 1);
        p.fill_from_planar(&[0., 1., 2., 3., 4., 5.]);
        p.reflect_border();
        let rows: Vec<&[f32]> = p.data[..20].chunks(5).collect();
        assert_eq!(rows[0], &[4., 3., 4., 5., 4.]);
        assert_eq!(rows[1], &[1., 0., 1., 2., 1.]);
        assert_eq!(rows[3], &[1., 0., 1., 2., 1.]);
    }

    #[test]
    fn border_reset_zeroes_all_but_the_interior() {
        let mut p = Planes::default();
        p.reset(6, 7, 2, 2);
        p.data.fill(1.0);
        p.reset_border(3, 4, 2, 1);
        assert_eq!(p.data.len(), Planes::len_for(3, 4, 2, 1));
        let rl = p.row_len();
        for (i, &v) in p.data.iter().enumerate() {
            let (r, x) = (i / rl, i % rl / 2);
            let inside = (1..4).contains(&r) && (1..5).contains(&x);
            assert_eq!(v, if inside { 1.0 } else { 0.0 }, "row {r} pixel {x}");
        }
    }
}
