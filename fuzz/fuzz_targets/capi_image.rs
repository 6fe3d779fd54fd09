//! The C ABI's argument checks: random `cg_image` descriptions (size, stride, format, NULL
//! data, in place, size mismatch) and random option values (NaN included) passed to
//! `cg_model_stylize` with a tiny model, so that the valid cases also run to the end.
//!
//! `cg_image` carries no buffer length: its contract makes the caller provide
//! `(height - 1) * stride + width * bytes_per_pixel` readable bytes. So a description the
//! contract calls valid gets a buffer of exactly that size, and a malformed one (zero size,
//! stride below a row, unknown format, a span that overflows) gets a 16-byte buffer: the
//! library must refuse it before reading, and AddressSanitizer reports any access past the
//! end of either buffer.
//!
//! Input layout (little-endian; missing bytes read as zero):
//! - `flags: u8`: 0x01 src data NULL, 0x02 dst data NULL, 0x04 in place (dst uses src's
//!   buffer), 0x08 pass options, 0x10 pass a progress callback, 0x20 src pointer NULL,
//!   0x40 raw fields (otherwise sizes are reduced to 0..=64, formats to 0..=5 and the
//!   stride to a row's length plus -32..=31), 0x80 dst pointer NULL;
//! - src then dst: `width: u32, height: u32, format: u32, stride: i64`;
//! - options, 22 bytes: `setters: u8` (bit 0 strength, 1 scale, 2 detail, 3 tile size,
//!   4 threads), `strength: f32, scale: f32, detail: f32, tile: u32, threads: u32`,
//!   `cancel_at: u8` (the progress callback returns false on that call; 0 never);
//! - the rest: pixel bytes, repeated to fill the buffers.

#![no_main]

use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use cyclegan::capi::image::cg_image;
use cyclegan::capi::model::{cg_model, cg_model_load};
use cyclegan::capi::options::{
    cg_options, cg_options_free, cg_options_new, cg_options_set_backend, cg_options_set_detail,
    cg_options_set_scale, cg_options_set_strength, cg_options_set_threads,
    cg_options_set_tile_size, CG_BACKEND_CPU,
};
use cyclegan::capi::status::{cg_status, CG_ERR_CANCELLED, CG_ERR_INVALID_ARGUMENT, CG_OK};
use cyclegan::capi::stylize::cg_model_stylize;
use libfuzzer_sys::fuzz_target;

/// Valid images are stylized; keeping them small keeps an iteration fast.
const MAX_SIDE: u32 = 64;
const MAX_SPAN: usize = 1 << 20;
/// The buffer a malformed description gets.
const SHORT: usize = 16;

struct ModelHandle(*mut cg_model);
// SAFETY: a `cg_model` is immutable after loading and documented as shareable between
// threads (the library checks `Model: Send + Sync` at compile time); this handle is never
// freed, so the pointer stays valid for the whole process.
unsafe impl Send for ModelHandle {}
// SAFETY: as above.
unsafe impl Sync for ModelHandle {}

/// The tiny committed seed model (1 filter, 1 residual block), loaded once.
fn model() -> *const cg_model {
    static MODEL: OnceLock<ModelHandle> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = CString::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/seeds/weights/seed_ngf1_b1.safetensors"
            ))
            .unwrap();
            let mut opts = null_mut();
            assert_eq!(cg_options_new(&mut opts), CG_OK);
            assert_eq!(cg_options_set_backend(opts, CG_BACKEND_CPU), CG_OK);
            let mut m = null_mut();
            assert_eq!(cg_model_load(path.as_ptr(), opts, &mut m), CG_OK);
            cg_options_free(opts);
            ModelHandle(m)
        })
        .0
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
}

#[derive(Clone, Copy)]
struct Spec {
    width: u32,
    height: u32,
    format: u32,
    stride: usize,
}

