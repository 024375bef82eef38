//! Dataset readers: turn a label CSV (or a folder tree) plus an image directory into
//! [`Record`]s, collecting bad rows as [`Reject`]s instead of failing.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, excerpt};
use crate::metadata::{not_recorded, parse_age, parse_label, parse_sex, parse_site};
use crate::records::{Metadata, Record, Reject, Split};

mod folders;
mod ham10000;
mod isic;
mod table;

use folders::read_folders;
use ham10000::read_ham10000;
use isic::{read_isic2017, read_isic2020, read_one_hot};
use table::{Col, Row, Table};

/// The dataset formats this crate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    /// SIIM-ISIC 2020 (Kaggle) train.csv / test.csv.
    Isic2020,
    /// ISIC 2017 part 3 ground truth.
    Isic2017,
    /// HAM10000 metadata.csv.
    Ham10000,
    /// ISIC 2019 one-hot ground truth plus optional metadata CSV.
    Isic2019,
    /// ISIC 2018 Task 3 one-hot ground truth (MEL NV BCC AKIEC BKL DF VASC) plus an optional
    /// HAM10000-style metadata CSV (lesion ids, age, sex, site).
    Isic2018,
    /// One sub-folder of images per class.
    Folders,
}

impl SourceKind {
    /// The name used on the command line and in `Record::source`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Isic2020 => "isic2020",
            SourceKind::Isic2017 => "isic2017",
            SourceKind::Ham10000 => "ham10000",
            SourceKind::Isic2019 => "isic2019",
            SourceKind::Isic2018 => "isic2018",
            SourceKind::Folders => "folders",
        }
    }
}

impl FromStr for SourceKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "isic2020" => Ok(SourceKind::Isic2020),
            "isic2017" => Ok(SourceKind::Isic2017),
            "ham10000" => Ok(SourceKind::Ham10000),
            "isic2019" => Ok(SourceKind::Isic2019),
            "isic2018" => Ok(SourceKind::Isic2018),
            "folders" => Ok(SourceKind::Folders),
            _ => Err(DataError::InvalidArgument(format!(
                "unknown source kind {s:?}; expected one of isic2020, isic2017, ham10000, isic2019, isic2018, folders"
            ))),
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a source lives: its label CSV (not used by `Folders`), its image directory and,
/// for ISIC 2019 and 2018, an optional metadata CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// Which format to read.
    pub kind: SourceKind,
    /// The label CSV (required for every kind except `Folders`).
    pub csv: Option<PathBuf>,
    /// The image directory (for `Folders`: the directory holding one folder per class).
    pub images: PathBuf,
    /// ISIC 2019 or 2018 metadata CSV: ISIC 2019's (image, age_approx, anatom_site_general,
    /// lesion_id, sex) or HAM10000's (image_id, lesion_id, age, sex, localization).
    pub metadata_csv: Option<PathBuf>,
}

/// The records a reader accepted and the rows or files it skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceData {
    /// Accepted records, in file order.
    pub records: Vec<Record>,
    /// Skipped rows or files with reasons.
    pub rejects: Vec<Reject>,
}

/// Reads one source. Fails only on problems with the whole input (unreadable file,
/// missing column); bad rows and missing images become rejects.
pub fn read_source(spec: &SourceSpec) -> Result<SourceData, DataError> {
    match spec.kind {
        SourceKind::Isic2020 => read_isic2020(spec_csv(spec)?, &spec.images),
        SourceKind::Isic2017 => read_isic2017(spec_csv(spec)?, &spec.images),
        SourceKind::Ham10000 => read_ham10000(spec_csv(spec)?, &spec.images),
        SourceKind::Isic2019 => read_one_hot(SourceKind::Isic2019, spec_csv(spec)?, spec.metadata_csv.as_deref(), &spec.images),
        SourceKind::Isic2018 => read_one_hot(SourceKind::Isic2018, spec_csv(spec)?, spec.metadata_csv.as_deref(), &spec.images),
        SourceKind::Folders => read_folders(&spec.images),
    }
}

