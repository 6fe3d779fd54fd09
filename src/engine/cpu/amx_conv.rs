//! The 3x3 stride-1 convolutions (residual blocks, the up layers' phase kernels) in bf16 on
//! AMX tiles, straight from the padded input: the precision `bf16` (and `auto`) path on
//! CPUs with AMX.
//!
//! Why direct and not Winograd: a bf16 product rounds each operand to 8 significant bits,
//! and Winograd F(4x4, 3x3)'s output transform (coefficients up to 8 per axis) amplifies
//! that rounding past the error bounds (docs/performance.md: one bf16 product per Winograd
//! product is 0.29 / 3 / 10 levels). In the spatial domain the same rounding stays small
//! (PyTorch simulation of bf16 operands with exact accumulation in the residual blocks,
//! 5 photos: mean <= 0.13, p99.9 1, max 4 levels). Direct does 4x the multiply-adds of
//! Winograd, but `tdpbf16ps` does 16x16x32 of them per instruction: 16 times an AVX-512
//! f32 FMA's rate.
//!
//! The product: an output pixel `i` of a stride-1 layer (rows of `wv = wp` pixels, the
//! last two junk, as in [`super::direct`]) reads input pixel `i + dy wp + dx` for tap
//! `(dy, dx)`, so each tap is a matrix product whose left operand is the bf16 input itself
//! at an offset, rows `cin` values apart: an AMX A tile loads 16 pixels x 32 channels
//! with that stride, no im2col. The kernel is packed once as B tiles ("VNNI": channel
//! pairs side by side), `[cout block of 16][tap][cin block of 32][pair][16][2]`.

// The AVX-512 BF16 intrinsics are stable since Rust 1.89, above the crate's declared 1.85
// (as in `bf16.rs`).
#![allow(clippy::incompatible_msrv)]

use rayon::prelude::*;

use super::buffer::Buf;
use super::conv::OutShape;
use super::packing::{with_source, Wino};
use super::planes::Planes;
use super::stats::{channel_sums, merge_sums, MeasuredSums};
use crate::error::Result;

/// Input channels per A tile row (64 bytes of bf16) and per B tile.
const KB: usize = 32;
/// Pixels (rows) of an A or C tile, and output channels of a B or C tile.
const TR: usize = 16;
/// bf16 values of one packed B tile: 16 channel pairs x 16 outputs x 2.
const B_TILE: usize = KB * TR;
/// Output pixels per parallel work item, rounded to whole rows: enough for a band's output
/// to stay in L2 while its sums are taken.
const BAND_PIXELS: usize = 1024;
/// bf16 pixels past the input's end that A tiles of the last (partial) block may read.
const SLACK_PIXELS: usize = 2 * TR + 8;

/// bf16 values in 64-byte lines: a tile row that straddles two cache lines loads at about
/// two thirds of the rate (measured: a 2x2 tile step from `Vec<u16>` memory, 32 bytes off a
/// line, ran at 0.7x the aligned rate).
#[derive(Debug, Default)]
struct Lines(Vec<Line>);

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u16; 32]);

impl Lines {
    /// At least `n` values (rounded up to whole lines); new lines are zero.
    fn grow(&mut self, n: usize) {
        let lines = n.div_ceil(32);
        if self.0.len() < lines {
            self.0.resize(lines, Line::default());
        }
    }

    fn as_slice(&self) -> &[u16] {
        // SAFETY: `Line` is `repr(C)` around `[u16; 32]` with no padding (64 bytes, align
        // 64), so the lines are 32 * len contiguous, initialised u16 values.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), 32 * self.0.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u16] {
        // SAFETY: as in `as_slice`, through a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), 32 * self.0.len()) }
    }
}

/// Whether a layer runs here: a 3x3 stride-1 kernel, not transposed (the up layers' phase
/// kernels qualify: [`super::packing::Packed::phases`] stores them as plain kernels),
/// channels in whole tiles.
pub(super) fn fits(wino: &Wino, cin: usize, cout: usize) -> bool {
    !wino.transposed && cin % KB == 0 && cout % (2 * TR) == 0
}

