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
    #[error("{}: required column \"{column}\" not found; columns found: {}", file.display(), column_list(found))]
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

    /// A file over the size a file of its kind may have.
    #[error("{} is {size} bytes long, more than the {limit} bytes a {what} may have here", path.display())]
    TooLarge {
        path: PathBuf,
        /// Its size, or at least how much was read of it.
        size: u64,
        limit: u64,
        /// What kind of file, e.g. "CSV (1 GiB)".
        what: &'static str,
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

/// Longest excerpt of an input value that a message quotes.
const EXCERPT_CHARS: usize = 80;

/// `s`, or its first 80 characters and its length when longer: a message must stay readable
/// (and small) whatever the input, e.g. a 50 MB line without a newline. Public so that the
/// readers of the other crates quote their inputs the same way.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &s[..cut], s.len()),
    }
}

/// `excerpt` of raw bytes (invalid UTF-8 shown as U+FFFD); only the start is decoded.
pub(crate) fn excerpt_bytes(bytes: &[u8]) -> String {
    // At most 4 bytes a character: this head holds more than EXCERPT_CHARS of them, or is all of `bytes`.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4 * EXCERPT_CHARS + 4)]);
    match head.char_indices().nth(EXCERPT_CHARS) {
        None => head.into_owned(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &head[..cut], bytes.len()),
    }
}

/// Header names for a message: each excerpted, the first 60 of them.
fn column_list(found: &[String]) -> String {
    const SHOWN: usize = 60;
    let mut list: Vec<String> = found.iter().take(SHOWN).map(|c| excerpt(c)).collect();
    if found.len() > SHOWN {
        list.push(format!("and {} more", found.len() - SHOWN));
    }
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"é".repeat(80)) && cut.ends_with("... (2000 bytes in all)"), "{cut}");
        assert_eq!(excerpt_bytes(b"abc"), "abc");
        let bytes = vec![b'x'; 50 << 20];
        assert_eq!(excerpt_bytes(&bytes), format!("{}... (52428800 bytes in all)", "x".repeat(80)));
        let names: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert!(column_list(&names).ends_with("59, and 40 more"));
    }
}
