//! bf16 products for the Winograd convolution, on CPUs with `avx512_bf16` but no AMX (with
//! AMX, the 3x3 layers run as direct tile products instead: [`super::amx_conv`]): the
//! transformed inputs and kernels rounded to bf16 (8 significant bits), products
//! accumulated in f32.
//!
//! Why: the products `M_ξ = V_ξ · U_ξ` are about nine tenths of the engine's arithmetic,
//! and CPUs with `avx512_bf16` do twice the multiply-adds per instruction in bf16
//! (`vdpbf16ps`: 16 lanes, each a 2-term dot product). The transforms
//! themselves stay in f32: only the operands of the products are rounded, so the error is
//! that of one rounding per operand, not of a bf16 transform (whose coefficients up to 5
//! and 1/24 would amplify it). `tests/precision.rs` checks the output on real photos.
//!
//! Layouts. Input channels are padded with zeros to [`KB`] (one AMX tile row of bf16),
//! output channels to [`NB`] (one AVX-512 vector of f32):
//! - kernel, [`PackedU`]: `[ξ][cout block of NB][cin pair][NB][2]`: for each pair of input
//!   channels, the NB output channels' two values side by side, which is both a
//!   `vdpbf16ps` right operand and a row of an AMX B tile ("VNNI" layout);
//! - transformed inputs: `[ξ][tile][kp]` bf16, rows of [`super::winograd`]'s `TILES`
//!   tiles (rows past the real tiles zero);
//! - products: `[ξ][tile][np]` f32.

// The AVX-512 intrinsics are stable since Rust 1.89, above the crate's declared 1.85, as
// is the `avx512f` target feature `winograd.rs` already compiles for: the declared MSRV
// needs raising to 1.89 (Cargo.toml, for the lead), after which this goes.
#![allow(clippy::incompatible_msrv)]

use std::sync::OnceLock;

use rayon::prelude::*;

/// Input channels are padded to a multiple of this: 32 bf16, one AMX tile row.
pub(super) const KB: usize = 32;
/// Output channels are padded to a multiple of this: 16 f32, one vector or tile row.
pub(super) const NB: usize = 16;

/// Which bf16 path a CPU runs. Both are x86-64 instructions: elsewhere (aarch64) no kernel
/// exists, `kernel()` is None and precision bf16 is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Kernel {
    /// AVX-512 `vdpbf16ps` runs the Winograd products, split in three ([`SPLIT3`]).
    Avx512,
    /// AMX `tdpbf16ps` tiles run the 3x3 layers directly ([`super::amx_conv`]); any
    /// Winograd products left run as [`Kernel::Avx512`] (every AMX CPU has it).
    Amx,
}

