//! `naevus evaluate`: score a prediction CSV against labels.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naevus_data::Cache;
use naevus_data::error::excerpt;
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
    /// Directory to write metrics.json into.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Most bootstrap resamples: 100 times the usual 1000, already minutes on a large set; each
/// resample keeps its metrics in memory.
const MAX_BOOTSTRAP: usize = 100_000;
/// Largest truth CSV: ISIC 2024's 401,059 rows take 60 MB.
const MAX_TRUTH_BYTES: u64 = 1 << 30;
/// Most rows of a truth CSV, which are all kept in memory: 25 times ISIC 2024's.
const MAX_TRUTH_ROWS: usize = 10_000_000;
/// Longest line of a truth CSV: real ones are under 1 KB, and a longer one is not a CSV
/// (`/dev/zero` is one endless line).
const MAX_TRUTH_LINE_BYTES: u64 = 1 << 20;

/// Refuses a --threshold outside [0, 1] (NaN too) and more than [`MAX_BOOTSTRAP`]
/// resamples; shared with `naevus report`, which takes the same two flags.
pub fn check_threshold_and_bootstrap(threshold: f64, bootstrap: usize) -> Result<()> {
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold {threshold}: expected a probability, a number from 0 to 1");
    }
    if bootstrap > MAX_BOOTSTRAP {
        bail!("--bootstrap {bootstrap}: at most {MAX_BOOTSTRAP} resamples");
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    check_threshold_and_bootstrap(args.threshold, args.bootstrap)?;
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
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    if size > MAX_TRUTH_BYTES {
        bail!("{} is {size} bytes long, more than the {MAX_TRUTH_BYTES} bytes (1 GiB) a truth CSV may have", path.display());
    }
    // Bounded while reading too: a device or FIFO has no size to check first.
    let mut reader = csv::Reader::from_reader(Bounded { inner: file, total: 0, line: 0 });
    let headers = reader.headers().with_context(|| format!("{} line 1: reading the header", path.display()))?.clone();
    let id_col = column(&headers, &["image_name", "image_id", "image"], path)?;
    let label_col = column(&headers, &["target", "melanoma", "label"], path)?;
    let group_col = column(&headers, &["patient_id", "lesion_id"], path).ok();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for (n, row) in reader.records().enumerate() {
        let line = n as u64 + 2;
        let row = row.with_context(|| format!("{} line {line}: malformed row", path.display()))?;
        let line = row.position().map_or(line, |p| p.line());
        if n >= MAX_TRUTH_ROWS {
            bail!("{} line {line}: more than the {MAX_TRUTH_ROWS} rows a truth CSV may have", path.display());
        }
        let id = row.get(id_col).unwrap_or("").trim().to_string();
        if let Some(first) = first_line.get(&id) {
            bail!(
                "{} line {line}, column {}: image id \"{}\" appears twice (first on line {first}); each image needs one label",
                path.display(),
                &headers[id_col],
                excerpt(&id)
            );
        }
        let text = row.get(label_col).unwrap_or("").trim();
        let label = match text {
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            _ => bail!("{} line {line}, column {}: expected 0 or 1, found \"{}\"", path.display(), &headers[label_col], excerpt(text)),
        };
        let group = group_col.and_then(|c| row.get(c)).filter(|g| !g.is_empty()).unwrap_or(&id).to_string();
        first_line.insert(id.clone(), line);
        labels.insert(id, (label, group));
    }
    Ok(Truth { labels })
}

/// A reader that fails once more than [`MAX_TRUTH_BYTES`] in all, or a line of more than
/// [`MAX_TRUTH_LINE_BYTES`], has come through: the csv crate keeps a whole record in memory.
struct Bounded<R> {
    inner: R,
    total: u64,
    /// Bytes since the last line end.
    line: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.total += n as u64;
        if self.total > MAX_TRUTH_BYTES {
            return Err(std::io::Error::other(format!("more than the {MAX_TRUTH_BYTES} bytes (1 GiB) a truth CSV may have")));
        }
        for &byte in &buffer[..n] {
            self.line = if byte == b'\n' { 0 } else { self.line + 1 };
            if self.line > MAX_TRUTH_LINE_BYTES {
                return Err(std::io::Error::other(format!(
                    "a line longer than the {MAX_TRUTH_LINE_BYTES} bytes (1 MiB) a truth CSV line may have; is this a CSV file?"
                )));
            }
        }
        Ok(n)
    }
}
