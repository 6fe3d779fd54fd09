//! Winograd F(m x m, 3 x 3) convolution for the 3x3 stride-1 layers (the residual blocks
//! and the upsampling convolutions: about 95% of the generator's multiply-adds).
//!
//! Why: the CPU runs its matrix products near peak already, so the only way to be much
//! faster than a direct convolution is fewer multiplications. F(4x4, 3x3) computes a 4x4
//! output tile from a 6x6 input tile with 36 products per channel pair instead of 144.
//! The price is precision: its transforms have coefficients up to 5 and 1/24 that grow
//! f32 rounding by roughly an order of magnitude, still far inside the parity bounds
//! (`tests/parity.rs` checks the full network).
//!
//! Per tile row of the output: transform the input tiles (`V = Bᵀ d B`, one channel vector
//! at a time), one matrix product per transform point (`M_ξ = V_ξ · U_ξ`, tiles x cin times
//! cin x cout), transform back (`Y = Aᵀ M A`).

use std::cell::RefCell;

use rayon::prelude::*;

use super::buffer::Buf;
use super::matmul::matmul;
use super::planes::Planes;
use super::{MeasuredSums, OutShape};

/// Tiles per matrix product: bounds the scratch (`α² x TILES x c` floats each way) to
/// about a megabyte at 256 channels, while each product still has 64 rows.
const TILES: usize = 32;

/// The transform matrices of one Winograd variant, stored row-major.
pub(super) struct Variant {
    /// Output tile side.
    pub m: usize,
    /// `Bᵀ`, α x α with α = m + 2.
    bt: &'static [f64],
    /// `G`, α x 3.
    g: &'static [f64],
    /// `Aᵀ`, m x α.
    at: &'static [f64],
}

impl Variant {
    fn alpha(&self) -> usize {
        self.m + 2
    }
}

/// F(2x2, 3x3): 16 products per 4 outputs, transforms of 0 and ±1 (and ½ in G): exact
/// up to the products' own rounding.
#[allow(dead_code)]
pub(super) const F2: Variant = Variant {
    m: 2,
    bt: &[
        1., 0., -1., 0., //
        0., 1., 1., 0., //
        0., -1., 1., 0., //
        0., 1., 0., -1.,
    ],
    g: &[
        1., 0., 0., //
        0.5, 0.5, 0.5, //
        0.5, -0.5, 0.5, //
        0., 0., 1.,
    ],
    at: &[
        1., 1., 1., 0., //
        0., 1., -1., -1.,
    ],
};

/// F(4x4, 3x3) with interpolation points 0, ±1, ±2 and ∞ (Lavin and Gray, 2016).
pub(super) const F4: Variant = Variant {
    m: 4,
    bt: &[
        4., 0., -5., 0., 1., 0., //
        0., -4., -4., 1., 1., 0., //
        0., 4., -4., -1., 1., 0., //
        0., -2., -1., 2., 1., 0., //
        0., 2., -1., -2., 1., 0., //
        0., 4., 0., -5., 0., 1.,
    ],
    g: &[
        1. / 4.,
        0.,
        0., //
        -1. / 6.,
        -1. / 6.,
        -1. / 6., //
        -1. / 6.,
        1. / 6.,
        -1. / 6., //
        1. / 24.,
        1. / 12.,
        1. / 6., //
        1. / 24.,
        -1. / 12.,
        1. / 6., //
        0.,
        0.,
        1.,
    ],
    at: &[
        1., 1., 1., 1., 1., 0., //
        0., 1., -1., 2., -2., 0., //
        0., 1., 1., 4., 4., 0., //
        0., 1., -1., 8., -8., 1.,
    ],
};

/// A 3x3 kernel transformed for one variant: `U[ξ][cin][cout]`, ξ over the α² points.
#[derive(Debug)]
pub(super) struct Transformed {
    pub m: usize,
    pub cin: usize,
    pub cout: usize,
    u: Buf,
}

impl Transformed {
    /// `w` is packed `[dy][dx][cin][cout]`.
    #[cfg(test)]
    pub fn new(v: &Variant, w: &[f32], cin: usize, cout: usize) -> Self {
        let pairs = cin * cout;
        assert_eq!(w.len(), 9 * pairs);
        Self::from_taps(v, cin, cout, |p0, len, block| {
            let stride = block.len() / 9;
            for tap in 0..9 {
                block[tap * stride..][..len].copy_from_slice(&w[tap * pairs + p0..][..len]);
            }
        })
    }