fn spec_csv(spec: &SourceSpec) -> Result<&Path, DataError> {
    spec.csv.as_deref().ok_or_else(|| {
        DataError::InvalidArgument(format!("a {} source needs a label CSV file", spec.kind))
    })
}

// ---------------------------------------------------------------------------
// Field parsers
// ---------------------------------------------------------------------------

/// A 0/1 label cell, by the one rule of [`crate::metadata::parse_label`].
fn parse_flag(value: &str, col: &Col) -> Result<bool, String> {
    parse_label(value).map_err(|problem| format!("column \"{}\": {problem}", excerpt(&col.name)))
}

/// Prefix of the reason of a rejects.csv line for a value that did not parse where the image
/// is kept with that field unknown (an age of "abc", say): listed, but not a rejected image.
pub const KEPT_PREFIX: &str = "kept, ";

/// Whether a line of rejects.csv lists a field left unknown on an image that was kept.
pub fn is_kept_note(reject: &Reject) -> bool {
    reject.reason.starts_with(KEPT_PREFIX)
}

/// The optional metadata (and split) columns of a table.
struct FieldCols {
    age: Option<Col>,
    sex: Option<Col>,
    site: Option<Col>,
    split: Option<Col>,
}

impl FieldCols {
    /// The row's metadata and split, each cell read by the rule of [`crate::metadata`]. A
    /// cell that does not parse leaves its field unknown and adds a note to `notes` (a line of
    /// rejects.csv naming the column and the value, when the image is kept).
    fn read(&self, row: &Row, notes: &mut Vec<String>) -> (Metadata, Option<Split>) {
        let metadata = Metadata {
            age: field(row, &self.age, "age", parse_age, notes),
            sex: field(row, &self.sex, "sex", parse_sex, notes),
            site: field(row, &self.site, "site", parse_site, notes),
        };
        (metadata, field(row, &self.split, "split", parse_split, notes))
    }
}

/// One optional cell: its value, or None when the column is absent, the cell says not
/// recorded, or it does not parse (then noted).
fn field<T>(row: &Row, col: &Option<Col>, name: &str, parse: fn(&str) -> Result<Option<T>, String>, notes: &mut Vec<String>) -> Option<T> {
    let col = col.as_ref()?;
    let text = row.fields.get(col.index)?;
    parse(text).unwrap_or_else(|problem| {
        notes.push(format!("{KEPT_PREFIX}{name} unknown: column \"{}\": {problem}", excerpt(&col.name)));
        None
    })
}

/// A split cell: train, val or test (and their spellings in [`Split::parse`]).
fn parse_split(text: &str) -> Result<Option<Split>, String> {
    if not_recorded(text) {
        return Ok(None);
    }
    Split::parse(text).map(Some).ok_or_else(|| format!("expected train, val or test, got \"{}\"", excerpt(text.trim())))
}

// ---------------------------------------------------------------------------
// Shared finishing step
// ---------------------------------------------------------------------------

/// A row that parsed; its image still has to be found.
struct Pending {
    line: usize,
    id: String,
    group: String,
    melanoma: Option<bool>,
    diagnosis: Option<String>,
    metadata: Metadata,
    split: Option<Split>,
    /// Cells that did not parse (the field left unknown): listed if the image is kept.
    notes: Vec<String>,
}

/// Why `id` cannot name a file in the images folder, if it cannot. Ids are names, never
/// paths: a label CSV must not make prepare read files elsewhere.
fn check_id(id: &str) -> Result<(), String> {
    let path = Path::new(id);
    if path.has_root() || path.is_absolute() {
        return Err(format!("image id \"{}\" is an absolute path; ids are file names in the images folder", excerpt(id)));
    }
    if id.contains(['/', '\\']) {
        return Err(format!("image id \"{}\" contains a path separator; ids are file names, not paths", excerpt(id)));
    }
    // What is left that is not one plain name: ".", ".." or a drive prefix such as "C:".
    let mut parts = path.components();
    if !matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)) {
        return Err(format!("image id \"{}\" is not a file name", excerpt(id)));
    }
    // With its extension (".jpeg") a file name has at most 255 bytes on common file systems.
    if id.len() > 250 {
        return Err(format!("image id \"{}\" is too long for a file name", excerpt(id)));
    }
    Ok(())
}

