//! Plain loops compiled for the widest vectors this CPU has, chosen at run time.
//!
//! Why: the crate is built for baseline x86-64 so that one binary runs everywhere, and
//! there LLVM vectorises the passes between convolutions (the norm's sums, the
//! normalization, the residual add) with 4-lane SSE. With the residual blocks' products on
//! AMX those passes were a third of a block's time (`perf annotate`: `addps`/`movups` on
//! xmm registers). The same loop inlined into a function compiled for AVX-512 or AVX2
//! runs 16 or 8 lanes wide. Only the vector width changes, not the order of any sum: every
//! build computes the same values.

/// Runs `f`, inlined into a copy compiled for AVX-512 or AVX2 where the CPU has them.
#[inline(always)]
pub(super) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the copy is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
