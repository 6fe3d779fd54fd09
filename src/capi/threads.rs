//! The private worker pool behind `cg_options_set_threads`: bounds the compute threads of a
//! stylize call, keeps the caller's progress callback on the caller's thread, and joins its
//! threads when released so that no library thread outlives `cg_options_free`.
//!
//! A progress callback may itself call `cg_model_stylize` with the same options (a GUI host
//! that pumps its event loop from the callback can do this without knowing). The pool's
//! workers are then all waiting for that callback to return, so the nested call cannot run
//! on them: it runs on a temporary pool of the same size, started and joined within the
//! nested call, and works like any other call.

use std::cell::RefCell;
use std::sync::{mpsc, OnceLock};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// A handle's thread setting: 0 runs work on the calling thread (and the process-wide rayon
/// pool), n > 0 on a pool of n workers owned by the handle, started on first use and kept so
/// that repeated calls do not spawn threads each time.
#[derive(Default)]
pub(crate) struct ThreadLimit {
    threads: u32,
    pool: OnceLock<WorkerPool>,
}

impl ThreadLimit {
    pub(crate) fn new(threads: u32) -> Self {
        Self {
            threads,
            pool: OnceLock::new(),
        }
    }

    pub(crate) fn threads(&self) -> u32 {
        self.threads
    }

    /// Runs `work` within the limit; `progress` is called on the calling thread either way.
    pub(crate) fn run<R: Send>(
        &self,
        progress: &mut dyn FnMut(f32) -> bool,
        work: impl FnOnce(&mut dyn FnMut(f32) -> bool) -> R + Send,
    ) -> Result<R> {
        if self.threads == 0 {
            return Ok(work(progress));
        }
        let pool = match self.pool.get() {
            // Called from one of this pool's own progress callbacks: its workers are busy
            // waiting for that callback, so queueing work on them would never return.
            Some(p) if p.in_callback_here() => {
                let temporary = WorkerPool::new(self.threads as usize)?;
                return Ok(temporary.run(progress, work));
            }
            Some(p) => p,
            None => {
                let built = WorkerPool::new(self.threads as usize)?;
                // Two threads racing here each build a pool; one is kept, the other freed.
                self.pool.get_or_init(|| built)
            }
        };
        Ok(pool.run(progress, work))
    }
}

