//! Plain data types shared by every reader: records, metadata and rejects.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Patient sex as recorded in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    /// "male"
    Male,
    /// "female"
    Female,
}

impl Sex {
    /// Parses "male"/"female" (any case, surrounding spaces ignored); anything else is None.
    pub fn parse(s: &str) -> Option<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "male" => Some(Sex::Male),
            "female" => Some(Sex::Female),
            _ => None,
        }
    }
}

/// Which split of a dataset a record belongs to, when the source says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data.
    Val,
    /// Held-out test data.
    Test,
}

impl Split {
    /// Parses "train", "val"/"valid"/"validation", "test" (any case); anything else is None.
    pub fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::parse(s).ok_or_else(|| format!("unknown split {s:?}; expected train, val or test"))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

/// Patient metadata; every field is optional because sources differ and values go missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Approximate age in years.
    pub age: Option<f32>,
    /// Patient sex.
    pub sex: Option<Sex>,
    /// Anatomical site, lowercased and trimmed (e.g. "torso", "head/neck").
    pub site: Option<String>,
}

/// One labelled (or unlabelled) image from a source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Image id, e.g. ISIC_0000000.
    pub id: String,
    /// The original full-resolution image file.
    pub image_path: PathBuf,
    /// Patient or lesion id; the image id itself when unknown.
    pub group: String,
    /// Binary melanoma label; None when unlabelled (e.g. a test set).
    pub melanoma: Option<bool>,
    /// Normalised diagnosis (lowercase, e.g. "melanoma", "nevus", "bcc"), where known.
    pub diagnosis: Option<String>,
    /// Patient metadata.
    pub metadata: Metadata,
    /// The split the source assigns, if any.
    pub split: Option<Split>,
    /// Which reader produced it: "isic2020", "isic2017", "ham10000", "isic2019", "folders".
    pub source: String,
    /// Line of the label CSV it came from (None for class folders), for error reports.
    #[serde(default)]
    pub row: Option<usize>,
    /// Size of the original image file in bytes when it was read (a metadata feature of
    /// the SIIM-ISIC 2020 winners: file size tracks the camera and the clinic).
    #[serde(default)]
    pub file_bytes: Option<u64>,
    /// Region of the image's centre square to keep (attention-guided cropping); None: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<crate::crop::CropBox>,
    /// Extra training data from another source (seed 004 adds the ISIC 2019 images to the
    /// 2020 ones): it trains, and validation scores it apart from the primary source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_external: bool,
}

/// A row or file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// CSV line number (header = line 1) when the reject comes from a CSV row.
    pub row: Option<usize>,
    /// The CSV file or image file concerned.
    pub path: String,
    /// Human-readable reason.
    pub reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "{}: line {row}: {}", self.path, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// Normalises a diagnosis string: trimmed, lowercase, spaces and dashes as underscores,
/// and the common abbreviations "mel"/"nv" spelled out as "melanoma"/"nevus".
pub fn normalize_diagnosis(s: &str) -> Option<String> {
    let lower = s.trim().to_lowercase();
    if lower.is_empty() {
        return None;
    }
    let joined: String = lower
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    Some(match joined.as_str() {
        "mel" => "melanoma".to_string(),
        "nv" | "naevus" => "nevus".to_string(),
        _ => joined,
    })
}
