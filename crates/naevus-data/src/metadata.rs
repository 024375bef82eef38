//! Patient metadata as model inputs, encoded as seed 004 (SIIM-ISIC 2020 1st place) does:
//! sex (male 1, female 0, unknown -1), age / 90 (missing 0), log1p of the number of images of
//! the same patient, log of the original file's size in bytes (missing 0), and a one-hot
//! anatomical site with an explicit unknown column. The encoder is fitted once and saved with
//! the run, so prediction computes exactly the training features.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::error::excerpt;
use crate::records::{Record, Sex};

// ---------------------------------------------------------------------------
// Reading metadata and labels from text: the one rule every reader follows
// ---------------------------------------------------------------------------

/// Ages a metadata cell may give, in years: the data sets record 0 to 85; -1, 200 or 1e308
/// are typos or placeholders, not ages.
pub const AGE_YEARS: RangeInclusive<f32> = 0.0..=120.0;

/// Cells that say a value was not recorded (any case): the data sets write an empty cell or
/// "unknown", spreadsheets "NA" or "N/A". Anything else must parse, or it is listed.
const NOT_RECORDED: [&str; 5] = ["", "unknown", "na", "n/a", "none"];

/// The anatomical sites of ISIC 2020 (`anatom_site_general_challenge`), the one vocabulary
/// every source is mapped to, so that external data shares the site columns.
pub const SITES: [&str; 6] = ["head/neck", "upper extremity", "lower extremity", "torso", "palms/soles", "oral/genital"];

/// Other sources' site names and their ISIC 2020 site: ISIC 2019 splits the torso three ways;
/// HAM10000 names body parts.
const SITE_SYNONYMS: [(&str, &str); 17] = [
    ("anterior torso", "torso"),
    ("posterior torso", "torso"),
    ("lateral torso", "torso"),
    ("abdomen", "torso"),
    ("back", "torso"),
    ("chest", "torso"),
    ("trunk", "torso"),
    ("face", "head/neck"),
    ("ear", "head/neck"),
    ("neck", "head/neck"),
    ("scalp", "head/neck"),
    ("hand", "upper extremity"),
    ("foot", "lower extremity"),
    ("acral", "palms/soles"),
    ("genital", "oral/genital"),
    ("oral", "oral/genital"),
    ("head", "head/neck"),
];

/// Whether a cell says its value was not recorded.
pub fn not_recorded(text: &str) -> bool {
    let text = text.trim();
    NOT_RECORDED.iter().any(|marker| text.eq_ignore_ascii_case(marker))
}

/// An age cell: years in [`AGE_YEARS`], None when not recorded, else what was expected.
pub fn parse_age(text: &str) -> Result<Option<f32>, String> {
    if not_recorded(text) {
        return Ok(None);
    }
    match text.trim().parse::<f32>() {
        // NaN and the infinities fall outside the range.
        Ok(age) if AGE_YEARS.contains(&age) => Ok(Some(age)),
        _ => Err(format!(
            "expected an age in years from {} to {} (or empty or unknown), got \"{}\"",
            AGE_YEARS.start(),
            AGE_YEARS.end(),
            excerpt(text.trim())
        )),
    }
}

/// A sex cell: male or female (any case), None when not recorded, else what was expected.
/// "M" and "F" are refused rather than guessed.
pub fn parse_sex(text: &str) -> Result<Option<Sex>, String> {
    if not_recorded(text) {
        return Ok(None);
    }
    Sex::parse(text).map(Some).ok_or_else(|| format!("expected male or female (or empty or unknown), got \"{}\"", excerpt(text.trim())))
}

/// A site cell: one of [`SITES`] or a synonym (any case), as its ISIC 2020 site; None when
/// not recorded, else what was expected.
pub fn parse_site(text: &str) -> Result<Option<String>, String> {
    if not_recorded(text) {
        return Ok(None);
    }
    let site = text.trim().to_lowercase();
    if let Some(known) = SITES.iter().find(|&&known| known == site) {
        return Ok(Some(known.to_string()));
    }
    match SITE_SYNONYMS.iter().find(|(name, _)| *name == site) {
        Some((_, general)) => Ok(Some(general.to_string())),
        None => Err(format!(
            "expected an anatomical site ({}, or a synonym such as back, face or hand; or empty or unknown), got \"{}\"",
            SITES.join(", "),
            excerpt(text.trim())
        )),
    }
}

/// A label cell (a 0/1 column, or one column of a one-hot ground truth): 0 or 1, written as
/// an integer, a decimal (0.0, 1.0) or true / false. Anything else, -1 or 0.7 included, is
/// refused: a label is never rounded.
pub fn parse_label(text: &str) -> Result<bool, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") {
        return Ok(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(false);
    }
    match text.parse::<f64>() {
        Ok(0.0) => Ok(false),
        Ok(1.0) => Ok(true),
        _ => Err(format!("expected 0 or 1, got \"{}\"", excerpt(text))),
    }
}

// ---------------------------------------------------------------------------
// Metadata as model inputs
// ---------------------------------------------------------------------------

