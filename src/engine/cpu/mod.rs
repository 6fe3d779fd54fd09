//! An inference-only CPU engine for the generator, running the same weights as the candle
//! [`Generator`].
//!
//! Why it exists: candle's CPU convolution copies a full im2col matrix per layer and runs
//! every op (padding, norm, ReLU, residual add) as its own pass over fresh tensors, which
//! made a 512-px image take several times as long as PyTorch. Here activations are NHWC
//! `f32` in a few buffers reused across layers; every convolution reads its kernel taps
//! straight out of an already padded input (no im2col), and the instance norm, ReLU,
//! residual add, padding and upsampling of each layer are one pass that writes the next
//! layer's padded input.
//!
//! Training and GPU inference stay on candle; this path only runs forward passes on the CPU.
//! It is the [`Engine`] the CPU backend serves.

mod bf16;
mod buffer;
mod matmul;
mod planes;
mod winograd;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use self::buffer::Buf;
use self::matmul::matmul;
use self::planes::Planes;
use super::{check_input, Engine, LayerProgress, NormStat, Precision, Stats, StatsCursor};
use crate::error::{Error, Result};
use crate::nn::conv::{Conv, ConvKind};
use crate::nn::layers::EPS;
use crate::nn::{Generator, GeneratorConfig, Layout};
use crate::weights::GeneratorWeights;

/// Output rows per work item of a convolution: small enough that a band's output stays in
/// the L2 cache while its kernel rows accumulate into it, large enough to amortise the
/// weight packing `gemm` does per call.
const BAND_ROWS: usize = 256;

/// One convolution's weights, packed for [`conv`].
#[derive(Debug)]
struct Packed {
    /// Kernel side.
    k: usize,
    stride: usize,
    cin: usize,
    cout: usize,
    /// `[dy][dx][cin][cout]`: for each kernel row a `(k * cin) x cout` row-major matrix, so
    /// one kernel row of taps is one matrix product over a contiguous run of input pixels.
    /// Empty when `wino` holds the kernel instead.
    w: Buf,
    bias: Vec<f32>,
    /// A 3x3 stride-1 layer's kernel, convolved the Winograd way.
    wino: Option<Wino>,
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
struct Wino {
    /// Contiguous, f16 (the shipped styles: no copy) or f32.
    weight: Tensor,
    transposed: bool,
    kept: OnceLock<winograd::Transformed>,
    /// The transform in bf16, kept likewise when bf16 products run.
    kept_bf16: OnceLock<bf16::PackedU>,
}

impl Wino {
    /// Transforms the kernel into `into`; `f32s` is scratch for an f16 kernel's values,
    /// converted in one vectorised pass first (per value, the conversion and the gather's
    /// dispatch took most of a first call's transform time).
    fn transform(
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
fn tap_index(
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
fn with_source<R>(wt: &Tensor, f: impl FnOnce(&Source) -> R) -> Result<R> {
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
    fn new(conv: &Conv) -> Result<Self> {
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
                }),
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
        })
    }
}

/// Stored weights, read as f32.
enum Source<'a> {
    F16(&'a [half::f16]),
    F32(&'a [f32]),
}

impl Source<'_> {
    fn at(&self, i: usize) -> f32 {
        match self {
            Source::F16(v) => v[i].to_f32(),
            Source::F32(v) => v[i],
        }
    }
}

/// Per-channel sums of values and of squares over real output pixels, and their count.
type MeasuredSums = (Vec<f64>, Vec<f64>, usize);

/// The Winograd variant for the 3x3 stride-1 layers.
const WINOGRAD: &winograd::Variant = &winograd::F4;

/// Sums of `out`'s pixels (`n` channels each), in f64 so large images lose no precision.
fn channel_sums(out: &[f32], n: usize) -> MeasuredSums {
    let mut sum = vec![0f64; n];
    let mut sq = vec![0f64; n];
    for px in out.chunks_exact(n) {
        for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(px) {
            let v = v as f64;
            *s += v;
            *q += v * v;
        }
    }
    (sum, sq, out.len() / n)
}

