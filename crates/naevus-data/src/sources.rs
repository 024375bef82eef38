//! Dataset readers: turn a label CSV (or a folder tree) plus an image directory into
//! [`Record`]s, collecting bad rows as [`Reject`]s instead of failing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, excerpt};
use crate::metadata::{not_recorded, parse_age, parse_label, parse_sex, parse_site};
use crate::records::{Metadata, Record, Reject, Split, normalize_diagnosis};

mod table;
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

// ---------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------

/// SIIM-ISIC 2020: image_name, patient_id, target (+ optional metadata). A test CSV
/// (no target, diagnosis or benign_malignant column) gives unlabelled records.
fn read_isic2020(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
    let t = Table::read(csv)?;
    let c_id = t.col("image_name")?;
    let c_patient = t.col("patient_id")?;
    let c_diag = t.opt_col("diagnosis");
    let c_bm = t.opt_col("benign_malignant");
    // A labelled CSV must have target; only a test CSV (no label columns at all) may omit it.
    let c_target = if c_diag.is_some() || c_bm.is_some() || t.opt_col("target").is_some() {
        Some(t.col("target")?)
    } else {
        None
    };
    let fields = FieldCols {
        age: t.opt_col("age_approx"),
        sex: t.opt_col("sex"),
        site: t.opt_col("anatom_site_general_challenge"),
        split: t.opt_col("split"),
    };

    let (pending, rejects) = parse_rows(&t, |row| {
        let id = row.required(&c_id)?.to_string();
        let group = row.required(&c_patient)?.to_string();
        let melanoma = match &c_target {
            Some(c) => Some(parse_flag(row.required(c)?, c)?),
            None => None,
        };
        let mut notes = Vec::new();
        let (metadata, split) = fields.read(row, &mut notes);
        Ok(Pending { line: row.line, id, group, melanoma, diagnosis: row.opt(&c_diag).and_then(normalize_diagnosis), metadata, split, notes })
    });
    Ok(finish(SourceKind::Isic2020, &t, images, pending, rejects))
}

/// ISIC 2017 part 3: image_id, melanoma, seborrheic_keratosis (+ optional age, sex,
/// split, diagnosis). One image per lesion, so the group is the image id.
fn read_isic2017(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
    let t = Table::read(csv)?;
    let c_id = t.col("image_id")?;
    let c_mel = t.col("melanoma")?;
    let c_sk = t.col("seborrheic_keratosis")?;
    let fields = FieldCols { age: t.opt_col("age_approximate"), sex: t.opt_col("sex"), site: None, split: t.opt_col("split") };
    let c_diag = t.opt_col("diagnosis");

    let (pending, rejects) = parse_rows(&t, |row| {
        let id = row.required(&c_id)?.to_string();
        let mel = parse_flag(row.required(&c_mel)?, &c_mel)?;
        let sk = parse_flag(row.required(&c_sk)?, &c_sk)?;
        if mel && sk {
            return Err("columns \"melanoma\" and \"seborrheic_keratosis\" are both 1; expected at most one".into());
        }
        let from_flags = if mel {
            "melanoma"
        } else if sk {
            "seborrheic_keratosis"
        } else {
            "nevus"
        };
        let diagnosis = row.opt(&c_diag).and_then(normalize_diagnosis).unwrap_or_else(|| from_flags.to_string());
        let mut notes = Vec::new();
        let (metadata, split) = fields.read(row, &mut notes);
        Ok(Pending { line: row.line, group: id.clone(), id, melanoma: Some(mel), diagnosis: Some(diagnosis), metadata, split, notes })
    });
    Ok(finish(SourceKind::Isic2017, &t, images, pending, rejects))
}

/// HAM10000 dx codes this reader accepts.
const HAM_DX: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

