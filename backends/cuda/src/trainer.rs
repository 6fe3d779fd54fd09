//! Training on this library's device: cyclegan's own `Trainer` behind the boundary's
//! `BackendTrainer`, so `cyclegan train --device cuda` and `cg_trainer_*` in a build
//! without CUDA reach the GPU through this library. The run settings arrive as the C
//! ABI's JSON and are opened with the same `RunSettings::open` the host uses, so the
//! checks, the files and their contents are the built-in trainer's.

use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec, Tuple2};
use cyclegan::train::RunSettings;
use cyclegan::{Backend, Trainer};
use cyclegan_backend_api::abi_stable::sabi_trait::TD_Opaque;
use cyclegan_backend_api::{
    path_from_bytes, BackendError, BackendTrainer, BackendTrainer_TO, IterationAbi,
    IterationCallback, LoadOptions, PictureAbi, RunSummaryAbi, SaveKind, TrainerBox, TrainerInfo,
};

use super::{device_for, device_info, guarded, to_abi};

/// The device a trainer in this library runs on, as cyclegan names it: the compiled-in
/// CUDA device, or candle's CPU device in the boundary test build.
fn here() -> Backend {
    if cfg!(feature = "cuda") {
        Backend::Cuda
    } else {
        Backend::Cpu
    }
}

pub(crate) extern "C" fn open_trainer(
    settings_json: RStr<'_>,
    options: LoadOptions,
) -> RResult<TrainerBox, BackendError> {
    guarded("open_trainer", || {
        let dev = device_for(options)?;
        let settings = RunSettings::from_json(settings_json.as_str()).map_err(to_abi)?;
        let trainer = settings.open(here()).map_err(to_abi)?;
        let label = if dev.is_cpu() {
            "cuda backend on the candle CPU device (test build)".to_string()
        } else {
            format!("cuda ({})", device_info(&dev).0)
        };
        Ok(BackendTrainer_TO::from_value(
            Training { trainer, label },
            TD_Opaque,
        ))
    })
}

struct Training {
    trainer: Trainer,
    label: String,
}

impl BackendTrainer for Training {
    fn describe(&self) -> RString {
        self.label.as_str().into()
    }

    fn config(&self) -> RVec<Tuple2<RString, RString>> {
        self.trainer
            .config()
            .to_metadata()
            .into_iter()
            .map(|(k, v)| Tuple2(k.into(), v.into()))
            .collect()
    }

    fn info(&self) -> TrainerInfo {
        let t = &self.trainer;
        let (content, style) = t.data_sizes();
        TrainerInfo {
            iteration: t.iteration(),
            total_iterations: t.total_iterations(),
            iterations_per_epoch: t.iterations_per_epoch(),
            learning_rate: t.learning_rate(),
            content_images: content as u64,
            style_images: style as u64,
        }
    }

    fn take_warnings(&mut self) -> RVec<RString> {
        self.trainer
            .take_warnings()
            .into_iter()
            .map(RString::from)
            .collect()
    }

    fn run(
        &mut self,
        iterations: u64,
        progress: IterationCallback<'_>,
    ) -> RResult<RunSummaryAbi, BackendError> {
        guarded("run", || {
            let mut on_iteration = |p: &cyclegan::train::Progress| {
                let l = &p.losses;
                progress.report(&IterationAbi {
                    iteration: p.iteration,
                    total: p.total,
                    epoch: p.epoch,
                    lr: p.lr,
                    losses: [l.g, l.gan, l.cycle, l.identity, l.d_a, l.d_b],
                    elapsed_ns: p.elapsed.as_nanos().min(u64::MAX as u128) as u64,
                    remaining_ns: p.remaining.as_nanos().min(u64::MAX as u128) as u64,
                })
            };
            let s = self
                .trainer
                .run(iterations, &mut on_iteration)
                .map_err(to_abi)?;
            Ok(RunSummaryAbi {
                iterations: s.iterations,
                cancelled: s.cancelled,
                finished: s.finished,
            })
        })
    }

    fn save(&self, kind: SaveKind, path: RSlice<'_, u8>) -> RResult<(), BackendError> {
        guarded("save", || {
            let path = path_from_bytes(path.as_slice());
            match kind {
                SaveKind::Checkpoint => self.trainer.save_checkpoint(&path),
                SaveKind::Style => self.trainer.save_style(&path),
                SaveKind::Inverse => self.trainer.save_inverse(&path),
            }
            .map_err(to_abi)
        })
    }

    fn sample_grid(&mut self) -> RResult<PictureAbi, BackendError> {
        guarded("sample_grid", || {
            let grid = self.trainer.sample_grid().map_err(to_abi)?;
            Ok(PictureAbi {
                width: grid.width(),
                height: grid.height(),
                rgb: grid.data().to_vec().into(),
            })
        })
    }
}
