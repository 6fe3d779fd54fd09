//! The layer plan: the generator's layers by name, the buffers a forward pass reuses, and
//! the sequence head, down, residual blocks, up, tail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::amx_conv;
use super::bf16;
use super::bf16_kernel_for;
use super::conv::{conv, Work};
use super::packing::{Packed, Upsampling, WINOGRAD};
use super::place::{add_normalized, normalize_into, Place};
use super::planes::Planes;
use super::stats::affine;
use crate::engine::{check_input, LayerProgress, Precision, Stats, StatsCursor};
use crate::error::{Error, Result};
use crate::nn::{Generator, GeneratorConfig, Layout};

/// The generator's weights packed for the CPU; immutable, so one value serves many threads.
#[derive(Debug)]
pub struct CpuGenerator {
    pub config: GeneratorConfig,
    layers: Layers,
    /// The last call's working buffers, reused by the next one: fresh pages cost as much
    /// as a layer's arithmetic on a virtual machine, and a tiled stylize runs the network
    /// hundreds of times. Holds about 590 bytes per pixel of the largest image or tile
    /// seen ([`CpuGenerator::memory_for`]) until the model is dropped; concurrent calls
    /// beyond the first
    /// use buffers of their own.
    cache: Mutex<Option<Activations>>,
    /// Forward calls so far: the second one starts keeping Winograd transforms.
    calls: AtomicUsize,
}

/// The ResNet generator, layer by layer. The up layers are packed as phase layers
/// ([`Packed::phases`]), the seed's after a nearest upsampling, the official layout's as
/// transposed convolutions.
#[derive(Debug)]
struct Layers {
    /// Reflection pad 3, 7x7 convolution from RGB to `ngf` channels.
    head: Packed,
    /// Two stride-2 3x3 convolutions, doubling the channels each.
    down: [Packed; 2],
    /// The residual blocks at a quarter of the resolution.
    blocks: Vec<Block>,
    /// Two 3x3 convolutions on the doubled grid, halving the channels each, run as phase
    /// layers on the grid before doubling.
    up: [Packed; 2],
    /// Reflection pad 3, 7x7 convolution to RGB, then tanh.
    tail: Packed,
}

/// A residual block: `x + norm(conv(relu(norm(conv(x)))))`, reflection-padded.
#[derive(Debug)]
struct Block {
    first: Packed,
    second: Packed,
}

impl Layers {
    /// The layers from [`Generator::convs`]' order: head, 2 down, 2 per block, 2 up, tail.
    fn from_order(packed: Vec<Packed>, blocks: usize) -> Result<Self> {
        if packed.len() != 6 + 2 * blocks {
            return Err(Error::Compute(format!(
                "a generator with {blocks} residual blocks has {} convolutions, not {}",
                6 + 2 * blocks,
                packed.len()
            )));
        }
        let mut it = packed.into_iter();
        let mut next = || it.next().expect("length checked above");
        let head = next();
        let down = [next(), next()];
        let blocks = (0..blocks)
            .map(|_| Block {
                first: next(),
                second: next(),
            })
            .collect();
        let up = [next(), next()];
        let tail = next();
        Ok(Self {
            head,
            down,
            blocks,
            up,
            tail,
        })
    }

    fn iter(&self) -> impl Iterator<Item = &Packed> {
        std::iter::once(&self.head)
            .chain(&self.down)
            .chain(self.blocks.iter().flat_map(|b| [&b.first, &b.second]))
            .chain(&self.up)
            .chain(std::iter::once(&self.tail))
    }

    fn count(&self) -> usize {
        6 + 2 * self.blocks.len()
    }
}

/// The buffers of one forward pass.
#[derive(Debug, Default)]
struct Activations {
    p: Planes,
    q: Planes,
    work: Work,
}

/// Scratch every forward pass may add beyond its activations: the per-thread Winograd
/// buffers and one layer's transformed kernel (measured at under 20 MB; rounded up).
const SCRATCH_BYTES: u64 = 48 << 20;

/// Floats of the two activation buffers for a `w` x `h` image: `p` at its largest use
/// (the head's output, or the tail's padded input) and `q` (a residual block's middle
/// activation, at a sixteenth of the pixels).
pub fn activation_lens(w: usize, h: usize, ngf: usize) -> (usize, usize) {
    let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);
    let p = [
        Planes::len_for(h, w, 3, 3),
        Planes::len_for(h, w, ngf, 1),
        Planes::len_for(h2, w2, 2 * ngf, 1),
        Planes::len_for(h4, w4, 4 * ngf, 1),
        Planes::len_for(h, w, ngf, 3),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    (p, Planes::len_for(h4, w4, 4 * ngf, 1))
}

