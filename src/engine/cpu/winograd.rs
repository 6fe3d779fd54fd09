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
use std::ops::Range;

use rayon::prelude::*;

use super::bf16::{self, PackedU};
use super::buffer::Buf;
use super::conv::OutShape;
use super::matmul::matmul;
use super::planes::Planes;
use super::stats::{channel_sums, merge_sums, MeasuredSums};

/// Tiles per matrix product: bounds the scratch (`α² x TILES x c` floats each way) to
/// about a megabyte at 256 channels, while each product still has 64 rows.
const TILES: usize = 32;

impl Products<'_> {
    /// Tiles per group of products: [`TILES`] for f32; more for bf16, whose kernels are
    /// fast enough that streaming each transform point's kernel matrix from the L3 cache
    /// once per group would otherwise bound them.
    fn tiles(&self) -> usize {
        match self {
            Products::F32(_) => TILES,
            Products::Bf16(..) => bf16_tiles(),
        }
    }
}

fn bf16_tiles() -> usize {
    std::env::var("CG_BF16_TILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// The transform matrices of one Winograd variant, stored row-major.
pub(super) struct Variant {
    /// Output tile side.
    pub m: usize,
    /// `Bᵀ`, α x α with α = m + 2: the definition the input transform is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    bt: &'static [f64],
    /// `G`, α x 3.
    g: &'static [f64],
    /// `Aᵀ`, m x α: the definition the output transform is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    at: &'static [f64],
}

impl Variant {
    fn alpha(&self) -> usize {
        self.m + 2
    }
}

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
#[derive(Debug, Default)]
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
        let mut t = Self::default();
        t.fill(v, cin, cout, |p0, len, block| {
            let stride = block.len() / 9;
            for tap in 0..9 {
                block[tap * stride..][..len].copy_from_slice(&w[tap * pairs + p0..][..len]);
            }
        });
        t
    }

    /// Makes this the transform of a `cin x cout` kernel, reusing the buffer when it is
    /// large enough. `taps(p0, len, block)` fills `block[tap * block.len() / 9 + j]` with
    /// tap `dy * 3 + dx` of channel pair `p0 + j` (pair `ci * cout + co`) for `j < len`, so
    /// the caller reads the kernel in its stored order (each pair's 9 taps together).
    /// Separable (`G g` then `· Gᵀ`), blocked over channel pairs
    /// so it streams the kernel once, and parallel over the blocks: a model's first call
    /// transforms every layer as it reaches it (see `CpuGenerator`), so this is start-up.
    pub fn fill(
        &mut self,
        v: &Variant,
        cin: usize,
        cout: usize,
        taps: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) {
        const BLOCK: usize = 512;
        let a = v.alpha();
        let pairs = cin * cout;
        let g: Vec<f32> = v.g.iter().map(|&x| x as f32).collect();
        (self.m, self.cin, self.cout) = (v.m, cin, cout);
        self.u.grow(a * a * pairs);
        // Each block of pairs owns its run of every transform point's row.
        let mut blocks: Vec<Vec<&mut [f32]>> = (0..pairs.div_ceil(BLOCK))
            .map(|_| Vec::with_capacity(a * a))
            .collect();
        for row in self.u[..a * a * pairs].chunks_exact_mut(pairs) {
            for (b, piece) in row.chunks_mut(BLOCK).enumerate() {
                blocks[b].push(piece);
            }
        }
        blocks.into_par_iter().enumerate().for_each_init(
            // half[xa][dx][p] = Σ_dy G[xa][dy] g[dy][dx]; w[tap][p]: this block's kernel.
            || (vec![0f32; a * 3 * BLOCK], vec![0f32; 9 * BLOCK]),
            |(half, w), (b, mut rows)| {
                let (p0, len) = (b * BLOCK, rows[0].len());
                taps(p0, len, w);
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
                        let dst = &mut *rows[xa * a + xb];
                        dst.fill(0.0);
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
            },
        );
    }
}

impl Transformed {
    /// Transform point ξ's `cin x cout` matrix.
    pub fn point(&self, xi: usize) -> &[f32] {
        let pairs = self.cin * self.cout;
        &self.u[xi * pairs..(xi + 1) * pairs]
    }
}