thread_local! {
    /// The pools whose progress callback this thread is running now (innermost last), by
    /// address: how a nested call from inside a callback is recognised.
    static IN_CALLBACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as inside `pool`'s progress callback until dropped, also when
/// the callback unwinds.
struct CallbackMark;

impl CallbackMark {
    fn enter(pool: usize) -> Self {
        IN_CALLBACK.with(|v| v.borrow_mut().push(pool));
        CallbackMark
    }
}

impl Drop for CallbackMark {
    fn drop(&mut self) {
        IN_CALLBACK.with(|v| {
            v.borrow_mut().pop();
        });
    }
}

pub(crate) struct WorkerPool {
    /// Always `Some` until dropped; an `Option` so `drop` can release it before joining.
    pool: Option<rayon::ThreadPool>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    pub(crate) fn new(threads: usize) -> Result<Self> {
        let mut handles = Vec::with_capacity(threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .spawn_handler(|worker| {
                let h = std::thread::Builder::new()
                    .name(format!("cyclegan-{}", worker.index()))
                    .spawn(|| worker.run())?;
                handles.push(h);
                Ok(())
            })
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {threads} worker threads: {e}"))
            })?;
        Ok(Self {
            pool: Some(pool),
            threads: handles,
        })
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Whether the current thread is inside one of this pool's progress callbacks.
    fn in_callback_here(&self) -> bool {
        IN_CALLBACK.with(|v| v.borrow().contains(&self.id()))
    }

    /// Runs `work` on the pool and `progress` on the calling thread.
    ///
    /// candle's CPU kernels and matrix products parallelise on the current rayon pool, so
    /// running `work` inside this pool bounds its compute threads. That puts `work` on a
    /// worker thread; its progress reports are relayed back so that C callbacks (often GUI
    /// code that is not thread-safe) always run on the thread that called the library.
    pub(crate) fn run<R: Send>(
        &self,
        progress: &mut dyn FnMut(f32) -> bool,
        work: impl FnOnce(&mut dyn FnMut(f32) -> bool) -> R + Send,
    ) -> R {
        enum Msg<R> {
            Progress(f32),
            Done(R),
        }
        let (to_caller, from_worker) = mpsc::channel::<Msg<R>>();
        let (to_worker, from_caller) = mpsc::channel::<bool>();
        let pool = self.pool.as_ref().expect("pool is present until drop");
        let id = self.id();
        pool.in_place_scope(move |scope| {
            scope.spawn(move |_| {
                let mut relay = |f: f32| {
                    to_caller.send(Msg::Progress(f)).is_ok() && from_caller.recv().unwrap_or(false)
                };
                let r = work(&mut relay);
                let _ = to_caller.send(Msg::Done(r));
            });
            for msg in from_worker.iter() {
                match msg {
                    Msg::Progress(f) => {
                        let _mark = CallbackMark::enter(id);
                        let _ = to_worker.send(progress(f));
                    }
                    Msg::Done(r) => return r,
                }
            }
            // The worker dropped its sender without a result: it panicked, and leaving the
            // scope re-raises that panic for the boundary guard; this one is never seen.
            unreachable!("worker stopped without a result")
        })
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Dropping the pool tells the workers to exit once idle; joining makes it so before
        // the handle is gone (a host may unload the library right after freeing).
        drop(self.pool.take());
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_runs_on_the_caller_and_work_on_the_pool() {
        let pool = WorkerPool::new(2).unwrap();
        let caller = std::thread::current().id();
        let mut seen = vec![];
        let mut progress = |f: f32| {
            assert_eq!(std::thread::current().id(), caller);
            seen.push(f);
            f < 0.5
        };
        let r = pool.run(&mut progress, |p| {
            assert_ne!(std::thread::current().id(), caller);
            let n = rayon::current_num_threads();
            let mut k = 0;
            while p((k + 1) as f32 / 4.0) {
                k += 1;
            }
            (n, k)
        });
        assert_eq!(r, (2, 1), "pool size, reports before the cancel");
        assert_eq!(seen, vec![0.25, 0.5]);
    }

    /// A callback that stylizes again with the same options (a GUI pumping its event loop)
    /// must not wait for the pool's only worker, which is waiting for that very callback.
    #[test]
    fn a_nested_call_from_the_progress_callback_completes() {
        let limit = std::sync::Arc::new(ThreadLimit::new(1));
        let (done_tx, done_rx) = mpsc::channel();
        let l = limit.clone();
        std::thread::spawn(move || {
            let inner = l.clone();
            let mut nested = vec![];
            let mut progress = |f: f32| {
                if f < 1.0 {
                    let r = inner.run(&mut |_| true, |p| {
                        p(0.5);
                        rayon::current_num_threads()
                    });
                    nested.push(r.unwrap());
                }
                true
            };
            let outer = l.run(&mut progress, |p| {
                p(0.5);
                p(1.0);
                rayon::current_num_threads()
            });
            let _ = done_tx.send((outer.unwrap(), nested));
        });
        let (outer, nested) = done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the nested call deadlocked");
        assert_eq!((outer, nested), (1, vec![1]), "both ran on 1-thread pools");
        IN_CALLBACK.with(|v| assert!(v.borrow().is_empty()));
    }

    #[test]
    fn a_panicking_job_panics_the_caller_and_threads_are_joined() {
        let pool = WorkerPool::new(1).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&mut |_| true, |_| -> u32 { panic!("in the worker") })
        }));
        assert!(r.is_err());
        drop(pool);
    }
}
