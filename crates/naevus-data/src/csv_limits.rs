//! Bounds on the CSV files a user gives (label and metadata CSVs, predictions, truth labels,
//! lists of image paths): a file with no line ends (`/dev/zero`) or an endless one (a FIFO, a
//! device) would otherwise be read into memory without end. The label CSVs are read whole
//! ([`read_at_most`]); the others are streamed through [`open_bounded`], the csv crate keeping
//! one record in memory at a time.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::DataError;

/// Largest CSV read: ISIC 2024's 401,059 rows take 60 MB.
pub const MAX_CSV_BYTES: u64 = 1 << 30;
/// Most rows kept in memory: 25 times ISIC 2024's.
pub const MAX_CSV_ROWS: usize = 10_000_000;
/// Longest line: real ones are under 1 KB; a longer one is not a CSV (`/dev/zero` is one
/// endless line).
pub const MAX_CSV_LINE_BYTES: u64 = 1 << 20;

/// Opens `path` for reading as a CSV: a regular file over [`MAX_CSV_BYTES`] is refused at
/// once; anything (a device or FIFO has no size to check first) fails while it is read once
/// more than that, or a line of more than [`MAX_CSV_LINE_BYTES`], has come through.
pub fn open_bounded(path: &Path) -> Result<BoundedRead<File>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if size > MAX_CSV_BYTES {
        return Err(too_large(path, size));
    }
    Ok(BoundedRead { inner: file, total: 0, line: 0 })
}

/// The whole of `path`, refused once it passes [`MAX_CSV_BYTES`] (lines are checked by the
/// caller, which can quote the start of one too long).
pub fn read_at_most(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_CSV_BYTES + 1).read_to_end(&mut bytes).map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_large(path: &Path, size: u64) -> DataError {
    DataError::TooLarge { path: path.to_path_buf(), size, limit: MAX_CSV_BYTES, what: "CSV (1 GiB)" }
}

/// A reader that fails past [`MAX_CSV_BYTES`] in all or [`MAX_CSV_LINE_BYTES`] in a line.
pub struct BoundedRead<R> {
    inner: R,
    total: u64,
    /// Bytes since the last line end.
    line: u64,
}

impl<R: Read> Read for BoundedRead<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.total += n as u64;
        if self.total > MAX_CSV_BYTES {
            return Err(std::io::Error::other(format!("more than the {MAX_CSV_BYTES} bytes (1 GiB) a CSV may have here")));
        }
        for &byte in &buffer[..n] {
            self.line = if byte == b'\n' || byte == b'\r' { 0 } else { self.line + 1 };
            if self.line > MAX_CSV_LINE_BYTES {
                return Err(std::io::Error::other(format!("a line longer than the {MAX_CSV_LINE_BYTES} bytes (1 MiB) a CSV line may have; is this a CSV file?")));
            }
        }
        Ok(n)
    }
}

/// The error for the row after the last one allowed.
pub fn too_many_rows(path: &Path, line: u64) -> DataError {
    DataError::Csv { file: path.to_path_buf(), line, message: format!("more than the {MAX_CSV_ROWS} rows a CSV may have here") }
}
