//! A layer's weights packed at load: reordered so that one kernel row of taps is one
//! matrix product over a contiguous run of input pixels, or, for a 3x3 stride-1 layer,
//! kept as stored until its Winograd transform is needed.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::amx_conv;
use super::bf16;
use super::buffer::Buf;
use super::winograd;
use crate::error::{Error, Result};
use crate::nn::conv::{Conv, ConvKind};

/// One convolution's weights, packed for [`conv`].
#[derive(Debug)]
pub(super) struct Packed {
    /// Kernel side.
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    /// `[dy][dx][cin][cout]`: for each kernel row a `(k * cin) x cout` row-major matrix, so
    /// one kernel row of taps is one matrix product over a contiguous run of input pixels.
    /// Empty when `wino` holds the kernel instead.
    pub(super) w: Buf,
    pub(super) bias: Vec<f32>,
    /// A 3x3 stride-1 layer's kernel, convolved the Winograd way.
    pub(super) wino: Option<Wino>,
    /// 1, or 4 for an up layer run as [`Packed::phases`]: its convolution has
    /// `phases * cout` output channels, phase-major.
    pub(super) phases: usize,
}

/// How an up layer's input reaches the doubled grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upsampling {
    /// Each pixel as a 2x2 block, then a 3x3 convolution: the seed's layout.
    Nearest,
    /// Each pixel at even coordinates, zeros between, then the flipped kernel: a stride-2
    /// transposed convolution (the official layout).
    Dilated,
}

impl Upsampling {
    /// `M[a][t][d]`: the weight of the stored kernel's tap `d` (along one axis) in tap `t`
    /// of output phase `a`'s kernel over the un-upsampled input (rows `i - 1, i, i + 1`
    /// for output row `2 i + a`). Nearest: output row `2 i` reads upsampled rows `2 i - 1,
    /// 2 i, 2 i + 1`, which are input rows `i - 1, i, i`. Dilated: only even rows of the
    /// dilated grid hold input, so row `2 i` sees input row `i` through tap 1 alone, and
    /// row `2 i + 1` input rows `i` and `i + 1` through taps 0 and 2.
    fn taps(self) -> [[[f32; 3]; 3]; 2] {
        match self {
            Upsampling::Nearest => [
                [[1., 0., 0.], [0., 1., 1.], [0., 0., 0.]],
                [[0., 0., 0.], [1., 1., 0.], [0., 0., 1.]],
            ],
            Upsampling::Dilated => [
                [[0., 0., 0.], [0., 1., 0.], [0., 0., 0.]],
                [[0., 0., 0.], [1., 0., 0.], [0., 0., 1.]],
            ],
        }
    }
}

/// A 3x3 stride-1 kernel as stored, and its Winograd transform once the model keeps it.
///
/// Why not transform at load: the transforms are four times the kernel in f32, 176 MB for
/// the seed generator, and on a virtual machine writing that much fresh memory took a
/// third of a cold 256-pixel stylize (`perf record`: `clear_page_erms`). A model's first
/// call transforms each layer into one reused buffer just before convolving with it; from
/// the second call on, when the model is evidently being reused (tiles, a batch), each
/// transform is made once and kept.
#[derive(Debug)]
pub(super) struct Wino {
    /// Contiguous, f16 (the shipped styles: no copy) or f32.
    pub(super) weight: Tensor,
    pub(super) transposed: bool,
    pub(super) kept: OnceLock<winograd::Transformed>,
    /// The transform in bf16, kept likewise when bf16 products run.
    pub(super) kept_bf16: OnceLock<bf16::PackedU>,
    /// The kernel as AMX tiles, for the 3x3 layers' bf16 path on AMX: made on first use.
    pub(super) amx: OnceLock<amx_conv::PackedB>,
}