/// The fastest bf16 kernel this CPU (and OS) runs, if any; detected once.
/// `CYCLEGAN_NO_AMX=1` skips AMX (to measure the AVX-512 kernel on an AMX machine).
pub(crate) fn kernel() -> Option<Kernel> {
    static KERNEL: OnceLock<Option<Kernel>> = OnceLock::new();
    *KERNEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Option<Kernel> {
    if !(std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16"))
    {
        return None;
    }
    if std::env::var_os("CYCLEGAN_NO_AMX").is_none_or(|v| v.is_empty() || v == "0")
        && super::amx_conv::state::enable()
    {
        return Some(Kernel::Amx);
    }
    Some(Kernel::Avx512)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Option<Kernel> {
    None
}

/// Which half of a split f32 value a segment of the inner dimension holds: `x ≈ hi + lo`
/// with `hi = bf16(x)` and `lo = bf16(x - hi)` (16 significant bits together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Hi,
    Lo,
}

/// How the products are split into bf16 products: segments of the inner dimension, each
/// all input channels, as (part of the transformed input, part of the kernel). One plain
/// product `V U ≈ hi(V) hi(U)` has bf16's 8-bit rounding of both operands, which
/// Winograd's output transform amplifies past the error bounds; three,
/// `hi(V) hi(U) + hi(V) lo(U) + lo(V) hi(U)`, leave an error of about 2^-16 relative (the
/// dropped `lo lo` term and f32 accumulation).
pub(crate) type Split = &'static [(Part, Part)];

/// One bf16 product per pair: too coarse for the error bounds (see [`SPLIT3`]).
#[cfg_attr(not(all(test, target_arch = "x86_64")), allow(dead_code))]
pub(crate) const PLAIN: Split = &[(Part::Hi, Part::Hi)];
/// Three bf16 products per pair (see [`Split`]): the engine's bf16 path. Measured on
/// `examples/rocket.jpg` against f32 (8-bit levels, mean / 99.9th percentile / max):
/// plain 0.29 / 3 / 10 (0.17 / 3 / 9 with only the residual blocks in bf16), two terms
/// (either operand split) 0.19-0.22 / 2 / 9, three terms 0.001 / 0 / 1.
pub(crate) const SPLIT3: Split = &[
    (Part::Hi, Part::Hi),
    (Part::Hi, Part::Lo),
    (Part::Lo, Part::Hi),
];

/// The `part` of `x` in bf16 bits.
fn part(x: f32, part: Part) -> u16 {
    let hi = half::bf16::from_f32(x);
    match part {
        Part::Hi => hi.to_bits(),
        Part::Lo => half::bf16::from_f32(x - hi.to_f32()).to_bits(),
    }
}

/// A transformed 3x3 kernel in bf16, packed for the products (see the module docs).
#[derive(Debug, Default)]
pub(super) struct PackedU {
    pub cin: usize,
    pub cout: usize,
    /// `cin` rounded up to [`KB`]: one segment of the inner dimension.
    pub kp: usize,
    /// The inner dimension of the products: a segment per term of `split`.
    pub ks: usize,
    /// Stored segments of each block: the distinct kernel parts `split` uses (hi, lo), so
    /// three terms store the kernel in 4 bytes a value, as f32 does.
    pub kb: usize,
    /// For each segment of the inner dimension, the stored segment it reads.
    b_seg: [usize; 3],
    /// `cout` rounded up to [`NB`].
    pub np: usize,
    pub split: Split,
    data: Vec<u16>,
}

impl PackedU {
    /// Packs the f32 transform `U[ξ][cin][cout]` of `points` transform points, where
    /// `point(ξ)` is one point's row-major `cin x cout` matrix, split as `split` says.
    /// Reuses the buffer.
    pub fn pack<'a>(
        &mut self,
        points: usize,
        cin: usize,
        cout: usize,
        split: Split,
        point: impl Fn(usize) -> &'a [f32] + Sync,
    ) {
        let (kp, np) = (cin.next_multiple_of(KB), cout.next_multiple_of(NB));
        let ks = kp * split.len();
        let stored = stored_parts(split);
        let kb = kp * stored.len();
        (self.cin, self.cout, self.kp, self.ks, self.kb, self.np) = (cin, cout, kp, ks, kb, np);
        self.split = split;
        self.b_seg = [0; 3];
        for (s, &(_, p)) in split.iter().enumerate() {
            self.b_seg[s] = stored.iter().position(|&q| q == p).unwrap_or(0);
        }
        let per = kb * np;
        if self.data.len() < points * per {
            self.data.resize(points * per, 0);
        }
        self.data[..points * per]
            .par_chunks_mut(per)
            .enumerate()
            .for_each(|(xi, dst)| {
                let u = point(xi);
                // dst[(block kb / 2 + pair) 2 NB + 2 j + t] = U[k][block NB + j] for stored
                // index k = 2 pair + t, segment k / kp, channel k % kp (a pair never
                // straddles segments: kp is even).
                for (block, bdst) in dst.chunks_exact_mut(kb * NB).enumerate() {
                    let cos = block * NB..((block + 1) * NB).min(cout);
                    for (pair, row) in bdst.chunks_exact_mut(2 * NB).enumerate() {
                        let (seg, ci) = (2 * pair / kp, 2 * pair % kp);
                        let which = stored[seg];
                        row.fill(0);
                        for t in 0..2 {
                            if ci + t >= cin {
                                break;
                            }
                            let src = &u[(ci + t) * cout..][cos.clone()];
                            for (j, &x) in src.iter().enumerate() {
                                row[2 * j + t] = part(x, which);
                            }
                        }
                    }
                }
            });
    }

    /// Transform point ξ's packed matrix (read by the x86-64 kernels).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn point(&self, xi: usize) -> &[u16] {
        let per = self.kb * self.np;
        &self.data[xi * per..(xi + 1) * per]
    }
}

