//! Patient metadata as model inputs, encoded as seed 004 (SIIM-ISIC 2020 1st place) does:
//! sex (male 1, female 0, unknown -1), age / 90 (missing 0), log1p of the number of images of
//! the same patient, log of the original file's size in bytes (missing 0), and a one-hot
//! anatomical site with an explicit unknown column. The encoder is fitted once and saved with
//! the run, so prediction computes exactly the training features.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::records::{Record, Sex};

/// Which columns a run's metadata features have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEncoder {
    /// Anatomical sites with a column of their own, sorted. Sites not in the list, and
    /// missing sites, go to the final "site_unknown" column.
    pub sites: Vec<String>,
}

/// Images per patient (group) among `records`: the seed's `n_images`.
pub fn images_per_group(records: &[Record]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in records {
        *counts.entry(record.group.clone()).or_insert(0) += 1;
    }
    counts
}

impl MetadataEncoder {
    /// Columns for every site that occurs in `records` (the seed fits on train and test
    /// together: a site seen only in the test set still gets its column).
    pub fn fit(records: &[Record]) -> Self {
        let mut sites: Vec<String> = records.iter().filter_map(|r| r.metadata.site.clone()).collect();
        sites.sort();
        sites.dedup();
        Self { sites }
    }

    /// Names of the features, in order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["sex", "age_over_90", "log1p_images_of_patient", "log_file_bytes"].map(String::from).to_vec();
        names.extend(self.sites.iter().map(|s| format!("site_{s}")));
        names.push("site_unknown".into());
        names
    }

    pub fn num_features(&self) -> usize {
        4 + self.sites.len() + 1
    }

    /// The features of `record`, whose patient has `images_of_patient` images in the data set
    /// it belongs to (at least 1: the record itself).
    pub fn encode(&self, record: &Record, images_of_patient: usize) -> Vec<f32> {
        let metadata = &record.metadata;
        let sex = match metadata.sex {
            Some(Sex::Male) => 1.0,
            Some(Sex::Female) => 0.0,
            None => -1.0,
        };
        let age = metadata.age.filter(|a| a.is_finite() && *a >= 0.0).map_or(0.0, |a| a / 90.0);
        let images = (images_of_patient.max(1) as f32).ln_1p();
        let file_bytes = record.file_bytes.filter(|&b| b > 0).map_or(0.0, |b| (b as f32).ln());
        let mut features = vec![sex, age, images, file_bytes];
        let site_column = metadata.site.as_ref().and_then(|s| self.sites.iter().position(|known| known == s));
        features.extend((0..=self.sites.len()).map(|c| if Some(c) == site_column || (site_column.is_none() && c == self.sites.len()) { 1.0 } else { 0.0 }));
        features
    }
}

#[cfg(test)]
mod tests {
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
        }
    }

    #[test]
    fn encodes_like_seed_004() {
        let records = vec![
            record("a", "p1", Some(Sex::Male), Some(45.0), Some("torso"), Some(1000)),
            record("b", "p1", Some(Sex::Female), None, Some("head/neck"), Some(1)),
            record("c", "c", None, Some(90.0), None, None),
        ];
        let encoder = MetadataEncoder::fit(&records);
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
        let c = encode(&records[2]);
        assert_eq!(&c[..3], &[-1.0, 1.0, 2f32.ln()]);
        assert_eq!(c[3], 0.0, "no file size known");
        assert_eq!(&c[4..], &[0.0, 0.0, 1.0], "missing site -> unknown column");
    }

    #[test]
    fn a_site_unseen_when_fitting_goes_to_unknown() {
        let encoder = MetadataEncoder::fit(&[record("a", "a", None, None, Some("torso"), None)]);
        let palms = record("b", "b", None, Some(f32::NAN), Some("palms/soles"), None);
        let features = encoder.encode(&palms, 1);
        assert_eq!(features[1], 0.0, "NaN age counts as missing");
        assert_eq!(&features[4..], &[0.0, 1.0]);
    }
}
