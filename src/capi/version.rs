//! Library and ABI versions, so a host can check at run time that the library it loaded
//! matches the header it was compiled against.

use super::ffi;

/// The ABI version this header describes. Raised on any change that breaks binary
/// compatibility (a removed function, a changed signature or struct layout); adding
/// functions or options does not raise it. Compare with `cg_abi_version()` at start-up.
pub const CG_ABI_VERSION: u32 = 1;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

const VERSION: u32 = (parse_u32(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
    | (parse_u32(env!("CARGO_PKG_VERSION_MINOR")) << 8)
    | parse_u32(env!("CARGO_PKG_VERSION_PATCH"));

/// The library's version as `major << 16 | minor << 8 | patch` (0.1.0 is 0x000100).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn cg_version() -> u32 {
    ffi(VERSION, || VERSION)
}

/// The ABI version of the loaded library; equal to `CG_ABI_VERSION` when the library
/// matches the header the caller was compiled with. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_abi_version() -> u32 {
    ffi(CG_ABI_VERSION, || CG_ABI_VERSION)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_matches_cargo() {
        let v = super::cg_version();
        let s = format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff);
        assert_eq!(s, env!("CARGO_PKG_VERSION"));
    }
}