    /// `taps(p0, len, block)` fills `block[tap * block.len() / 9 + j]` with tap
    /// `dy * 3 + dx` of channel pair `p0 + j` (pair `ci * cout + co`) for `j < len`, so the
    /// kernel is read straight from the stored tensor (each pair's 9 taps together) without
    /// an f32 copy of it. Separable (`G g` then `· Gᵀ`) and blocked over channel pairs so
    /// it streams the kernel once: model loading is part of start-up.
    pub fn from_taps(
        v: &Variant,
        cin: usize,
        cout: usize,
        taps: impl Fn(usize, usize, &mut [f32]),
    ) -> Self {
        const BLOCK: usize = 512;
        let a = v.alpha();
        let pairs = cin * cout;
        let g: Vec<f32> = v.g.iter().map(|&x| x as f32).collect();
        let mut u = Buf::zeroed(a * a * pairs);
        let mut half = vec![0f32; a * 3 * BLOCK]; // half[xa][dx][p] = Σ_dy G[xa][dy] g[dy][dx]
        let mut w = vec![0f32; 9 * BLOCK]; // w[tap][p]: this block's kernel
        for p0 in (0..pairs).step_by(BLOCK) {
            let len = BLOCK.min(pairs - p0);
            taps(p0, len, &mut w);
            half.fill(0.0);
            for xa in 0..a {
                for dy in 0..3 {
                    let gc = g[xa * 3 + dy];
                    if gc == 0.0 {
                        continue;
                    }
                    for dx in 0..3 {
                        let src = &w[(dy * 3 + dx) * BLOCK..][..len];
                        let dst = &mut half[(xa * 3 + dx) * BLOCK..][..len];
                        for (o, &x) in dst.iter_mut().zip(src) {
                            *o += gc * x;
                        }
                    }
                }
            }
            for xa in 0..a {
                for xb in 0..a {
                    let dst = &mut u[(xa * a + xb) * pairs + p0..][..len];
                    for dx in 0..3 {
                        let gc = g[xb * 3 + dx];
                        if gc == 0.0 {
                            continue;
                        }
                        let src = &half[(xa * 3 + dx) * BLOCK..][..len];
                        for (o, &x) in dst.iter_mut().zip(src) {
                            *o += gc * x;
                        }
                    }
                }
            }
        }
        Self {
            m: v.m,
            cin,
            cout,
            u,
        }
    }
}

/// Per-thread scratch: transformed input, products, one tile's channel vectors.
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    prod: Vec<f32>,
    tmp: Vec<f32>,
    half: Vec<f32>,
}

impl Scratch {
    /// Grows each buffer to what a layer of `c` in and `n` out channels needs. Contents
    /// are scratch: every use writes before it reads.
    fn fit(&mut self, m: usize, a: usize, c: usize, n: usize) {
        let fit = |v: &mut Vec<f32>, len: usize| {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        };
        fit(&mut self.v, a * a * TILES * c);
        fit(&mut self.prod, a * a * TILES * n);
        fit(&mut self.tmp, a * a * c.max(n));
        fit(&mut self.half, m * a * n);
    }
}

