//! naevus training and inference on burn: recipes, losses, schedules, the training loop
//! with checkpoints and resume, cross-validation, and prediction from run directories.

pub mod calibration;
pub mod config;
pub mod device;
pub mod explain;
pub mod loss;
pub mod predict;
pub mod run;
pub mod schedule;
pub mod train;
pub mod weights;

pub use config::TrainConfig;
pub use run::RunInfo;