fn merge_sums(parts: Vec<Option<MeasuredSums>>, n: usize) -> MeasuredSums {
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

/// Geometry of a convolution's output rows: `ho` rows of `wv` "virtual" pixels, of which the
/// first `wo` are real and the rest junk (what the kernel saw past the row's end).
#[derive(Debug, Clone, Copy)]
struct OutShape {
    ho: usize,
    wo: usize,
    wv: usize,
    c: usize,
}

/// The generator's weights packed for the CPU; immutable, so one value serves many threads.
#[derive(Debug)]
pub struct CpuGenerator {
    config: GeneratorConfig,
    /// Head, 2 down, 2 per block, 2 up, tail: the order of [`Generator::convs`].
    layers: Vec<Packed>,
    /// The last call's working buffers, reused by the next one: fresh pages cost as much
    /// as a layer's arithmetic on a virtual machine, and a tiled stylize runs the network
    /// hundreds of times. Holds about 830 bytes per pixel of the largest tile seen (0.2 GB
    /// at the default tile) until the model is dropped; concurrent calls beyond the first
    /// use buffers of their own.
    cache: Mutex<Option<Activations>>,
    /// Forward calls so far: the second one starts keeping Winograd transforms.
    calls: AtomicUsize,
}

/// The buffers of one forward pass.
#[derive(Debug, Default)]
struct Activations {
    p: Planes,
    q: Planes,
    work: Work,
}

/// A forward pass's convolution buffers.
#[derive(Debug, Default)]
struct Work {
    /// The convolution's output.
    y: Buf,
    /// A Winograd kernel transformed for this call only (see [`Wino`]).
    u: winograd::Transformed,
    /// Scratch for [`Wino::transform`].
    f32s: Vec<f32>,
    /// `u` in bf16, for this call only.
    ub: bf16::PackedU,
    /// The bf16 kernel of this call's Winograd products; f32 `gemm` when `None`.
    bf16: Option<bf16::Kernel>,
    /// Whether this call makes and keeps each layer's transform.
    keep: bool,
}

/// Where a layer's normalized output goes in the next layer's input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Pixel for pixel.
    Same,
    /// Each pixel as a 2x2 block: the seed's nearest upsampling.
    Upsample,
    /// Each pixel at even coordinates, zeros between: a transposed convolution's input.
    Dilate,
}

