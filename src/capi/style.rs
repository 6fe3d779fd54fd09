//! The shipped styles, listed by index so a host can build its menu without parsing
//! anything: `for (i = 0; i < cg_style_count(); i++) add(cg_style_name(i), cg_style_label(i))`.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use crate::styles::{shipped_styles, style_label};

use super::ffi;

/// (name, label) of each shipped style as C strings, built once and kept for the life of the
/// library so the pointers handed out never dangle.
fn styles() -> &'static [(CString, CString)] {
    static STYLES: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    STYLES.get_or_init(|| {
        shipped_styles()
            .map(|n| {
                let c = |s: &str| CString::new(s).expect("style strings have no NUL");
                (c(n), c(style_label(n).unwrap_or(n)))
            })
            .collect()
    })
}

/// The number of styles built into the library; valid indices for `cg_style_name` and
/// `cg_style_label` are 0 to count - 1. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_style_count() -> usize {
    ffi(0, || styles().len())
}

/// The name of shipped style `index` ("monet"), to pass to `cg_model_load`; NULL if `index`
/// is out of range. The string is static: valid for the life of the library, never freed by
/// the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_style_name(index: usize) -> *const c_char {
    ffi(std::ptr::null(), || {
        styles()
            .get(index)
            .map_or(std::ptr::null(), |(n, _)| n.as_ptr())
    })
}

/// The menu label of shipped style `index` ("Monet style", English); NULL if `index` is out
/// of range. The string is static, as for `cg_style_name`. Thread-safe.
#[no_mangle]
pub extern "C" fn cg_style_label(index: usize) -> *const c_char {
    ffi(std::ptr::null(), || {
        styles()
            .get(index)
            .map_or(std::ptr::null(), |(_, l)| l.as_ptr())
    })
}
