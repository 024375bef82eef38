//! Diagnosis targets beyond melanoma / not melanoma. The SIIM-ISIC 2020 winners (seed 004)
//! trained on 9 diagnosis classes across the 2019 and 2020 data and scored melanoma as the
//! softmax probability of its class; HAM10000 (DermaMNIST) is judged on its own 7 classes.

use serde::{Deserialize, Serialize};

use crate::records::Record;

/// How diagnoses become class indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassScheme {
    /// Melanoma (1) or not (0), from the record's melanoma label.
    Binary,
    /// Melanoma, nevus, benign keratosis, unknown: the SIIM-ISIC 2020 data alone.
    Four,
    /// Seed 004's 9 classes over ISIC 2019 + 2020.
    Nine,
    /// HAM10000's 7 classes in DermaMNIST's label order.
    Ham7,
}

/// A diagnosis string that the scheme has no class for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{id}: diagnosis {diagnosis:?} has no class in the {scheme:?} scheme (classes: {classes})")]
pub struct UnknownDiagnosis {
    pub id: String,
    pub diagnosis: String,
    pub scheme: ClassScheme,
    pub classes: String,
}

/// The diagnosis families the readers' normalised strings fall into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Melanoma,
    Nevus,
    BenignKeratosis,
    BasalCellCarcinoma,
    ActinicKeratosis,
    SquamousCellCarcinoma,
    Vascular,
    Dermatofibroma,
    Unknown,
}

/// Normalised diagnosis (see `normalize_diagnosis`: lowercase, words joined by "_") ->
/// family. Seed 004 folds seborrheic and lichenoid keratosis, solar lentigo and lentigo NOS
/// into BKL, and cafe-au-lait macules and atypical melanocytic proliferations into unknown.
fn family(diagnosis: &str) -> Option<Family> {
    Some(match diagnosis {
        "melanoma" => Family::Melanoma,
        "nevus" => Family::Nevus,
        "bkl" | "seborrheic_keratosis" | "lichenoid_keratosis" | "solar_lentigo" | "lentigo_nos" => Family::BenignKeratosis,
        "bcc" | "basal_cell_carcinoma" => Family::BasalCellCarcinoma,
        // HAM10000's akiec holds actinic keratoses and intraepithelial carcinoma (Bowen's).
        "ak" | "akiec" | "actinic_keratosis" => Family::ActinicKeratosis,
        "scc" | "squamous_cell_carcinoma" => Family::SquamousCellCarcinoma,
        "vasc" | "vascular_lesion" => Family::Vascular,
        "df" | "dermatofibroma" => Family::Dermatofibroma,
        "unknown" | "unk" | "cafe_au_lait_macule" | "atypical_melanocytic_proliferation" => Family::Unknown,
        _ => return None,
    })
}

