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
    /// A phase layer's output ([`Packed::phases`]): channel block `2 a + b` of pixel
    /// `(i, j)` is output pixel `(2 i + a, 2 j + b)`.
    Phases,
}

/// Instance norm and ReLU of `layer`'s convolution output `(shape, measured)` in `y`,
/// written into `dst` (reset to the right size with a zero border of `pad`) as `place` says.
/// Returns the shape written.
pub(super) fn normalize_into(
    layer: &Packed,
    (s, measured): (OutShape, Option<NormStat>),
    y: &[f32],
    norms: &mut StatsCursor,
    dst: &mut Planes,
    place: Place,
    pad: usize,
) -> Result<(usize, usize)> {
    let (scale, shift) = affine(layer, measured, norms)?;
    let grow = if place == Place::Same { 1 } else { 2 };
    let (h, w, c) = (grow * s.ho, grow * s.wo, layer.cout);
    dst.reset_border(h, w, c, pad);
    let (pad, rl, hp) = (dst.pad, dst.row_len(), dst.hp());
    let body = &mut dst.data[..hp * rl];
    body.par_chunks_mut(rl)
        .enumerate()
        .skip(pad)
        .take(h)
        .for_each(|(pr, drow)| {
            super::simd::widest(
                #[inline(always)]
                || {
                    let r = pr - pad;
                    let out = &mut drow[pad * c..][..w * c];
                    let normalize = |o: &mut [f32], px: &[f32]| {
                        for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(&scale).zip(&shift) {
                            *o = (v * a + b).max(0.0);
                        }
                    };
                    match place {
                        Place::Same => {
                            let src = &y[r * s.wv * c..][..w * c];
                            for (o, px) in out.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                                normalize(o, px);
                            }
                        }
                        Place::Phases => {
                            // Row 2 i + a holds phases (a, 0) and (a, 1) of source row i, alternating.
                            let a = r % 2;
                            let src = &y[(r / 2) * s.wv * s.c..][..s.wo * s.c];
                            for (pair, px) in out.chunks_exact_mut(2 * c).zip(src.chunks_exact(s.c))
                            {
                                let phases = &px[2 * a * c..][..2 * c];
                                normalize(&mut pair[..c], &phases[..c]);
                                normalize(&mut pair[c..], &phases[c..]);
                            }
                        }
                    }
                },
            )
        });
    Ok((h, w))
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
            super::simd::widest(
                #[inline(always)]
                || {
                    let r = pr - pad;
                    let src = &y[r * s.wv * c..][..s.wo * c];
                    let out = &mut drow[pad * c..][..s.wo * c];
                    for (o, px) in out.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                        for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(scale).zip(shift) {
                            *o += v * a + b;
                        }
                    }
                },
            )
        });
}
