//! The memory plan: whether a working image runs in one piece or in tiles, how large the
//! tiles are, and at what size the instance-norm statistics are measured, all from one
//! budget and the engine's own estimate of what a forward pass needs.

use crate::engine::Engine;
use crate::error::{Error, Result};

#[cfg(test)]
use super::tiles::Axis;
use super::tiles::{MARGIN, MIN_TILE};

/// The default budget's ceiling: 2 GiB (issue #14; DESIGN.md "Memory").
pub const DEFAULT_MAX_MEMORY: u64 = 2 << 30;

/// The smallest budget a caller may set: below it even the smallest tile plus the loaded
/// model does not fit, and every call would fail.
pub const MIN_MEMORY: u64 = 128 << 20;

/// The largest statistics pass when tiling (when the whole image does not fit): a copy
/// scaled to about a megapixel costs a twentieth of a 24-megapixel image's tiles, which
/// keeps tiling within 1.25x the whole-image time per pixel (issue #14).
pub const STATS_MAX_PIXELS: f64 = 1024.0 * 1024.0;

/// What a process needs besides the pipeline's own buffers and the engine: its code, the
/// allocator's slack, the codecs' buffers around the call. Counted against every budget so
/// that a process's peak, not only the call's, stays within it.
pub const RUNTIME_RESERVE: u64 = 64 << 20;

/// What memory the budget has to cover besides the engine's forward passes, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fixed {
    /// Held for the whole call: the input, the output being assembled, working copies.
    pub held: u64,
}

impl Fixed {
    /// A stylize call's: the input, the working copy when the working size is not native,
    /// and the output being assembled at the working size.
    pub fn for_call(input_bytes: u64, work_bytes: u64, native: bool) -> Self {
        Self {
            held: input_bytes + work_bytes * if native { 1 } else { 2 },
        }
    }
}

/// How one working image is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plan {
    /// One forward pass over the whole (padded) image, measuring its own statistics.
    Whole,
    /// Overlapping tiles of at most `tile = (width, height)` working pixels, normalized
    /// with statistics recorded on the image scaled by `stats_scale` (1 = the whole image).
    Tiled {
        tile: (usize, usize),
        stats_scale: f64,
    },
}

/// The budget when the caller sets none: the smaller of [`DEFAULT_MAX_MEMORY`] and half of
/// the memory the system has available now.
pub fn default_budget() -> u64 {
    match available_memory() {
        Some(avail) => DEFAULT_MAX_MEMORY.min(avail / 2).max(MIN_MEMORY),
        None => DEFAULT_MAX_MEMORY,
    }
}

/// `MemAvailable` from /proc/meminfo: what can be allocated without swapping.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of the pipeline's own per-piece buffers for a piece of `px` working pixels: its
/// planar input (the engine's output is in [`Engine::memory_for`]).
fn piece_bytes(px: u64) -> u64 {
    12 * px
}

/// Chooses how to run a `pw` x `ph` (padded) working image on `engine` within `budget`
/// bytes, of which `fixed` are taken. `tile` forces tiles of that side (the `--tile`
/// override); otherwise the image runs whole when it fits, else in the largest tiles that
/// fit.
pub(crate) fn plan(
    engine: &dyn Engine,
    pw: usize,
    ph: usize,
    budget: u64,
    fixed: Fixed,
    tile: Option<usize>,
) -> Result<Plan> {
    let device_free = engine.device_memory_free();
    let host_left = budget
        .saturating_sub(RUNTIME_RESERVE)
        .saturating_sub(fixed.held)
        .saturating_sub(engine.resident_memory());
    // On a device with memory of its own the forward passes live there.
    let avail = device_free.unwrap_or(host_left);
    let need = |w: usize, h: usize| -> u64 {
        engine.memory_for(w, h) + piece_bytes((w * h) as u64) * u64::from(device_free.is_none())
    };
    let fits = |w: usize, h: usize| need(w, h) <= avail;
    let stats_scale = |avail_px: f64| -> f64 {
        if fits(pw, ph) {
            return 1.0;
        }
        // The largest copy of the image that fits, up to STATS_MAX_PIXELS: memory grows
        // with the pixel count.
        let mut f = (avail_px.min(STATS_MAX_PIXELS) / (pw * ph) as f64)
            .sqrt()
            .min(1.0);
        while f > 0.01 && !fits(scaled(pw, f), scaled(ph, f)) {
            f *= 0.95;
        }
        f
    };
    if let Some(t) = tile {
        // Tiles narrower than their two margins plus 32 pixels are widened to that.
        let t = t.max(2 * MARGIN + 32);
        if pw <= t && ph <= t {
            return Ok(Plan::Whole);
        }
        let per_px = need(512, 512) as f64 / (512.0 * 512.0);
        return Ok(Plan::Tiled {
            tile: (t, t),
            stats_scale: stats_scale(avail as f64 / per_px),
        });
    }
    if fits(pw, ph) {
        return Ok(Plan::Whole);
    }
    if !fits(MIN_TILE, MIN_TILE) {
        return Err(Error::OutOfMemory(format!(
            "the memory limit of {} is too small: a {pw}x{ph} working image needs at least {} \
             (the model, the image and one {MIN_TILE}-px tile); raise the memory limit \
             (--max-memory, cg_options_set_memory_limit)",
            human(budget),
            human(budget.saturating_sub(avail) + need(MIN_TILE, MIN_TILE)),
        )));
    }
    // The tiling that runs the fewest pixels in all (overlaps included) with tiles that
    // fit, fewer tiles on a tie: square tiles for an image far larger than the budget,
    // strips when one axis fits whole (a 2048-px square in 2 GiB: two 2048x1088 strips,
    // 1.06x the pixels, where four 1088-px squares are 1.13x).
    let most = |n: usize| n.div_ceil(MIN_TILE - 2 * MARGIN).max(1);
    let mut best: Option<(usize, usize, (usize, usize))> = None;
    for kx in 1..=most(pw) {
        let tw = span_len(pw, kx);
        if kx > 1 && tw < MIN_TILE {
            break;
        }
        for ky in 1..=most(ph) {
            let th = span_len(ph, ky);
            if ky > 1 && th < MIN_TILE {
                break;
            }
            if !fits(tw, th) {
                continue;
            }
            let key = (kx * tw * ky * th, kx * ky, (tw, th));
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
            // More rows of tiles only add overlap.
            break;
        }
    }
    let (tw, th) = best.map_or((MIN_TILE, MIN_TILE), |b| b.2);
    let per_px = need(tw, th) as f64 / (tw * th) as f64;
    Ok(Plan::Tiled {
        tile: (tw, th),
        stats_scale: stats_scale(avail as f64 / per_px),
    })
}

