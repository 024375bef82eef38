//! `naevus predict`: melanoma probabilities for a prepared cache, Kaggle submission format.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::{Cache, Split};
use naevus_engine::TrainedRun;
use naevus_engine::predict::MAX_TTA;
use naevus_run::{Calibration, Checkpoint};

/// Predict melanoma probabilities with a trained run.
///
/// Every fold's checkpoint predicts each image and the probabilities are averaged (a fold
/// ensemble); --tta N also averages N dihedral views (flips, rotations, transposes) of each
/// image. Writes `image_name,target` rows, the SIIM-ISIC submission format. With --oof,
/// each training image is scored by the fold that held it out instead, and the
/// out-of-fold AUC is printed: the honest way to measure what TTA adds.
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`).
    #[arg(long)]
    run: PathBuf,
    /// Prepared cache of the images to score (default with --oof: the run's training cache).
    #[arg(long)]
    data: Option<PathBuf>,
    /// CSV to write.
    #[arg(long)]
    out: PathBuf,
    /// Which checkpoint of each fold: best (validation AUC), best_primary (AUC on primary-source
    /// images, for runs validating external images too) or final.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Test-time augmentation: number of dihedral views averaged, 1 (none) to 8.
    #[arg(long, default_value_t = 1)]
    tta: usize,
    /// Apply the temperature stored in the run (calibration.json, fitted on its out-of-fold
    /// predictions) so probabilities match observed frequencies better; the ranking is unchanged.
    #[arg(long)]
    calibrated: bool,
    /// Re-score the run's out-of-fold images, each with the fold that did not train on it.
    #[arg(long)]
    oof: bool,
    /// Score only the images of this split of the cache: train, val or test.
    #[arg(long)]
    split: Option<String>,
    /// Compute backend (default: the one the run trained on).
    #[arg(long)]
    device: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    if !(1..=MAX_TTA).contains(&args.tta) {
        bail!("--tta must be between 1 and {MAX_TTA}, got {}", args.tta);
    }
    let checkpoint = Checkpoint::parse(&args.checkpoint)?;
    let run = TrainedRun::open(&args.run, args.device.as_deref())?;
    let data = match (&args.data, args.oof) {
        (Some(data), _) => data.clone(),
        (None, true) => run.info.cache.clone(),
        (None, false) => bail!("--data is required (the prepared cache of the images to score)"),
    };
    let calibration = args.calibrated.then(|| Calibration::read(run.path())).transpose()?;
    let cache = Arc::new(Cache::open(&data).with_context(|| format!("opening cache {}", data.display()))?);
    let ids = |items: &[usize]| -> Vec<String> { items.iter().map(|&i| cache.records()[i].id.clone()).collect() };

    if args.oof {
        let (items, mut probs, folds) = run.predict_out_of_fold(checkpoint, &cache, args.tta)?;
        if let Some(calibration) = &calibration {
            calibration.apply(&mut probs);
        }
        let labels: Vec<u8> = items.iter().map(|&i| cache.records()[i].melanoma.map_or(0, u8::from)).collect();
        naevus_run::write_out_of_fold(&args.out, &ids(&items), &probs, &labels, &folds)?;
        let auc = naevus_metrics::roc_auc(&probs, &labels)?;
        println!("wrote {} out-of-fold predictions (tta {}) to {}; out-of-fold AUC {auc:.4}", items.len(), args.tta, args.out.display());
        return Ok(());
    }

    let split = match args.split.as_deref() {
        None => None,
        Some("train") => Some(Split::Train),
        Some("val") => Some(Split::Val),
        Some("test") => Some(Split::Test),
        Some(other) => bail!("--split must be train, val or test, got \"{other}\""),
    };
    let items: Vec<usize> = (0..cache.len()).filter(|&i| split.is_none() || cache.records()[i].split == split).collect();
    if items.is_empty() {
        bail!("no images to score in {} (split {:?})", data.display(), args.split);
    }
    for warning in run.info.metadata_warnings(items.iter().map(|&i| &cache.records()[i])) {
        eprintln!("{warning}");
    }
    let ensemble = run.ensemble(checkpoint)?;
    let mut probs = run.predict_cache(&ensemble, &cache, &items, args.tta)?;
    if let Some(calibration) = &calibration {
        calibration.apply(&mut probs);
    }
    naevus_run::write_predictions(&args.out, &ids(&items), &probs)?;
    println!(
        "wrote {} predictions ({} fold(s) of {}, tta {}{}) to {}",
        items.len(),
        run.info.folds.len(),
        run.info.model,
        args.tta,
        calibration.map_or(String::new(), |c| format!(", temperature {:.3}", c.temperature)),
        args.out.display()
    );
    Ok(())
}