/// Which products a convolution runs: f32 `gemm` on the f32 transform, or a bf16 kernel
/// on the transform packed in bf16 (see [`bf16`]).
#[derive(Clone, Copy)]
pub(super) enum Products<'a> {
    F32(&'a Transformed),
    Bf16(&'a PackedU, bf16::Kernel),
}

/// Per-thread scratch: the tile row's transformed inputs and their products.
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    prod: Vec<f32>,
    /// The transformed inputs in bf16, for [`Products::Bf16`].
    vb: Vec<u16>,
}

impl Scratch {
    /// Grows each buffer to what a layer of `c` in and `n` out channels needs. Contents
    /// are scratch: every use writes before it reads.
    fn fit(&mut self, c: usize, n: usize, tiles: usize) {
        let fit = |v: &mut Vec<f32>, len: usize| {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        };
        fit(&mut self.v, A * A * tiles * c);
        fit(&mut self.prod, A * A * tiles * n);
    }
}

thread_local! {
    /// Each worker thread's scratch, kept across tile rows, layers and images. Why: about
    /// 2.4 MB at 256 channels, allocated afresh per rayon work item it was freshly mapped
    /// memory each time, and faulting it in took more page faults than all the model's
    /// weights (`perf record -e page-faults`).
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Output tile side and input tile side of F(4x4, 3x3), which the transforms below are
/// written for.
const M: usize = 4;
const A: usize = 6;

/// Channels per vector of the tile transforms: one AVX-512 register.
const LANES: usize = 16;
type Lanes = [f32; LANES];

/// Where a layer's tiles lie: the convolution's input starts `off` pixels into the source
/// border and is `hi x wi` (rows of `wp` pixels in the buffer); the output is `wo` wide in
/// `tw` tiles.
#[derive(Clone, Copy)]
struct Geometry {
    off: usize,
    hi: usize,
    wi: usize,
    wp: usize,
    wo: usize,
    tw: usize,
}

/// The 3x3 stride-1 convolution of the padded `src` (border already filled) into `y`:
/// `h x w` output pixels (rows of `wv = w`), bias not added, with the norm sums of
/// [`super::conv::conv`] when `measure`.
pub(super) fn conv(
    src: &Planes,
    t: Products,
    y: &mut Buf,
    measure: bool,
) -> (OutShape, Option<MeasuredSums>) {
    let (c, n, np) = match t {
        Products::F32(t) => {
            assert_eq!(t.m, M, "the transforms are written for F(4x4, 3x3)");
            (t.cin, t.cout, t.cout)
        }
        Products::Bf16(u, _) => (u.cin, u.cout, u.np),
    };
    assert_eq!(src.c, c, "channel mismatch");
    assert!(src.pad >= 1, "a 3x3 convolution needs a 1-pixel border");
    // The convolution's own input is the 1-pixel border around the interior.
    let off = src.pad - 1;
    let (ho, wo) = (src.h + 2 * off, src.w + 2 * off);
    let geo = Geometry {
        off,
        hi: ho + 2,
        wi: wo + 2,
        wp: src.wp(),
        wo,
        tw: wo.div_ceil(M),
    };
    let shape = OutShape {
        ho,
        wo,
        wv: wo,
        c: n,
    };
    let th = ho.div_ceil(M);
    y.grow(th * M * wo * n);
    // Tile rows per work item: on a narrow layer (16 tiles across the residual blocks of a
    // 256-pixel image) several, so each product still has up to `TILES` rows, while
    // leaving every thread a few items.
    let chunk = t.tiles();
    let group = (chunk / geo.tw)
        .min(th.div_ceil(2 * rayon::current_num_threads()))
        .max(1);
    let partials: Vec<Option<MeasuredSums>> = y[..th * M * wo * n]
        .par_chunks_mut(group * M * wo * n)
        .enumerate()
        .map(|(item, out)| {
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
                sc.fit(c, np, chunk);
                let ty0 = item * group;
                let rows = ty0..th.min(ty0 + group);
                tile_rows(Job {
                    src,
                    t,
                    geo,
                    rows,
                    out,
                    sc,
                });
                measure.then(|| {
                    let valid = ho.saturating_sub(ty0 * M).min(group * M);
                    channel_sums(&out[..valid * wo * n], n)
                })
            })
        })
        .collect();
    (shape, measure.then(|| merge_sums(partials, n)))
}

