//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the data layer. Row-level problems in a
/// dataset are not errors: they become [`crate::Reject`]s.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A CSV file lacks a column the reader needs.
    #[error("{}: required column \"{column}\" not found; columns found: {}", file.display(), found.join(", "))]
    MissingColumn {
        /// The CSV file.
        file: PathBuf,
        /// The required column.
        column: String,
        /// The columns the header does have.
        found: Vec<String>,
    },

    /// A CSV file could not be parsed at all (e.g. unreadable header).
    #[error("{}: line {line}: {message}", file.display())]
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What went wrong.
        message: String,
    },

    /// An image could not be decoded.
    #[error("{}: {reason}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// Why it could not be decoded.
        reason: String,
    },

    /// A prepared cache directory is missing, incomplete or does not match the inputs.
    #[error("cache {}: {reason}", dir.display())]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A function was called with an argument it cannot work with.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DataError {
    /// Shorthand for an I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}