impl Wino {
    /// Transforms the kernel into `into`; `f32s` is scratch for an f16 kernel's values,
    /// converted in one vectorised pass first (per value, the conversion and the gather's
    /// dispatch took most of a first call's transform time).
    pub(super) fn transform(
        &self,
        cin: usize,
        cout: usize,
        into: &mut winograd::Transformed,
        f32s: &mut Vec<f32>,
    ) -> Result<()> {
        let transposed = self.transposed;
        with_source(&self.weight, |src| {
            let w: &[f32] = match *src {
                Source::F32(v) => v,
                Source::F16(v) => {
                    use half::slice::HalfFloatSliceExt;
                    f32s.resize(v.len(), 0.0);
                    f32s.par_chunks_mut(1 << 14)
                        .zip(v.par_chunks(1 << 14))
                        .for_each(|(d, s)| s.convert_to_f32_slice(d));
                    f32s
                }
            };
            into.fill(WINOGRAD, cin, cout, |p0, len, block| {
                let stride = block.len() / 9;
                for (j, p) in (p0..p0 + len).enumerate() {
                    let (ci, co) = (p / cout, p % cout);
                    // A pair's 9 taps are stored together; a transposed kernel flipped.
                    if transposed {
                        let taps = &w[(ci * cout + co) * 9..][..9];
                        for (tap, &x) in taps.iter().rev().enumerate() {
                            block[tap * stride + j] = x;
                        }
                    } else {
                        let taps = &w[(co * cin + ci) * 9..][..9];
                        for (tap, &x) in taps.iter().enumerate() {
                            block[tap * stride + j] = x;
                        }
                    }
                }
            })
        })
    }
}

/// Index in a stored kernel tensor of tap (dy, dx) for input channel `ci` and output
/// channel `co`.
pub(super) fn tap_index(
    transposed: bool,
    k: usize,
    cin: usize,
    cout: usize,
) -> impl Fn(usize, usize, usize, usize) -> usize {
    move |dy, dx, ci, co| {
        if transposed {
            ((ci * cout + co) * k + (k - 1 - dy)) * k + (k - 1 - dx)
        } else {
            ((co * cin + ci) * k + dy) * k + dx
        }
    }
}

/// Runs `f` on the values of a contiguous f16 or f32 CPU tensor, read in place.
pub(super) fn with_source<R>(wt: &Tensor, f: impl FnOnce(&Source) -> R) -> Result<R> {
    let (storage, layout) = wt.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Compute(
            "the CPU engine packs weights that live on the CPU".into(),
        ));
    };
    let span = layout.start_offset()..layout.start_offset() + wt.elem_count();
    let src = match wt.dtype() {
        DType::F16 => Source::F16(&cpu.as_slice::<half::f16>()?[span]),
        _ => Source::F32(&cpu.as_slice::<f32>()?[span]),
    };
    Ok(f(&src))
}

impl Packed {
    pub(super) fn new(conv: &Conv) -> Result<Self> {
        let wt = conv.weight();
        let (d0, d1, k, k2) = wt.dims4()?;
        if k != k2 {
            return Err(Error::format_mem(format!("non-square kernel {k}x{k2}")));
        }
        let bias: Vec<f32> = conv.bias().to_dtype(DType::F32)?.to_vec1()?;
        let (stride, cin, cout, transposed) = match conv.kind() {
            ConvKind::Forward { stride, .. } => (stride, d1, d0, false),
            // A stride-2 transposed convolution is a stride-1 convolution of the input
            // dilated with zeros, with the kernel flipped and its channel axes swapped.
            ConvKind::Transposed => (1, d0, d1, true),
        };
        // Read in place (f16 for the shipped styles) and convert while reordering: one pass
        // and no intermediate copies, since loading is part of start-up.
        let wt = match wt.dtype() {
            DType::F16 | DType::F32 => wt.contiguous()?,
            _ => wt.to_dtype(DType::F32)?.contiguous()?,
        };
        if !wt.device().is_cpu() {
            return Err(Error::Compute(
                "the CPU engine packs weights that live on the CPU".into(),
            ));
        }
        if k == 3 && stride == 1 {
            return Ok(Self {
                k,
                stride,
                cin,
                cout,
                w: Buf::default(),
                bias,
                wino: Some(Wino {
                    weight: wt,
                    transposed,
                    kept: OnceLock::new(),
                    kept_bf16: OnceLock::new(),
                    amx: OnceLock::new(),
                }),
                phases: 1,
            });
        }
        let at = tap_index(transposed, k, cin, cout);
        let mut w = Buf::zeroed(k * k * cin * cout);
        with_source(&wt, |src| {
            let mut i = 0;
            for dy in 0..k {
                for dx in 0..k {
                    for ci in 0..cin {
                        for co in 0..cout {
                            w[i] = src.at(at(dy, dx, ci, co));
                            i += 1;
                        }
                    }
                }
            }
        })?;
        Ok(Self {
            k,
            stride,
            cin,
            cout,
            w,
            bias,
            wino: None,
            phases: 1,
        })
    }

