//! Everything the report shows of a run directory, read through naevus-run's [`RunDir`]:
//! run.json, config.toml (verbatim) and every fold's metrics.jsonl.

use std::path::PathBuf;

use naevus_run::{EpochMetrics, RunDir, RunInfo};

use crate::ReportError;

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
    /// The prepared cache the run was trained on.
    pub cache: PathBuf,
}

/// Reads run.json, config.toml and every fold's metrics.jsonl (a fold without one, e.g.
/// interrupted before its first epoch, gets an empty history).
pub fn read_run(dir: &std::path::Path) -> Result<RunData, ReportError> {
    let run = RunDir::new(dir);
    let info = run.read_info()?;
    let config_path = run.recipe_path();
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
        folds.push(FoldHistory { name: name.clone(), epochs: run.fold(name).read_epochs()? });
    }
    let cache = run.resolve_cache(&info);
    Ok(RunData { dir: dir.to_path_buf(), info, config_toml, folds, cache })
}
