//! `naevus calibrate`: fit the run's temperature again, e.g. on other held-out predictions
//! or for a run trained before calibration was stored.

use std::path::PathBuf;

use anyhow::{Result, bail};
use naevus_run::{Calibration, Predictions, RunDir};

/// Fit temperature scaling that predict, explain and the service apply and store it in the run.
///
/// Training already fits it on the run's out-of-fold (or validation) predictions; this
/// command refits it from a prediction CSV with a `label` column (default: RUN/oof.csv).
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`).
    #[arg(long)]
    run: PathBuf,
    /// Held-out predictions with labels: image_name,prediction (or target),label (default:
    /// RUN/oof.csv).
    #[arg(long)]
    predictions: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let run = RunDir::new(&args.run);
    run.read_info()?;
    let path = args.predictions.unwrap_or_else(|| run.oof_csv());
    let predictions = Predictions::read(&path)?;
    let Some(labels) = &predictions.labels else {
        bail!("{} has no label column; calibration needs held-out predictions with their labels", path.display());
    };
    let calibration = Calibration::fit(&predictions.scores, labels, &path.display().to_string())?;
    calibration.write(&args.run)?;
    println!(
        "temperature {:.3} fitted on {} images of {}: log loss {:.4} -> {:.4}; saved in {}",
        calibration.temperature,
        calibration.images,
        path.display(),
        calibration.log_loss_before,
        calibration.log_loss_after,
        run.calibration_json().display()
    );
    Ok(())
}
