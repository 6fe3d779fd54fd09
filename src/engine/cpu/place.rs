//! Writing a layer's normalized output into the next layer's padded input: on the same
//! grid, upsampled (the seed's nearest upsampling) or dilated (a transposed convolution's
//! input), and the residual add. Each is one parallel pass over the destination's rows.

use rayon::prelude::*;

use super::conv::OutShape;
use super::packing::Packed;
use super::planes::Planes;
use super::stats::affine;
use crate::engine::{NormStat, StatsCursor};
use crate::error::Result;

/// Where a layer's normalized output goes in the next layer's input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Pixel for pixel.
    Same,
    /// Each pixel as a 2x2 block: the seed's nearest upsampling.
    Upsample,
    /// Each pixel at even coordinates, zeros between: a transposed convolution's input.
    Dilate,
}

/// Instance norm and ReLU of `layer`'s convolution output `(shape, measured)` in `y`,
/// written into `dst` (reset to the right size with a zero border of `pad`) as `place` says.
pub(super) fn normalize_into(
    layer: &Packed,
    (s, measured): (OutShape, Option<NormStat>),
    y: &[f32],
    norms: &mut StatsCursor,
    dst: &mut Planes,
    place: Place,
    pad: usize,
) -> Result<OutShape> {
    let (scale, shift) = affine(layer, measured, norms)?;
    let grow = if place == Place::Same { 1 } else { 2 };
    reset_for(dst, place, grow * s.ho, grow * s.wo, s.c, pad);
    place_normalized(y, s, &scale, &shift, dst, place);
    Ok(s)
}

/// Writes `relu(y * scale + shift)` into `dst`'s interior as `place` says; `dst` must have
/// been reset (its zeros are the padding and the dilation's gaps).
pub(super) fn place_normalized(
    y: &[f32],
    s: OutShape,
    scale: &[f32],
    shift: &[f32],
    dst: &mut Planes,
    place: Place,
) {
    place_rows(dst, place, s.wo, &|r, out: &mut [f32]| {
        let src = &y[r * s.wv * s.c..][..s.wo * s.c];
        for (o, px) in out.chunks_exact_mut(s.c).zip(src.chunks_exact(s.c)) {
            for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(scale).zip(shift) {
                *o = (v * a + b).max(0.0);
            }
        }
    });
}

/// Re-shapes `dst` for [`place_rows`] with `place`, zeroing what that leaves unwritten.
pub(super) fn reset_for(dst: &mut Planes, place: Place, h: usize, w: usize, c: usize, pad: usize) {
    match place {
        Place::Same | Place::Upsample => dst.reset_border(h, w, c, pad),
        Place::Dilate => dst.reset(h, w, c, pad),
    }
}

/// Copies `src`'s interior into `dst`'s as `place` says.
pub(super) fn place_copy(src: &Planes, dst: &mut Planes, place: Place) {
    place_rows(dst, place, src.w, &|r, out: &mut [f32]| {
        out.copy_from_slice(src.interior_row(r));
    });
}

/// Fills `dst`'s interior rows in parallel from source rows of `src_w` pixels that `row`
/// computes into its buffer.
pub(super) fn place_rows(
    dst: &mut Planes,
    place: Place,
    src_w: usize,
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let (pad, c, h) = (dst.pad, dst.c, dst.h);
    let (rl, hp) = (dst.row_len(), dst.hp());
    let body = &mut dst.data[..hp * rl];
    body.par_chunks_mut(rl)
        .enumerate()
        .skip(pad)
        .take(h)
        .for_each_init(
            // A source row to spread out; rayon calls this per split, so `Same`, which
            // needs none, allocates nothing.
            Vec::new,
            |buf: &mut Vec<f32>, (pr, drow)| {
                let r = pr - pad;
                let interior = &mut drow[pad * c..];
                if place != Place::Same {
                    buf.resize(src_w * c, 0.0);
                }
                match place {
                    Place::Same => row(r, &mut interior[..src_w * c]),
                    Place::Upsample => {
                        row(r / 2, buf);
                        for (x, px) in buf.chunks_exact(c).enumerate() {
                            interior[2 * x * c..][..c].copy_from_slice(px);
                            interior[(2 * x + 1) * c..][..c].copy_from_slice(px);
                        }
                    }
                    Place::Dilate => {
                        if r % 2 == 0 {
                            row(r / 2, buf);
                            for (x, px) in buf.chunks_exact(c).enumerate() {
                                interior[2 * x * c..][..c].copy_from_slice(px);
                            }
                        }
                    }
                }
            },
        );
}

/// The residual add: `dst += y * scale + shift` over `dst`'s interior.
pub(super) fn add_normalized(
    y: &[f32],
    s: OutShape,
    scale: &[f32],
    shift: &[f32],
    dst: &mut Planes,
) {
    assert_eq!((dst.h, dst.w, dst.c), (s.ho, s.wo, s.c));
    let (pad, c) = (dst.pad, dst.c);
    let (rl, hp) = (dst.row_len(), dst.hp());
    let body = &mut dst.data[..hp * rl];
    body.par_chunks_mut(rl)
        .enumerate()
        .skip(pad)
        .take(s.ho)
        .for_each(|(pr, drow)| {
            let r = pr - pad;
            let src = &y[r * s.wv * c..][..s.wo * c];
            let out = &mut drow[pad * c..][..s.wo * c];
            for (o, px) in out.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(scale).zip(shift) {
                    *o += v * a + b;
                }
            }
        });
}
