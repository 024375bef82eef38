//! The flags of every job that works with a trained run, defined once: which run, which
//! checkpoint of its folds, and the compute backend.

use std::path::PathBuf;

use anyhow::Result;
use naevus_engine::LoadedModel;
use naevus_run::Checkpoint;

/// --run, --checkpoint and --device.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Run directory (from `naevus train`) or exported model (from `naevus export`, one run
    /// or an ensemble).
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub weights: WeightsArgs,
}

impl RunArgs {
    /// The run or bundle (one run or an ensemble) loaded for scoring, every fold's checkpoint.
    pub fn load(&self) -> Result<LoadedModel> {
        LoadedModel::open(&self.run, self.weights.device.device.as_deref(), self.weights.checkpoint)
    }
}

/// --checkpoint and --device: which weights of a run's folds, on which backend.
#[derive(clap::Args)]
pub struct WeightsArgs {
    /// Which checkpoint of each fold: best (its best epoch by the run's checkpoint selection
    /// rule), best_primary (the best AUC on primary-source images, for runs validating external
    /// images too), best_ema (the weight average at its best, for recipes with ema_decay) or
    /// final (the last epoch's weights; not for export or serve).
    #[arg(long, default_value = "best")]
    pub checkpoint: Checkpoint,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// --device.
#[derive(clap::Args)]
pub struct DeviceArg {
    /// Compute backend: flex, tch, vulkan or cuda (cuda:N for the N-th GPU), as compiled in;
    /// default: the one the run trained on.
    #[arg(long)]
    pub device: Option<String>,
}
