//! HAM10000's metadata CSV (image_id, lesion_id, dx, age, sex, localization).

use std::path::Path;

use super::table::Table;
use super::{FieldCols, Pending, SourceData, SourceKind, finish, parse_rows};
use crate::error::{DataError, excerpt};
use crate::records::normalize_diagnosis;

/// HAM10000 dx codes this reader accepts.
const HAM_DX: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

/// HAM10000: image_id, lesion_id, dx (+ optional dx_type, age, sex, localization, split). An
/// empty lesion_id makes the image a lesion of its own.
pub(super) fn read_ham10000(csv: &Path, images: &Path) -> Result<SourceData, DataError> {
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
