//! The shipped styles: embedded in the library, so every door (CLI, C ABI, plug-ins) finds
//! them without set-up. Names match in any letter case.

use crate::weights::Weights;

/// Shipped styles: name, menu label, weights.
#[cfg(not(cyclegan_no_embedded_styles))]
const SHIPPED: &[(&str, &str, &[u8])] = &[(
    "monet",
    "Monet style",
    include_bytes!("../models/monet.safetensors"),
)];

/// A build with `CYCLEGAN_NO_EMBEDDED_STYLES=1` in the environment embeds none (22 MB
/// less): what `scripts/gpu-check.sh pack` builds to fit the device's carry limit. Not a
/// cargo feature on purpose: the backend library, built as a dependency, would then write a
/// `libcyclegan.so` without styles over the main one in the same target folder.
#[cfg(cyclegan_no_embedded_styles)]
const SHIPPED: &[(&str, &str, &[u8])] = &[];

/// The style used when none is named.
pub const DEFAULT_STYLE: &str = "monet";

/// Names of the shipped styles, for menus.
pub fn shipped_styles() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(n, _, _)| *n)
}

/// Human label of a shipped style ("Monet style").
pub fn style_label(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, l, _)| *l)
}

/// The weights of a shipped style, by name in any case.
pub(crate) fn shipped_bytes(name: &str) -> Option<&'static [u8]> {
    SHIPPED
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, _, b)| *b)
}

/// The parsed weights of a shipped style, for `info`.
pub fn shipped_weights(name: &str) -> Option<crate::Result<Weights>> {
    shipped_bytes(name).map(Weights::from_bytes)
}
