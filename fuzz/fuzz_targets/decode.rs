//! Image decoding through the project's entry point, `io::decode_image`, with limits small
//! enough that a header claiming a large image is refused instead of allocated.

#![no_main]

use cyclegan::io::{decode_image, DecodeLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 4 << 20,
    max_alloc_bytes: 128 << 20,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_image(data, &LIMITS) {
        let (w, h) = (p.width(), p.height());
        assert!(w > 0 && h > 0, "decoded an empty {w}x{h} image");
        assert!(u64::from(w) * u64::from(h) <= LIMITS.max_pixels);
    }
});
