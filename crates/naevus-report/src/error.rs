//! The one error type of the crate. Every variant that comes from a file names
//! the file and, where the problem is inside it, the line and column.

use std::path::PathBuf;

use naevus_metrics::MetricsError;

/// Errors from reading predictions and runs, combining, computing and drawing.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A run directory or prediction file that cannot be read (the message names it).
    #[error(transparent)]
    Run(#[from] naevus_run::RunError),
    /// Files to combine do not hold the same image ids.
    #[error(
        "{path} does not hold the same image ids as {reference}: {n_missing} missing{missing_list}, {n_extra} extra{extra_list}"
    )]
    IdSetMismatch {
        path: PathBuf,
        reference: PathBuf,
        n_missing: usize,
        missing_list: String,
        n_extra: usize,
        extra_list: String,
    },
    /// A TOML file that does not parse (the message names line and column).
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    /// A prepared cache that cannot be opened.
    #[error("opening the prepared cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    /// Predicted ids without a label.
    #[error("{path}: {count} predicted image ids have no label in {truth}, e.g. {examples}")]
    Unlabelled { path: PathBuf, truth: PathBuf, count: usize, examples: String },
    /// Wrong use of the API or of the command line (weights, modes, ...).
    #[error("{0}")]
    Invalid(String),
    /// A metric could not be computed.
    #[error("{what}: {source}")]
    Metrics { what: String, source: MetricsError },
    /// A chart could not be drawn or encoded.
    #[error("drawing {chart}: {message}")]
    Plot { chart: String, message: String },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io { path: path.into(), source }
    }

    pub(crate) fn metrics(what: impl Into<String>) -> impl FnOnce(MetricsError) -> Self {
        let what = what.into();
        move |source| ReportError::Metrics { what, source }
    }
}