impl ClassScheme {
    /// Class names, index = class.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            ClassScheme::Binary => &["benign", "melanoma"],
            ClassScheme::Four => &["melanoma", "nevus", "BKL", "unknown"],
            ClassScheme::Nine => &["melanoma", "nevus", "BKL", "BCC", "AK", "SCC", "VASC", "DF", "unknown"],
            ClassScheme::Ham7 => &["AKIEC", "BCC", "BKL", "DF", "melanoma", "nevus", "VASC"],
        }
    }

    pub fn num_classes(self) -> usize {
        self.class_names().len()
    }

    /// The class whose probability is the melanoma score.
    pub fn melanoma_class(self) -> usize {
        self.class_names().iter().position(|&c| c == "melanoma").expect("every scheme has a melanoma class")
    }

    /// The class of `record`; None when it is unlabelled. A diagnosis outside the scheme is
    /// an error naming it, never a silent "unknown".
    pub fn class_of(self, record: &Record) -> Result<Option<usize>, UnknownDiagnosis> {
        if self == ClassScheme::Binary {
            return Ok(record.melanoma.map(usize::from));
        }
        let diagnosis = match (&record.diagnosis, record.melanoma) {
            (Some(d), _) => d.as_str(),
            // A melanoma label without a diagnosis is still a melanoma.
            (None, Some(true)) => "melanoma",
            (None, Some(false)) => "unknown",
            (None, None) => return Ok(None),
        };
        let error = || UnknownDiagnosis {
            id: record.id.clone(),
            diagnosis: diagnosis.to_string(),
            scheme: self,
            classes: self.class_names().join(", "),
        };
        let family = family(diagnosis).ok_or_else(error)?;
        use Family::*;
        let class = match (self, family) {
            (ClassScheme::Four, Melanoma) => 0,
            (ClassScheme::Four, Nevus) => 1,
            (ClassScheme::Four, BenignKeratosis) => 2,
            (ClassScheme::Four, _) => 3,
            (ClassScheme::Nine, f) => [Melanoma, Nevus, BenignKeratosis, BasalCellCarcinoma, ActinicKeratosis, SquamousCellCarcinoma, Vascular, Dermatofibroma, Unknown]
                .iter()
                .position(|&g| g == f)
                .expect("every family is a 9-class class"),
            (ClassScheme::Ham7, f) => [ActinicKeratosis, BasalCellCarcinoma, BenignKeratosis, Dermatofibroma, Melanoma, Nevus, Vascular]
                .iter()
                .position(|&g| g == f)
                .ok_or_else(error)?,
            (ClassScheme::Binary, _) => unreachable!("handled above"),
        };
        Ok(Some(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::normalize_diagnosis;

    fn record(diagnosis: Option<&str>, melanoma: Option<bool>) -> Record {
        Record {
            id: "ISIC_1".into(),
            image_path: "x.jpg".into(),
            group: "p".into(),
            melanoma,
            diagnosis: diagnosis.and_then(normalize_diagnosis),
            metadata: Default::default(),
            split: None,
            source: "test".into(),
            row: None,
            file_bytes: None,
            crop: None,
            is_external: false,
        }
    }

    fn nine(diagnosis: &str) -> usize {
        ClassScheme::Nine.class_of(&record(Some(diagnosis), Some(diagnosis == "melanoma"))).unwrap().unwrap()
    }

    #[test]
    fn seed_004_folds_the_2020_diagnoses_into_nine_classes() {
        for d in ["seborrheic keratosis", "lichenoid keratosis", "solar lentigo", "lentigo NOS", "BKL"] {
            assert_eq!(nine(d), 2, "{d}");
        }
        for d in ["cafe-au-lait macule", "atypical melanocytic proliferation", "unknown", "UNK"] {
            assert_eq!(nine(d), 8, "{d}");
        }
        assert_eq!(nine("melanoma"), 0);
        assert_eq!(nine("MEL"), 0);
        assert_eq!(nine("nevus"), 1);
        assert_eq!(nine("NV"), 1);
        assert_eq!(nine("akiec"), 4);
        assert_eq!(nine("SCC"), 5);
        assert_eq!(ClassScheme::Nine.melanoma_class(), 0);
    }

    #[test]
    fn four_and_ham7_schemes() {
        let four = |d: &str| ClassScheme::Four.class_of(&record(Some(d), None)).unwrap().unwrap();
        assert_eq!((four("melanoma"), four("nevus"), four("solar lentigo"), four("bcc")), (0, 1, 2, 3));
        let ham = |d: &str| ClassScheme::Ham7.class_of(&record(Some(d), None));
        // DermaMNIST order: akiec, bcc, bkl, df, mel, nv, vasc.
        let classes: Vec<usize> = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"].iter().map(|d| ham(d).unwrap().unwrap()).collect();
        assert_eq!(classes, vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(ClassScheme::Ham7.melanoma_class(), 4);
        // HAM10000 has no unknown class: an unknown diagnosis is an error, not a guess.
        let err = ham("unknown").unwrap_err().to_string();
        assert!(err.contains("ISIC_1") && err.contains("unknown") && err.contains("AKIEC"), "{err}");
    }

    #[test]
    fn unrecognised_or_missing_diagnoses() {
        let err = ClassScheme::Nine.class_of(&record(Some("melanoma in situ?"), Some(true))).unwrap_err();
        assert!(err.to_string().contains("melanoma_in_situ?"), "{err}");
        // No diagnosis: the melanoma label decides; no label at all: unlabelled.
        assert_eq!(ClassScheme::Nine.class_of(&record(None, Some(true))).unwrap(), Some(0));
        assert_eq!(ClassScheme::Nine.class_of(&record(None, Some(false))).unwrap(), Some(8));
        assert_eq!(ClassScheme::Nine.class_of(&record(None, None)).unwrap(), None);
        assert_eq!(ClassScheme::Binary.class_of(&record(Some("nevus"), Some(false))).unwrap(), Some(0));
    }
}
