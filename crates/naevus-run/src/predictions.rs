//! The predictions CSV, `image_name,target` (the SIIM-ISIC submission format), or a run's
//! oof.csv, `image_name,prediction,label,fold,source` (`prediction`, since in ISIC's CSVs
//! `target` is the truth): its one reader and its one writer. Columns are found by name, in
//! any order, among any others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use naevus_data::ClassScheme;
use naevus_data::error::excerpt;
use naevus_data::metadata::parse_label;

use naevus_data::csv_limits::{MAX_CSV_ROWS, open_bounded, too_many_rows};
use crate::error::RunError;
use crate::guard::DomainCheck;
use crate::write_atomic;

/// Names accepted for the image id column.
pub const ID_COLUMNS: &[&str] = &["image_name", "image_id", "image"];
/// Names accepted for the score column; `prediction` is taken first wherever it is.
pub const SCORE_COLUMNS: &[&str] = &["prediction", "target", "score", "probability"];

/// The rows of one prediction file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub path: PathBuf,
    pub ids: Vec<String>,
    /// Melanoma probabilities, each in [0, 1].
    pub scores: Vec<f64>,
    /// The `label` column (0/1) when the file has one.
    pub labels: Option<Vec<u8>>,
    /// The `fold` column when the file has one (which fold held the image out).
    pub folds: Option<Vec<String>>,
    /// The `source` column when the file has one (the dataset the image came from).
    pub sources: Option<Vec<String>>,
}

impl Predictions {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Reads a prediction CSV. Errors name the file, line and column of: a missing id or
    /// score column, an empty id, a duplicate id, a score that is not a finite number or not
    /// a probability, a label that is not 0 or 1, a malformed row; a file without rows is an
    /// error too, and so is one past the bounds of [`naevus_data::csv_limits`].
    pub fn read(path: &Path) -> Result<Self, RunError> {
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(open_bounded(path)?);
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let id_col = require_column(&headers, ID_COLUMNS, path)?;
        let score_col = match find_column(&headers, &["prediction"]) {
            Some(column) => column,
            None => require_column(&headers, SCORE_COLUMNS, path)?,
        };
        let label_col = find_column(&headers, &["label"]);
        let fold_col = find_column(&headers, &["fold"]);
        let source_col = find_column(&headers, &["source"]);
        let name = |c: usize| headers.get(c).unwrap_or("").trim().to_string();

        let mut out = Predictions {
            path: path.to_path_buf(),
            ids: Vec::new(),
            scores: Vec::new(),
            labels: label_col.map(|_| Vec::new()),
            folds: fold_col.map(|_| Vec::new()),
            sources: source_col.map(|_| Vec::new()),
        };
        let mut ids = IdColumn::new(path, &headers, id_col);
        for (n, row) in reader.records().enumerate() {
            let row = row.map_err(|e| csv_error(path, e))?;
            let (line, id) = ids.check(n, &row)?;
            let text = row.get(score_col).unwrap_or("").trim();
            let score = match text.parse::<f64>() {
                Ok(s) if s.is_finite() => s,
                _ => {
                    let (column, name, text) = (score_col + 1, name(score_col), excerpt(text));
                    return Err(RunError::BadNumber { path: path.to_path_buf(), line, column, name, text });
                }
            };
            if !(0.0..=1.0).contains(&score) {
                return Err(RunError::NotAProbability { path: path.to_path_buf(), line, column: score_col + 1, name: name(score_col), value: score });
            }
            if let (Some(c), Some(labels)) = (label_col, out.labels.as_mut()) {
                let text = row.get(c).unwrap_or("").trim();
                let label = parse_label(text).map_err(|_| RunError::BadLabel { path: path.to_path_buf(), line, column: c + 1, name: name(c), text: excerpt(text) })?;
                labels.push(u8::from(label));
            }
            if let (Some(c), Some(folds)) = (fold_col, out.folds.as_mut()) {
                folds.push(row.get(c).unwrap_or("").trim().to_string());
            }
            if let (Some(c), Some(sources)) = (source_col, out.sources.as_mut()) {
                sources.push(row.get(c).unwrap_or("").trim().to_string());
            }
            out.ids.push(id.to_string());
            out.scores.push(score);
        }
        if out.ids.is_empty() {
            return Err(RunError::NoRows { path: path.to_path_buf() });
        }
        Ok(out)
    }
}

