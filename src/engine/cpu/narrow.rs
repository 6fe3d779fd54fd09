//! Stride-1 convolutions to three output channels: the tail, 64 channels to RGB.
//!
//! Why: as a matrix product the tail has n = 3 columns, `gemm`'s narrowest case, and `gemm`
//! packs the whole run of input pixels for those three columns; the tail ran at a tenth of
//! the other layers' rate and took an eighth of a forward pass (docs/performance.md, per
//! layer type). Here each output pixel's three dot products over a kernel row's `k * cin`
//! contiguous inputs share their loads, four pixels at a time, vectorized along the inputs.

use super::conv::OutShape;

/// Output channels this kernel computes.
pub(super) const N: usize = 3;
/// Inputs per step: each pixel's accumulator has this many lanes.
const LANES: usize = 16;

/// The packed `[dy][dx][cin][N]` kernel as `[co][dy][dx * cin + ci]`: each output channel's
/// kernel row is contiguous, like the input run it is multiplied with.
pub(super) fn transpose(w: &[f32], k: usize, cin: usize) -> Vec<f32> {
    let kk = k * cin;
    let mut t = vec![0f32; N * k * kk];
    for co in 0..N {
        for dy in 0..k {
            for i in 0..kk {
                t[(co * k + dy) * kk + i] = w[(dy * kk + i) * N + co];
            }
        }
    }
    t
}

/// Output rows `r0..r0 + out.len() / (wv * N)` of a stride-1 `k` x `k` convolution of the
/// padded input `src` (rows of `wp` pixels of `c` channels) with the kernel `wt` from
/// [`transpose`], bias not added; junk columns (`wo..wv`) are zeroed.
pub(super) struct Rows<'a> {
    pub out: &'a mut [f32],
    pub r0: usize,
    pub shape: OutShape,
    pub src: &'a [f32],
    pub wp: usize,
    pub c: usize,
    pub k: usize,
    pub wt: &'a [f32],
}

/// Runs [`Rows`] with AVX where the CPU has it (the crate is built for baseline x86-64,
/// and the compiler did not vectorize the portable loop even for AVX-512; AVX-512
/// intrinsics need a newer Rust than the crate's 1.85). Every build computes
/// the same values: each of the 16 lanes of a pixel's accumulator sums its products in the
/// same order, and the lanes are added up in the same order at the end.
pub(super) fn rows(job: Rows) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { x86::rows_avx(job) };
        }
    }
    row_loop!(job, 4, pixels::<4>, pixels::<1>)
}

/// The loop over a band's output rows and pixels, `$group` pixels at a time through
/// `$full`, the rest one by one through `$one`.
macro_rules! row_loop {
    ($job:expr, $group:expr, $full:expr, $one:expr) => {{
        let Rows {
            out,
            r0,
            shape,
            src,
            wp,
            c,
            k,
            wt,
        } = $job;
        assert_eq!(wt.len(), N * k * k * c, "kernel size");
        for (r, orow) in out.chunks_exact_mut(shape.wv * N).enumerate() {
            let (real, junk) = orow.split_at_mut(shape.wo * N);
            junk.fill(0.0);
            let mut x = 0;
            while x < shape.wo {
                let base = ((r0 + r) * wp + x) * c;
                let dst = &mut real[x * N..];
                if shape.wo - x >= $group {
                    $full(src, base, wp * c, c, k, wt, dst);
                    x += $group;
                } else {
                    $one(src, base, wp * c, c, k, wt, dst);
                    x += 1;
                }
            }
        }
    }};
}
use row_loop;

/// `P` output pixels from the input starting at `base` (their first tap), rows `row_len`
/// floats apart, into `dst[..P * N]`: the portable build.
fn pixels<const P: usize>(
    src: &[f32],
    base: usize,
    row_len: usize,
    c: usize,
    k: usize,
    wt: &[f32],
    dst: &mut [f32],
) {
    let kk = k * c;
    let blocks = kk / LANES;
    let mut acc = [[[0f32; LANES]; N]; P];
    let mut rest = [[0f32; N]; P];
    for dy in 0..k {
        let input = &src[base + dy * row_len..][..(P - 1) * c + kk];
        let w: [&[f32]; N] = std::array::from_fn(|co| &wt[(co * k + dy) * kk..][..kk]);
        for b in 0..blocks {
            let o = b * LANES;
            for (p, acc) in acc.iter_mut().enumerate() {
                let a = &input[p * c + o..][..LANES];
                for (acc, w) in acc.iter_mut().zip(&w) {
                    for ((s, &a), &w) in acc.iter_mut().zip(a).zip(&w[o..o + LANES]) {
                        *s += a * w;
                    }
                }
            }
        }
        remainder(input, c, &w, blocks * LANES, &mut rest);
    }
    finish(&acc, &rest, dst);
}