/// A 3x3 kernel as AMX B tiles (see the module docs).
#[derive(Debug, Default)]
pub(super) struct PackedB {
    cin: usize,
    cout: usize,
    /// Read by the x86-64 kernel only (elsewhere no AMX, nothing packed).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    data: Lines,
}

impl PackedB {
    /// Packs `wino`'s stored kernel (`[cout][cin][3][3]`, f16 or f32), each value rounded
    /// to the nearest bf16.
    pub(super) fn pack(wino: &Wino, cin: usize, cout: usize) -> Result<Self> {
        let kbs = cin / KB;
        let mut data = Lines::default();
        data.grow(9 * cin * cout);
        with_source(&wino.weight, |src| {
            // One cout block per chunk: its 9 taps x kbs B tiles.
            data.as_mut_slice()
                .par_chunks_mut(9 * kbs * B_TILE)
                .enumerate()
                .for_each(|(j, block)| {
                    for (i, v) in block.iter_mut().enumerate() {
                        let (t, rest) = (i / (kbs * B_TILE), i % (kbs * B_TILE));
                        let (kb, within) = (rest / B_TILE, rest % B_TILE);
                        let (pair, col, e) = (within / (2 * TR), within / 2 % TR, within % 2);
                        let (co, ci) = (j * TR + col, kb * KB + 2 * pair + e);
                        let at = (co * cin + ci) * 9 + t;
                        *v = half::bf16::from_f32(src.at(at)).to_bits();
                    }
                })
        })?;
        Ok(Self { cin, cout, data })
    }

    pub(super) fn bytes(cin: usize, cout: usize) -> usize {
        2 * 9 * cin * cout
    }
}

/// `src`'s padded pixels in bf16 (the A operand), with zeroed slack; reused across layers.
#[derive(Debug, Default)]
pub(super) struct Input {
    data: Lines,
}

impl Input {
    /// Bytes the bf16 copy of a `h x w` input of `c` channels (1-pixel border) takes.
    pub(super) fn bytes(h: usize, w: usize, c: usize) -> usize {
        2 * ((h + 2) * (w + 2) + SLACK_PIXELS) * c
    }

    fn fill(&mut self, src: &Planes) {
        let n = src.hp() * src.wp() * src.c;
        let len = n + SLACK_PIXELS * src.c;
        self.data.grow(len);
        let data = self.data.as_mut_slice();
        data[n..len].fill(0);
        data[..n]
            .par_chunks_mut(1 << 16)
            .zip(src.data[..n].par_chunks(1 << 16))
            .for_each(|(d, s)| to_bf16(s, d));
    }
}

/// Rounds to the nearest bf16 (ties to even), as `vcvtneps2bf16` does.
fn to_bf16(s: &[f32], d: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has avx512f and avx512bf16 (checked just above).
        unsafe { x86::to_bf16(s, d) };
        return;
    }
    for (d, &s) in d.iter_mut().zip(s) {
        *d = half::bf16::from_f32(s).to_bits();
    }
}