/// Reads a prediction CSV (see [`Predictions::read`]).
pub fn read_predictions(path: &Path) -> Result<Predictions, RunError> {
    Predictions::read(path)
}

/// Writes `image_name,target` rows atomically (see [`write_rows`]).
pub fn write_predictions(path: &Path, ids: &[String], scores: &[f64]) -> Result<(), RunError> {
    write_rows::<&str>(path, "target", ids, scores, &[])
}

/// Writes `image_name,prediction,label,fold,source` rows atomically, as a run's oof.csv has them.
pub fn write_out_of_fold(path: &Path, ids: &[String], scores: &[f64], labels: &[u8], folds: &[String], sources: &[String]) -> Result<(), RunError> {
    let labels = labels.iter().map(u8::to_string).collect();
    write_rows(path, "prediction", ids, scores, &[("label", labels), ("fold", folds.to_vec()), ("source", sources.to_vec())])
}

/// What `naevus predict` (or `explain`) found for each image, as [`write_scored`] writes it.
#[derive(Debug, Clone, Default)]
pub struct ScoredRows<'a> {
    pub ids: &'a [String],
    /// The melanoma probability on the run's one scale (calibrated when it has a calibration).
    pub target: &'a [f64],
    /// The probability before calibration, when `target` is calibrated.
    pub uncalibrated: Option<&'a [f64]>,
    /// What the out-of-domain guard says, when the model has one.
    pub domain: Option<&'a [DomainCheck]>,
    /// The file each image was read from, for image files.
    pub paths: Option<&'a [String]>,
    /// For an ensemble: its members' names and, per image, each one's probability on its own
    /// scale.
    pub members: Option<(&'a [String], &'a [Vec<f64>])>,
}

/// Writes scored images atomically: `image_name,target` rows, then `target_uncalibrated` when
/// target is calibrated, `domain_distance` (in units of the guard's threshold) and `in_domain`
/// (true or false) when the model has an out-of-domain guard, for an ensemble `member_NAME`
/// per member and `member_spread` (the largest minus the smallest), and `path` for image files.
pub fn write_scored(path: &Path, rows: &ScoredRows) -> Result<(), RunError> {
    let mut columns: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(uncalibrated) = rows.uncalibrated {
        columns.push(("target_uncalibrated".into(), uncalibrated.iter().map(f64::to_string).collect()));
    }
    if let Some(domain) = rows.domain {
        columns.push(("domain_distance".into(), domain.iter().map(|d| d.distance.to_string()).collect()));
        columns.push(("in_domain".into(), domain.iter().map(|d| d.within.to_string()).collect()));
    }
    if let Some((names, by_image)) = rows.members {
        for (k, name) in names.iter().enumerate() {
            columns.push((format!("member_{name}"), by_image.iter().map(|p| p[k].to_string()).collect()));
        }
        columns.push(("member_spread".into(), by_image.iter().map(|p| crate::ensemble::spread(p).to_string()).collect()));
    }
    if let Some(paths) = rows.paths {
        columns.push(("path".into(), paths.to_vec()));
    }
    write_rows(path, "target", rows.ids, rows.target, &columns)
}

/// Writes `image_name,SCORE` rows (`score_name`: target or prediction), then the `columns`
/// given (a header and a value per row), atomically. Scores are written in shortest round-trip form, so reading the file back gives
/// the same numbers.
fn write_rows<S: AsRef<str>>(path: &Path, score_name: &str, ids: &[String], scores: &[f64], columns: &[(S, Vec<String>)]) -> Result<(), RunError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| RunError::Csv { path: path.to_path_buf(), line: 0, message: format!("writing: {e}") };
    let header: Vec<&str> = ["image_name", score_name].into_iter().chain(columns.iter().map(|(name, _)| name.as_ref())).collect();
    out.write_record(&header).map_err(fail)?;
    for (n, (id, score)) in ids.iter().zip(scores).enumerate() {
        let mut row = vec![id.clone(), score.to_string()];
        row.extend(columns.iter().map(|(_, values)| values[n].clone()));
        out.write_record(&row).map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| RunError::Csv { path: path.to_path_buf(), line: 0, message: format!("writing: {e}") })?;
    Ok(write_atomic(path, &bytes)?)
}

