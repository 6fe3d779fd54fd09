//! Instance-norm statistics: summed from a convolution's output (in f64, band by band),
//! and turned, with the layer's bias, into the per-channel scale and shift the placement
//! applies.

use super::packing::Packed;
use crate::engine::{NormStat, StatsCursor};
use crate::error::Result;
use crate::nn::layers::EPS;

/// Per-channel sums of values and of squares over real output pixels, and their count.
pub(super) type MeasuredSums = (Vec<f64>, Vec<f64>, usize);

/// Sums of `out`'s pixels (`n` channels each), in f64 so large images lose no precision.
pub(super) fn channel_sums(out: &[f32], n: usize) -> MeasuredSums {
    let mut sum = vec![0f64; n];
    let mut sq = vec![0f64; n];
    super::simd::widest(
        #[inline(always)]
        || {
            for px in out.chunks_exact(n) {
                for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(px) {
                    let v = v as f64;
                    *s += v;
                    *q += v * v;
                }
            }
        },
    );
    (sum, sq, out.len() / n)
}

pub(super) fn merge_sums(parts: Vec<Option<MeasuredSums>>, n: usize) -> MeasuredSums {
    let mut sum = vec![0f64; n];
    let mut sq = vec![0f64; n];
    let mut count = 0;
    for (s, q, k) in parts.into_iter().flatten() {
        sum.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        sq.iter_mut().zip(&q).for_each(|(a, b)| *a += b);
        count += k;
    }
    (sum, sq, count)
}

/// The norm as a per-channel scale and shift applied to the convolution's output without
/// its bias (the bias is folded into the shift, so the convolution never adds it).
pub(super) fn affine(
    layer: &Packed,
    measured: Option<NormStat>,
    norms: &mut StatsCursor,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let NormStat { mean, var } = norms.next(layer.cout, measured)?;
    let mut scale = Vec::with_capacity(layer.cout);
    let mut shift = Vec::with_capacity(layer.cout);
    for ((&m, &v), &b) in mean.iter().zip(&var).zip(&layer.bias) {
        let inv = 1.0 / (v as f64 + EPS).sqrt();
        scale.push(inv as f32);
        shift.push(((b as f64 - m as f64) * inv) as f32);
    }
    Ok((scale, shift))
}

/// The mean (bias included: the convolution does not add it) and biased variance of each
/// channel from its sums.
pub(super) fn measured_stat((sum, sq, count): MeasuredSums, bias: &[f32]) -> NormStat {
    let count = count as f64;
    let (mean, var) = sum
        .iter()
        .zip(&sq)
        .zip(bias)
        .map(|((&s, &q), &b)| {
            let mu = s / count;
            (
                (mu + b as f64) as f32,
                (q / count - mu * mu).max(0.0) as f32,
            )
        })
        .unzip();
    NormStat { mean, var }
}

/// A phase layer's sums over its `phases * n` channels (phase-major) as the sums of its `n`
/// channels: the norm is over every output pixel, whichever phase made it.
pub(super) fn fold_phases((sum, sq, count): MeasuredSums, phases: usize) -> MeasuredSums {
    if phases == 1 {
        return (sum, sq, count);
    }
    let n = sum.len() / phases;
    let fold = |v: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|ch| v.iter().skip(ch).step_by(n).sum())
            .collect()
    };
    (fold(&sum), fold(&sq), count * phases)
}
