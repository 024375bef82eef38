//! The HTML report of a run: one self-contained page (charts embedded as base64 PNG data
//! URIs, inline CSS, no scripts, no external resources) plus the PNG files themselves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use naevus_data::{Cache, Metadata, Sex};
use naevus_metrics::SubgroupMetrics;

use crate::evaluation::{EvaluationReport, evaluate_scores, table_rows};
use crate::plots::{self, Marker};
use crate::run_dir::{RunData, read_run};
use naevus_run::read_predictions;
use crate::ReportError;

/// What to report on.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    pub run: PathBuf,
    /// Predictions to score; `None` uses RUN/oof.csv and its label column.
    pub pred: Option<PathBuf>,
    pub threshold: f64,
    pub bootstrap_rounds: usize,
    pub out: PathBuf,
}

/// Size, positives and AUC by subgroup of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgroupTable {
    pub attribute: String,
    pub rows: Vec<SubgroupMetrics>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    pub html: PathBuf,
    pub pngs: Vec<PathBuf>,
    pub metrics: EvaluationReport,
    pub predictions: PathBuf,
    /// Why the subgroup tables are missing, when they are.
    pub subgroup_note: Option<String>,
}

/// The chart files, in page order, with their captions.
pub const CHARTS: [(&str, &str); 5] = [
    ("roc.png", "ROC curve"),
    ("pr.png", "Precision-recall curve"),
    ("reliability.png", "Reliability diagram"),
    ("confusion.png", "Confusion matrix"),
    ("training.png", "Training history"),
];

/// Age band of an age in years: <30, 30-45, 45-60, 60-75, 75+.
pub fn age_band(age: f32) -> &'static str {
    match age {
        a if a < 30.0 => "<30",
        a if a < 45.0 => "30-45",
        a if a < 60.0 => "45-60",
        a if a < 75.0 => "60-75",
        _ => "75+",
    }
}

/// Subgroup tables by sex, age band and anatomical site. `metadata[i]` is `None` for an
/// image absent from the cache (it joins each attribute's "unknown" group).
pub fn subgroup_tables(scores: &[f64], labels: &[u8], metadata: &[Option<&Metadata>]) -> Result<Vec<SubgroupTable>, ReportError> {
    let sex: Vec<Option<String>> = metadata
        .iter()
        .map(|m| {
            m.and_then(|m| m.sex).map(|s| match s {
                Sex::Male => "male".to_string(),
                Sex::Female => "female".to_string(),
            })
        })
        .collect();
    let age: Vec<Option<String>> = metadata.iter().map(|m| m.and_then(|m| m.age).map(|a| age_band(a).to_string())).collect();
    let site: Vec<Option<String>> = metadata.iter().map(|m| m.and_then(|m| m.site.clone()).filter(|s| !s.trim().is_empty())).collect();
    let mut tables = Vec::new();
    for (attribute, keys) in [("sex", sex), ("age", age), ("anatomical site", site)] {
        let mut rows = naevus_metrics::subgroup_aucs(scores, labels, &keys).map_err(ReportError::metrics(format!("subgroups by {attribute}")))?;
        if attribute == "age" {
            let order = |k: &Option<String>| match k.as_deref() {
                Some("<30") => 0,
                Some("30-45") => 1,
                Some("45-60") => 2,
                Some("60-75") => 3,
                Some(_) => 4,
                None => 5,
            };
            rows.sort_by_key(|r| order(&r.key));
        } else {
            // Missing key last.
            rows.sort_by_key(|r| r.key.is_none());
        }
        tables.push(SubgroupTable { attribute: attribute.to_string(), rows });
    }
    Ok(tables)
}

fn open_cache(path: &Path) -> Result<Cache, ReportError> {
    Cache::open(path).map_err(|e| ReportError::Cache { path: path.to_path_buf(), message: e.to_string() })
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|e| ReportError::io(path, e))
}

