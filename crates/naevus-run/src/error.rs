//! The crate's one error type. Every variant that comes from a file names the file and,
//! where the problem is inside it, the line and column.

use std::path::PathBuf;

/// Errors from reading and writing a run directory and prediction files.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Reading or writing a file through naevus-data failed (the message names it).
    #[error(transparent)]
    Write(#[from] naevus_data::DataError),
    /// A directory without run.json.
    #[error("{dir} is not a naevus run directory (cannot read {path}: {source})")]
    NotARun { dir: PathBuf, path: PathBuf, source: std::io::Error },
    /// run.json of another format version.
    #[error("{path} has run format {found}, this naevus reads format {expected}")]
    Format { path: PathBuf, found: u32, expected: u32 },
    /// A JSON or JSON-lines file that does not parse.
    #[error("{path} line {line}, column {column}: {message}")]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    /// A TOML file that does not parse (the message names line and column).
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    /// A CSV row could not be parsed at all (bad quoting, bad UTF-8, ...).
    #[error("{path} line {line}: malformed CSV row: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    /// A required column is absent from the header line.
    #[error("{path} line 1: no column named {wanted}; columns found: {found}")]
    MissingColumn { path: PathBuf, wanted: String, found: String },
    /// A cell that must hold a finite number does not.
    #[error("{path} line {line}, column {column} ({name}): expected a finite number, found \"{text}\"")]
    BadNumber { path: PathBuf, line: u64, column: usize, name: String, text: String },
    /// A probability outside [0, 1].
    #[error("{path} line {line}, column {column} ({name}): expected a probability between 0 and 1, found {value}")]
    NotAProbability { path: PathBuf, line: u64, column: usize, name: String, value: f64 },
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
    /// A sealed file (checkpoint, optimiser or training state) that is damaged or foreign.
    #[error("{path} cannot be used: {what}. Delete it and train again (or resume from an earlier copy)")]
    Damaged { path: PathBuf, what: String },
    /// A recipe or run setting that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

impl RunError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunError::Io { path: path.into(), source }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, line_offset: usize, e: &serde_json::Error) -> Self {
        RunError::Json { path: path.into(), line: line_offset + e.line(), column: e.column(), message: e.to_string() }
    }
}
