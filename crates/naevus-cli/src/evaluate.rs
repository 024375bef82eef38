//! `naevus evaluate`: score a prediction CSV against labels.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use naevus_data::error::excerpt;
use naevus_report::EvaluationReport;
use naevus_run::{Predictions, Truth};

/// Score predictions against the truth: ROC AUC (ties handled), the ISIC 2024 partial AUC
/// above 80% sensitivity, average precision, sensitivity at 90/95% specificity and
/// specificity at 90/95% sensitivity, each with a bootstrap 95% interval (resampling whole
/// patients or lesions when the truth names them); calibration (ECE with 10 bins, Brier
/// score, log loss); accuracy, sensitivity and specificity at a threshold and the confusion
/// matrix.
///
/// The truth is a prepared cache (its labels are used) or a CSV with an id column
/// (image_name, image_id or image) and a 0/1 label column (target, melanoma or label).
/// Every predicted id must be in the truth, and each truth id in one row only; truth rows
/// without a prediction are ignored. A truth CSV may have at most 1 GiB, 10,000,000 rows and
/// 1 MiB a line.
#[derive(clap::Args)]
pub struct Args {
    /// Predictions CSV with columns image_name,target (the target being a probability).
    #[arg(long)]
    pred: PathBuf,
    /// A prepared cache or a label CSV.
    #[arg(long)]
    truth: PathBuf,
    /// Probability at or above which an image counts as melanoma, from 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Bootstrap resamples for the 95% intervals (0 skips them), at most 100000.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Directory to write metrics.json into (every metric as {value, ci95}, counts, by source).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print metrics.json's fields on standard output instead of the table, for scripts.
    #[arg(long)]
    json: bool,
}

/// Refuses a --threshold outside [0, 1] and too many resamples (see
/// [`naevus_report::evaluation::check_threshold_and_bootstrap`]); shared with `naevus report`.
pub fn check_threshold_and_bootstrap(threshold: f64, bootstrap: usize) -> Result<()> {
    naevus_report::evaluation::check_threshold_and_bootstrap(threshold, bootstrap).map_err(|e| anyhow::anyhow!("--{e}"))
}

pub fn run(args: Args) -> Result<()> {
    check_threshold_and_bootstrap(args.threshold, args.bootstrap)?;
    let predictions = Predictions::read(&args.pred)?;
    let truth = Truth::read(&args.truth)?;
    let report = evaluate_full(&predictions, &truth, args.threshold, args.bootstrap)?;
    if args.json {
        naevus_report::write_metrics_json(Path::new("-"), &report)?;
    } else {
        print_table(&report);
    }
    if let Some(out) = &args.out {
        let path = out.join("metrics.json");
        naevus_report::write_metrics_json(&path, &report)?;
        // With --json standard output carries the JSON alone.
        if args.json { eprintln!("wrote {}", path.display()) } else { println!("wrote {}", path.display()) }
    }
    Ok(())
}

/// Joins predictions with the truth: scores, labels and groups in prediction order.
fn join<'a>(predictions: &Predictions, truth: &'a Truth) -> Result<(Vec<f64>, Vec<u8>, Vec<&'a str>)> {
    let mut scores = Vec::with_capacity(predictions.len());
    let mut labels = Vec::with_capacity(predictions.len());
    let mut groups = Vec::with_capacity(predictions.len());
    let mut unknown = Vec::new();
    for (id, p) in predictions.ids.iter().zip(&predictions.scores) {
        match truth.get(id) {
            Some((label, group)) => {
                scores.push(*p);
                labels.push(label);
                groups.push(group);
            }
            None => unknown.push(id.as_str()),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} predicted image ids are not in the truth, e.g. {}",
            unknown.len(),
            unknown.iter().take(5).map(|id| excerpt(id)).collect::<Vec<_>>().join(", ")
        );
    }
    Ok((scores, labels, groups))
}

/// Joins predictions with the truth and computes the full metric table, and each source's
/// AUC when the images come from several (the predictions' source column, else the truth's).
pub fn evaluate_full(predictions: &Predictions, truth: &Truth, threshold: f64, rounds: usize) -> Result<EvaluationReport> {
    let (scores, labels, groups) = join(predictions, truth)?;
    let mut report = naevus_report::evaluate_scores(&scores, &labels, Some(&groups), threshold, rounds, 0)?;
    let sources: Vec<Option<String>> = match &predictions.sources {
        Some(sources) => sources.iter().map(|s| Some(s.clone()).filter(|s| !s.is_empty())).collect(),
        None => predictions.ids.iter().map(|id| truth.source(id).map(str::to_string)).collect(),
    };
    report.by_source = naevus_metrics::per_source_aucs(&scores, &labels, &sources, Some(&groups), rounds, 0)?;
    Ok(report)
}

/// Prints the full metric table and the confusion matrix.
pub fn print_table(r: &EvaluationReport) {
    println!("images       {} ({} melanoma)", r.binary.n, r.binary.positives);
    let unit = if r.bootstrap_unit == "group" { "patients or lesions" } else { "images" };
    println!("95% CI: percentile bootstrap, {} resamples of {unit}", r.bootstrap_rounds);
    println!("{:<32} {:>8}  {:<20} {}", "metric", "value", "95% CI", "note");
    for row in naevus_report::table_rows(r) {
        println!("{:<32} {:>8}  {:<20} {}", row.name, row.value, row.ci95, row.note);
    }
    if !r.by_source.is_empty() {
        println!("by source:");
        for source in &r.by_source {
            println!("  {}", source.describe());
        }
    }
    let c = &r.binary.confusion;
    println!("confusion at threshold {}: predicted melanoma / benign", r.binary.threshold);
    println!("    melanoma  {:>8} / {:<8}", c.tp, c.fn_);
    println!("    benign    {:>8} / {:<8}", c.fp, c.tn);
}