/// `path` canonical, or why not: it must resolve to a file inside `root` (a symbolic link
/// may not lead out of the images folder).
fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let resolved = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !resolved.starts_with(root) {
        return Err(format!(
            "{} resolves to {}, outside the images folder {}; images must be inside it",
            path.display(),
            resolved.display(),
            root.display()
        ));
    }
    Ok(resolved)
}

/// Image file for an id: images/<id>.jpg, .jpeg, .png (then upper-case variants);
/// an id that already carries an image extension is also tried as-is. The first that exists,
/// whatever it is: `resolve_inside` and the decoder check what it is.
fn find_image(images: &Path, id: &str) -> Option<PathBuf> {
    let direct = has_image_extension(Path::new(id)).then(|| images.join(id));
    direct
        .into_iter()
        .chain(["jpg", "jpeg", "png", "JPG", "JPEG", "PNG"].iter().map(|ext| images.join(format!("{id}.{ext}"))))
        .find(|p| p.exists())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

/// Drops duplicate ids (keeping the first), resolves image files and builds the records.
fn finish(
    kind: SourceKind,
    table: &Table,
    images: &Path,
    pending: Vec<Pending>,
    mut rejects: Vec<Reject>,
) -> SourceData {
    // Canonical (absolute, links resolved): stored paths then work from any directory, and
    // containment can be checked. A folder that cannot be resolved holds no images anyway.
    let root = fs::canonicalize(images).unwrap_or_else(|_| images.to_path_buf());
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut records = Vec::with_capacity(pending.len());
    for p in pending {
        if let Err(reason) = check_id(&p.id) {
            rejects.push(Reject { row: Some(p.line), path: table.path_str(), reason });
            continue;
        }
        if let Some(&first) = first_line.get(&p.id) {
            rejects.push(Reject {
                row: Some(p.line),
                path: table.path_str(),
                reason: format!("duplicate image id {} (first seen on line {first})", p.id),
            });
            continue;
        }
        first_line.insert(p.id.clone(), p.line);
        let Some(found) = find_image(images, &p.id) else {
            let expected = images.join(format!("{}.jpg", p.id));
            rejects.push(Reject {
                row: Some(p.line),
                path: expected.display().to_string(),
                reason: format!("file not found: {} (also tried .jpeg and .png)", expected.display()),
            });
            continue;
        };
        let image_path = match resolve_inside(&root, &found) {
            Ok(path) => path,
            Err(reason) => {
                rejects.push(Reject { row: Some(p.line), path: found.display().to_string(), reason });
                continue;
            }
        };
        rejects.extend(p.notes.into_iter().map(|reason| Reject { row: Some(p.line), path: table.path_str(), reason }));
        records.push(Record {
            id: p.id,
            group: p.group,
            melanoma: p.melanoma,
            diagnosis: p.diagnosis,
            metadata: p.metadata,
            split: p.split,
            source: kind.as_str().to_string(),
            row: Some(p.line),
            file_bytes: std::fs::metadata(&image_path).ok().map(|m| m.len()),
            image_path,
            crop: None,
            is_external: false,
        });
    }
    // Rejects in file order make rejects.csv easy to read.
    rejects.sort_by_key(|r| r.row.unwrap_or(usize::MAX));
    SourceData { records, rejects }
}

/// Runs `parse` on every well-formed row, splitting results into pending rows and rejects.
fn parse_rows(
    table: &Table,
    mut parse: impl FnMut(&Row) -> Result<Pending, String>,
) -> (Vec<Pending>, Vec<Reject>) {
    let mut pending = Vec::new();
    let mut rejects = Vec::new();
    for row in &table.rows {
        match row {
            Err(reject) => rejects.push(reject.clone()),
            Ok(row) => match parse(row) {
                Ok(p) => pending.push(p),
                Err(reason) => rejects.push(Reject { row: Some(row.line), path: table.path_str(), reason }),
            },
        }
    }
    (pending, rejects)
}