/// Writes `image_name,fold,class,p_<class>...` rows (oof_classes.csv): every class's
/// probability of each image, with its true class.
pub fn write_class_predictions(
    path: &Path,
    scheme: ClassScheme,
    ids: &[String],
    outputs: &[Vec<f64>],
    truth: &[usize],
    folds: &[String],
) -> Result<(), RunError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| RunError::Csv { path: path.to_path_buf(), line: 0, message: format!("writing: {e}") };
    let names = scheme.class_names();
    let mut header = vec!["image_name".to_string(), "fold".into(), "class".into()];
    header.extend(names.iter().map(|c| format!("p_{c}")));
    out.write_record(&header).map_err(fail)?;
    for (n, id) in ids.iter().enumerate() {
        let mut row = vec![id.clone(), folds[n].clone(), names[truth[n]].to_string()];
        row.extend(outputs[n].iter().map(|p| p.to_string()));
        out.write_record(&row).map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| RunError::Csv { path: path.to_path_buf(), line: 0, message: format!("writing: {e}") })?;
    Ok(write_atomic(path, &bytes)?)
}

/// Index of the first header among `names` (a leading byte-order mark and spaces ignored).
pub fn find_column(headers: &csv::StringRecord, names: &[&str]) -> Option<usize> {
    headers.iter().position(|h| names.contains(&h.trim().trim_start_matches('\u{feff}')))
}

/// The id column of a CSV keyed by image id, read row by row: each row within the bound on
/// rows, with an id, and an id no earlier row had.
pub(crate) struct IdColumn<'a> {
    path: &'a Path,
    column: usize,
    name: String,
    first_line: HashMap<String, u64>,
}

impl<'a> IdColumn<'a> {
    pub(crate) fn new(path: &'a Path, headers: &csv::StringRecord, column: usize) -> Self {
        Self { path, column, name: headers.get(column).unwrap_or("").trim().to_string(), first_line: HashMap::new() }
    }

    /// The line and id of row `n` (from 0), or the error naming the file, line and column.
    pub(crate) fn check<'r>(&mut self, n: usize, row: &'r csv::StringRecord) -> Result<(u64, &'r str), RunError> {
        let path = self.path.to_path_buf();
        let line = row.position().map_or(n as u64 + 2, |p| p.line());
        if n >= MAX_CSV_ROWS {
            return Err(too_many_rows(self.path, line).into());
        }
        let id = row.get(self.column).unwrap_or("").trim();
        if id.is_empty() {
            return Err(RunError::EmptyId { path, line, column: self.column + 1, name: self.name.clone() });
        }
        if let Some(&first_line) = self.first_line.get(id) {
            return Err(RunError::DuplicateId { path, line, column: self.column + 1, id: excerpt(id), first_line });
        }
        self.first_line.insert(id.to_string(), line);
        Ok((line, id))
    }
}

pub(crate) fn require_column(headers: &csv::StringRecord, names: &[&str], path: &Path) -> Result<usize, RunError> {
    find_column(headers, names).ok_or_else(|| RunError::MissingColumn {
        path: path.to_path_buf(),
        wanted: names.join(" or "),
        found: excerpt(&headers.iter().collect::<Vec<_>>().join(", ")),
    })
}

pub(crate) fn csv_error(path: &Path, error: csv::Error) -> RunError {
    let line = error.position().map(|p| p.line()).unwrap_or(1);
    RunError::Csv { path: path.to_path_buf(), line, message: excerpt(&error.to_string()) }
}