/// The inputs past the last whole vector (`k * cin` not a multiple of [`LANES`]), scalar.
#[inline(always)]
fn remainder<const P: usize>(
    input: &[f32],
    c: usize,
    w: &[&[f32]; N],
    from: usize,
    rest: &mut [[f32; N]; P],
) {
    for i in from..w[0].len() {
        for (p, rest) in rest.iter_mut().enumerate() {
            let a = input[p * c + i];
            for (r, w) in rest.iter_mut().zip(w) {
                *r += a * w[i];
            }
        }
    }
}

/// Each pixel's outputs: its lanes added up in order, plus the remainder.
#[inline(always)]
fn finish<const P: usize>(acc: &[[[f32; LANES]; N]; P], rest: &[[f32; N]; P], dst: &mut [f32]) {
    for (p, (acc, rest)) in acc.iter().zip(rest).enumerate() {
        for (co, (lanes, r)) in acc.iter().zip(rest).enumerate() {
            dst[p * N + co] = lanes.iter().sum::<f32>() + r;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{finish, remainder, Rows, LANES, N};

    /// Two 8-lane halves per accumulator: 16 ymm registers hold two pixels' worth.
    #[target_feature(enable = "avx")]
    pub(super) fn rows_avx(job: Rows) {
        row_loop!(job, 2, pixels_avx::<2>, pixels_avx::<1>)
    }

    /// [`super::pixels`] with two 8-lane registers per accumulator.
    #[target_feature(enable = "avx")]
    fn pixels_avx<const P: usize>(
        src: &[f32],
        base: usize,
        row_len: usize,
        c: usize,
        k: usize,
        wt: &[f32],
        dst: &mut [f32],
    ) {
        let kk = k * c;
        let blocks = kk / LANES;
        let mut acc = [[[_mm256_setzero_ps(); 2]; N]; P];
        let mut rest = [[0f32; N]; P];
        for dy in 0..k {
            let input = &src[base + dy * row_len..][..(P - 1) * c + kk];
            let w: [&[f32]; N] = std::array::from_fn(|co| &wt[(co * k + dy) * kk..][..kk]);
            for b in 0..blocks {
                let o = b * LANES;
                // SAFETY: o + LANES <= blocks * LANES <= kk, the length of each w[co], and
                // p * c + o + LANES <= (P - 1) * c + kk, the length of `input`; the halves
                // are at o and o + 8.
                unsafe {
                    for half in 0..2 {
                        let o = o + 8 * half;
                        let ws = [0, 1, 2].map(|co| _mm256_loadu_ps(w[co].as_ptr().add(o)));
                        for (p, acc) in acc.iter_mut().enumerate() {
                            let a = _mm256_loadu_ps(input.as_ptr().add(p * c + o));
                            for (s, &w) in acc.iter_mut().zip(&ws) {
                                s[half] = _mm256_add_ps(s[half], _mm256_mul_ps(a, w));
                            }
                        }
                    }
                }
            }
            remainder(input, c, &w, blocks * LANES, &mut rest);
        }
        let mut lanes = [[[0f32; LANES]; N]; P];
        for (l, a) in lanes.iter_mut().zip(&acc) {
            for (l, a) in l.iter_mut().zip(a) {
                // SAFETY: `l` holds two halves of 8 floats.
                unsafe {
                    _mm256_storeu_ps(l.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(l.as_mut_ptr().add(8), a[1]);
                }
            }
        }
        finish(&lanes, &rest, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the convolution written out, for inputs a multiple of the vector width and
    /// not (the remainder loop), and rows not a multiple of the pixel group.
    #[test]
    fn matches_the_plain_convolution() {
        for (c, k, wo, ho) in [(64, 7, 11, 3), (8, 7, 6, 2), (5, 3, 9, 4)] {
            let (wp, hp) = (wo + k - 1, ho + k - 1);
            let val = |i: usize| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5;
            let src: Vec<f32> = (0..hp * wp * c).map(val).collect();
            // Packed layout: [dy][dx][cin][N].
            let w: Vec<f32> = (0..k * k * c * N).map(|i| val(i + 17)).collect();
            let wt = transpose(&w, k, c);
            let shape = OutShape {
                ho,
                wo,
                wv: wp,
                c: N,
            };
            let mut out = vec![f32::NAN; ho * wp * N];
            rows(Rows {
                out: &mut out,
                r0: 0,
                shape,
                src: &src,
                wp,
                c,
                k,
                wt: &wt,
            });
            for y in 0..ho {
                for x in 0..wp {
                    for co in 0..N {
                        let got = out[(y * wp + x) * N + co];
                        if x >= wo {
                            assert_eq!(got, 0.0, "junk column {x} zeroed");
                            continue;
                        }
                        let mut want = 0f64;
                        for dy in 0..k {
                            for dx in 0..k {
                                for ci in 0..c {
                                    let a = src[((y + dy) * wp + x + dx) * c + ci] as f64;
                                    let b = w[((dy * k + dx) * c + ci) * N + co] as f64;
                                    want += a * b;
                                }
                            }
                        }
                        assert!(
                            (got as f64 - want).abs() < 1e-4,
                            "c {c} k {k} at ({x}, {y}, {co}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
