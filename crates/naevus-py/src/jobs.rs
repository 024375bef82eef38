//! `naevus.evaluate`, `naevus.prepare` and `naevus.train`: thin calls into the library jobs
//! the command line runs, with their progress on standard error as there.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::{Cache, PrepareOptions, SourceKind, SourceSpec};
use naevus_engine::TrainConfig;
use naevus_engine::train::Start;
use pyo3::prelude::*;

use crate::errors::or_raise;

/// The ISIC metric table of `y_score` against `y_true` (0/1), with bootstrap intervals over
/// `groups` (patients or lesions) when given: metrics.json's document, as JSON text.
#[pyfunction]
#[pyo3(signature = (y_true, y_score, groups=None, threshold=0.5, bootstrap=1000))]
pub fn evaluate_json(py: Python<'_>, y_true: Vec<i64>, y_score: Vec<f64>, groups: Option<Vec<String>>, threshold: f64, bootstrap: usize) -> PyResult<String> {
    crate::errors::or_raise(py.allow_threads(move || -> Result<String> {
        naevus_report::evaluation::check_threshold_and_bootstrap(threshold, bootstrap)?;
        if y_true.len() != y_score.len() || groups.as_ref().is_some_and(|g| g.len() != y_true.len()) {
            bail!(
                "y_true has {} values, y_score {}{}: give one of each per image",
                y_true.len(),
                y_score.len(),
                groups.as_ref().map_or(String::new(), |g| format!(", groups {}", g.len()))
            );
        }
        let labels = y_true
            .iter()
            .enumerate()
            .map(|(i, &label)| u8::try_from(label).ok().filter(|l| *l <= 1).with_context(|| format!("y_true[{i}] is {label}, not 0 or 1")))
            .collect::<Result<Vec<u8>>>()?;
        if let Some(i) = y_score.iter().position(|s| !s.is_finite()) {
            bail!("y_score[{i}] is {}, not a finite number", y_score[i]);
        }
        let groups: Option<Vec<&str>> = groups.as_ref().map(|g| g.iter().map(String::as_str).collect());
        let report = naevus_report::evaluate_scores(&y_score, &labels, groups.as_deref(), threshold, bootstrap, 0)?;
        Ok(serde_json::to_string(&naevus_report::metrics_document(&report))?)
    }))
}

/// `naevus prepare`: reads a dataset of `source` kind and prepares its images at `size` into
/// the cache `out` (resumable). Returns (prepared, already done, rejected, rejects.csv).
#[pyfunction]
#[pyo3(signature = (source, images, out, csv=None, size=256, metadata_csv=None))]
pub fn prepare(
    py: Python<'_>,
    source: &str,
    images: PathBuf,
    out: PathBuf,
    csv: Option<PathBuf>,
    size: u32,
    metadata_csv: Option<PathBuf>,
) -> PyResult<(usize, usize, usize, PathBuf)> {
    let kind = or_raise(SourceKind::from_str(source).map_err(anyhow::Error::from))?;
    or_raise(py.allow_threads(move || -> Result<_> {
        let data = naevus_data::read_source(&SourceSpec { kind, csv, images, metadata_csv })?;
        // rejects.csv also lists cells left unknown on images that were kept.
        let kept = data.rejects.iter().filter(|r| naevus_data::sources::is_kept_note(r)).count();
        let summary = naevus_data::prepare(data, &out, &PrepareOptions { size, progress: true, ..Default::default() })?;
        eprintln!("{summary}");
        Ok((summary.prepared, summary.already_done, summary.rejected.saturating_sub(kept), summary.rejects_csv))
    }))
}

/// `naevus train`: trains on the cache `data` into the run `out`, with the recipe file
/// `config` (default: the built-in defaults) changed by `recipe_json`'s keys (recipe keys, as
/// in configs/*.toml); `resume` continues the run there. Returns the training's summary as JSON.
#[pyfunction]
#[pyo3(signature = (data, out, config=None, recipe_json="{}", resume=false))]
pub fn train(py: Python<'_>, data: PathBuf, out: PathBuf, config: Option<PathBuf>, recipe_json: &str, resume: bool) -> PyResult<String> {
    let recipe_json = recipe_json.to_string();
    or_raise(py.allow_threads(move || -> Result<String> {
        let overrides: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&recipe_json).context("the recipe keys")?;
        let mut table: toml::Table = match &config {
            Some(path) => toml::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("{} is not TOML", path.display()))?,
            None => toml::Table::new(),
        };
        let changed = config.is_some() || !overrides.is_empty();
        for (key, value) in overrides {
            let value: toml::Value = serde_json::from_value(value.clone()).with_context(|| format!("recipe key {key}: {value} is not a recipe value"))?;
            table.insert(key, value);
        }
        let recipe = TrainConfig::from_toml(&toml::to_string(&table)?).map_err(anyhow::Error::msg)?;
        let start = if resume { Start::Resume { file: changed.then_some(recipe), flags: Default::default() } } else { Start::Fresh(recipe) };
        let cache = Arc::new(Cache::open(&data).with_context(|| format!("opening cache {}", data.display()))?);
        let report = naevus_engine::train::train(cache, start, &out, &[])?;
        Ok(serde_json::json!({
            "run": report.run_dir,
            "oof_auc": report.oof_auc,
            "by_source": report.oof_by_source.iter().map(|s| s.describe()).collect::<Vec<_>>(),
            "seconds": report.seconds,
        })
        .to_string())
    }))
}
