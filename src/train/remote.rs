//! A training run inside a GPU backend library (`libcyclegan_backend_cuda.so`): the host
//! side of the boundary's `BackendTrainer`. The library holds cyclegan's own trainer on
//! its device, reads the data folders and writes the checkpoint and style files with the
//! same code as the built-in trainer; across the boundary go the run settings (as the C
//! ABI's JSON), per-iteration progress, and which file to write where. So a run started
//! on the GPU resumes on the CPU and back, and both leave the same files.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use cyclegan_backend_api::abi_stable::std_types::{RSlice, RStr};
use cyclegan_backend_api::{
    path_bytes, IterationAbi, IterationCallback, LoadOptions, SaveKind, TrainerBox, TrainerInfo,
};

use super::losses::StepLosses;
use super::{Progress, RunSettings, RunSummary, TrainConfig};
use crate::engine::dynamic;
use crate::error::{Error, Result};
use crate::pixels::{BitDepth, Pixels};

/// A training run in backend library `name`.
pub(crate) struct RemoteTrainer {
    trainer: TrainerBox,
    config: TrainConfig,
    label: String,
}

impl RemoteTrainer {
    /// Opens the run `settings` describe (new, or resumed from its checkpoint) in backend
    /// library `name`, which applies every check [`RunSettings::open`] applies here.
    pub(crate) fn open(name: &str, settings: &RunSettings) -> Result<Self> {
        let json = settings.to_json()?;
        let module = dynamic::module(name)?;
        let trainer = dynamic::into_result((module.open_trainer())(
            RStr::from_str(&json),
            LoadOptions::default(),
        ))?;
        let meta: BTreeMap<String, String> = trainer
            .config()
            .into_iter()
            .map(|t| (t.0.into_string(), t.1.into_string()))
            .collect();
        let config = TrainConfig::from_metadata(&meta).map_err(|e| {
            Error::Compute(format!(
                "the {name} backend library described its run wrongly: {e}"
            ))
        })?;
        let label = trainer.describe().into_string();
        Ok(Self {
            trainer,
            config,
            label,
        })
    }

    pub(crate) fn describe(&self) -> String {
        self.label.clone()
    }

    pub(crate) fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub(crate) fn info(&self) -> TrainerInfo {
        self.trainer.info()
    }

    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        self.trainer
            .take_warnings()
            .into_iter()
            .map(|w| w.into_string())
            .collect()
    }

    pub(crate) fn run(
        &mut self,
        iterations: u64,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<RunSummary> {
        let mut cx = Context {
            progress,
            panic: None,
        };
        let callback = IterationCallback {
            context: &mut cx as *mut Context as *mut c_void,
            call: trampoline,
            _borrow: PhantomData,
        };
        let out = self.trainer.run(iterations, callback);
        if let Some(p) = cx.panic.take() {
            std::panic::resume_unwind(p);
        }
        let s = dynamic::into_result(out)?;
        Ok(RunSummary {
            iterations: s.iterations,
            cancelled: s.cancelled,
            finished: s.finished,
        })
    }

    pub(crate) fn save(&self, kind: SaveKind, path: &Path) -> Result<()> {
        let bytes = path_bytes(path);
        dynamic::into_result(self.trainer.save(kind, RSlice::from_slice(&bytes)))
    }

    pub(crate) fn sample_grid(&mut self) -> Result<Pixels> {
        let picture = dynamic::into_result(self.trainer.sample_grid())?;
        let mut out = Pixels::new(picture.width, picture.height, 3, BitDepth::Eight)?;
        if out.data().len() != picture.rgb.len() {
            return Err(Error::Compute(format!(
                "the {} backend returned {} values for a {}x{} sample grid",
                self.label,
                picture.rgb.len(),
                picture.width,
                picture.height
            )));
        }
        out.data_mut().copy_from_slice(&picture.rgb);
        Ok(out)
    }
}

/// The caller's progress closure as the backend's callback sees it, and a panic it raised
/// (resumed once the backend has returned: nothing unwinds through the library).
struct Context<'p> {
    progress: &'p mut dyn FnMut(&Progress) -> bool,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

extern "C" fn trampoline(context: *mut c_void, it: &IterationAbi) -> bool {
    // SAFETY: `context` is the `Context` that `RemoteTrainer::run` passes with this
    // function, alive and not otherwise borrowed while the backend's run call lasts.
    let cx = unsafe { &mut *(context as *mut Context) };
    if cx.panic.is_some() {
        return false;
    }
    let [g, gan, cycle, identity, d_a, d_b] = it.losses;
    let p = Progress {
        iteration: it.iteration,
        total: it.total,
        epoch: it.epoch,
        lr: it.lr,
        losses: StepLosses {
            g,
            gan,
            cycle,
            identity,
            d_a,
            d_b,
        },
        elapsed: Duration::from_nanos(it.elapsed_ns),
        remaining: Duration::from_nanos(it.remaining_ns),
    };
    let progress = &mut *cx.progress;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| progress(&p))) {
        Ok(go_on) => go_on,
        Err(panic) => {
            cx.panic = Some(panic);
            false
        }
    }
}