/// HAM10000: image_id, lesion_id, dx (+ optional dx_type, age, sex, localization, split). An
/// empty lesion_id makes the image a lesion of its own.
fn read_ham10000(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
    let t = Table::read(csv)?;
    let c_id = t.col("image_id")?;
    let c_lesion = t.col("lesion_id")?;
    let c_dx = t.col("dx")?;
    let fields = FieldCols { age: t.opt_col("age"), sex: t.opt_col("sex"), site: t.opt_col("localization"), split: t.opt_col("split") };

    let (pending, rejects) = parse_rows(&t, |row| {
        let id = row.required(&c_id)?.to_string();
        // The ISIC 2018 test metadata leaves lesion_id empty: the image is then its own group.
        let group = row.value(&c_lesion).unwrap_or(&id).to_string();
        let dx = row.required(&c_dx)?.to_lowercase();
        if !HAM_DX.contains(&dx.as_str()) {
            return Err(format!(
                "column \"{}\": unknown label \"{}\"; expected one of {}",
                c_dx.name,
                excerpt(&dx),
                HAM_DX.join(", ")
            ));
        }
        let mut notes = Vec::new();
        let (metadata, split) = fields.read(row, &mut notes);
        Ok(Pending { line: row.line, id, group, melanoma: Some(dx == "mel"), diagnosis: normalize_diagnosis(&dx), metadata, split, notes })
    });
    Ok(finish(SourceKind::Ham10000, &t, images, pending, rejects))
}

/// The one-hot class columns of a ground-truth CSV; ISIC 2019's UNK is optional (older
/// copies lack it).
fn one_hot_classes(kind: SourceKind) -> (&'static [&'static str], Option<&'static str>) {
    match kind {
        SourceKind::Isic2018 => (&["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"], None),
        _ => (&["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"], Some("UNK")),
    }
}

/// Metadata for one image of a one-hot source, from its side CSV.
struct SideMetadata {
    metadata: Metadata,
    lesion: Option<String>,
}

/// ISIC 2019 or 2018 Task 3: a ground truth CSV (image + one-hot classes) joined with an
/// optional metadata CSV. Without lesion ids, each image is its own group.
fn read_one_hot(kind: SourceKind, csv: &Path, metadata_csv: Option<&Path>, images: &Path) -> Result<SourceData, DataError> {
    let t = Table::read(csv)?;
    let c_id = t.col("image")?;
    let (classes, optional) = one_hot_classes(kind);
    let mut class_cols = Vec::new();
    for &name in classes {
        let col = if Some(name) == optional { t.opt_col(name) } else { Some(t.col(name)?) };
        if let Some(c) = col {
            class_cols.push((name, c));
        }
    }
    let class_list = format!("{}..{}", classes[0], classes[classes.len() - 1]);

    let mut rejects_meta = Vec::new();
    let meta = match metadata_csv {
        Some(path) => read_side_metadata(path, &mut rejects_meta)?,
        None => HashMap::new(),
    };

    let (pending, mut rejects) = parse_rows(&t, |row| {
        let id = row.required(&c_id)?.to_string();
        let mut hot = Vec::new();
        for (name, col) in &class_cols {
            if parse_flag(row.required(col)?, col)? {
                hot.push(*name);
            }
        }
        let class = match hot.as_slice() {
            [one] => *one,
            [] => return Err(format!("no class column is 1; expected exactly one of {class_list}")),
            many => return Err(format!("several class columns are 1 ({}); expected exactly one", many.join(", "))),
        };
        let diagnosis = if class == "UNK" { "unknown".to_string() } else { normalize_diagnosis(class).unwrap_or_default() };
        let m = meta.get(&id);
        Ok(Pending {
            line: row.line,
            group: m.and_then(|m| m.lesion.clone()).unwrap_or_else(|| id.clone()),
            melanoma: Some(class == "MEL"),
            diagnosis: Some(diagnosis),
            metadata: m.map(|m| m.metadata.clone()).unwrap_or_default(),
            split: None,
            id,
            // The side CSV's cells that did not parse are listed with its rows.
            notes: Vec::new(),
        })
    });
    // Metadata rows that could not be used are reported too, so nothing vanishes silently.
    rejects.extend(rejects_meta);
    Ok(finish(kind, &t, images, pending, rejects))
}