thread_local! {
    /// Each worker thread's scratch, kept across tile rows, layers and images. Why: about
    /// 2.4 MB at 256 channels, allocated afresh per rayon work item it was freshly mapped
    /// memory each time, and faulting it in took more page faults than all the model's
    /// weights (`perf record -e page-faults`).
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// The 3x3 stride-1 convolution of the padded `src` (border already filled) into `y`:
/// `h x w` output pixels (rows of `wv = w`), bias not added, with the norm sums of
/// [`super::conv`] when `measure`.
pub(super) fn conv(
    v: &Variant,
    src: &Planes,
    t: &Transformed,
    y: &mut Buf,
    measure: bool,
) -> (OutShape, Option<MeasuredSums>) {
    assert_eq!(v.m, t.m);
    assert_eq!(src.c, t.cin, "channel mismatch");
    assert!(src.pad >= 1, "a 3x3 convolution needs a 1-pixel border");
    let (m, a) = (v.m, v.alpha());
    let (c, n) = (t.cin, t.cout);
    // The convolution's own input is the 1-pixel border around the interior.
    let off = src.pad - 1;
    let (ho, wo) = (src.h + 2 * off, src.w + 2 * off);
    let (hi, wi, wp) = (ho + 2, wo + 2, src.wp());
    let shape = OutShape {
        ho,
        wo,
        wv: wo,
        c: n,
    };
    let (th, tw) = (ho.div_ceil(m), wo.div_ceil(m));
    let rows = th * m;
    y.grow(rows * wo * n);
    let partials: Vec<Option<MeasuredSums>> = y[..rows * wo * n]
        .par_chunks_mut(m * wo * n)
        .enumerate()
        .map(|(ty, out)| {
            SCRATCH.with(|cell| {
                // A thread only re-enters while borrowed if something below steals rayon
                // work (nothing does today); it then gets a scratch of its own.
                let (mut guard, mut own);
                let sc: &mut Scratch = match cell.try_borrow_mut() {
                    Ok(g) => {
                        guard = g;
                        &mut guard
                    }
                    Err(_) => {
                        own = Scratch::default();
                        &mut own
                    }
                };
                sc.fit(m, a, c, n);
                for tx0 in (0..tw).step_by(TILES) {
                    let nt = TILES.min(tw - tx0);
                    // Input transform: V[ξ][tile][ci].
                    for ti in 0..nt {
                        let (r0, c0) = (ty * m, (tx0 + ti) * m);
                        input_tile(v, src, off, (r0, c0), (hi, wi, wp), c, &mut sc.tmp);
                        for xi in 0..a * a {
                            sc.v[(xi * TILES + ti) * c..][..c]
                                .copy_from_slice(&sc.tmp[xi * c..][..c]);
                        }
                    }
                    for xi in 0..a * a {
                        matmul(
                            nt,
                            n,
                            c,
                            &mut sc.prod[xi * TILES * n..],
                            n,
                            false,
                            &sc.v[xi * TILES * c..],
                            c,
                            &t.u[xi * c * n..(xi + 1) * c * n],
                        );
                    }
                    // Output transform into the tile row's m output rows.
                    for ti in 0..nt {
                        let x0 = (tx0 + ti) * m;
                        for xi in 0..a * a {
                            sc.tmp[xi * n..][..n]
                                .copy_from_slice(&sc.prod[(xi * TILES + ti) * n..][..n]);
                        }
                        output_tile(v, &sc.tmp, &mut sc.half, n, x0, wo, out);
                    }
                }
                measure.then(|| {
                    let valid = ho.saturating_sub(ty * m).min(m);
                    super::channel_sums(&out[..valid * wo * n], n)
                })
            })
        })
        .collect();
    (shape, measure.then(|| super::merge_sums(partials, n)))
}

/// `Bᵀ d B` for the α x α input tile at interior-relative row `r0`, column `c0` (of the
/// convolution's input, which starts `off` pixels into `src`'s border); outside the buffer
/// reads zeros (those outputs are past the image and dropped). Result: `tmp[ξ][ci]`.
fn input_tile(
    v: &Variant,
    src: &Planes,
    off: usize,
    (r0, c0): (usize, usize),
    (hi, wi, wp): (usize, usize, usize),
    c: usize,
    tmp: &mut [f32],
) {
    let a = v.alpha();
    // Rows first: row[i][xb] = Σ_j d[i][j] B[j][xb] = Σ_j Bᵀ[xb][j] d[i][j].
    let mut rowt = [[0f32; 512]; 6]; // one α-point row of one input row, per channel chunk
    let chunk = 512.min(c);
    for c0c in (0..c).step_by(chunk) {
        let cl = chunk.min(c - c0c);
        for xi in 0..a * a {
            tmp[xi * c + c0c..][..cl].fill(0.0);
        }
        for i in 0..a {
            let r = r0 + i;
            for row in rowt.iter_mut().take(a) {
                row[..cl].fill(0.0);
            }
            if r < hi {
                for j in 0..a {
                    let x = c0 + j;
                    if x >= wi {
                        break;
                    }
                    let d = &src.data[((off + r) * wp + off + x) * c + c0c..][..cl];
                    for (xb, row) in rowt.iter_mut().enumerate().take(a) {
                        let b = v.bt[xb * a + j] as f32;
                        if b != 0.0 {
                            for (o, &dv) in row[..cl].iter_mut().zip(d) {
                                *o += b * dv;
                            }
                        }
                    }
                }
            }
            // Columns: V[xa][xb] += Bᵀ[xa][i] row[xb].
            for xa in 0..a {
                let b = v.bt[xa * a + i] as f32;
                if b == 0.0 {
                    continue;
                }
                for (xb, row) in rowt.iter().enumerate().take(a) {
                    let dst = &mut tmp[(xa * a + xb) * c + c0c..][..cl];
                    for (o, &rv) in dst.iter_mut().zip(&row[..cl]) {
                        *o += b * rv;
                    }
                }
            }
        }
    }
}

/// `Aᵀ M A` for one tile (`prod[ξ][co]`), written at column `x0` of the m rows in `out`.
fn output_tile(
    v: &Variant,
    prod: &[f32],
    half: &mut [f32],
    n: usize,
    x0: usize,
    wo: usize,
    out: &mut [f32],
) {
    let (m, a) = (v.m, v.alpha());
    // half[p][xb] = Σ_xa Aᵀ[p][xa] M[xa][xb]
    half[..m * a * n].fill(0.0);
    for p in 0..m {
        for xa in 0..a {
            let s = v.at[p * a + xa] as f32;
            if s == 0.0 {
                continue;
            }
            for xb in 0..a {
                let dst = &mut half[(p * a + xb) * n..][..n];
                for (o, &pv) in dst.iter_mut().zip(&prod[(xa * a + xb) * n..][..n]) {
                    *o += s * pv;
                }
            }
        }
    }
    for p in 0..m {
        for q in 0..m {
            let x = x0 + q;
            if x >= wo {
                break;
            }
            let dst = &mut out[(p * wo + x) * n..][..n];
            dst.fill(0.0);
            for xb in 0..a {
                let s = v.at[q * a + xb] as f32;
                if s == 0.0 {
                    continue;
                }
                for (o, &hv) in dst.iter_mut().zip(&half[(p * a + xb) * n..][..n]) {
                    *o += s * hv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize, salt: usize) -> f32 {
        (((i * 2654435761 + salt * 40503) % 100003) as f32 / 100003.0) - 0.5
    }

    /// Both variants against the direct convolution, on sizes with partial edge tiles.
    #[test]
    fn matches_direct_convolution() {
        let (cin, cout) = (24, 40);
        for (h, w, variant) in [(13, 10, &F2), (13, 10, &F4), (8, 21, &F4)] {
            let mut src = Planes::default();
            src.reset(h, w, cin, 1);
            let body = src.hp() * src.row_len();
            for (i, v) in src.data[..body].iter_mut().enumerate() {
                *v = pseudo(i, 1) * 4.0;
            }
            let wts: Vec<f32> = (0..9 * cin * cout).map(|i| pseudo(i, 2) * 0.2).collect();
            let packed = crate::model::cpu::Packed {
                k: 3,
                stride: 1,
                cin,
                cout,
                w: Buf::from_slice(&wts),
                bias: vec![0.0; cout],
                wino: None,
            };
            let mut yd = Buf::default();
            let (sd, sums_d) = crate::model::cpu::conv_direct(&src, &packed, &mut yd, true);
            let t = Transformed::new(variant, &wts, cin, cout);
            let mut yw = Buf::default();
            let (sw, sums_w) = conv(variant, &src, &t, &mut yw, true);
            assert_eq!((sd.ho, sd.wo), (sw.ho, sw.wo));
            let mut worst = 0f32;
            for r in 0..sd.ho {
                for x in 0..sd.wo {
                    for ch in 0..cout {
                        let a = yd[(r * sd.wv + x) * cout + ch];
                        let b = yw[(r * sw.wv + x) * cout + ch];
                        worst = worst.max((a - b).abs());
                    }
                }
            }
            assert!(worst < 1e-4, "F{} {h}x{w}: worst {worst}", variant.m);
            let (sd, sw) = (sums_d.unwrap(), sums_w.unwrap());
            assert_eq!(sd.2, sw.2);
            assert!((sd.0[3] - sw.0[3]).abs() < 1e-2);
        }
    }
}
