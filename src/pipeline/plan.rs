//! The memory plan: whether a working image runs in one piece or in tiles, how large the
//! tiles are, and at what size the instance-norm statistics are measured, all from one
//! budget and the engine's own estimate of what a forward pass needs.

use crate::engine::Engine;
use crate::error::{Error, Result};

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
    /// Overlapping tiles of at most `tile` x `tile` working pixels, normalized with
    /// statistics recorded on the image scaled by `stats_scale` (1 = the whole image).
    Tiled { tile: usize, stats_scale: f64 },
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
            tile: t,
            stats_scale: stats_scale(avail as f64 / per_px),
        });
    }
    if fits(pw, ph) {
        return Ok(Plan::Whole);
    }
    // The largest square tile that fits, on the 4-pixel grid the network needs.
    let mut lo = MIN_TILE;
    if !fits(lo, lo) {
        return Err(Error::OutOfMemory(format!(
            "the memory limit of {} is too small: a {pw}x{ph} working image needs at least {} \
             (the model, the image and one {lo}-px tile); raise the memory limit \
             (--max-memory, cg_options_set_memory_limit)",
            human(budget),
            human(budget.saturating_sub(avail) + need(lo, lo)),
        )));
    }
    let mut hi = pw.max(ph).next_multiple_of(4);
    while hi - lo > 4 {
        let mid = (lo + hi) / 2 / 4 * 4;
        if fits(mid, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let per_px = need(lo, lo) as f64 / (lo * lo) as f64;
    Ok(Plan::Tiled {
        tile: lo.max(2 * MARGIN + 32),
        stats_scale: stats_scale(avail as f64 / per_px),
    })
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
