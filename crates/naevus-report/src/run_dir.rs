//! Reading a run directory written by `naevus train`, without depending on the engine:
//! run.json, config.toml (verbatim), fold-K/metrics.jsonl.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ReportError;

/// The parts of run.json the report shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub naevus_version: String,
    pub model: String,
    /// The loss, as written by the engine (a name or a table of settings).
    #[serde(default)]
    pub loss: serde_json::Value,
    #[serde(default)]
    pub num_outputs: usize,
    #[serde(default)]
    pub image_size: u32,
    /// The prepared cache the run was trained on.
    pub cache: PathBuf,
    pub folds: Vec<String>,
}

/// One line of fold-K/metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// `null` when the validation set holds one class only.
    #[serde(default)]
    pub val_auc: Option<f64>,
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub images_per_second: Option<f64>,
    #[serde(default)]
    pub skipped_steps: Option<u64>,
}

/// The per-epoch history of one fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldHistory {
    pub name: String,
    pub epochs: Vec<EpochMetrics>,
}

/// Everything read from a run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct RunData {
    pub dir: PathBuf,
    pub info: RunInfo,
    /// config.toml verbatim (empty when the file is absent).
    pub config_toml: String,
    pub folds: Vec<FoldHistory>,
}

fn json_error(path: &Path, line_offset: usize, e: &serde_json::Error) -> ReportError {
    ReportError::Json { path: path.to_path_buf(), line: line_offset + e.line(), column: e.column(), message: e.to_string() }
}

/// Reads run.json, config.toml and every fold's metrics.jsonl (a fold without one, e.g.
/// interrupted before its first epoch, gets an empty history).
pub fn read_run(dir: &Path) -> Result<RunData, ReportError> {
    let run_json = dir.join("run.json");
    let text = std::fs::read_to_string(&run_json).map_err(|e| ReportError::io(&run_json, e))?;
    let info: RunInfo = serde_json::from_str(&text).map_err(|e| json_error(&run_json, 0, &e))?;

    let config_path = dir.join("config.toml");
    let config_toml = match std::fs::read_to_string(&config_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ReportError::io(&config_path, e)),
    };
    if let Err(e) = config_toml.parse::<toml::Table>() {
        return Err(ReportError::Toml { path: config_path, message: e.to_string() });
    }

    let mut folds = Vec::with_capacity(info.folds.len());
    for name in &info.folds {
        let path = dir.join(name).join("metrics.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ReportError::io(&path, e)),
        };
        let mut epochs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let epoch: EpochMetrics = serde_json::from_str(line).map_err(|e| json_error(&path, i, &e))?;
            epochs.push(epoch);
        }
        folds.push(FoldHistory { name: name.clone(), epochs });
    }
    Ok(RunData { dir: dir.to_path_buf(), info, config_toml, folds })
}

/// The cache a run names: as written when absolute or when it exists relative to the
/// current directory, else relative to the run directory.
pub fn resolve_cache(run: &RunData) -> PathBuf {
    let cache = &run.info.cache;
    if cache.is_absolute() || cache.exists() {
        return cache.clone();
    }
    run.dir.join(cache)
}