/// The first of `names` the table has.
fn first_col(t: &Table, names: &[&str]) -> Option<Col> {
    names.iter().find_map(|name| t.opt_col(name))
}

/// A side metadata CSV in ISIC 2019's naming (image, age_approx, anatom_site_general,
/// lesion_id, sex) or HAM10000's (image_id, age, localization, lesion_id, sex), which the
/// ISIC 2018 Task 3 images come with.
fn read_side_metadata(path: &Path, rejects: &mut Vec<Reject>) -> Result<HashMap<String, SideMetadata>, DataError> {
    let t = Table::read(path)?;
    let c_id = match first_col(&t, &["image", "image_id"]) {
        Some(c) => c,
        None => t.col("image")?,
    };
    let fields = FieldCols {
        age: first_col(&t, &["age_approx", "age"]),
        sex: t.opt_col("sex"),
        site: first_col(&t, &["anatom_site_general", "localization"]),
        split: None,
    };
    let c_lesion = t.opt_col("lesion_id");
    let mut out = HashMap::new();
    for row in &t.rows {
        let row = match row {
            Ok(r) => r,
            Err(reject) => {
                rejects.push(reject.clone());
                continue;
            }
        };
        let id = match row.required(&c_id) {
            Ok(id) => id.to_string(),
            Err(reason) => {
                rejects.push(Reject { row: Some(row.line), path: t.path_str(), reason });
                continue;
            }
        };
        // First row for an image wins, like duplicate ids in the ground truth; only its
        // unreadable cells are listed.
        if let Entry::Vacant(slot) = out.entry(id) {
            let mut notes = Vec::new();
            slot.insert(SideMetadata { metadata: fields.read(row, &mut notes).0, lesion: row.opt(&c_lesion).map(str::to_string) });
            rejects.extend(notes.into_iter().map(|reason| Reject { row: Some(row.line), path: t.path_str(), reason }));
        }
    }
    Ok(out)
}

/// Folder names that mean "melanoma" for the binary label.
const POSITIVE_FOLDERS: [&str; 4] = ["malignant", "melanoma", "mel", "positive"];

/// Class folders: every .jpg/.jpeg/.png inside `root/<class>/` is a record labelled by
/// its folder. Sorted by folder then file name so the order never depends on the file system.
fn read_folders(root: &Path) -> Result<SourceData, DataError> {
    let canonical = fs::canonicalize(root).map_err(|e| DataError::io(root, e))?;
    let mut classes = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
        let entry = entry.map_err(|e| DataError::io(root, e))?;
        if entry.path().is_dir() {
            classes.push(entry.path());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "{}: no class sub-folders found; expected one folder per class (e.g. benign/, malignant/)",
            root.display()
        )));
    }

    let mut data = SourceData::default();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for class_dir in classes {
        let class = class_dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let mut files = Vec::new();
        for entry in fs::read_dir(&class_dir).map_err(|e| DataError::io(&class_dir, e))? {
            let path = entry.map_err(|e| DataError::io(&class_dir, e))?.path();
            if path.is_file() && has_image_extension(&path) {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(first) = seen.get(&id) {
                data.rejects.push(Reject {
                    row: None,
                    path: path.display().to_string(),
                    reason: format!("duplicate image id {id} (first seen as {})", first.display()),
                });
                continue;
            }
            let image_path = match resolve_inside(&canonical, &path) {
                Ok(resolved) => resolved,
                Err(reason) => {
                    data.rejects.push(Reject { row: None, path: path.display().to_string(), reason });
                    continue;
                }
            };
            seen.insert(id.clone(), path.clone());
            data.records.push(Record {
                group: id.clone(),
                id,
                file_bytes: std::fs::metadata(&image_path).ok().map(|m| m.len()),
                image_path,
                crop: None,
                is_external: false,
                melanoma: Some(POSITIVE_FOLDERS.contains(&class.as_str())),
                diagnosis: Some(class.clone()),
                metadata: Metadata::default(),
                split: None,
                source: SourceKind::Folders.as_str().to_string(),
                row: None,
            });
        }
    }
    Ok(data)
}
