//! The one matrix product the convolutions need, as a safe wrapper around the `gemm` crate.

/// `dst[i*dst_rs + j] (+)= Σ_p lhs[i*lhs_rs + p] · rhs[p*n + j]` for `i < m`, `j < n`, `p < k`.
///
/// Rows of `lhs` may overlap (`lhs_rs < k`): that is how a convolution reads a run of kernel
/// taps straight out of its padded input without an im2col copy. Runs on the calling
/// thread; callers parallelise over independent row bands, which keeps each band's output
/// in cache across the taps it accumulates.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0, "empty inner dimension");
    assert!(dst_rs >= n, "destination rows overlap");
    assert!(dst.len() >= (m - 1) * dst_rs + n, "destination too short");
    assert!(lhs.len() >= (m - 1) * lhs_rs + k, "left operand too short");
    assert!(rhs.len() >= k * n, "right operand too short");
    // SAFETY: the asserts above bound every element gemm touches inside the three slices:
    // dst (i, j) at i*dst_rs + j, lhs (i, p) at i*lhs_rs + p, rhs (p, j) at p*n + j, all with
    // unit column stride. `dst` is a unique borrow and gemm only reads `lhs` and `rhs`, so
    // the (possibly overlapping) reads of lhs rows never alias a write.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_rows_and_accumulation() {
        // lhs rows are windows of 3 over [0 1 2 3 4]: [0 1 2], [1 2 3], [2 3 4].
        let lhs = [0f32, 1., 2., 3., 4.];
        let rhs = [1f32, 0., 0., 1., 1., 1.]; // 3x2
        let mut dst = vec![10f32; 3 * 4];
        matmul(3, 2, 3, &mut dst, 4, true, &lhs, 1, &rhs);
        assert_eq!(&dst[0..2], &[12., 13.]);
        assert_eq!(&dst[4..6], &[14., 15.]);
        assert_eq!(&dst[8..10], &[16., 17.]);
        assert_eq!(dst[2], 10.);
        matmul(1, 2, 3, &mut dst, 4, false, &lhs, 1, &rhs);
        assert_eq!(&dst[0..2], &[2., 3.]);
    }
}

#[cfg(test)]
mod big_tests {
    use super::*;

    #[test]
    fn large_overlapping_matches_naive() {
        for &(m, n, k, lrs) in &[
            (300, 64, 27, 3),
            (300, 64, 27, 32),
            (700, 256, 768, 256),
            (100, 3, 448, 64),
        ] {
            let lhs: Vec<f32> = (0..(m - 1) * lrs + k)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let rhs: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5)
                .collect();
            let mut dst = vec![0f32; m * n];
            matmul(m, n, k, &mut dst, n, false, &lhs, lrs, &rhs);
            let mut worst = 0f32;
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| lhs[i * lrs + p] * rhs[p * n + j]).sum();
                    worst = worst.max((want - dst[i * n + j]).abs());
                }
            }
            assert!(worst < 1e-3, "{m}x{n}x{k} rs {lrs}: {worst}");
        }
    }
}