/// One kind of metadata feature; a run chooses which it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataField {
    /// male 1, female 0, unknown -1
    Sex,
    /// age / 90, missing 0
    Age,
    /// log1p of the number of images of the same patient in the data set
    ImagesOfPatient,
    /// log of the original image file's size in bytes, missing 0
    FileBytes,
    /// one-hot anatomical site, with a column for unknown or unseen sites
    Site,
}

impl MetadataField {
    /// Every field, in seed 004's order.
    pub const ALL: [MetadataField; 5] =
        [MetadataField::Sex, MetadataField::Age, MetadataField::ImagesOfPatient, MetadataField::FileBytes, MetadataField::Site];

    /// The name recipes and run.json use (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            MetadataField::Sex => "sex",
            MetadataField::Age => "age",
            MetadataField::ImagesOfPatient => "images-of-patient",
            MetadataField::FileBytes => "file-bytes",
            MetadataField::Site => "site",
        }
    }
}

/// Which columns a run's metadata features have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEncoder {
    /// The fields used, in feature order.
    pub fields: Vec<MetadataField>,
    /// Anatomical sites with a column of their own, sorted. Sites not in the list, and
    /// missing sites, go to the final "site_unknown" column.
    pub sites: Vec<String>,
}

/// Images per patient (group) among `records`: the seed's `n_images`.
/// Whether `record` lacks `field` (and is encoded as unknown for it).
pub fn field_missing(field: MetadataField, record: &Record) -> bool {
    let metadata = &record.metadata;
    match field {
        MetadataField::Sex => metadata.sex.is_none(),
        MetadataField::Age => !metadata.age.is_some_and(|a| a.is_finite() && a >= 0.0),
        MetadataField::ImagesOfPatient => false,
        MetadataField::FileBytes => !record.file_bytes.is_some_and(|b| b > 0),
        MetadataField::Site => metadata.site.is_none(),
    }
}

pub fn images_per_group(records: &[Record]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in records {
        *counts.entry(record.group.clone()).or_insert(0) += 1;
    }
    counts
}

impl MetadataEncoder {
    /// An encoder of `fields`, with site columns for every site that occurs in `records`
    /// (the seed fits on train and test together: a site seen only in the test set still
    /// gets its column).
    pub fn fit(records: &[Record], fields: &[MetadataField]) -> Self {
        let mut sites: Vec<String> = if fields.contains(&MetadataField::Site) {
            records.iter().filter_map(|r| r.metadata.site.clone()).collect()
        } else {
            Vec::new()
        };
        sites.sort();
        sites.dedup();
        Self { fields: fields.to_vec(), sites }
    }

