//! The truth `evaluate` scores predictions against: a prepared cache's labels, or a label CSV
//! with an id column (image_name, image_id or image), a 0/1 label column (target, melanoma or
//! label) and optionally a patient_id or lesion_id column for the bootstrap's groups. Its one
//! reader.

use std::collections::HashMap;
use std::path::Path;

use naevus_data::Cache;
use naevus_data::error::excerpt;
use naevus_data::metadata::parse_label;

use naevus_data::csv_limits::open_bounded;
use crate::error::RunError;
use crate::predictions::{ID_COLUMNS, IdColumn, csv_error, find_column, require_column};

/// Names accepted for the label column.
pub const LABEL_COLUMNS: &[&str] = &["target", "melanoma", "label"];
/// Names accepted for the group column.
pub const GROUP_COLUMNS: &[&str] = &["patient_id", "lesion_id"];

/// Labels, groups and sources by image id.
#[derive(Debug, Default)]
pub struct Truth {
    labels: HashMap<String, (u8, String)>,
    /// The dataset each image came from: a cache's record sources, or a CSV's `source` column.
    sources: HashMap<String, String>,
}

impl Truth {
    /// The label (0 or 1) and group of `id`.
    pub fn get(&self, id: &str) -> Option<(u8, &str)> {
        self.labels.get(id).map(|(label, group)| (*label, group.as_str()))
    }

    /// The source of `id`, when the truth names sources.
    pub fn source(&self, id: &str) -> Option<&str> {
        self.sources.get(id).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads the labels of a prepared cache directory, or of a label CSV (bounded as
    /// [`naevus_data::csv_limits`] says). Each id must have one row; a label is 0 or 1 (or 0.0,
    /// 1.0). Errors name the file, line and column.
    pub fn read(path: &Path) -> Result<Self, RunError> {
        if path.is_dir() {
            let cache = Cache::open(path).map_err(|e| RunError::Invalid(e.to_string()))?;
            let labels = cache.records().iter().filter_map(|r| r.melanoma.map(|m| (r.id.clone(), (u8::from(m), r.group.clone())))).collect();
            let sources = cache.records().iter().map(|r| (r.id.clone(), r.source.clone())).collect();
            return Ok(Self { labels, sources });
        }
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(open_bounded(path)?);
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let id_col = require_column(&headers, ID_COLUMNS, path)?;
        let label_col = require_column(&headers, LABEL_COLUMNS, path)?;
        let group_col = find_column(&headers, GROUP_COLUMNS);
        let source_col = find_column(&headers, &["source"]);
        let name = |c: usize| headers.get(c).unwrap_or("").trim().to_string();
        let (mut labels, mut sources) = (HashMap::new(), HashMap::new());
        let mut ids = IdColumn::new(path, &headers, id_col);
        for (n, row) in reader.records().enumerate() {
            let row = row.map_err(|e| csv_error(path, e))?;
            let (line, id) = ids.check(n, &row)?;
            let text = row.get(label_col).unwrap_or("").trim();
            let label = u8::from(
                parse_label(text).map_err(|_| RunError::BadLabel { path: path.to_path_buf(), line, column: label_col + 1, name: name(label_col), text: excerpt(text) })?,
            );
            let group = group_col.and_then(|c| row.get(c)).map(str::trim).filter(|g| !g.is_empty()).unwrap_or(id);
            labels.insert(id.to_string(), (label, group.to_string()));
            if let Some(source) = source_col.and_then(|c| row.get(c)).map(str::trim).filter(|s| !s.is_empty()) {
                sources.insert(id.to_string(), source.to_string());
            }
        }
        Ok(Self { labels, sources })
    }
}