    /// An up layer (an upsampling, then a 3x3 convolution with zero padding 1) as one
    /// 3x3 convolution of the input before upsampling, with an output channel per
    /// channel and output phase `(a, b)` (output pixel `(2 i + a, 2 j + b)`).
    ///
    /// Why: the upsampled input is four times the input, and the largest buffer of a
    /// forward pass (512 bytes per output pixel at the seed's second up layer); the phases
    /// need none, so a tile of the same memory is larger. The arithmetic is the same for
    /// nearest upsampling and a quarter for a dilated input, whose zeros are skipped.
    pub(super) fn phases(conv: &Conv, up: Upsampling) -> Result<Self> {
        let plain = Self::new(conv)?;
        let Some(wino) = plain.wino.as_ref().filter(|_| plain.k == 3) else {
            return Err(Error::format_mem(format!(
                "an up layer must be a 3x3 stride-1 convolution, not {k}x{k} stride {s}",
                k = plain.k,
                s = plain.stride
            )));
        };
        let (cin, cout) = (plain.cin, plain.cout);
        let at = tap_index(wino.transposed, 3, cin, cout);
        let m = up.taps();
        let mut kernel = vec![0f32; 4 * cout * cin * 9];
        with_source(&wino.weight, |src| {
            // One output channel of one phase per chunk: its `cin` 3x3 kernels.
            kernel
                .par_chunks_mut(cin * 9)
                .enumerate()
                .for_each(|(pc, out)| {
                    let (phase, co) = (pc / cout, pc % cout);
                    let (ma, mb) = (&m[phase / 2], &m[phase % 2]);
                    for (ci, k) in out.chunks_exact_mut(9).enumerate() {
                        let tap = |dy: usize, dx: usize| src.at(at(dy, dx, ci, co));
                        let taps = [0, 1, 2].map(|dy| [0, 1, 2].map(|dx| tap(dy, dx)));
                        for (t, v) in k.iter_mut().enumerate() {
                            let (ty, tx) = (t / 3, t % 3);
                            let mut acc = 0.0;
                            for (dy, row) in taps.iter().enumerate() {
                                for (dx, &w) in row.iter().enumerate() {
                                    acc += ma[ty][dy] * mb[tx][dx] * w;
                                }
                            }
                            *v = acc;
                        }
                    }
                })
        })?;
        let weight = Tensor::from_vec(kernel, (4 * cout, cin, 3, 3), &Device::Cpu)?;
        Ok(Self {
            wino: Some(Wino {
                weight,
                transposed: false,
                kept: OnceLock::new(),
                kept_bf16: OnceLock::new(),
                amx: OnceLock::new(),
            }),
            phases: 4,
            ..plain
        })
    }

    /// Output channels of the convolution itself: `cout` per phase.
    pub(super) fn conv_cout(&self) -> usize {
        self.phases * self.cout
    }
}

/// Stored weights, read as f32.
pub(super) enum Source<'a> {
    F16(&'a [half::f16]),
    F32(&'a [f32]),
}

impl Source<'_> {
    pub(super) fn at(&self, i: usize) -> f32 {
        match self {
            Source::F16(v) => v[i].to_f32(),
            Source::F32(v) => v[i],
        }
    }
}

/// The Winograd variant for the 3x3 stride-1 layers.
pub(super) const WINOGRAD: &winograd::Variant = &winograd::F4;