/// The convolution of `src` (pad 1, border filled) with `b` into `y`, as
/// [`super::direct::conv_direct`] lays it out, with the norm sums when `measure`.
///
/// Only called where [`super::bf16::kernel`] is AMX (the tile state is granted).
pub(super) fn conv(
    src: &Planes,
    b: &PackedB,
    xb: &mut Input,
    y: &mut Buf,
    measure: bool,
) -> (OutShape, Option<MeasuredSums>) {
    assert_eq!(src.c, b.cin, "channel mismatch");
    assert_eq!(src.pad, 1, "a 3x3 convolution of a 1-pixel border");
    let (wp, n) = (src.wp(), b.cout);
    let shape = OutShape {
        ho: src.h,
        wo: src.w,
        wv: wp,
        c: n,
    };
    xb.fill(src);
    let m = shape.ho * wp;
    y.grow(m * n);
    let band_rows = BAND_PIXELS.div_ceil(wp);
    let xb = xb.data.as_slice();
    // Every A tile row read, at most: the last pixel block's 16 rows past `m`, two input
    // rows and two pixels on.
    assert!(
        (m + 2 * TR + 2 * wp + 2) * b.cin <= xb.len(),
        "input too short"
    );
    let partials: Vec<Option<MeasuredSums>> = y[..m * n]
        .par_chunks_mut(band_rows * wp * n)
        .enumerate()
        .map(|(band, out)| {
            let p0 = band * band_rows * wp;
            // SAFETY: the caller checked for AMX; every A read lies within pixels
            // p0 .. p0 + px + 2 TR + 2 wp + 2 of `xb` (asserted above for the last band),
            // B reads within `b.data`, C stores within `out` or the stack scratch.
            unsafe { x86::band(xb, b, wp, p0, out) };
            measure.then(|| {
                let parts = out
                    .chunks_exact(wp * n)
                    .map(|row| Some(channel_sums(&row[..shape.wo * n], n)))
                    .collect();
                merge_sums(parts, n)
            })
        })
        .collect();
    (shape, measure.then(|| merge_sums(partials, n)))
}

/// `wino`'s kernel as tiles, made on first use and kept (`Wino::amx`): 2 bytes a weight.
pub(super) fn packed(wino: &Wino, cin: usize, cout: usize) -> Result<&PackedB> {
    if let Some(b) = wino.amx.get() {
        return Ok(b);
    }
    let b = PackedB::pack(wino, cin, cout)?;
    Ok(wino.amx.get_or_init(|| b))
}

