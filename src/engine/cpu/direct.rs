//! Direct convolution (the 7x7 head and tail and the stride-2 layers): matrix products
//! straight from the padded input, no im2col.

use rayon::prelude::*;

use super::buffer::Buf;
use super::conv::OutShape;
use super::matmul::matmul;
use super::narrow;
use super::packing::Packed;
use super::planes::Planes;
use super::stats::{channel_sums, merge_sums, MeasuredSums};

/// Output rows per work item of a convolution: small enough that a band's output stays in
/// the L2 cache while its kernel rows accumulate into it, large enough to amortise the
/// weight packing `gemm` does per call.
pub(super) const BAND_ROWS: usize = 256;

/// [`conv`] as matrix products straight from the padded input.
pub(super) fn conv_direct(
    src: &Planes,
    layer: &Packed,
    y: &mut Buf,
    measure: bool,
) -> (OutShape, Option<MeasuredSums>) {
    assert_eq!(src.c, layer.cin, "channel mismatch");
    let (hp, wp, c) = (src.hp(), src.wp(), src.c);
    let (k, st, n) = (layer.k, layer.stride, layer.cout);
    assert!(hp >= k && wp >= k, "input too small");
    // Stride 1: an output row is a whole padded input row (`wv = wp`, the last k - 1
    // pixels junk), so a band of rows is one contiguous run of input pixels and one matrix
    // product per kernel row. Stride 2 skips input rows, so each output row is its own run.
    let shape = OutShape {
        ho: (hp - k) / st + 1,
        wo: (wp - k) / st + 1,
        wv: if st == 1 { wp } else { (wp - k) / st + 1 },
        c: n,
    };
    let m = shape.ho * shape.wv;
    y.grow(m * n);
    let band_rows = BAND_ROWS.div_ceil(shape.wv);
    // The tail (to RGB) has its own kernel: as a matrix product it would have 3 columns.
    let narrow = (st == 1 && n == narrow::N).then(|| narrow::transpose(&layer.w, k, c));
    let partials: Vec<Option<MeasuredSums>> = y[..m * n]
        .par_chunks_mut(band_rows * shape.wv * n)
        .enumerate()
        .map(|(band, out)| {
            let r0 = band * band_rows;
            let rows = out.len() / (shape.wv * n);
            let runs = if st == 1 { 1 } else { rows };
            let run_px = rows * shape.wv / runs;
            if let Some(wt) = &narrow {
                narrow::rows(narrow::Rows {
                    out: &mut *out,
                    r0,
                    shape,
                    src: &src.data,
                    wp,
                    c,
                    k,
                    wt,
                });
            } else {
                matmul_rows(&mut *out, run_px, r0, st, wp, c, k, n, &src.data, &layer.w);
            }
            measure.then(|| {
                // Only the real pixels of each row: sum row by row.
                let mut parts = Vec::with_capacity(rows);
                for row in out.chunks_exact(shape.wv * n) {
                    parts.push(Some(channel_sums(&row[..shape.wo * n], n)));
                }
                merge_sums(parts, n)
            })
        })
        .collect();
    (shape, measure.then(|| merge_sums(partials, n)))
}

/// Output pixels of a band, `run_px` per run (a run is one input span: the whole band at
/// stride 1, one row at stride 2), as one matrix product per kernel row.
#[allow(clippy::too_many_arguments)]
fn matmul_rows(
    out: &mut [f32],
    run_px: usize,
    r0: usize,
    st: usize,
    wp: usize,
    c: usize,
    k: usize,
    n: usize,
    src: &[f32],
    w: &[f32],
) {
    let kk = k * c;
    for (run, out) in out.chunks_exact_mut(run_px * n).enumerate() {
        for dy in 0..k {
            // Output pixel x of output row r reads input row r*st + dy from column x*st
            // on, where its k taps of c channels are contiguous.
            let off = (((r0 + run) * st + dy) * wp) * c;
            let wrow = &w[dy * kk * n..(dy + 1) * kk * n];
            matmul(run_px, n, kk, out, n, dy > 0, &src[off..], st * c, wrow);
        }
    }
}