fn bytes_per_pixel(format: u32) -> Option<usize> {
    [3, 4, 6, 8, 16].get(format as usize).copied()
}

fn read_spec(input: &mut Input, raw: bool) -> Spec {
    let (width, height, format, stride) = (input.u32(), input.u32(), input.u32(), input.i64());
    if raw {
        return Spec {
            width,
            height,
            format,
            stride: stride as usize,
        };
    }
    let (width, height, format) = (width % (MAX_SIDE + 1), height % (MAX_SIDE + 1), format % 6);
    let row = width as i64 * bytes_per_pixel(format).unwrap_or(4) as i64;
    Spec {
        width,
        height,
        format,
        stride: (row + stride % 32).max(0) as usize,
    }
}

/// The bytes the contract requires, or `None` when the description is malformed.
fn span(s: &Spec) -> Option<usize> {
    let bpp = bytes_per_pixel(s.format)?;
    if s.width == 0 || s.height == 0 {
        return None;
    }
    let row = (s.width as usize).checked_mul(bpp)?;
    if s.stride < row {
        return None;
    }
    ((s.height - 1) as usize)
        .checked_mul(s.stride)?
        .checked_add(row)
        .filter(|&n| n <= isize::MAX as usize)
}

/// Whether byte `i` of a buffer described by `s` is a pixel byte (not row padding).
fn is_pixel_byte(s: &Spec, i: usize) -> bool {
    let row = s.width as usize * bytes_per_pixel(s.format).unwrap();
    i / s.stride < s.height as usize && i % s.stride < row
}

struct Progress {
    cancel_at: u32,
    calls: u32,
    refused: bool,
    last: f32,
    out_of_order: bool,
}

unsafe extern "C" fn on_progress(user_data: *mut c_void, fraction: f32) -> bool {
    // SAFETY: `user_data` is the `Progress` the fuzz target passed with this callback; it
    // outlives the `cg_model_stylize` call and nothing else touches it meanwhile.
    let p = unsafe { &mut *user_data.cast::<Progress>() };
    p.calls += 1;
    if !(fraction >= p.last && fraction <= 1.0) {
        p.out_of_order = true;
    }
    p.last = fraction;
    if p.calls == p.cancel_at {
        p.refused = true;
        return false;
    }
    true
}

fn ok_or_invalid(status: cg_status, what: &str) {
    assert!(
        status == CG_OK || status == CG_ERR_INVALID_ARGUMENT,
        "{what} returned {status}"
    );
}

/// Creates options and applies the setters the input selects. Refused values must leave
/// the options usable.
fn options(o: [u8; 22]) -> *mut cg_options {
    let mut input = Input(&o);
    let setters = input.u8();
    let (strength, scale, detail) = (input.f32(), input.f32(), input.f32());
    let (tile, threads) = (input.u32(), input.u32());
    let mut opts = null_mut();
    assert_eq!(cg_options_new(&mut opts), CG_OK);
    let float_setters: [(
        u8,
        extern "C" fn(*mut cg_options, f32) -> cg_status,
        f32,
        &str,
    ); 3] = [
        (1, cg_options_set_strength, strength, "strength"),
        (2, cg_options_set_scale, scale, "scale"),
        (4, cg_options_set_detail, detail, "detail"),
    ];
    for (bit, set, value, what) in float_setters {
        if setters & bit != 0 {
            let st = set(opts, value);
            ok_or_invalid(st, what);
            assert!(
                !value.is_nan() || st == CG_ERR_INVALID_ARGUMENT,
                "NaN {what} accepted"
            );
        }
    }
    if setters & 8 != 0 {
        ok_or_invalid(cg_options_set_tile_size(opts, tile), "set_tile_size");
    }
    if setters & 16 != 0 {
        ok_or_invalid(cg_options_set_threads(opts, threads), "set_threads");
        // Starting up to 1024 threads on every iteration would only slow the fuzzer down.
        assert_eq!(cg_options_set_threads(opts, threads % 3), CG_OK);
    }
    opts
}

