//! Reading prediction CSVs: `image_name,target` (Kaggle format), optionally with more
//! columns; a `label` column (as in a run's oof.csv) is read as the 0/1 truth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ReportError;

/// Names accepted for the image id column.
pub const ID_COLUMNS: &[&str] = &["image_name", "image_id", "image"];
/// Names accepted for the score column.
pub const SCORE_COLUMNS: &[&str] = &["target", "score", "probability"];

/// The rows of one prediction file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub path: PathBuf,
    pub ids: Vec<String>,
    pub scores: Vec<f64>,
    /// The `label` column (0/1) when the file has one.
    pub labels: Option<Vec<u8>>,
}

impl Predictions {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Index of the first header among `names` (a leading byte-order mark and spaces ignored).
fn find_column(headers: &csv::StringRecord, names: &[&str]) -> Option<usize> {
    headers.iter().position(|h| names.contains(&h.trim().trim_start_matches('\u{feff}')))
}

fn require_column(headers: &csv::StringRecord, names: &[&str], path: &Path) -> Result<usize, ReportError> {
    find_column(headers, names).ok_or_else(|| ReportError::MissingColumn {
        path: path.to_path_buf(),
        wanted: names.join(" or "),
        found: headers.iter().collect::<Vec<_>>().join(", "),
    })
}

fn csv_error(path: &Path, error: csv::Error) -> ReportError {
    let line = error.position().map(|p| p.line()).unwrap_or(1);
    ReportError::Csv { path: path.to_path_buf(), line, message: error.to_string() }
}

/// Reads a prediction CSV. Errors name the file, line and column of: a missing id or score
/// column, an empty id, a duplicate id, a score that is not a finite number, a label that is
/// not 0 or 1, a malformed row; a file without rows is an error too.
pub fn read_predictions(path: &Path) -> Result<Predictions, ReportError> {
    let file = std::fs::File::open(path).map_err(|e| ReportError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(std::io::BufReader::new(file));
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let id_col = require_column(&headers, ID_COLUMNS, path)?;
    let score_col = require_column(&headers, SCORE_COLUMNS, path)?;
    let label_col = find_column(&headers, &["label"]);
    let name = |c: usize| headers.get(c).unwrap_or("").trim().to_string();

    let mut out = Predictions { path: path.to_path_buf(), ids: Vec::new(), scores: Vec::new(), labels: label_col.map(|_| Vec::new()) };
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(path, e))?;
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let id = row.get(id_col).unwrap_or("").trim();
        if id.is_empty() {
            return Err(ReportError::EmptyId { path: path.to_path_buf(), line, column: id_col + 1, name: name(id_col) });
        }
        if let Some(&first) = first_line.get(id) {
            return Err(ReportError::DuplicateId { path: path.to_path_buf(), line, column: id_col + 1, id: id.to_string(), first_line: first });
        }
        let text = row.get(score_col).unwrap_or("").trim();
        let score = match text.parse::<f64>() {
            Ok(s) if s.is_finite() => s,
            _ => {
                return Err(ReportError::BadNumber {
                    path: path.to_path_buf(),
                    line,
                    column: score_col + 1,
                    name: name(score_col),
                    text: text.to_string(),
                });
            }
        };
        if let (Some(c), Some(labels)) = (label_col, out.labels.as_mut()) {
            let text = row.get(c).unwrap_or("").trim();
            let label = match text {
                "0" | "0.0" => 0,
                "1" | "1.0" => 1,
                _ => {
                    return Err(ReportError::BadLabel { path: path.to_path_buf(), line, column: c + 1, name: name(c), text: text.to_string() });
                }
            };
            labels.push(label);
        }
        first_line.insert(id.to_string(), line);
        out.ids.push(id.to_string());
        out.scores.push(score);
    }
    if out.ids.is_empty() {
        return Err(ReportError::NoRows { path: path.to_path_buf() });
    }
    Ok(out)
}

/// Writes `image_name,target` rows (scores in shortest round-trip form).
pub fn write_predictions(path: &Path, ids: &[String], scores: &[f64]) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_path(path).map_err(|e| ReportError::Csv { path: path.to_path_buf(), line: 1, message: e.to_string() })?;
    let fail = |e: csv::Error| ReportError::Csv { path: path.to_path_buf(), line: 0, message: format!("writing: {e}") };
    writer.write_record(["image_name", "target"]).map_err(fail)?;
    for (id, s) in ids.iter().zip(scores) {
        writer.write_record([id.as_str(), s.to_string().as_str()]).map_err(fail)?;
    }
    writer.flush().map_err(|e| ReportError::io(path, e))
}
