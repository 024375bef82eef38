//! The flags of every job that works with a trained run, defined once: which run, which
//! checkpoint of its folds, and the compute backend.

use std::path::PathBuf;

use anyhow::Result;
use naevus_engine::TrainedRun;
use naevus_run::Checkpoint;

/// --run, --checkpoint and --device.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Run directory (from `naevus train`) or exported model (from `naevus export`).
    #[arg(long)]
    pub run: PathBuf,
    /// Which checkpoint of each fold: best (its best epoch by the run's checkpoint selection
    /// rule), best_primary (the best AUC on primary-source images, for runs validating external
    /// images too), best_ema (the weight average at its best, for recipes with ema_decay) or
    /// final (the last epoch's weights).
    #[arg(long, default_value = "best")]
    pub checkpoint: Checkpoint,
    #[command(flatten)]
    pub device: DeviceArg,
}

impl RunArgs {
    /// The run, opened on the backend asked for.
    pub fn open(&self) -> Result<TrainedRun> {
        TrainedRun::open(&self.run, self.device.device.as_deref())
    }
}

/// --device.
#[derive(clap::Args)]
pub struct DeviceArg {
    /// Compute backend: flex, tch, vulkan or cuda (cuda:N for the N-th GPU), as compiled in;
    /// default: the one the run trained on.
    #[arg(long)]
    pub device: Option<String>,
}