fn fill(n: usize, pixels: &[u8], salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            pixels
                .get(i % pixels.len().max(1))
                .copied()
                .unwrap_or(i as u8)
                ^ salt
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let raw = flags & 0x40 != 0;
    let (s, d) = (read_spec(&mut input, raw), read_spec(&mut input, raw));
    let opt_bytes = input.take::<22>();
    let pixels = input.0;
    let (s_span, d_span) = (span(&s), span(&d));
    for (spec, n) in [(&s, s_span), (&d, d_span)] {
        if n.is_some_and(|n| spec.width > MAX_SIDE || spec.height > MAX_SIDE || n > MAX_SPAN) {
            return;
        }
    }
    let in_place = flags & 0x04 != 0;
    let s_len = s_span.unwrap_or(SHORT);
    let d_len = d_span.unwrap_or(SHORT);
    let mut src_buf = fill(if in_place { s_len.max(d_len) } else { s_len }, pixels, 0);
    let mut dst_buf = if in_place {
        Vec::new()
    } else {
        fill(d_len, pixels, 0x5a)
    };
    let src_before = src_buf.clone();
    let dst_before = dst_buf.clone();

    let src_data = if flags & 0x01 != 0 {
        null_mut()
    } else {
        src_buf.as_mut_ptr()
    };
    let dst_data = if flags & 0x02 != 0 {
        null_mut()
    } else if in_place {
        src_buf.as_mut_ptr()
    } else {
        dst_buf.as_mut_ptr()
    };
    let image = |spec: &Spec, data| cg_image {
        data,
        width: spec.width,
        height: spec.height,
        stride: spec.stride,
        format: spec.format,
    };
    let src_img = image(&s, src_data);
    let mut dst_img = image(&d, dst_data);
    let src_ptr: *const cg_image = if flags & 0x20 != 0 { null() } else { &src_img };
    let dst_ptr: *mut cg_image = if flags & 0x80 != 0 {
        null_mut()
    } else {
        &mut dst_img
    };

    let opts = if flags & 0x08 != 0 {
        options(opt_bytes)
    } else {
        null_mut()
    };
    let mut progress = Progress {
        cancel_at: u32::from(opt_bytes[21]),
        calls: 0,
        refused: false,
        last: 0.0,
        out_of_order: false,
    };
    let callback = if flags & 0x10 != 0 {
        Some(on_progress as _)
    } else {
        None
    };
    let status = cg_model_stylize(
        model(),
        src_ptr,
        dst_ptr,
        opts,
        callback,
        (&mut progress as *mut Progress).cast(),
    );
    cg_options_free(opts);

    let valid = flags & 0xA3 == 0
        && s_span.is_some()
        && d_span.is_some()
        && (s.width, s.height) == (d.width, d.height);
    if !valid {
        assert_eq!(
            status, CG_ERR_INVALID_ARGUMENT,
            "a malformed call was not refused"
        );
    } else if progress.refused {
        assert_eq!(
            status, CG_ERR_CANCELLED,
            "the callback cancelled but the call went on"
        );
    } else {
        assert_eq!(status, CG_OK, "a valid call failed");
        assert!(!progress.out_of_order, "progress went backwards or past 1");
        assert!(
            callback.is_none() || progress.last == 1.0,
            "progress ended at {}",
            progress.last
        );
    }
    let (after, before) = if in_place {
        (&src_buf, &src_before)
    } else {
        assert_eq!(src_buf, src_before, "the source was written");
        (&dst_buf, &dst_before)
    };
    if status == CG_OK {
        for (i, (a, b)) in after.iter().zip(before).enumerate() {
            assert!(
                a == b || is_pixel_byte(&d, i),
                "byte {i} outside dst's pixels changed"
            );
        }
    } else {
        assert_eq!(after, before, "a failed call changed the destination");
    }
});
