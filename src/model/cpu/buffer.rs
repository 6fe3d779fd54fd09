//! Large zeroed `f32` buffers, backed by transparent huge pages where the OS offers them.
//!
//! Why: a cold stylize touches about half a gigabyte of fresh memory (the Winograd-packed
//! kernels, then each layer's activations). With 4 KiB pages that is ~140 000 page faults
//! for a 256-pixel image, about a quarter of a cold start's CPU time on a virtual machine;
//! asking for 2 MiB pages before the first touch cuts the faults about fourfold (measured
//! with `perf stat -e page-faults`, see docs/performance.md).

/// Buffers below this stay on ordinary pages: they rarely span a whole huge page.
const HUGE_PAGE: usize = 2 << 20;

/// `n` zeros. The allocation is marked for huge pages before anything touches it (the
/// allocator does not write an uninitialised allocation), then zeroed.
pub(super) fn zeroed(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    advise_huge_pages(v.spare_capacity_mut());
    v.resize(n, 0.0);
    v
}

/// Makes `v` at least `n` long. Its contents are scratch: when the allocation must grow, a
/// fresh [`zeroed`] buffer replaces it rather than copying the old values.
pub(super) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() >= n {
        return;
    }
    if v.capacity() >= n {
        v.resize(n, 0.0);
    } else {
        *v = zeroed(n);
    }
}

/// Makes `v` exactly `n` zeros, reusing its allocation when it is large enough.
pub(super) fn reset(v: &mut Vec<f32>, n: usize) {
    if v.capacity() >= n {
        v.clear();
        v.resize(n, 0.0);
    } else {
        *v = zeroed(n);
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(v: &[std::mem::MaybeUninit<f32>]) {
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let (a, b) = (
        start.next_multiple_of(HUGE_PAGE),
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if b > a {
        // SAFETY: [a, b) lies inside `v`'s allocation, which this process owns. The advice
        // only changes how the kernel backs the range with physical pages, never what it
        // holds (and nothing is initialised yet), so no Rust-visible state changes. A failure (huge pages disabled) leaves
        // ordinary pages, which is fine, so the result is ignored.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &[std::mem::MaybeUninit<f32>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_and_grow_as_asked() {
        let mut v = zeroed(3 << 20);
        assert!(v.iter().all(|&x| x == 0.0));
        v[5] = 1.0;
        grow(&mut v, 10);
        assert_eq!((v.len(), v[5]), (3 << 20, 1.0), "long enough: untouched");
        reset(&mut v, 100);
        assert!(v.len() == 100 && v.iter().all(|&x| x == 0.0));
        grow(&mut v, 5 << 20);
        assert!(v.len() == 5 << 20 && v.iter().all(|&x| x == 0.0));
    }
}
