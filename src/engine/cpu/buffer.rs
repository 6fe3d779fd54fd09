//! Large zeroed `f32` buffers on 2 MiB boundaries, backed by transparent huge pages where
//! the OS offers them.
//!
//! Why: a cold stylize touches a few hundred megabytes of fresh memory (the
//! Winograd-transformed kernels, then each layer's activations), and on a virtual machine
//! each fresh page costs about as much as the arithmetic done on it. With 4 KiB pages a
//! 256-pixel image took ~140 000 page faults. A buffer that starts and ends on a 2 MiB
//! boundary and is marked for huge pages before its first touch takes one fault per 2 MiB;
//! through the ordinary allocator (`Vec`), where a buffer lands depends on what was freed
//! before, and whole runs of it fell back to small pages from one start to the next
//! (22 000 to 109 000 faults for the same 256-pixel stylize, `perf stat -e page-faults`).
//!
//! Zeros are written in parallel: writing them is what faults the pages in, and on one
//! thread that left the other cores idle.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use rayon::prelude::*;

/// Huge page size on x86-64 and most arm64 kernels; also the alignment of large buffers.
const HUGE_PAGE: usize = 2 << 20;

/// Floats zeroed per parallel task.
const ZERO_CHUNK: usize = 1 << 16;

/// A heap array of `f32` whose first `len` values are initialised; the rest of its
/// capacity is scratch. Derefs to the initialised part.
pub(super) struct Buf {
    ptr: NonNull<f32>,
    len: usize,
    cap: usize,
}

// SAFETY: `Buf` owns its allocation exclusively, like `Vec<f32>`.
unsafe impl Send for Buf {}
// SAFETY: shared access only reads, like `&[f32]`.
unsafe impl Sync for Buf {}

impl Buf {
    /// `n` zeros.
    pub fn zeroed(n: usize) -> Self {
        let mut b = Self::with_capacity(n);
        b.fill_zeros(n);
        b
    }

    /// An empty buffer holding at least `n` floats without reallocating; its pages are
    /// not touched yet.
    pub fn with_capacity(n: usize) -> Self {
        let layout = Self::layout(n);
        if layout.size() == 0 {
            return Self::default();
        }
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<f32>()) else {
            alloc::handle_alloc_error(layout)
        };
        advise_huge_pages(raw as usize, layout.size());
        Self {
            ptr,
            len: 0,
            cap: layout.size() / 4,
        }
    }

    /// Room for `n` floats, rounded up to whole huge pages when that is at least one, so
    /// that no page of a large buffer is shared with another allocation.
    fn layout(n: usize) -> Layout {
        let bytes = n.checked_mul(4).expect("buffer size overflows usize");
        let (size, align) = if bytes >= HUGE_PAGE {
            (bytes.next_multiple_of(HUGE_PAGE), HUGE_PAGE)
        } else {
            (bytes, 64)
        };
        Layout::from_size_align(size, align).expect("buffer size overflows isize")
    }

    /// A copy of `v`.
    #[cfg(test)]
    pub fn from_slice(v: &[f32]) -> Self {
        let mut b = Self::zeroed(v.len());
        b.copy_from_slice(v);
        b
    }

    /// Makes room for `n` floats. When the allocation must grow, its contents are dropped
    /// (it becomes empty) rather than copied: callers use it as scratch.
    pub fn reserve(&mut self, n: usize) {
        if self.cap < n {
            *self = Self::with_capacity(n);
        }
    }

    /// Makes the buffer at least `n` long. Its contents are scratch: when the allocation
    /// must grow, a fresh zeroed one replaces it rather than copying the old values.
    pub fn grow(&mut self, n: usize) {
        if self.len >= n {
            return;
        }
        if self.cap >= n {
            self.fill_zeros(n);
        } else {
            *self = Self::zeroed(n);
        }
    }

    /// Makes the buffer exactly `n` zeros, reusing its allocation when it is large enough.
    #[cfg(test)]
    pub fn reset(&mut self, n: usize) {
        if self.cap >= n {
            self.len = self.len.min(n);
            self.par_chunks_mut(ZERO_CHUNK).for_each(|c| c.fill(0.0));
            self.fill_zeros(n);
        } else {
            *self = Self::zeroed(n);
        }
    }

    /// Makes the buffer exactly `n` long, keeping the allocation and whatever it held
    /// there: for callers that write every value before reading it.
    pub fn resize_scratch(&mut self, n: usize) {
        self.grow(n);
        self.len = n;
    }

    /// Zeroes `len..n` in parallel and makes `n` the length.
    fn fill_zeros(&mut self, n: usize) {
        assert!(n <= self.cap);
        if n <= self.len {
            return;
        }
        // SAFETY: `len..n` lies inside the allocation (n <= cap), and nothing else refers
        // to it; it is written as raw memory, since it may not be initialised.
        let tail = unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr
                    .as_ptr()
                    .add(self.len)
                    .cast::<std::mem::MaybeUninit<f32>>(),
                n - self.len,
            )
        };
        tail.par_chunks_mut(ZERO_CHUNK).for_each(|c| {
            for x in c {
                x.write(0.0);
            }
        });
        self.len = n;
    }
}

impl Default for Buf {
    fn default() -> Self {
        Self {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `with_capacity` with this same layout (`cap` floats is
            // the layout's size, and `layout` maps it back to the same size and alignment).
            unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), Self::layout(self.cap)) };
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: the first `len` floats are initialised and owned by `self`; for an
        // empty buffer the pointer is dangling but aligned, as a slice allows.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({} of {} floats)", self.len, self.cap)
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(start: usize, len: usize) {
    let end = start + len;
    let (a, b) = (
        start.next_multiple_of(HUGE_PAGE),
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if b > a {
        // SAFETY: [a, b) lies inside an allocation this process owns. The advice only
        // changes how the kernel backs the range with physical pages, never what it holds,
        // so no Rust-visible state changes. A failure (huge pages disabled) leaves ordinary
        // pages, which is fine, so the result is ignored.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_and_grow_as_asked() {
        let mut v = Buf::zeroed(3 << 20);
        assert!(v.iter().all(|&x| x == 0.0));
        assert_eq!(
            v.as_ptr() as usize % HUGE_PAGE,
            0,
            "large buffers are aligned"
        );
        v[5] = 1.0;
        v.grow(10);
        assert_eq!((v.len(), v[5]), (3 << 20, 1.0), "long enough: untouched");
        v.reset(100);
        assert!(v.len() == 100 && v.iter().all(|&x| x == 0.0));
        v[99] = 2.0;
        v.grow(200);
        assert!(v.len() == 200 && v.iter().all(|&x| x == 0.0 || x == 2.0));
        v.grow(5 << 20);
        assert!(v.len() == 5 << 20 && v.iter().all(|&x| x == 0.0));
        let small = Buf::zeroed(7);
        assert_eq!(&small[..], &[0.0; 7]);
        assert!(Buf::zeroed(0).is_empty() && Buf::default().is_empty());
    }

    #[test]
    fn scratch_resizes_keep_values_and_zero_only_new_ones() {
        let mut s = Buf::zeroed(10);
        s[2] = 3.0;
        s[7] = 4.0;
        s.resize_scratch(4);
        assert_eq!(&s[..], &[0.0, 0.0, 3.0, 0.0]);
        s.resize_scratch(8);
        assert_eq!(&s[..], &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        s.resize_scratch(1 << 20);
        assert!(s.len() == 1 << 20 && s.iter().all(|&x| x == 0.0));
    }
}
