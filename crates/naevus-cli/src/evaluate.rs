//! `naevus evaluate`: score a prediction CSV against labels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naevus_data::Cache;
use naevus_metrics::BinaryReport;
use naevus_report::EvaluationReport;
use naevus_run::Predictions;

/// Score predictions against the truth: ROC AUC (ties handled), the ISIC 2024 partial AUC
/// above 80% sensitivity, average precision, sensitivity at 90/95% specificity and
/// specificity at 90/95% sensitivity, each with a bootstrap 95% interval (resampling whole
/// patients or lesions when the truth names them); calibration (ECE with 10 bins, Brier
/// score, log loss); accuracy, sensitivity and specificity at a threshold and the confusion
/// matrix.
///
/// The truth is a prepared cache (its labels are used) or a CSV with an id column
/// (image_name, image_id or image) and a 0/1 label column (target, melanoma or label).
/// Every predicted id must be in the truth; truth rows without a prediction are ignored.
#[derive(clap::Args)]
pub struct Args {
    /// Predictions CSV with columns image_name,target (the target being a probability).
    #[arg(long)]
    pred: PathBuf,
    /// A prepared cache or a label CSV.
    #[arg(long)]
    truth: PathBuf,
    /// Probability at or above which an image counts as melanoma.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Bootstrap resamples for the 95% intervals (0 skips them).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Directory to write metrics.json into.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let predictions = Predictions::read(&args.pred)?;
    let truth = read_truth(&args.truth)?;
    let report = evaluate_full(&predictions, &truth, args.threshold, args.bootstrap)?;
    print_table(&report);
    if let Some(out) = &args.out {
        let path = out.join("metrics.json");
        naevus_run::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Labels and groups by image id.
pub struct Truth {
    labels: HashMap<String, (u8, String)>,
}

/// Joins predictions with the truth: scores, labels and groups in prediction order.
fn join<'a>(predictions: &Predictions, truth: &'a Truth) -> Result<(Vec<f64>, Vec<u8>, Vec<&'a str>)> {
    let mut scores = Vec::with_capacity(predictions.len());
    let mut labels = Vec::with_capacity(predictions.len());
    let mut groups = Vec::with_capacity(predictions.len());
    let mut unknown = Vec::new();
    for (id, p) in predictions.ids.iter().zip(&predictions.scores) {
        match truth.labels.get(id) {
            Some((label, group)) => {
                scores.push(*p);
                labels.push(*label);
                groups.push(group.as_str());
            }
            None => unknown.push(id.as_str()),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} predicted image ids are not in the truth, e.g. {}",
            unknown.len(),
            unknown.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        );
    }
    Ok((scores, labels, groups))
}

/// Joins predictions with the truth and computes the full metric table.
pub fn evaluate_full(predictions: &Predictions, truth: &Truth, threshold: f64, rounds: usize) -> Result<EvaluationReport> {
    let (scores, labels, groups) = join(predictions, truth)?;
    Ok(naevus_report::evaluate_scores(&scores, &labels, Some(&groups), threshold, rounds, 0)?)
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
    let c = &r.binary.confusion;
    println!("confusion at threshold {}: predicted melanoma / benign", r.binary.threshold);
    println!("    melanoma  {:>8} / {:<8}", c.tp, c.fn_);
    println!("    benign    {:>8} / {:<8}", c.fp, c.tn);
}

/// Prints the metric table.
pub fn print_report(r: &BinaryReport) {
    println!("images       {} ({} melanoma)", r.n, r.positives);
    println!("ROC AUC      {:.4}  (95% CI {:.4} to {:.4}, bootstrap)", r.auc, r.auc_ci95.0, r.auc_ci95.1);
    println!("log loss     {:.4}", r.log_loss);
    println!("at threshold {}:", r.threshold);
    println!("  accuracy    {:.4}", r.accuracy);
    println!("  sensitivity {:.4}", r.sensitivity);
    println!("  specificity {:.4}", r.specificity);
    let c = &r.confusion;
    println!("  confusion   predicted melanoma / benign");
    println!("    melanoma  {:>8} / {:<8}", c.tp, c.fn_);
    println!("    benign    {:>8} / {:<8}", c.fp, c.tn);
}

fn column(headers: &csv::StringRecord, names: &[&str], path: &Path) -> Result<usize> {
    naevus_run::predictions::find_column(headers, names).with_context(|| {
        format!(
            "{}: no column named {}; columns found: {}",
            path.display(),
            names.join(" or "),
            headers.iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Reads labels from a prepared cache directory or a label CSV.
pub fn read_truth(path: &Path) -> Result<Truth> {
    let mut labels = HashMap::new();
    if path.is_dir() {
        let cache = Cache::open(path)?;
        for r in cache.records() {
            if let Some(m) = r.melanoma {
                labels.insert(r.id.clone(), (u8::from(m), r.group.clone()));
            }
        }
        return Ok(Truth { labels });
    }
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let id_col = column(&headers, &["image_name", "image_id", "image"], path)?;
    let label_col = column(&headers, &["target", "melanoma", "label"], path)?;
    let group_col = column(&headers, &["patient_id", "lesion_id"], path).ok();
    for (n, row) in reader.records().enumerate() {
        let line = n + 2;
        let row = row.with_context(|| format!("{} line {line}: malformed row", path.display()))?;
        let id = row.get(id_col).unwrap_or("").trim().to_string();
        let text = row.get(label_col).unwrap_or("").trim();
        let label = match text {
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            _ => bail!("{} line {line}, column {}: expected 0 or 1, found \"{text}\"", path.display(), &headers[label_col]),
        };
        let group = group_col.and_then(|c| row.get(c)).filter(|g| !g.is_empty()).unwrap_or(&id).to_string();
        labels.insert(id, (label, group));
    }
    Ok(Truth { labels })
}