/// The length of each of `k` evenly laid out tiles covering `n` pixels, overlapping by
/// `2 * MARGIN`, on the 4-pixel grid: what [`super::tiles::Axis::new`] makes of it.
fn span_len(n: usize, k: usize) -> usize {
    if k <= 1 {
        return n;
    }
    (n + (k - 1) * 2 * MARGIN)
        .div_ceil(k)
        .next_multiple_of(4)
        .min(n)
}

/// `n` scaled by `f`, at least 4.
pub(crate) fn scaled(n: usize, f: f64) -> usize {
    ((n as f64 * f) as usize).max(4)
}

/// Bytes as people read them ("1.5 GiB").
pub(crate) fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// Parses a memory size as people write it: `1500M`, `2G`, `2GiB`, `512MB`, or bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "memory size {s:?}: unknown unit {unit:?} (use e.g. 1500M or 2G)"
            )))
        }
    };
    let v: f64 = num.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "memory size {s:?} is not a number (use e.g. 1500M or 2G)"
        ))
    })?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes < MIN_MEMORY as f64 || bytes > u64::MAX as f64 / 2.0 {
        return Err(Error::InvalidArgument(format!(
            "memory size {s:?} is outside {} .. 8 EiB",
            human(MIN_MEMORY)
        )));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LayerProgress, Precision, Stats};
    use crate::nn::GeneratorConfig;

    /// An engine that only plans: 600 bytes per working pixel, as the CPU engine.
    #[derive(Debug)]
    struct Planner;

    impl Engine for Planner {
        fn describe(&self) -> String {
            "planner".into()
        }
        fn config(&self) -> GeneratorConfig {
            GeneratorConfig::SEED
        }
        fn memory_for(&self, width: usize, height: usize) -> u64 {
            600 * (width * height) as u64
        }
        fn resident_memory(&self) -> u64 {
            0
        }
        fn forward(
            &self,
            _: &[f32],
            _: usize,
            _: usize,
            _: Stats,
            _: Precision,
            _: LayerProgress,
        ) -> Result<Vec<f32>> {
            unreachable!("plans only")
        }
    }

    #[test]
    fn strips_when_one_axis_fits() {
        // 2048 x 2048 with room for about 2.6 MP a tile: two full-width strips (1.06x the
        // pixels), not four squares (1.13x).
        let budget = RUNTIME_RESERVE + 612 * 2_600_000;
        let square = plan(&Planner, 2048, 2048, budget, Fixed::default(), None).unwrap();
        let Plan::Tiled { tile, .. } = square else {
            panic!("{square:?}")
        };
        assert_eq!(tile, (2048, 1088), "{square:?}");
        // A 6000 x 4000 image in the same budget: tiles on both axes, each within it.
        let plan = plan(&Planner, 6000, 4000, budget, Fixed::default(), None).unwrap();
        let Plan::Tiled { tile: (tw, th), .. } = plan else {
            panic!("{plan:?}")
        };
        assert!(
            tw < 6000 && th < 4000 && 612 * tw * th <= 612 * 2_600_000,
            "{plan:?}"
        );
        let (xs, ys) = (Axis::new(6000, tw), Axis::new(4000, th));
        assert!(xs.spans.iter().all(|s| s.1 <= tw) && ys.spans.iter().all(|s| s.1 <= th));
    }

    #[test]
    fn sizes_parse_as_written() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1500M").unwrap(), 1500 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("12").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2T").is_err());
    }
}
