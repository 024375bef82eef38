//! `naevus predict`: melanoma probabilities for a prepared cache, Kaggle submission format.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::{Cache, Split};
use naevus_engine::RunInfo;
use naevus_engine::device::select_device;

/// Predict melanoma probabilities with a trained run.
///
/// Every fold's checkpoint predicts each image and the probabilities are averaged (a fold
/// ensemble). Writes `image_name,target` rows, the SIIM-ISIC submission format.
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`).
    #[arg(long)]
    run: PathBuf,
    /// Prepared cache of the images to score.
    #[arg(long)]
    data: PathBuf,
    /// CSV to write.
    #[arg(long)]
    out: PathBuf,
    /// Which checkpoint of each fold: best (validation AUC) or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Score only the images of this split of the cache: train, val or test.
    #[arg(long)]
    split: Option<String>,
    /// Compute backend (default: the one the run trained on).
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    if !matches!(args.checkpoint.as_str(), "best" | "last") {
        bail!("--checkpoint must be best or last, got \"{}\"", args.checkpoint);
    }
    let info = RunInfo::read(&args.run)?;
    let config = naevus_engine::run::read_config(&args.run)?;
    let device = select_device(args.device.as_deref().unwrap_or(&config.device))?;
    let cache = Arc::new(Cache::open(&args.data).with_context(|| format!("opening cache {}", args.data.display()))?);
    let split = match args.split.as_deref() {
        None => None,
        Some("train") => Some(Split::Train),
        Some("val") => Some(Split::Val),
        Some("test") => Some(Split::Test),
        Some(other) => bail!("--split must be train, val or test, got \"{other}\""),
    };
    let items: Vec<usize> = (0..cache.len()).filter(|&i| split.is_none() || cache.records()[i].split == split).collect();
    if items.is_empty() {
        bail!("no images to score in {} (split {:?})", args.data.display(), args.split);
    }
    let probs = naevus_engine::predict::ensemble_probabilities(&args.run, &args.checkpoint, &cache, &items, &device)?;
    naevus_engine::train::write_predictions(&args.out, &cache, &items, &probs, None)?;
    println!("wrote {} predictions ({} fold(s) of {}) to {}", items.len(), info.folds.len(), info.model, args.out.display());
    Ok(())
}