/// The distinct kernel parts `split` multiplies, in order of first use.
fn stored_parts(split: Split) -> Vec<Part> {
    let mut v = Vec::with_capacity(2);
    for &(_, p) in split {
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

/// The products of one group of `rows` tiles (at most `tiles`, the scratch's row count),
/// for each of the `points` transform points: converts the f32 transformed inputs
/// `v[ξ][tile][c]` (row stride `c`, point stride `tiles * c`) to bf16 in `vb`, then writes
/// `prod[ξ][tile][np]` (point stride `tiles * np`). Rows `rows..tiles` of `prod` hold zeros
/// or junk.
#[allow(clippy::too_many_arguments)]
pub(super) fn products(
    kernel: Kernel,
    u: &PackedU,
    points: usize,
    tiles: usize,
    rows: usize,
    v: &[f32],
    vb: &mut Vec<u16>,
    prod: &mut [f32],
) {
    let (c, ks, np) = (u.cin, u.ks, u.np);
    assert!(rows <= tiles && tiles.is_multiple_of(NB), "tile rows");
    assert!(v.len() >= points * tiles * c, "inputs too short");
    assert!(prod.len() >= points * tiles * np, "products too short");
    if vb.len() < points * tiles * ks {
        vb.resize(points * tiles * ks, 0);
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(Some(kernel), self::kernel(), "kernel not available");
        // SAFETY: `kernel()` returned a kernel, so the CPU has avx512f and avx512bf16; the
        // asserts above bound `v`, `vb` (just grown) and `prod` for every access.
        unsafe {
            convert(v, u, tiles, rows, points, vb);
            for xi in 0..points {
                let a = &vb[xi * tiles * ks..][..tiles * ks];
                let out = &mut prod[xi * tiles * np..][..tiles * np];
                avx512::product(u, xi, a, rows, out);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, c, ks, np, rows, v, prod);
        unreachable!("no bf16 kernel on this architecture");
    }
}

/// `vb[ξ][r]` = the parts of `v[ξ][r][..c]` that `u`'s split multiplies, each segment
/// zero-padded to `kp` channels; rows `rows..tiles` zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert(
    v: &[f32],
    u: &PackedU,
    tiles: usize,
    rows: usize,
    points: usize,
    vb: &mut [u16],
) {
    use std::arch::x86_64::*;
    let (c, kp, ks) = (u.cin, u.kp, u.ks);
    let lo_too = u.split.iter().any(|s| s.0 == Part::Lo);
    for xi in 0..points {
        let src = &v[xi * tiles * c..][..tiles * c];
        let dst = &mut vb[xi * tiles * ks..][..tiles * ks];
        for r in 0..tiles {
            let drow = &mut dst[r * ks..][..ks];
            if r >= rows {
                drow.fill(0);
                continue;
            }
            let srow = &src[r * c..][..c];
            for ch in (0..kp).step_by(16) {
                let left = c.saturating_sub(ch).min(16);
                let mask: __mmask16 = ((1u32 << left) - 1) as __mmask16;
                // SAFETY: the mask limits the load to lanes `ch..ch + left` of `srow`
                // (`left <= c - ch`); each store writes 16 bf16 at `seg kp + ch`, with
                // `ch + 16 <= kp` and `seg < split.len()`, inside the row of `ks`.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(mask, srow.as_ptr().add(ch.min(c)));
                    let hi = _mm512_cvtneps_pbh(x);
                    let lo = if lo_too {
                        _mm512_cvtneps_pbh(_mm512_sub_ps(x, _mm512_cvtpbh_ps(hi)))
                    } else {
                        hi
                    };
                    for (seg, &(p, _)) in u.split.iter().enumerate() {
                        let b = if p == Part::Hi { hi } else { lo };
                        let at = drow.as_mut_ptr().add(seg * kp + ch) as *mut __m256i;
                        _mm256_storeu_si256(at, std::mem::transmute::<__m256bh, __m256i>(b));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PackedU, NB};

    /// Rows and vectors of output per register block: 6 x 4 accumulators of the 32.
    const MR: usize = 6;
    const NV: usize = 4;

    /// `out[r][..np] = a[r][..ks] · U_ξ` for `r < rows` (`a` rows of `ks` bf16, `out` rows
    /// of `np` f32).
    ///
    /// # Safety
    /// The CPU has avx512f and avx512bf16; `a` holds `rows` rows and `out` `rows` rows.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn product(u: &PackedU, xi: usize, a: &[u16], rows: usize, out: &mut [f32]) {
        let (ks, np) = (u.ks, u.np);
        assert!(a.len() >= rows * ks && out.len() >= rows * np);
        let b = u.point(xi);
        let blocks = np / NB;
        let mut j = 0;
        while j < blocks {
            let nv = (blocks - j).min(NV);
            let mut r = 0;
            while r < rows {
                let mr = (rows - r).min(MR);
                let args = Block {
                    seg_pairs: u.kp / 2,
                    segs: u.split.len(),
                    b_seg: u.b_seg,
                    b_pairs: u.kb / 2,
                    a: a[r * ks..].as_ptr(),
                    a_rs: ks,
                    b: b[j * u.kb * NB..].as_ptr(),
                    out: out[r * np + j * NB..].as_mut_ptr(),
                    out_rs: np,
                };
                // SAFETY: rows r..r + mr of `a` and `out` exist (asserted above); blocks
                // j..j + nv of `b` exist (`nv <= blocks - j`), each `kb * NB` values; the
                // outputs written are columns j NB..(j + nv) NB < np of those rows.
                unsafe {
                    match nv {
                        4 => rows_of::<4>(mr, args),
                        3 => rows_of::<3>(mr, args),
                        2 => rows_of::<2>(mr, args),
                        _ => rows_of::<1>(mr, args),
                    }
                }
                r += mr;
            }
            j += nv;
        }
    }

    /// One register block's operands: `segs` segments of `seg_pairs` channel pairs of `a`
    /// rows (stride `a_rs` bf16), segment s against stored segment `b_seg[s]` of the
    /// packed kernel's blocks from `b` (each `2 b_pairs NB` bf16), output rows of stride
    /// `out_rs` f32.
    #[derive(Clone, Copy)]
    struct Block {
        seg_pairs: usize,
        segs: usize,
        b_seg: [usize; 3],
        b_pairs: usize,
        a: *const u16,
        a_rs: usize,
        b: *const u16,
        out: *mut f32,
        out_rs: usize,
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn rows_of<const V: usize>(mr: usize, x: Block) {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match mr {
                6 => micro::<6, V>(x),
                5 => micro::<5, V>(x),
                4 => micro::<4, V>(x),
                3 => micro::<3, V>(x),
                2 => micro::<2, V>(x),
                _ => micro::<1, V>(x),
            }
        }
    }

    /// `R x V` vectors of output: `R` rows, `V NB` channels.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn micro<const R: usize, const V: usize>(x: Block) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let bs = x.b_pairs * 2 * NB;
        for (s, p) in (0..x.segs).flat_map(|s| (0..x.seg_pairs).map(move |p| (s, p))) {
            let (pa, pb) = (s * x.seg_pairs + p, x.b_seg[s] * x.seg_pairs + p);
            // SAFETY: pair pa of R rows of `a` and pair pb < b_pairs of V blocks of `b`
            // (the caller's contract); the 4-byte read of a channel pair is unaligned-safe.
            unsafe {
                let bv: [__m512bh; V] = std::array::from_fn(|v| {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        x.b.add(v * bs + pb * 2 * NB) as *const __m512i,
                    ))
                });
                for (i, row) in acc.iter_mut().enumerate() {
                    let pair = (x.a.add(i * x.a_rs + 2 * pa) as *const i32).read_unaligned();
                    let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                    for (o, &bw) in row.iter_mut().zip(&bv) {
                        *o = _mm512_dpbf16_ps(*o, av, bw);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &o) in row.iter().enumerate() {
                // SAFETY: row i < R, columns v NB..(v + 1) NB of the caller's block.
                unsafe { _mm512_storeu_ps(x.out.add(i * x.out_rs + v * NB), o) };
            }
        }
    }
}

/// The kernels these tests check are x86-64 code (elsewhere there is none to check).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn pseudo(i: usize, salt: usize) -> f32 {
        (((i * 2654435761 + salt * 40503) % 100003) as f32 / 100003.0) - 0.5
    }

    /// Every available kernel against an f64 product of the bf16-rounded operands, with
    /// channel counts that need padding and partial row blocks.
    #[test]
    fn products_match_rounded_reference() {
        let Some(best) = kernel() else {
            eprintln!("no bf16 kernel on this CPU: nothing to check");
            return;
        };
        let kernels = [best];
        let (points, tiles) = (3, 32);
        let round = |x: f32| half::bf16::from_f32(x).to_f32();
        for (c, n, rows) in [(24, 40, 32), (64, 256, 13), (256, 128, 32), (8, 8, 5)] {
            for split in [PLAIN, SPLIT3] {
                let u: Vec<f32> = (0..points * c * n).map(|i| pseudo(i, 1)).collect();
                let v: Vec<f32> = (0..points * tiles * c)
                    .map(|i| pseudo(i, 2) * 3.0)
                    .collect();
                let mut pu = PackedU::default();
                pu.pack(points, c, n, split, |xi| &u[xi * c * n..(xi + 1) * c * n]);
                for &k in &kernels {
                    let mut prod = vec![f32::NAN; points * tiles * pu.np];
                    let mut vb = Vec::new();
                    // Each kernel through the dispatcher's own checks.
                    let run = |k: Kernel, prod: &mut [f32], vb: &mut Vec<u16>| {
                        if k == best {
                            products(k, &pu, points, tiles, rows, &v, vb, prod);
                        } else {
                            // SAFETY: avx512bf16 is present (a kernel was detected); sizes as
                            // `products` checks them.
                            unsafe {
                                vb.resize(points * tiles * pu.ks, 0);
                                convert(&v, &pu, tiles, rows, points, vb);
                                for xi in 0..points {
                                    avx512::product(
                                        &pu,
                                        xi,
                                        &vb[xi * tiles * pu.ks..],
                                        rows,
                                        &mut prod[xi * tiles * pu.np..],
                                    );
                                }
                            }
                        }
                    };
                    run(k, &mut prod, &mut vb);
                    // Plain: against the product of the rounded operands; split: against the
                    // exact product, to about 2^-16 relative.
                    let (op, bound) = if split == PLAIN {
                        (round as fn(f32) -> f32, 1e-3)
                    } else {
                        ((|x| x) as fn(f32) -> f32, 2e-4)
                    };
                    let mut worst = 0f64;
                    for xi in 0..points {
                        for r in 0..rows {
                            for co in 0..n {
                                let want: f64 = (0..c)
                                    .map(|ci| {
                                        op(v[(xi * tiles + r) * c + ci]) as f64
                                            * op(u[(xi * c + ci) * n + co]) as f64
                                    })
                                    .sum();
                                let got = prod[(xi * tiles + r) * pu.np + co] as f64;
                                worst = worst.max((want - got).abs());
                            }
                        }
                    }
                    assert!(worst < bound, "{k:?} {c}x{n} rows {rows}: worst {worst}");
                }
            }
        }
    }
}