impl CpuGenerator {
    pub fn new(generator: &Generator) -> Result<Self> {
        // Layers pack independently: in parallel, since loading is part of start-up.
        let layers = generator
            .convs()
            .into_par_iter()
            .map(Packed::new)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: generator.config(),
            layers,
            cache: Mutex::default(),
            calls: AtomicUsize::new(0),
        })
    }

    /// Bytes of weights this generator holds once every Winograd transform is kept (a
    /// model that serves more than one call keeps them).
    fn resident_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                let stored = l.w.len() + l.bias.len();
                let a = WINOGRAD.m + 2;
                let wino = l.wino.as_ref().map_or(0, |_| a * a * l.cin * l.cout);
                // The transforms auto keeps: bf16 (hi and lo parts, about the f32 size)
                // where this CPU runs bf16 products, f32 elsewhere. A model used at both
                // precisions keeps both.
                let wino = match (&l.wino, bf16::kernel()) {
                    (Some(_), Some(_)) => bf16::PackedU::bytes(a * a, l.cin, l.cout, bf16::SPLIT3),
                    _ => 4 * wino,
                };
                (4 * stored + wino) as u64
            })
            .sum()
    }

    /// Frees the buffers kept from the last call: for a caller whose next calls are much
    /// smaller (tiles after a whole-image statistics pass), so the memory is not held
    /// alongside what it allocates next.
    pub fn release_buffers(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    /// The forward pass of one planar RGB image (`3 x h x w`, values in [-1, 1]); returns the
    /// same layout. Height and width must be multiples of 4, as for the candle generator.
    pub fn forward_planar(
        &self,
        x: &[f32],
        w: usize,
        h: usize,
        stats: Stats,
        precision: Precision,
        progress: LayerProgress,
    ) -> Result<Vec<f32>> {
        check_input(x, w, h)?;
        let products = bf16_kernel_for(precision)?;
        let mut stats = stats;
        let norms = &mut StatsCursor::new(&mut stats);
        let mut steps = Steps {
            done: 0,
            total: self.layers.len(),
            progress,
        };
        let ngf = self.config.ngf;
        let nb = self.config.blocks;
        let layers = &self.layers;
        let up_place = match self.config.layout {
            Layout::Seed => Place::Upsample,
            Layout::Official => Place::Dilate,
        };
        let mut act = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .unwrap_or_default();
        let Activations { p, q, work } = &mut act;
        work.keep = self.calls.fetch_add(1, Ordering::Relaxed) > 0;
        work.bf16 = products;
        if work.keep {
            work.u = Default::default();
            work.ub = Default::default();
            work.f32s = Vec::new();
        }
        // `p` holds the layer-to-layer activations: each layer writes its normalized output
        // over its own input, which the convolution (into `y`) has finished reading. Sized
        // once for its largest use (the first up layer's placed output) and kept across
        // calls, it takes no page faults after the first call; `q` holds the residual
        // blocks' middle activation, at a sixteenth of the pixels.
        let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);
        p.reserve(
            [
                Planes::len_for(h, w, 3, 3),
                Planes::len_for(h, w, ngf, 1),
                Planes::len_for(h2, w2, 2 * ngf, 1),
                Planes::len_for(h2, w2, 4 * ngf, 1),
                Planes::len_for(h, w, 2 * ngf, 1),
                Planes::len_for(h, w, ngf, 3),
            ]
            .into_iter()
            .max()
            .unwrap_or(0),
        );
        q.reserve(Planes::len_for(h4, w4, 4 * ngf, 1));

        // Head: reflection pad 3, 7x7 conv, norm, ReLU; its output feeds a zero-padded
        // stride-2 convolution.
        p.reset_border(h, w, 3, 3);
        p.fill_from_planar(x);
        p.reflect_border();
        let s = self.norm_in_place(p, &layers[0], work, norms, Place::Same, 1)?;
        debug_assert_eq!((s.ho, s.wo), (h, w));
        steps.step()?;
        for layer in &layers[1..3] {
            self.norm_in_place(p, layer, work, norms, Place::Same, 1)?;
            steps.step()?;
        }
        p.reflect_border();
        debug_assert_eq!((p.h, p.w, p.c), (h4, w4, 4 * ngf));

        // Residual blocks: the running sum lives in `p` (with its reflected border, ready
        // for the next block's first convolution); `q` holds the block's middle activation.
        for i in 0..nb {
            let l1 = &layers[3 + 2 * i];
            let l2 = &layers[4 + 2 * i];
            let out = conv(p, l1, work, norms.measures())?;
            normalize_into(l1, out, &work.y, norms, q, Place::Same, 1)?;
            q.reflect_border();
            steps.step()?;
            let s = conv(q, l2, work, norms.measures())?;
            let (scale, shift) = affine(l2, s.1, norms)?;
            add_normalized(&work.y, s.0, &scale, &shift, p);
            p.reflect_border();
            steps.step()?;
        }

        // Upsampling: the first up layer's input is the residual sum itself, placed on the
        // doubled grid (from a copy in `q`, since it goes into `p`); the second's is the
        // first's normalized output, placed likewise. At the peak `p` holds 512 bytes per
        // output pixel and `y` 256.
        q.copy_from(p);
        reset_for(p, up_place, 2 * q.h, 2 * q.w, q.c, 1);
        place_copy(q, p, up_place);
        let up = 3 + 2 * nb;
        self.norm_in_place(p, &layers[up], work, norms, up_place, 1)?;

        steps.step()?;
        self.norm_in_place(p, &layers[up + 1], work, norms, Place::Same, 3)?;
        steps.step()?;
        p.reflect_border();
        debug_assert_eq!((p.h, p.w, p.c), (h, w, ngf));

        // Tail: 7x7 conv to RGB, bias, tanh.
        let tail = &layers[up + 2];
        let (s, _) = conv(p, tail, work, false)?;
        let y = &work.y;
        let mut out = vec![0f32; 3 * h * w];
        for (ch, plane) in out.chunks_exact_mut(h * w).enumerate() {
            for (r, row) in plane.chunks_exact_mut(w).enumerate() {
                for (xx, o) in row.iter_mut().enumerate() {
                    *o = (y[(r * s.wv + xx) * s.c + ch] + tail.bias[ch]).tanh();
                }
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.get_or_insert(act);
        }
        steps.step()?;
        Ok(out)
    }

    /// Convolution, instance norm and ReLU of `p`, written back into `p` (reset to the
    /// right size with a zero border of `pad`) as `place` says.
    fn norm_in_place(
        &self,
        p: &mut Planes,
        layer: &Packed,
        work: &mut Work,
        norms: &mut StatsCursor,
        place: Place,
        pad: usize,
    ) -> Result<OutShape> {
        let out = conv(p, layer, work, norms.measures())?;
        normalize_into(layer, out, &work.y, norms, p, place, pad)
    }
}