    /// Names of the features, in order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for field in &self.fields {
            match field {
                MetadataField::Sex => names.push("sex".to_string()),
                MetadataField::Age => names.push("age_over_90".to_string()),
                MetadataField::ImagesOfPatient => names.push("log1p_images_of_patient".to_string()),
                MetadataField::FileBytes => names.push("log_file_bytes".to_string()),
                MetadataField::Site => {
                    names.extend(self.sites.iter().map(|s| format!("site_{s}")));
                    names.push("site_unknown".into());
                }
            }
        }
        names
    }

    pub fn num_features(&self) -> usize {
        self.feature_names().len()
    }

    /// The features of `record`, whose patient has `images_of_patient` images in the data set
    /// it belongs to (at least 1: the record itself).
    pub fn encode(&self, record: &Record, images_of_patient: usize) -> Vec<f32> {
        let metadata = &record.metadata;
        let mut features = Vec::with_capacity(self.fields.len() + self.sites.len());
        for field in &self.fields {
            match field {
                MetadataField::Sex => features.push(match metadata.sex {
                    Some(Sex::Male) => 1.0,
                    Some(Sex::Female) => 0.0,
                    None => -1.0,
                }),
                MetadataField::Age => features.push(metadata.age.filter(|a| a.is_finite() && *a >= 0.0).map_or(0.0, |a| a / 90.0)),
                MetadataField::ImagesOfPatient => features.push((images_of_patient.max(1) as f32).ln_1p()),
                MetadataField::FileBytes => features.push(record.file_bytes.filter(|&b| b > 0).map_or(0.0, |b| (b as f32).ln())),
                MetadataField::Site => {
                    let column = metadata.site.as_ref().and_then(|s| self.sites.iter().position(|known| known == s)).unwrap_or(self.sites.len());
                    features.extend((0..=self.sites.len()).map(|c| if c == column { 1.0 } else { 0.0 }));
                }
            }
        }
        features
    }

    /// The features of an image whose metadata is all unknown (a lone file to explain).
    /// Where each field's features stand in the feature vector, in field order.
    pub fn field_ranges(&self) -> Vec<(MetadataField, std::ops::Range<usize>)> {
        let mut start = 0;
        self.fields
            .iter()
            .map(|&field| {
                let width = if field == MetadataField::Site { self.sites.len() + 1 } else { 1 };
                start += width;
                (field, start - width..start)
            })
            .collect()
    }

    /// The share of `records` that lack each field (a patient's image count is never
    /// missing), in field order.
    pub fn missing_shares<'a>(&self, records: impl IntoIterator<Item = &'a Record> + Clone) -> Vec<(MetadataField, f64)> {
        let total = records.clone().into_iter().count().max(1) as f64;
        self.fields
            .iter()
            .map(|&field| {
                let missing = records.clone().into_iter().filter(|r| field_missing(field, r)).count();
                (field, missing as f64 / total)
            })
            .collect()
    }

    pub fn encode_unknown(&self) -> Vec<f32> {
        self.encode(&Record::default(), 1)
    }

    /// The features of every record of a data set, row by row.
    pub fn encode_all(&self, records: &[Record]) -> Vec<Vec<f32>> {
        let counts = images_per_group(records);
        records.iter().map(|r| self.encode(r, counts.get(&r.group).copied().unwrap_or(1))).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_field_is_named_as_serde_spells_it() {
        for field in MetadataField::ALL {
            assert_eq!(serde_json::to_value(field).unwrap(), field.name());
        }
    }

    use super::*;
    use crate::records::Metadata;

    fn record(id: &str, group: &str, sex: Option<Sex>, age: Option<f32>, site: Option<&str>, file_bytes: Option<u64>) -> Record {
        Record {
            id: id.into(),
            image_path: format!("{id}.jpg").into(),
            group: group.into(),
            melanoma: Some(false),
            diagnosis: None,
            metadata: Metadata { age, sex, site: site.map(String::from) },
            split: None,
            source: "test".into(),
            row: None,
            file_bytes,
            crop: None,
            is_external: false,
        }
    }

    #[test]
    fn encodes_like_seed_004() {
        let records = vec![
            record("a", "p1", Some(Sex::Male), Some(45.0), Some("torso"), Some(1000)),
            record("b", "p1", Some(Sex::Female), None, Some("head/neck"), Some(1)),
            record("c", "c", None, Some(90.0), None, None),
        ];
        let encoder = MetadataEncoder::fit(&records, &MetadataField::ALL);
        assert_eq!(
            encoder.feature_names(),
            ["sex", "age_over_90", "log1p_images_of_patient", "log_file_bytes", "site_head/neck", "site_torso", "site_unknown"]
        );
        let counts = images_per_group(&records);
        let encode = |r: &Record| encoder.encode(r, counts[&r.group]);

        let a = encode(&records[0]);
        assert_eq!(a.len(), encoder.num_features());
        assert_eq!(&a[..2], &[1.0, 0.5]);
        assert!((a[2] - 3f32.ln()).abs() < 1e-6, "two images of p1: log1p(2)");
        assert!((a[3] - 1000f32.ln()).abs() < 1e-5);
        assert_eq!(&a[4..], &[0.0, 1.0, 0.0]);

        // Missing sex is -1 and missing age 0, not a real value; a patient with one image.
        let ranges: Vec<_> = encoder.field_ranges().into_iter().map(|(_, r)| r).collect();
        assert_eq!(ranges, [0..1, 1..2, 2..3, 3..4, 4..7]);
        let shares = encoder.missing_shares(&records);
        let share = |f: MetadataField| shares.iter().find(|(g, _)| *g == f).unwrap().1;
        assert_eq!((share(MetadataField::Sex), share(MetadataField::Age), share(MetadataField::ImagesOfPatient)), (1.0 / 3.0, 1.0 / 3.0, 0.0));

        let c = encode(&records[2]);
        assert_eq!(&c[..3], &[-1.0, 1.0, 2f32.ln()]);
        assert_eq!(c[3], 0.0, "no file size known");
        assert_eq!(&c[4..], &[0.0, 0.0, 1.0], "missing site -> unknown column");
    }

    #[test]
    fn a_site_unseen_when_fitting_goes_to_unknown() {
        let encoder = MetadataEncoder::fit(&[record("a", "a", None, None, Some("torso"), None)], &MetadataField::ALL);
        let palms = record("b", "b", None, Some(f32::NAN), Some("palms/soles"), None);
        let features = encoder.encode(&palms, 1);
        assert_eq!(features[1], 0.0, "NaN age counts as missing");
        assert_eq!(&features[4..], &[0.0, 1.0]);
    }

    #[test]
    fn a_chosen_subset_of_fields_in_order() {
        let records = vec![record("a", "p", Some(Sex::Female), Some(30.0), Some("torso"), Some(10)), record("b", "p", None, None, None, None)];
        let encoder = MetadataEncoder::fit(&records, &[MetadataField::Age, MetadataField::Sex]);
        assert_eq!(encoder.feature_names(), ["age_over_90", "sex"]);
        assert!(encoder.sites.is_empty(), "no site columns unless the site is used");
        let rows = encoder.encode_all(&records);
        assert_eq!(rows, vec![vec![30.0 / 90.0, 0.0], vec![0.0, -1.0]]);
    }
}
