//! The ISIC challenge formats: SIIM-ISIC 2020, ISIC 2017 part 3, and the one-hot ground
//! truths of ISIC 2019 and 2018 task 3 with their metadata CSVs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use super::table::{Col, Table};

use super::{FieldCols, Pending, SourceData, SourceKind, finish, parse_flag, parse_rows};
use crate::error::DataError;
use crate::records::{Metadata, Reject, normalize_diagnosis};

/// SIIM-ISIC 2020: image_name, patient_id, target (+ optional metadata). A test CSV
/// (no target, diagnosis or benign_malignant column) gives unlabelled records.
pub(super) fn read_isic2020(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
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
pub(super) fn read_isic2017(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
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
pub(super) fn read_one_hot(kind: SourceKind, csv: &Path, metadata_csv: Option<&Path>, images: &Path) -> Result<SourceData, DataError> {
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