/// Reads the run and the predictions, computes everything, and writes OUT/report.html,
/// OUT/metrics.json and the five PNGs.
pub fn write_report(options: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let run = read_run(&options.run)?;
    let pred_path = options.pred.clone().unwrap_or_else(|| options.run.join("oof.csv"));
    let predictions = read_predictions(&pred_path)?;
    let cache_path = run.cache.clone();

    // Labels: the oof.csv label column by default, else (or with --pred) the cache.
    let cache = match (&options.pred, &predictions.labels) {
        (None, Some(_)) => open_cache(&cache_path).ok(),
        _ => Some(open_cache(&cache_path)?),
    };
    let by_id: HashMap<&str, &naevus_data::Record> =
        cache.as_ref().map(|c| c.records().iter().map(|r| (r.id.as_str(), r)).collect()).unwrap_or_default();
    let labels: Vec<u8> = match (&options.pred, &predictions.labels) {
        (None, Some(labels)) => labels.clone(),
        _ => {
            let mut labels = Vec::with_capacity(predictions.len());
            let mut missing = Vec::new();
            for id in &predictions.ids {
                match by_id.get(id.as_str()).and_then(|r| r.melanoma) {
                    Some(m) => labels.push(u8::from(m)),
                    None => missing.push(id.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(ReportError::Unlabelled {
                    path: pred_path.clone(),
                    truth: cache_path.clone(),
                    count: missing.len(),
                    examples: missing.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                });
            }
            labels
        }
    };
    let scores = &predictions.scores;
    let records: Vec<Option<&naevus_data::Record>> = predictions.ids.iter().map(|id| by_id.get(id.as_str()).copied()).collect();
    // Resample whole patients/lesions when every image's group is known.
    let groups: Option<Vec<&str>> = records.iter().map(|r| r.map(|r| r.group.as_str())).collect();
    let mut metrics = evaluate_scores(scores, &labels, groups.as_deref(), options.threshold, options.bootstrap_rounds, 0)?;
    let sources: Vec<Option<String>> = match &predictions.sources {
        Some(sources) => sources.iter().map(|s| Some(s.clone()).filter(|s| !s.is_empty())).collect(),
        None => records.iter().map(|r| r.map(|r| r.source.clone())).collect(),
    };
    metrics.by_source = naevus_metrics::per_source_aucs(scores, &labels, &sources, groups.as_deref(), options.bootstrap_rounds, 0)
        .map_err(ReportError::metrics("AUC by source"))?;

    let (subgroups, subgroup_note) = if cache.is_some() {
        let metadata: Vec<Option<&Metadata>> = records.iter().map(|r| r.map(|r| &r.metadata)).collect();
        (subgroup_tables(scores, &labels, &metadata)?, None)
    } else {
        (Vec::new(), Some(format!("the run's cache {} could not be opened, so no metadata is available", cache_path.display())))
    };

    // Charts.
    let curve = naevus_metrics::roc_curve(scores, &labels).map_err(ReportError::metrics("ROC curve"))?;
    let b = &metrics.binary;
    let mut markers = Vec::new();
    for o in [&metrics.sensitivity_at_specificity_90, &metrics.sensitivity_at_specificity_95] {
        markers.push(Marker {
            label: format!("{:.0}% specificity: sensitivity {:.3}", o.target * 100.0, o.sensitivity),
            x: 1.0 - o.specificity,
            y: o.sensitivity,
        });
    }
    markers.push(Marker {
        label: format!("threshold {}: sensitivity {:.3}, specificity {:.3}", b.threshold, b.sensitivity, b.specificity),
        x: 1.0 - b.specificity,
        y: b.sensitivity,
    });
    let bins = match metrics.ece_10_bins {
        Some(_) => Some(naevus_metrics::reliability_bins(scores, &labels, 10).map_err(ReportError::metrics("reliability bins"))?),
        None => None,
    };
    let pngs = [
        plots::roc_chart(&curve, b.auc, &markers)?,
        plots::pr_chart(&curve, b.positives, b.n - b.positives, metrics.average_precision.value)?,
        plots::reliability_chart(bins.as_deref(), metrics.ece_10_bins)?,
        plots::confusion_chart(&b.confusion, b.threshold)?,
        plots::training_chart(&run.folds)?,
    ];

    std::fs::create_dir_all(&options.out).map_err(|e| ReportError::io(&options.out, e))?;
    let mut png_paths = Vec::new();
    for ((name, _), bytes) in CHARTS.iter().zip(&pngs) {
        let path = options.out.join(name);
        write_file(&path, bytes)?;
        png_paths.push(path);
    }
    crate::metrics_json::write_metrics_json(&options.out.join("metrics.json"), &metrics)?;
    let html = render_html(&run, &pred_path, &metrics, &subgroups, subgroup_note.as_deref(), &pngs);
    let html_path = options.out.join("report.html");
    write_file(&html_path, html.as_bytes())?;
    Ok(ReportSummary { html: html_path, pngs: png_paths, metrics, predictions: pred_path, subgroup_note })
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f0f0}\
figure{display:inline-block;margin:.5em}figcaption{text-align:center;color:#555}\
img{max-width:100%;border:1px solid #ddd}pre{background:#f7f7f7;padding:1em;overflow:auto;border:1px solid #ddd}\
.note{color:#666}";

fn render_html(
    run: &RunData,
    pred_path: &Path,
    metrics: &EvaluationReport,
    subgroups: &[SubgroupTable],
    subgroup_note: Option<&str>,
    pngs: &[Vec<u8>],
) -> String {
    let b = &metrics.binary;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!("<title>naevus report: {}</title>\n", escape(&run.dir.display().to_string())));
    h.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    h.push_str(&format!("<h1>naevus report: {}</h1>\n", escape(&run.dir.display().to_string())));
    h.push_str("<table>\n");
    let loss = serde_json::to_value(run.info.loss).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    for (k, v) in [
        ("model", run.info.model.clone()),
        ("loss", loss),
        ("input size", format!("{} px", run.info.image_size)),
        ("folds", run.info.folds.join(", ")),
        ("trained with", format!("naevus {}", run.info.naevus_version)),
        ("predictions", pred_path.display().to_string()),
        ("images", format!("{} ({} melanoma)", b.n, b.positives)),
    ] {
        h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(k), escape(&v)));
    }
    h.push_str("</table>\n");

    h.push_str("<h2>Metrics</h2>\n");
    let unit = if metrics.bootstrap_unit == "group" { "patients or lesions" } else { "images" };
    h.push_str(&format!(
        "<p class=\"note\">95% intervals: percentile bootstrap, {} resamples of {unit}.</p>\n",
        metrics.bootstrap_rounds
    ));
    h.push_str("<table id=\"metrics\">\n<tr><th>metric</th><th>value</th><th>95% CI</th><th>note</th></tr>\n");
    for row in table_rows(metrics) {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(&row.name),
            escape(&row.value),
            escape(&row.ci95),
            escape(&row.note)
        ));
    }
    h.push_str("</table>\n");

    if !metrics.by_source.is_empty() {
        h.push_str("<h2>By source</h2>\n<p class=\"note\">Each source's images scored apart (same intervals as above): \
                    a model is only as good as its worst source, and the pooled figure leans towards the largest.</p>\n");
        h.push_str("<table id=\"by-source\">\n<tr><th>source</th><th>images</th><th>melanoma</th><th>ROC AUC</th><th>95% CI</th></tr>\n");
        for r in &metrics.by_source {
            let auc = r.auc.map_or_else(|| "- (one class)".to_string(), |a| format!("{a:.4}"));
            let ci = r.auc_ci95.filter(|(low, high)| low.is_finite() && high.is_finite()).map_or(String::new(), |(low, high)| format!("{low:.4} to {high:.4}"));
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                escape(r.key.as_deref().unwrap_or("unknown")),
                r.n,
                r.positives,
                escape(&auc),
                escape(&ci)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Charts</h2>\n");
    for ((name, caption), png) in CHARTS.iter().zip(pngs) {
        let data = base64::engine::general_purpose::STANDARD.encode(png);
        h.push_str(&format!(
            "<figure><img src=\"data:image/png;base64,{data}\" alt=\"{}\"><figcaption>{} ({})</figcaption></figure>\n",
            escape(caption),
            escape(caption),
            escape(name)
        ));
    }

    h.push_str("<h2>Subgroups</h2>\n");
    if let Some(note) = subgroup_note {
        h.push_str(&format!("<p class=\"note\">No subgroup tables: {}.</p>\n", escape(note)));
    }
    for table in subgroups {
        h.push_str(&format!("<h3>By {}</h3>\n<table class=\"subgroups\">\n", escape(&table.attribute)));
        h.push_str("<tr><th>subgroup</th><th>images</th><th>melanoma</th><th>ROC AUC</th></tr>\n");
        for r in &table.rows {
            let key = r.key.clone().unwrap_or_else(|| "unknown".to_string());
            let auc = r.auc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "- (one class)".to_string());
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                escape(&key),
                r.n,
                r.positives,
                escape(&auc)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Recipe (config.toml)</h2>\n");
    if run.config_toml.is_empty() {
        h.push_str("<p class=\"note\">The run has no config.toml.</p>\n");
    } else {
        h.push_str(&format!("<pre>{}</pre>\n", escape(&run.config_toml)));
    }
    h.push_str("</body>\n</html>\n");
    h
}