#[cfg(test)]
thread_local! {
    /// Makes [`tile_rows`] take its portable build, so tests can compare the two.
    static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Rows of output tiles, compiled for the widest vectors the CPU has. Why: the crate is
/// built for baseline x86-64 (SSE2), where the tile transforms took a fifth of the time;
/// the matrix products dispatch on their own (`gemm`). Every build computes the same
/// values: Rust never fuses a multiply and an add unless told to.
fn tile_rows(job: Job) {
    #[cfg(test)]
    if PORTABLE.with(|p| p.get()) {
        return tile_rows_body(job);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { tile_rows_avx512(job) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { tile_rows_avx2(job) };
        }
    }
    tile_rows_body(job)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tile_rows_avx512(job: Job) {
    tile_rows_body(job)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tile_rows_avx2(job: Job) {
    tile_rows_body(job)
}

/// One work item of [`conv`]: tile rows `rows` of the output, whose `M` output rows each
/// are `out`.
struct Job<'a> {
    src: &'a Planes,
    t: Products<'a>,
    geo: Geometry,
    rows: Range<usize>,
    out: &'a mut [f32],
    sc: &'a mut Scratch,
}

/// Input transforms of `TILES` tiles at a time, one product per transform point, output
/// transforms.
#[inline(always)]
fn tile_rows_body(job: Job) {
    let Job {
        src,
        t,
        geo,
        rows,
        out,
        sc,
    } = job;
    let (c, n) = match t {
        Products::F32(t) => (t.cin, t.cout),
        Products::Bf16(u, _) => (u.cin, u.cout),
    };
    let chunk = t.tiles();
    let (ty0, tiles) = (rows.start, rows.len() * geo.tw);
    // Tile i of the rows is (ty0 + i / tw, i % tw).
    let pos = |i: usize| (ty0 + i / geo.tw, i % geo.tw);
    for i0 in (0..tiles).step_by(chunk) {
        let nt = chunk.min(tiles - i0);
        // Input transform: V[ξ][tile][ci].
        for ti in 0..nt {
            let (ty, tx) = pos(i0 + ti);
            input_tile(
                src,
                geo,
                (ty * M, tx * M),
                c,
                &mut sc.v[ti * c..],
                chunk * c,
            );
        }
        // Products, whose rows are `np` apart.
        let np = match t {
            Products::F32(t) => {
                for xi in 0..A * A {
                    matmul(
                        nt,
                        n,
                        c,
                        &mut sc.prod[xi * chunk * n..],
                        n,
                        false,
                        &sc.v[xi * chunk * c..],
                        c,
                        t.point(xi),
                    );
                }
                n
            }
            Products::Bf16(u, kernel) => {
                bf16::products(kernel, u, A * A, chunk, nt, &sc.v, &mut sc.vb, &mut sc.prod);
                u.np
            }
        };
        // Output transform into the M output rows of each tile's row.
        for ti in 0..nt {
            let (ty, tx) = pos(i0 + ti);
            let rows_out = &mut out[(ty - ty0) * M * geo.wo * n..];
            output_tile(&sc.prod[ti * np..], chunk * np, n, tx * M, geo.wo, rows_out);
        }
    }
}

/// The first `cl` lanes of `src` into `dst`. A whole vector's copy has a length known when
/// compiling, so it becomes register moves rather than a call to `memcpy` (which took an
/// eighth of the time when every copy went through it).
#[inline(always)]
fn load(dst: &mut Lanes, src: &[f32], cl: usize) {
    match src.get(..LANES) {
        Some(whole) if cl == LANES => dst.copy_from_slice(whole),
        _ => dst[..cl].copy_from_slice(&src[..cl]),
    }
}

/// The first `cl` lanes of `src` into `dst`, as [`load`].
#[inline(always)]
fn store(dst: &mut [f32], src: &Lanes, cl: usize) {
    match dst.get_mut(..LANES) {
        Some(whole) if cl == LANES => whole.copy_from_slice(src),
        _ => dst[..cl].copy_from_slice(&src[..cl]),
    }
}

/// `Bᵀ d` of F(4x4, 3x3) for six vectors: the rows of [`F4`]'s `bt`, with its shared
/// terms computed once (Lavin and Gray, 2016).
#[inline(always)]
fn bt4(d: &[Lanes; A]) -> [Lanes; A] {
    let mut y = [[0f32; LANES]; A];
    for k in 0..LANES {
        let [d0, d1, d2, d3, d4, d5] = [d[0][k], d[1][k], d[2][k], d[3][k], d[4][k], d[5][k]];
        let (p, q) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (r, s) = (d4 - d2, 2.0 * (d3 - d1));
        y[0][k] = 4.0 * d0 - 5.0 * d2 + d4;
        y[1][k] = p + q;
        y[2][k] = p - q;
        y[3][k] = r + s;
        y[4][k] = r - s;
        y[5][k] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    y
}

/// `Aᵀ m` of F(4x4, 3x3) for six vectors: the rows of [`F4`]'s `at`.
#[inline(always)]
fn at4(m: &[Lanes; A]) -> [Lanes; M] {
    let mut y = [[0f32; LANES]; M];
    for k in 0..LANES {
        let (s1, d1) = (m[1][k] + m[2][k], m[1][k] - m[2][k]);
        let (s2, d2) = (m[3][k] + m[4][k], m[3][k] - m[4][k]);
        y[0][k] = m[0][k] + s1 + s2;
        y[1][k] = d1 + 2.0 * d2;
        y[2][k] = s1 + 4.0 * s2;
        y[3][k] = d1 + 8.0 * d2 + m[5][k];
    }
    y
}

/// `Bᵀ d B` for the 6x6 input tile at interior-relative row `r0`, column `c0` (of the
/// convolution's input, which starts `off` pixels into `src`'s border); outside the input
/// it reads zeros (those outputs are past the image and dropped). Writes transform point
/// ξ's `c` channels at `dst[ξ * stride..]`.
#[inline(always)]
fn input_tile(
    src: &Planes,
    geo: Geometry,
    (r0, c0): (usize, usize),
    c: usize,
    dst: &mut [f32],
    stride: usize,
) {
    for ch in (0..c).step_by(LANES) {
        let cl = LANES.min(c - ch);
        // Rows first: t[i] = Bᵀ applied along input row i.
        let mut t = [[[0f32; LANES]; A]; A];
        for (i, ti) in t.iter_mut().enumerate() {
            let r = r0 + i;
            if r >= geo.hi {
                break;
            }
            let mut d = [[0f32; LANES]; A];
            for (j, dj) in d.iter_mut().enumerate() {
                let x = c0 + j;
                if x >= geo.wi {
                    break;
                }
                let at = ((geo.off + r) * geo.wp + geo.off + x) * c + ch;
                load(dj, &src.data[at..], cl);
            }
            *ti = bt4(&d);
        }
        // Then columns: V[xa][xb] = Σ_i Bᵀ[xa][i] t[i][xb].
        for xb in 0..A {
            let v = bt4(&std::array::from_fn(|i| t[i][xb]));
            for (xa, vx) in v.iter().enumerate() {
                store(&mut dst[(xa * A + xb) * stride + ch..], vx, cl);
            }
        }
    }
}

/// `Aᵀ M A` of the tile whose transform point ξ's `n` products are at
/// `prod[ξ * stride..]`, written at column `x0` of the tile row's `M` output rows (those
/// past `wo` dropped).
#[inline(always)]
fn output_tile(prod: &[f32], stride: usize, n: usize, x0: usize, wo: usize, out: &mut [f32]) {
    for ch in (0..n).step_by(LANES) {
        let cl = LANES.min(n - ch);
        // h[p][xb] = Σ_xa Aᵀ[p][xa] M[xa][xb]
        let mut h = [[[0f32; LANES]; A]; M];
        for xb in 0..A {
            let mut col = [[0f32; LANES]; A];
            for (xa, cx) in col.iter_mut().enumerate() {
                load(cx, &prod[(xa * A + xb) * stride + ch..], cl);
            }
            for (p, hp) in at4(&col).iter().enumerate() {
                h[p][xb] = *hp;
            }
        }
        for (p, hp) in h.iter().enumerate() {
            for (q, o) in at4(hp).iter().enumerate() {
                let x = x0 + q;
                if x >= wo {
                    break;
                }
                store(&mut out[(p * wo + x) * n + ch..], o, cl);
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

    /// A padded input of pseudo-random values and a kernel, `cin` in, `cout` out.
    fn case(h: usize, w: usize, cin: usize, cout: usize) -> (Planes, Vec<f32>) {
        let mut src = Planes::default();
        src.reset(h, w, cin, 1);
        let body = src.hp() * src.row_len();
        for (i, v) in src.data[..body].iter_mut().enumerate() {
            *v = pseudo(i, 1) * 4.0;
        }
        let wts: Vec<f32> = (0..9 * cin * cout).map(|i| pseudo(i, 2) * 0.2).collect();
        (src, wts)
    }

    /// Against the direct convolution, on sizes with partial edge tiles and channel
    /// counts that are not a multiple of the vector width.
    #[test]
    fn matches_direct_convolution() {
        for (h, w, cin, cout) in [(13, 10, 24, 40), (8, 21, 24, 40), (9, 9, 3, 17)] {
            let (src, wts) = case(h, w, cin, cout);
            let packed = crate::engine::cpu::packing::Packed {
                k: 3,
                stride: 1,
                cin,
                cout,
                w: Buf::from_slice(&wts),
                bias: vec![0.0; cout],
                wino: None,
                phases: 1,
            };
            let mut yd = Buf::default();
            let (sd, sums_d) =
                crate::engine::cpu::direct::conv_direct(&src, &packed, &mut yd, true);
            let t = Transformed::new(&F4, &wts, cin, cout);
            let mut yw = Buf::default();
            let (sw, sums_w) = conv(&src, Products::F32(&t), &mut yw, true);
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
            assert!(worst < 1e-4, "{h}x{w}, {cin}->{cout}: worst {worst}");
            let (sd, sw) = (sums_d.unwrap(), sums_w.unwrap());
            assert_eq!(sd.2, sw.2);
            assert!((sd.0[3] - sw.0[3]).abs() < 1e-2);
        }
    }

    /// The bf16 products (where the CPU has them) against the direct convolution in f32:
    /// within bf16's rounding of the operands.
    #[test]
    fn bf16_products_match_direct_convolution() {
        let Some(kernel) = bf16::kernel() else {
            eprintln!("no bf16 kernel on this CPU: nothing to check");
            return;
        };
        for (h, w, cin, cout) in [(13, 10, 24, 40), (9, 30, 64, 64), (9, 9, 3, 17)] {
            let (src, wts) = case(h, w, cin, cout);
            let packed = crate::engine::cpu::packing::Packed {
                k: 3,
                stride: 1,
                cin,
                cout,
                w: Buf::from_slice(&wts),
                bias: vec![0.0; cout],
                wino: None,
                phases: 1,
            };
            let mut yd = Buf::default();
            let (sd, _) = crate::engine::cpu::direct::conv_direct(&src, &packed, &mut yd, false);
            let t = Transformed::new(&F4, &wts, cin, cout);
            let mut u = PackedU::default();
            u.pack(A * A, cin, cout, bf16::SPLIT3, |xi| t.point(xi));
            let mut yb = Buf::default();
            let (sb, _) = conv(&src, Products::Bf16(&u, kernel), &mut yb, false);
            let (mut worst, mut scale) = (0f32, 0f32);
            for r in 0..sd.ho {
                for x in 0..sd.wo {
                    for ch in 0..cout {
                        let a = yd[(r * sd.wv + x) * cout + ch];
                        let b = yb[(r * sb.wv + x) * cout + ch];
                        worst = worst.max((a - b).abs());
                        scale = scale.max(a.abs());
                    }
                }
            }
            assert!(
                worst < 1e-3 * scale,
                "{h}x{w}, {cin}->{cout}: worst {worst} of {scale}"
            );
        }
    }

    /// The factored transforms are the matrices of the variant's definition.
    #[test]
    fn transforms_are_the_matrices() {
        let x: [Lanes; A] = std::array::from_fn(|i| std::array::from_fn(|k| pseudo(i * 97 + k, 3)));
        let by_matrix = |mat: &[f64], k: usize, i: usize| {
            (0..A).map(|j| mat[i * A + j] * x[j][k] as f64).sum::<f64>()
        };
        for k in 0..LANES {
            for (i, row) in bt4(&x).iter().enumerate() {
                assert!((row[k] as f64 - by_matrix(F4.bt, k, i)).abs() < 1e-5);
            }
            for (i, row) in at4(&x).iter().enumerate() {
                assert!((row[k] as f64 - by_matrix(F4.at, k, i)).abs() < 1e-5);
            }
        }
    }

    /// The build for wide vectors computes exactly what the portable one does.
    #[test]
    fn vector_builds_match_the_portable_one() {
        let (src, wts) = case(11, 14, 40, 24);
        let t = Transformed::new(&F4, &wts, 40, 24);
        let run = |portable: bool| {
            // One thread, so the flag (thread-local) holds for every tile row.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut y = Buf::default();
            pool.install(|| {
                PORTABLE.with(|p| p.set(portable));
                conv(&src, Products::F32(&t), &mut y, false)
            });
            y
        };
        let (wide, portable) = (run(false), run(true));
        assert_eq!(&wide[..], &portable[..]);
    }
}