/// Counts a forward pass's layers for its progress callback.
struct Steps<'a> {
    done: usize,
    total: usize,
    progress: LayerProgress<'a>,
}

impl Steps<'_> {
    fn step(&mut self) -> Result<()> {
        self.done += 1;
        if (self.progress)(self.done.min(self.total), self.total) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

/// The CPU backend's [`Engine`]: this module's generator, packed from the stored weights.
#[derive(Debug)]
pub(crate) struct CpuEngine {
    generator: CpuGenerator,
}

impl CpuEngine {
    pub fn new(weights: &GeneratorWeights) -> Result<Self> {
        // Packing converts each layer itself, so a network in the stored dtype (no copy)
        // serves, and building it checks every shape.
        let stored = weights.build(&candle_core::Device::Cpu, weights.stored_dtype())?;
        Self::from_generator(&stored)
    }

    pub fn from_generator(generator: &Generator) -> Result<Self> {
        Ok(Self {
            generator: CpuGenerator::new(generator)?,
        })
    }
}

/// The bf16 kernel a forward pass at `precision` runs its Winograd products with: `bf16`
/// takes the fastest this CPU has (AMX, else AVX-512 BF16) and is an error without one.
///
/// `auto` runs f32: the bf16 path keeps within the error bounds only with three bf16
/// products per f32 product (hi·hi + hi·lo + lo·hi), and measured so it is not yet faster
/// than f32 here (docs/performance.md); auto switches to it once it is.
fn bf16_kernel_for(precision: Precision) -> Result<Option<bf16::Kernel>> {
    match precision {
        Precision::F32 | Precision::Auto => Ok(None),
        Precision::Bf16 => bf16::kernel().map(Some).ok_or_else(|| {
            Error::Unsupported(
                "this CPU has no bf16 instructions (avx512_bf16 or AMX): use precision auto \
                 or f32"
                    .into(),
            )
        }),
    }
}

/// Scratch every forward pass may add beyond its activations: the per-thread Winograd
/// buffers and one layer's transformed kernel (measured at under 20 MB; rounded up).
const SCRATCH_BYTES: u64 = 48 << 20;

impl Engine for CpuEngine {
    fn describe(&self) -> String {
        "cpu".into()
    }

    fn config(&self) -> GeneratorConfig {
        self.generator.config
    }

    fn memory_for(&self, width: usize, height: usize) -> u64 {
        let (w, h, ngf) = (width, height, self.generator.config.ngf);
        // The buffers `forward_planar` sizes: `p` at its largest use, `q`, the widest
        // convolution output `y` (rows of `wv = w + 2 * pad` pixels) and the output.
        let p = [
            Planes::len_for(h, w, 3, 3),
            Planes::len_for(h, w, ngf, 1),
            Planes::len_for(h / 2, w / 2, 4 * ngf, 1),
            Planes::len_for(h, w, 2 * ngf, 1),
            Planes::len_for(h, w, ngf, 3),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let q = Planes::len_for(h / 4, w / 4, 4 * ngf, 1);
        let y = [
            (h, w + 6, ngf),
            (h, w + 2, ngf),
            (h / 2, w / 2 + 2, 2 * ngf),
        ]
        .iter()
        .map(|&(r, c, ch)| r * c * ch)
        .max()
        .unwrap_or(0);
        let out = 3 * w * h;
        (4 * (p + q + y + out)) as u64 + SCRATCH_BYTES
    }

    fn resident_memory(&self) -> u64 {
        self.generator.resident_bytes()
    }

    fn forward(
        &self,
        planar: &[f32],
        width: usize,
        height: usize,
        stats: Stats,
        precision: Precision,
        progress: LayerProgress,
    ) -> Result<Vec<f32>> {
        self.generator
            .forward_planar(planar, width, height, stats, precision, progress)
    }

    fn release_buffers(&self) {
        self.generator.release_buffers();
    }
}

/// Instance norm and ReLU of `layer`'s convolution output `(shape, measured)` in `y`,
/// written into `dst` (reset to the right size with a zero border of `pad`) as `place` says.
fn normalize_into(
    layer: &Packed,
    (s, measured): (OutShape, Option<NormStat>),
    y: &[f32],
    norms: &mut StatsCursor,
    dst: &mut Planes,
    place: Place,
    pad: usize,
) -> Result<OutShape> {
    let (scale, shift) = affine(layer, measured, norms)?;
    let grow = if place == Place::Same { 1 } else { 2 };
    reset_for(dst, place, grow * s.ho, grow * s.wo, s.c, pad);
    place_normalized(y, s, &scale, &shift, dst, place);
    Ok(s)
}

/// The norm as a per-channel scale and shift applied to the convolution's output without
/// its bias (the bias is folded into the shift, so the convolution never adds it).
fn affine(
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

/// Convolves the padded `src` with `layer` into `y` (rows of [`OutShape`], bias not added).
/// With `measure`, also returns the per-channel mean (bias included) and biased variance of
/// the real output pixels, summed in f64 per band so large images lose no precision.
fn conv(
    src: &Planes,
    layer: &Packed,
    work: &mut Work,
    measure: bool,
) -> Result<(OutShape, Option<NormStat>)> {
    let y = &mut work.y;
    let (shape, sums) = match (&layer.wino, work.bf16) {
        (Some(wino), Some(kernel)) => {
            let points = (WINOGRAD.m + 2) * (WINOGRAD.m + 2);
            let (cin, cout) = (layer.cin, layer.cout);
            let u = match wino.kept_bf16.get() {
                Some(u) => u,
                None if work.keep => {
                    // Only the bf16 packing is kept: the f32 transform is made, packed and
                    // dropped (unless an f32 call kept it already).
                    let mut own = winograd::Transformed::default();
                    let t = match wino.kept.get() {
                        Some(t) => t,
                        None => {
                            wino.transform(cin, cout, &mut own, &mut Vec::new())?;
                            &own
                        }
                    };
                    let mut u = bf16::PackedU::default();
                    u.pack(points, cin, cout, bf16::SPLIT3, |xi| t.point(xi));
                    wino.kept_bf16.get_or_init(|| u)
                }
                None => {
                    let t = match wino.kept.get() {
                        Some(t) => t,
                        None => {
                            wino.transform(cin, cout, &mut work.u, &mut work.f32s)?;
                            &work.u
                        }
                    };
                    work.ub
                        .pack(points, cin, cout, bf16::SPLIT3, |xi| t.point(xi));
                    &work.ub
                }
            };
            winograd::conv(src, winograd::Products::Bf16(u, kernel), y, measure)
        }
        (Some(wino), None) => {
            let t = match wino.kept.get() {
                Some(t) => t,
                None if work.keep => {
                    let mut t = winograd::Transformed::default();
                    wino.transform(layer.cin, layer.cout, &mut t, &mut Vec::new())?;
                    // A concurrent call may have kept its own first: either serves.
                    wino.kept.get_or_init(|| t)
                }
                None => {
                    wino.transform(layer.cin, layer.cout, &mut work.u, &mut work.f32s)?;
                    &work.u
                }
            };
            winograd::conv(src, winograd::Products::F32(t), y, measure)
        }
        (None, _) => conv_direct(src, layer, y, measure),
    };
    let measured = sums.map(|(sum, sq, count)| {
        let count = count as f64;
        let mut mean = Vec::with_capacity(layer.cout);
        let mut var = Vec::with_capacity(layer.cout);
        for ch in 0..layer.cout {
            let mu = sum[ch] / count;
            var.push((sq[ch] / count - mu * mu).max(0.0) as f32);
            mean.push((mu + layer.bias[ch] as f64) as f32);
        }
        NormStat { mean, var }
    });
    Ok((shape, measured))
}

/// [`conv`] as matrix products straight from the padded input.
fn conv_direct(
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
    let kk = k * c;
    let band_rows = BAND_ROWS.div_ceil(shape.wv);
    let partials: Vec<Option<MeasuredSums>> = y[..m * n]
        .par_chunks_mut(band_rows * shape.wv * n)
        .enumerate()
        .map(|(band, out)| {
            let r0 = band * band_rows;
            let rows = out.len() / (shape.wv * n);
            let runs = if st == 1 { 1 } else { rows };
            let run_px = rows * shape.wv / runs;
            for (run, out) in out.chunks_exact_mut(run_px * n).enumerate() {
                for dy in 0..k {
                    // Output pixel x of output row r reads input row r*st + dy from
                    // column x*st on, where its k taps of c channels are contiguous.
                    let off = (((r0 + run) * st + dy) * wp) * c;
                    let wrow = &layer.w[dy * kk * n..(dy + 1) * kk * n];
                    matmul(
                        run_px,
                        n,
                        kk,
                        out,
                        n,
                        dy > 0,
                        &src.data[off..],
                        st * c,
                        wrow,
                    );
                }
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

/// Writes `relu(y * scale + shift)` into `dst`'s interior as `place` says; `dst` must have
/// been reset (its zeros are the padding and the dilation's gaps).
fn place_normalized(
    y: &[f32],
    s: OutShape,
    scale: &[f32],
    shift: &[f32],
    dst: &mut Planes,
    place: Place,
) {
    place_rows(dst, place, s.wo, &|r, out: &mut [f32]| {
        let src = &y[r * s.wv * s.c..][..s.wo * s.c];
        for (o, px) in out.chunks_exact_mut(s.c).zip(src.chunks_exact(s.c)) {
            for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(scale).zip(shift) {
                *o = (v * a + b).max(0.0);
            }
        }
    });
}

/// Re-shapes `dst` for [`place_rows`] with `place`, zeroing what that leaves unwritten.
fn reset_for(dst: &mut Planes, place: Place, h: usize, w: usize, c: usize, pad: usize) {
    match place {
        Place::Same | Place::Upsample => dst.reset_border(h, w, c, pad),
        Place::Dilate => dst.reset(h, w, c, pad),
    }
}

/// Copies `src`'s interior into `dst`'s as `place` says.
fn place_copy(src: &Planes, dst: &mut Planes, place: Place) {
    place_rows(dst, place, src.w, &|r, out: &mut [f32]| {
        out.copy_from_slice(src.interior_row(r));
    });
}

/// Fills `dst`'s interior rows in parallel from source rows of `src_w` pixels that `row`
/// computes into its buffer.
fn place_rows(
    dst: &mut Planes,
    place: Place,
    src_w: usize,
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let (pad, c, h) = (dst.pad, dst.c, dst.h);
    let (rl, hp) = (dst.row_len(), dst.hp());
    let body = &mut dst.data[..hp * rl];
    body.par_chunks_mut(rl)
        .enumerate()
        .skip(pad)
        .take(h)
        .for_each_init(
            // A source row to spread out; rayon calls this per split, so `Same`, which
            // needs none, allocates nothing.
            Vec::new,
            |buf: &mut Vec<f32>, (pr, drow)| {
                let r = pr - pad;
                let interior = &mut drow[pad * c..];
                if place != Place::Same {
                    buf.resize(src_w * c, 0.0);
                }
                match place {
                    Place::Same => row(r, &mut interior[..src_w * c]),
                    Place::Upsample => {
                        row(r / 2, buf);
                        for (x, px) in buf.chunks_exact(c).enumerate() {
                            interior[2 * x * c..][..c].copy_from_slice(px);
                            interior[(2 * x + 1) * c..][..c].copy_from_slice(px);
                        }
                    }
                    Place::Dilate => {
                        if r % 2 == 0 {
                            row(r / 2, buf);
                            for (x, px) in buf.chunks_exact(c).enumerate() {
                                interior[2 * x * c..][..c].copy_from_slice(px);
                            }
                        }
                    }
                }
            },
        );
}

/// The residual add: `dst += y * scale + shift` over `dst`'s interior.
fn add_normalized(y: &[f32], s: OutShape, scale: &[f32], shift: &[f32], dst: &mut Planes) {
    assert_eq!((dst.h, dst.w, dst.c), (s.ho, s.wo, s.c));
    let (pad, c) = (dst.pad, dst.c);
    let (rl, hp) = (dst.row_len(), dst.hp());
    let body = &mut dst.data[..hp * rl];
    body.par_chunks_mut(rl)
        .enumerate()
        .skip(pad)
        .take(s.ho)
        .for_each(|(pr, drow)| {
            let r = pr - pad;
            let src = &y[r * s.wv * c..][..s.wo * c];
            let out = &mut drow[pad * c..][..s.wo * c];
            for (o, px) in out.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                for (((o, &v), &a), &b) in o.iter_mut().zip(px).zip(scale).zip(shift) {
                    *o += v * a + b;
                }
            }
        });
}
