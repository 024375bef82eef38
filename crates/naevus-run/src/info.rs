//! run.json: what predict, evaluate, explain and the report need to know about a trained run.

use std::path::PathBuf;

use naevus_data::cache::CACHE_SIDES;
use naevus_data::{ClassScheme, ColourConstancy, MetadataEncoder, MetadataField, Record};
use serde::{Deserialize, Serialize};

use crate::recipe::{LossKind, MAX_DROPOUT_SAMPLES, MODEL_INPUT_SIDES, num_outputs};
use crate::source_options::{CheckpointSelection, TrainingSource};

/// Bumped when the layout changes incompatibly (4: sealed checkpoints, one training-state file).
pub const RUN_FORMAT: u32 = 4;

/// The contents of run.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub format: u32,
    pub naevus_version: String,
    /// The backends the training binary was built with (its cargo features), e.g. ["flex"];
    /// the one trained on and the seed are in the recipe.
    #[serde(default)]
    pub built_with: Vec<String>,
    pub model: String,
    pub loss: LossKind,
    pub num_outputs: usize,
    /// Side of the square input the model was trained at.
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The prepared cache it was trained on (absolute when it could be resolved).
    pub cache: PathBuf,
    /// Side of the cache's stored images: an image file is prepared at this size, then
    /// resized to `image_size` as the loader does, so it is scored as prepare + predict would.
    #[serde(default)]
    pub cache_size: Option<u32>,
    /// What the cache holds (a hash of its records and image size): `--resume` refuses
    /// another cache.
    #[serde(default)]
    pub cache_id: Option<String>,
    /// Fold directory names, e.g. ["fold-0", "fold-1"].
    pub folds: Vec<String>,
    /// The classes the logits stand for.
    pub classes: ClassScheme,
    /// The metadata features the network takes, when it has a metadata branch.
    pub metadata: Option<MetadataEncoder>,
    /// For a metadata model: the share of its training images that lacked each field, so
    /// that prediction can warn when far more images lack one.
    #[serde(default)]
    pub metadata_missing: Vec<(MetadataField, f64)>,
    /// Multi-sample dropout masks in training (does not change inference, but the network
    /// is built the same way).
    pub dropout_samples: usize,
    /// The colour correction every image gets before it becomes an input, in training and
    /// in every prediction.
    #[serde(default)]
    pub colour_constancy: ColourConstancy,
    /// The rule that picked each fold's best epoch.
    #[serde(default)]
    pub checkpoint_selection: CheckpointSelection,
    /// The sources of the cache's labelled images, and how each was drawn in training.
    #[serde(default)]
    pub sources: Vec<TrainingSource>,
}

impl RunInfo {
    /// Whether every value can be used: a run.json that is damaged, edited or not naevus's
    /// must be refused when it is read, not change every prediction without a word. Returns
    /// the field at fault and what was expected.
    pub fn check(&self) -> Result<(), String> {
        if self.folds.is_empty() {
            return Err("folds: the run lists no folds, so there is no model to predict with; the file is damaged or the run never trained".into());
        }
        for (i, fold) in self.folds.iter().enumerate() {
            if !crate::dir::is_plain_name(fold) {
                return Err(format!(
                    "folds[{i}]: \"{}\" is not a plain name (letters, digits, '-', '_', '.'; not \".\" or \"..\"); the file is damaged or not naevus's",
                    naevus_data::error::excerpt(fold)
                ));
            }
            if self.folds[..i].contains(fold) {
                return Err(format!("folds[{i}]: \"{fold}\" is listed twice"));
            }
        }
        if !MODEL_INPUT_SIDES.contains(&self.image_size) {
            return Err(format!("image_size: {} px is outside {}..={} px", self.image_size, MODEL_INPUT_SIDES.start(), MODEL_INPUT_SIDES.end()));
        }
        if let Some(size) = self.cache_size
            && !CACHE_SIDES.contains(&size)
        {
            return Err(format!("cache_size: {size} px is outside {}..={} px", CACHE_SIDES.start(), CACHE_SIDES.end()));
        }
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            if !(0.0..=1.0).contains(&mean) {
                return Err(format!("mean[{c}]: {mean} is not a channel mean between 0 and 1"));
            }
            if !(0.01..=1.0).contains(&std) {
                return Err(format!("std[{c}]: {std} is not a channel standard deviation between 0.01 and 1"));
            }
        }
        let expected = num_outputs(self.loss, self.classes);
        if self.num_outputs != expected {
            return Err(format!("num_outputs: {} does not fit loss {:?} with classes {:?}, which give {expected}", self.num_outputs, self.loss, self.classes));
        }
        if !(1..=MAX_DROPOUT_SAMPLES).contains(&self.dropout_samples) {
            return Err(format!("dropout_samples: {} is outside 1..={MAX_DROPOUT_SAMPLES}", self.dropout_samples));
        }
        if let ColourConstancy::ShadesOfGray { p } = self.colour_constancy
            && !naevus_data::SHADES_OF_GRAY_P.contains(&f64::from(p))
        {
            return Err(format!("colour_constancy: Shades of Gray's p is {p}, outside 1 to 20"));
        }
        if let Some((field, share)) = self.metadata_missing.iter().find(|(_, share)| !(0.0..=1.0).contains(share)) {
            return Err(format!("metadata_missing: the share for {} is {share}, not between 0 and 1", field.name()));
        }
        Ok(())
    }

    /// For a metadata model, a warning for each field that many more of `records` lack than
    /// its training images did (20 points or more): its predictions on them are less sound.
    pub fn metadata_warnings<'a>(&self, records: impl IntoIterator<Item = &'a Record> + Clone) -> Vec<String> {
        let Some(encoder) = &self.metadata else { return Vec::new() };
        let trained: std::collections::HashMap<MetadataField, f64> = self.metadata_missing.iter().copied().collect();
        encoder
            .missing_shares(records)
            .into_iter()
            .filter_map(|(field, share)| {
                let before = trained.get(&field).copied().unwrap_or(0.0);
                (share - before >= 0.2).then(|| {
                    format!(
                        "warning: {:.0}% of these images lack {} against {:.0}% of the training images: this model also reads it, \
                         and its predictions for them are less sound",
                        share * 100.0,
                        field.name(),
                        before * 100.0
                    )
                })
            })
            .collect()
    }

    /// Refuses a fold name the run does not have, listing the ones it has.
    pub fn check_fold(&self, fold: &str) -> Result<(), String> {
        check_fold(fold, &self.folds)
    }

    /// Number of features of the metadata branch (0: image only).
    pub fn metadata_features(&self) -> usize {
        self.metadata.as_ref().map_or(0, MetadataEncoder::num_features)
    }
}

/// Refuses `fold` unless it is one of `folds`, naming those: the one message every job gives
/// for an unknown fold.
pub fn check_fold(fold: &str, folds: &[String]) -> Result<(), String> {
    if folds.iter().any(|f| f == fold) {
        Ok(())
    } else {
        Err(format!("the run has no fold \"{}\"; its folds are {}", naevus_data::error::excerpt(fold), folds.join(", ")))
    }
}