/// Elsewhere there is no AMX: [`super::bf16::kernel`] is never AMX, so this is never called.
#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub(super) unsafe fn band(_: &[u16], _: &super::PackedB, _: usize, _: usize, _: &mut [f32]) {
        unreachable!("AMX is x86-64 only")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;

    use super::state::CONFIG;
    use super::{PackedB, B_TILE, KB, TR};

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn to_bf16(s: &[f32], d: &mut [u16]) {
        use std::arch::x86_64::*;
        let n = s.len().min(d.len());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: 16 values at i < n of both slices.
            unsafe {
                let x = _mm512_loadu_ps(s.as_ptr().add(i));
                let h = _mm512_cvtneps_pbh(x);
                _mm256_storeu_si256(
                    d.as_mut_ptr().add(i) as *mut __m256i,
                    std::mem::transmute::<__m256bh, __m256i>(h),
                );
            }
            i += 16;
        }
        for k in i..n {
            d[k] = half::bf16::from_f32(s[k]).to_bits();
        }
    }

    /// Output pixels `p0 .. p0 + out.len() / n` (rows of `n` f32 in `out`): for each
    /// block of 32 pixels and each pair of 16-channel output blocks, 2x2 C tiles
    /// accumulated over 9 taps x `cin / 32` channel blocks.
    ///
    /// Each step loads an operand just before the first product that needs it: tiles are
    /// not renamed, so a load waits for the products still reading its register, and
    /// loading all four first left the tile unit idle (measured 0.75x).
    ///
    /// # Safety
    /// AMX tile state granted; `xb` holds the pixels every A tile reads (see
    /// [`super::conv`]); `b` packed for `cin` inputs and `n` outputs (a multiple of 32).
    pub(super) unsafe fn band(xb: &[u16], b: &PackedB, wp: usize, p0: usize, out: &mut [f32]) {
        let (cin, n) = (b.cin, b.cout);
        let px = out.len() / n;
        let kbs = cin / KB;
        let (a_rs, b_rs, c_rs) = (2 * cin, 4 * TR, 4 * n);
        // A tile rows 16 pixels apart; B blocks 9 taps x kbs tiles apart.
        let a_next = TR * cin;
        let b_next = 9 * kbs * B_TILE;
        let bd = b.data.as_slice();
        let mut scratch = [0f32; 2 * TR * 2 * TR];
        // SAFETY: a valid palette-1 configuration, released at the end of this call.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
        for blk in (0..px).step_by(2 * TR) {
            let rows = (px - blk).min(2 * TR);
            for j in (0..n / TR).step_by(2) {
                // SAFETY: tile instructions on configured tiles; the pointer arithmetic
                // stays inside `xb` (the caller's contract) and `bd` (tap t < 9,
                // kb < kbs, block j + 1 < n / TR).
                unsafe {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    let bj = bd.as_ptr().add(j * b_next);
                    for t in 0..9 {
                        let off = (t / 3) * wp + t % 3;
                        let at = xb.as_ptr().add((p0 + blk + off) * cin);
                        let bt = bj.add(t * kbs * B_TILE);
                        for kb in 0..kbs {
                            let a0 = at.add(kb * KB);
                            let b0 = bt.add(kb * B_TILE);
                            asm!(
                                "tileloadd tmm4, [{a0} + {a_rs}*1]",
                                "tileloadd tmm6, [{b0} + {b_rs}*1]",
                                "tdpbf16ps tmm0, tmm4, tmm6",
                                "tileloadd tmm7, [{b1} + {b_rs}*1]",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                "tileloadd tmm5, [{a1} + {a_rs}*1]",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                "tdpbf16ps tmm3, tmm5, tmm7",
                                a0 = in(reg) a0,
                                a1 = in(reg) a0.add(a_next),
                                b0 = in(reg) b0,
                                b1 = in(reg) b0.add(b_next),
                                a_rs = in(reg) a_rs,
                                b_rs = in(reg) b_rs,
                                options(nostack, readonly)
                            );
                        }
                    }
                }
                // Whole blocks store into `out`; the band's last, partial one into the
                // scratch, then its real rows are copied.
                let (c0, rs) = if rows == 2 * TR {
                    (out[blk * n + j * TR..].as_mut_ptr(), c_rs)
                } else {
                    (scratch.as_mut_ptr(), 4 * 2 * TR)
                };
                let row = rs / 4;
                // SAFETY: four 16x16 f32 C tiles at rows 0/16 and columns 0/16 from c0:
                // inside `out` (rows blk .. blk + 32 <= px, columns j 16 .. j 16 + 32 <= n)
                // or inside the 32x32 scratch.
                unsafe {
                    asm!(
                        "tilestored [{c0} + {rs}*1], tmm0",
                        "tilestored [{c1} + {rs}*1], tmm1",
                        "tilestored [{c2} + {rs}*1], tmm2",
                        "tilestored [{c3} + {rs}*1], tmm3",
                        c0 = in(reg) c0,
                        c1 = in(reg) c0.add(TR),
                        c2 = in(reg) c0.add(TR * row),
                        c3 = in(reg) c0.add(TR * row + TR),
                        rs = in(reg) rs,
                        options(nostack)
                    );
                }
                if rows < 2 * TR {
                    for r in 0..rows {
                        out[(blk + r) * n + j * TR..][..2 * TR]
                            .copy_from_slice(&scratch[r * 2 * TR..][..2 * TR]);
                    }
                }
            }
        }
        // SAFETY: releases the tile state this call configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// The tile state: asked of the OS once, configured per call.
#[cfg(target_arch = "x86_64")]
pub(super) mod state {
    use super::TR;

    /// Asks Linux for the AMX tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`), after checking CPUID for AMX-TILE and AMX-BF16. Once per
    /// process; the permission covers every thread.
    pub(in crate::engine::cpu) fn enable() -> bool {
        // CPUID leaf 7 subleaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
        #[allow(unused_unsafe)]
        // SAFETY: CPUID is available on every x86-64 CPU.
        let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
        if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
            return false;
        }
        #[cfg(target_os = "linux")]
        {
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call with integer arguments; it changes only this
            // process's permitted extended state.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            rc == 0
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// The 64-byte tile configuration `ldtilecfg` reads: palette 1, eight tiles of 16
    /// rows of 64 bytes (tmm0-3 the accumulators, tmm4-5 A, tmm6-7 B).
    #[repr(C, align(64))]
    pub(super) struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    pub(super) const CONFIG: Config = {
        let mut colsb = [0u16; 16];
        let mut rows = [0u8; 16];
        let mut i = 0;
        while i < 8 {
            colsb[i] = 64;
            rows[i] = TR as u8;
            i += 1;
        }
        Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb,
            rows,
        }
    };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::engine::cpu::bf16;

    fn pseudo(i: usize, salt: usize) -> f32 {
        (((i * 2654435761 + salt * 40503) % 100003) as f32 / 100003.0) - 0.5
    }

    /// The tile products against an f64 convolution of the bf16-rounded operands, with
    /// partial pixel blocks, several bands and 1, 2 and 3 pairs of output blocks; the sums
    /// against the output's own.
    #[test]
    fn tiles_match_rounded_direct_convolution() {
        if bf16::kernel() != Some(bf16::Kernel::Amx) {
            eprintln!("no AMX on this CPU: nothing to check");
            return;
        }
        let round = |x: f32| half::bf16::from_f32(x).to_f32() as f64;
        for (cin, cout, h, w) in [(32, 32, 5, 7), (64, 96, 40, 30), (32, 64, 3, 50)] {
            let wt: Vec<f32> = (0..cout * cin * 9).map(|i| pseudo(i, 1)).collect();
            let wino = Wino {
                weight: candle_core::Tensor::from_vec(
                    wt.clone(),
                    (cout, cin, 3, 3),
                    &candle_core::Device::Cpu,
                )
                .unwrap(),
                transposed: false,
                kept: OnceLock::new(),
                kept_bf16: OnceLock::new(),
                amx: OnceLock::new(),
            };
            assert!(fits(&wino, cin, cout));
            let b = PackedB::pack(&wino, cin, cout).unwrap();
            let mut src = Planes::default();
            src.reset(h, w, cin, 1);
            for (i, v) in src.data.iter_mut().enumerate() {
                *v = 2.0 * pseudo(i, 2);
            }
            let (mut xb, mut y) = (Input::default(), Buf::default());
            let (s, sums) = conv(&src, &b, &mut xb, &mut y, true);
            assert_eq!((s.ho, s.wo, s.wv, s.c), (h, w, w + 2, cout));
            let (sum, sq, count) = sums.unwrap();
            assert_eq!(count, h * w);
            let (wp, mut worst) = (w + 2, 0f64);
            let (mut want_sum, mut want_sq) = (vec![0f64; cout], vec![0f64; cout]);
            for r in 0..h {
                for x in 0..w {
                    for co in 0..cout {
                        let mut want = 0f64;
                        for t in 0..9 {
                            let px = (r + t / 3) * wp + x + t % 3;
                            for ci in 0..cin {
                                want += round(src.data[px * cin + ci])
                                    * round(wt[(co * cin + ci) * 9 + t]);
                            }
                        }
                        let got = y[(r * wp + x) * cout + co] as f64;
                        worst = worst.max((want - got).abs());
                        want_sum[co] += got;
                        want_sq[co] += got * got;
                    }
                }
            }
            assert!(worst < 1e-3, "{cin}->{cout} {h}x{w}: worst {worst}");
            for co in 0..cout {
                assert!((sum[co] - want_sum[co]).abs() < 1e-6 * (1.0 + want_sum[co].abs()));
                assert!((sq[co] - want_sq[co]).abs() < 1e-6 * (1.0 + want_sq[co]));
            }
        }
    }
}
