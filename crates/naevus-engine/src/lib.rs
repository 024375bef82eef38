//! naevus training and inference on burn: losses, schedules, the training loop with
//! checkpoints and resume, cross-validation, [`TrainedRun`], the one way to open a trained
//! run, and [`LoadedModel`], a run or an ensemble of runs as prediction and explanation use it. The run directory's files are defined in
//! naevus-run.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod download;
pub mod ema;
pub mod explain;
pub mod guard;
pub mod input;
pub mod loaded;
pub mod loss;
pub mod predict;
pub mod schedule;
mod sha256;
pub mod step;
pub mod train;
pub mod trained;
pub mod weights;

pub use config::TrainConfig;
pub use naevus_run::RunInfo;
pub use loaded::{LoadedModel, ModelInput, ModelScores};
pub use trained::TrainedRun;
