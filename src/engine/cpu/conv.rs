//! One convolution: dispatched to the Winograd path (f32 or bf16 products, the transform
//! made per call or kept), to bf16 AMX tile products, or to direct matrix products, with
//! its statistics when measured.

use super::amx_conv;
use super::bf16;
use super::buffer::Buf;
use super::direct::conv_direct;
use super::packing::{Packed, WINOGRAD};
use super::planes::Planes;
use super::stats::{fold_phases, measured_stat};
use super::winograd;
use crate::engine::NormStat;
use crate::error::Result;

/// Geometry of a convolution's output rows: `ho` rows of `wv` "virtual" pixels, of which the
/// first `wo` are real and the rest junk (what the kernel saw past the row's end).
#[derive(Debug, Clone, Copy)]
pub(super) struct OutShape {
    pub(super) ho: usize,
    pub(super) wo: usize,
    pub(super) wv: usize,
    pub(super) c: usize,
}

/// A forward pass's convolution buffers.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// The convolution's output.
    pub(super) y: Buf,
    /// A Winograd kernel transformed for this call only (see [`Wino`]).
    pub(super) u: winograd::Transformed,
    /// Scratch for [`Wino::transform`].
    pub(super) f32s: Vec<f32>,
    /// `u` in bf16, for this call only.
    pub(super) ub: bf16::PackedU,
    /// The bf16 kernel of this call: AMX runs the 3x3 layers whose channels fill tiles
    /// directly ([`amx_conv`]) and any other Winograd layer in f32; AVX-512 runs every
    /// Winograd layer's products in bf16; f32 `gemm` when `None`.
    pub(super) bf16: Option<bf16::Kernel>,
    /// The input in bf16, for [`amx_conv`].
    pub(super) xb: amx_conv::Input,
    /// Whether this call makes and keeps each layer's transform.
    pub(super) keep: bool,
}

/// Convolves the padded `src` with `layer` into `y` (rows of [`OutShape`], bias not added).
/// With `measure`, also returns the per-channel mean (bias included) and biased variance of
/// the real output pixels, summed in f64 per band so large images lose no precision.
pub(super) fn conv(
    src: &Planes,
    layer: &Packed,
    work: &mut Work,
    measure: bool,
) -> Result<(OutShape, Option<NormStat>)> {
    let y = &mut work.y;
    let (shape, sums) = match (&layer.wino, work.bf16) {
        (Some(wino), Some(bf16::Kernel::Amx))
            if amx_conv::fits(wino, layer.cin, layer.conv_cout()) =>
        {
            let b = amx_conv::packed(wino, layer.cin, layer.conv_cout())?;
            amx_conv::conv(src, b, &mut work.xb, y, measure)
        }
        (Some(wino), Some(kernel)) if kernel != bf16::Kernel::Amx => {
            let points = (WINOGRAD.m + 2) * (WINOGRAD.m + 2);
            let (cin, cout) = (layer.cin, layer.conv_cout());
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
        (Some(wino), _) => {
            let t = match wino.kept.get() {
                Some(t) => t,
                None if work.keep => {
                    let mut t = winograd::Transformed::default();
                    wino.transform(layer.cin, layer.conv_cout(), &mut t, &mut Vec::new())?;
                    // A concurrent call may have kept its own first: either serves.
                    wino.kept.get_or_init(|| t)
                }
                None => {
                    wino.transform(layer.cin, layer.conv_cout(), &mut work.u, &mut work.f32s)?;
                    &work.u
                }
            };
            winograd::conv(src, winograd::Products::F32(t), y, measure)
        }
        (None, _) => conv_direct(src, layer, y, measure),
    };
    let sums = sums.map(|s| fold_phases(s, layer.phases));
    Ok((shape, sums.map(|s| measured_stat(s, &layer.bias))))
}
