//! `naevus report`: a self-contained HTML report of a run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use naevus_report::ReportOptions;

/// Write OUT/report.html, one self-contained page that opens offline (charts embedded as
/// PNG data URIs), with the metric table and bootstrap 95% intervals, ROC and
/// precision-recall curves, reliability diagram, confusion matrix, training curves per fold,
/// AUC by sex, age band and anatomical site, and the run's config.toml; plus the charts as
/// PNG files (roc, pr, reliability, confusion, training) and metrics.json.
///
/// By default it scores RUN/oof.csv (out-of-fold or validation predictions) with the labels
/// in its label column; with --pred it scores that CSV (image_name,target) with the labels
/// of the run's prepared cache. Age, sex and site come from the cache.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory written by `naevus train`.
    #[arg(long)]
    run: PathBuf,
    /// Predictions CSV to score instead of RUN/oof.csv (labels then come from the cache).
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Probability at or above which an image counts as melanoma, from 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Bootstrap resamples for the 95% intervals (0 skips them), at most 100000.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    crate::evaluate::check_threshold_and_bootstrap(args.threshold, args.bootstrap)?;
    let options = ReportOptions { run: args.run.clone(), pred: args.pred, threshold: args.threshold, bootstrap_rounds: args.bootstrap, out: args.out };
    let summary = naevus_report::write_report(&options).with_context(|| format!("writing the report of {}", args.run.display()))?;
    crate::evaluate::print_table(&summary.metrics);
    if let Some(note) = &summary.subgroup_note {
        println!("no subgroup tables: {note}");
    }
    println!("wrote {} and {} charts beside it", summary.html.display(), summary.pngs.len());
    Ok(())
}