impl CpuGenerator {
    pub fn new(generator: &Generator) -> Result<Self> {
        let config = generator.config();
        let up = match config.layout {
            Layout::Seed => Upsampling::Nearest,
            Layout::Official => Upsampling::Dilated,
        };
        // Layers pack independently: in parallel, since loading is part of start-up.
        let convs = generator.convs();
        let ups = convs.len().saturating_sub(3)..convs.len().saturating_sub(1);
        let packed = convs
            .into_par_iter()
            .enumerate()
            .map(|(i, conv)| {
                if ups.contains(&i) {
                    Packed::phases(conv, up)
                } else {
                    Packed::new(conv)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            layers: Layers::from_order(packed, config.blocks)?,
            cache: Mutex::default(),
            calls: AtomicUsize::new(0),
        })
    }

    /// Bytes a forward pass of a `width` x `height` image allocates: the activation
    /// buffers, the widest convolution output `y` (rows of `wv = w + 2 * pad` pixels), the
    /// output and the scratch.
    pub fn memory_for(&self, width: usize, height: usize) -> u64 {
        let (w, h, ngf) = (width, height, self.config.ngf);
        let (p, q) = activation_lens(w, h, ngf);
        // Head; first down layer; the up layers' four phases.
        let y = [
            (h, w + 6, ngf),
            (h / 2, w / 2 + 2, 2 * ngf),
            (h / 4, w / 4 + 2, 4 * 2 * ngf),
            (h / 2, w / 2 + 2, 4 * ngf),
        ]
        .iter()
        .map(|&(r, c, ch)| r * c * ch)
        .max()
        .unwrap_or(0);
        let out = 3 * w * h;
        // The bf16 copy of a 3x3 layer's input, where auto or bf16 runs them on AMX: the
        // second up layer's is the largest.
        let xb = match bf16::kernel() {
            Some(bf16::Kernel::Amx) => amx_conv::Input::bytes(h / 2, w / 2, 2 * ngf),
            _ => 0,
        };
        (4 * (p + q + y + out) + xb) as u64 + SCRATCH_BYTES
    }

    /// Bytes of weights this generator holds once every Winograd transform is kept (a
    /// model that serves more than one call keeps them).
    pub fn resident_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                let stored = l.w.len() + l.bias.len();
                let a = WINOGRAD.m + 2;
                let wino = l.wino.as_ref().map_or(0, |_| a * a * l.cin * l.conv_cout());
                // What auto keeps: on AMX the 3x3 kernels as bf16 tiles (2 bytes a weight);
                // f32 Winograd transforms elsewhere (and for layers whose channels do not
                // fill tiles). A model used at more than one precision keeps both.
                let wino = match (&l.wino, bf16::kernel()) {
                    (Some(w), Some(bf16::Kernel::Amx))
                        if amx_conv::fits(w, l.cin, l.conv_cout()) =>
                    {
                        amx_conv::PackedB::bytes(l.cin, l.conv_cout())
                    }
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
            total: self.layers.count(),
            progress,
        };
        let ngf = self.config.ngf;
        let layers = &self.layers;
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
        // once for its largest use and kept across
        // calls, it takes no page faults after the first call; `q` holds the residual
        // blocks' middle activation, at a sixteenth of the pixels.
        let (p_len, q_len) = activation_lens(w, h, ngf);
        p.reserve(p_len);
        q.reserve(q_len);

        // Head: reflection pad 3, 7x7 conv, norm, ReLU; its output feeds a zero-padded
        // stride-2 convolution.
        p.reset_border(h, w, 3, 3);
        p.fill_from_planar(x);
        p.reflect_border();
        let s = self.norm_in_place(p, &layers.head, work, norms, Place::Same, 1)?;
        debug_assert_eq!(s, (h, w));
        steps.step()?;
        for layer in &layers.down {
            self.norm_in_place(p, layer, work, norms, Place::Same, 1)?;
            steps.step()?;
        }
        p.reflect_border();
        debug_assert_eq!((p.h, p.w, p.c), (h / 4, w / 4, 4 * ngf));

        // Residual blocks: the running sum lives in `p` (with its reflected border, ready
        // for the next block's first convolution); `q` holds the block's middle activation.
        for Block { first, second } in &layers.blocks {
            let out = conv(p, first, work, norms.measures())?;
            normalize_into(first, out, &work.y, norms, q, Place::Same, 1)?;
            q.reflect_border();
            steps.step()?;
            let s = conv(q, second, work, norms.measures())?;
            let (scale, shift) = affine(second, s.1, norms)?;
            add_normalized(&work.y, s.0, &scale, &shift, p);
            p.reflect_border();
            steps.step()?;
        }

        // Upsampling: each up layer convolves its input before doubling (zero-padded, so
        // the residual sum's reflected border is zeroed) into its four output phases, which
        // the norm interleaves onto the doubled grid. At the peak `p` and `y` each hold 256
        // bytes per output pixel.
        p.zero_border();
        self.norm_in_place(p, &layers.up[0], work, norms, Place::Phases, 1)?;
        steps.step()?;
        self.norm_in_place(p, &layers.up[1], work, norms, Place::Phases, 3)?;
        steps.step()?;
        p.reflect_border();
        debug_assert_eq!((p.h, p.w, p.c), (h, w, ngf));

        // Tail: 7x7 conv to RGB, bias, tanh.
        let tail = &layers.tail;
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
    ) -> Result<(usize, usize)> {
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
