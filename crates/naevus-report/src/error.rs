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
    /// A CSV row could not be parsed at all (bad quoting, bad UTF-8, ...).
    #[error("{path} line {line}: malformed CSV row: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    /// A required column is absent from the header line.
    #[error("{path} line 1: no column named {wanted}; columns found: {found}")]
    MissingColumn { path: PathBuf, wanted: String, found: String },
    /// A cell that must hold a finite number does not.
    #[error("{path} line {line}, column {column} ({name}): expected a finite number, found \"{text}\"")]
    BadNumber { path: PathBuf, line: u64, column: usize, name: String, text: String },
    /// A cell that must hold a 0/1 label does not.
    #[error("{path} line {line}, column {column} ({name}): expected 0 or 1, found \"{text}\"")]
    BadLabel { path: PathBuf, line: u64, column: usize, name: String, text: String },
    /// An empty image id.
    #[error("{path} line {line}, column {column} ({name}): empty image id")]
    EmptyId { path: PathBuf, line: u64, column: usize, name: String },
    /// The same image id twice in one file.
    #[error("{path} line {line}, column {column}: image id \"{id}\" appears twice (first on line {first_line})")]
    DuplicateId { path: PathBuf, line: u64, column: usize, id: String, first_line: u64 },
    /// A prediction file without a single row.
    #[error("{path}: holds no predictions (only a header line, or nothing)")]
    NoRows { path: PathBuf },
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
    /// A JSON or JSON-lines file that does not parse.
    #[error("{path} line {line}, column {column}: {message}")]
    Json { path: PathBuf, line: usize, column: usize, message: String },
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
