//! The training recipe: every knob of a run, read from a TOML recipe in configs/ and
//! overridden by command-line flags of the same names. The resolved recipe is saved in
//! the run directory so a run can be reproduced and resumed.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use naevus_data::{ClassScheme, MetadataField};

use crate::device::Precision;
use crate::loss::{LossKind, Target};

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adam,
    Adamw,
}

/// How training images are drawn each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplingKind {
    /// Every training image once, shuffled.
    Shuffle,
    /// Classes drawn equally often (with replacement), same epoch length.
    Balanced,
    /// All melanomas plus a fresh random subset of `negatives_per_positive` benign images per melanoma.
    Undersample,
}

/// A complete training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Registry name of the model (`naevus models` lists them).
    pub model: String,
    /// Start from the model's ImageNet weights (fetched on first use; see `naevus weights`).
    pub pretrained: bool,
    /// Side of the square model input; 0 means the cache's image size.
    pub image_size: u32,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (of the head, when `backbone_lr` is given).
    pub lr: f64,
    /// Peak learning rate of the backbone; absent: the same as `lr`. Seed 002 fine-tunes its
    /// ImageNet ResNet at 1e-5 under a 5e-5 head.
    pub backbone_lr: Option<f64>,
    /// Train only the head for this many first epochs (backbone weights and BatchNorm
    /// statistics fixed), then everything.
    pub freeze_backbone_epochs: usize,
    /// Stop a fold when its validation AUC has not improved for this many epochs; 0: never.
    pub early_stopping_patience: usize,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    /// Linear warm-up length in epochs (fractions allowed) before the cosine decay.
    pub warmup_epochs: f64,
    /// Learning rate at the start of the warm-up, as a share of `lr` (seed 004 ramps up
    /// tenfold: 0.1).
    pub warmup_start: f64,
    /// Length in epochs of each cosine cycle after the warm-up, the learning rate restarting
    /// at its peak after each (SGDR); 0: one cycle over all remaining epochs.
    pub restart_epochs: f64,
    pub loss: LossKind,
    /// Classes the model tells apart: binary (melanoma or not), or diagnoses (four, nine,
    /// ham7) trained with cross-entropy, the melanoma score being its class's probability.
    pub classes: ClassScheme,
    /// Patient metadata fed to a metadata branch next to the image features (seed 004):
    /// any of sex, age, images-of-patient, file-bytes, site; empty: image only.
    pub metadata: Vec<MetadataField>,
    /// Dropout masks averaged in training (multi-sample dropout; seed 004 uses 5).
    pub dropout_samples: usize,
    pub focal_alpha: f64,
    pub focal_gamma: f64,
    pub sampling: SamplingKind,
    pub negatives_per_positive: f32,
    /// Random flips, 90-degree rotations, small affine and colour jitter on training images.
    pub augment: bool,
    /// 0: train on the dataset's own train split and validate on its val split;
    /// K >= 2: K-fold cross-validation grouped by patient or lesion.
    pub folds: usize,
    /// External images (see `naevus combine`) also go into validation folds; by default
    /// they only ever train, and validation holds primary-source images alone.
    pub external_in_validation: bool,
    pub seed: u64,
    /// Compute backend: flex, tch or vulkan (what was compiled in).
    pub device: String,
    /// f32, or f16 / bf16 for every tensor (GPUs; see `Precision`).
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "small-cnn".into(),
            pretrained: false,
            image_size: 0,
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            backbone_lr: None,
            freeze_backbone_epochs: 0,
            early_stopping_patience: 0,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::Adamw,
            warmup_epochs: 1.0,
            warmup_start: 0.01,
            restart_epochs: 0.0,
            loss: LossKind::Bce,
            classes: ClassScheme::Binary,
            metadata: Vec::new(),
            dropout_samples: 1,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
            sampling: SamplingKind::Shuffle,
            negatives_per_positive: 3.0,
            augment: true,
            folds: 0,
            external_in_validation: false,
            seed: 42,
            device: "flex".into(),
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// The loss and classes together.
    pub fn target(&self) -> Target {
        Target { loss: self.loss, classes: self.classes }
    }

    /// Reads a TOML recipe; unknown keys are an error so typos do not pass silently.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading recipe {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing recipe {}", path.display()))
    }

    /// The recipe as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Rejects values that cannot train.
    pub fn validate(&self) -> Result<()> {
        let spec = naevus_models::spec(&self.model)?;
        if self.pretrained && spec.pretrained.is_none() {
            bail!("no ImageNet weights can be had for {}; drop `pretrained` or choose a model that has them (`naevus models`)", self.model);
        }
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        if self.batch_size < 2 {
            bail!("batch_size must be at least 2 (BatchNorm needs more than one image)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("lr must be a positive number, got {}", self.lr);
        }
        if let Some(lr) = self.backbone_lr
            && !(lr > 0.0 && lr.is_finite())
        {
            bail!("backbone_lr must be a positive number, got {lr}");
        }
        if self.pretrained && self.precision != Precision::F32 {
            bail!(
                "precision {:?} trains from scratch only: burn 0.22's PyTorch loader cannot cast the f32 ImageNet weights \
                 into a half-precision network; use precision = \"f32\" with pretrained",
                self.precision
            );
        }
        if self.freeze_backbone_epochs >= self.epochs {
            bail!(
                "freeze_backbone_epochs ({}) must be smaller than epochs ({}): the backbone would never train",
                self.freeze_backbone_epochs,
                self.epochs
            );
        }
        if self.folds == 1 {
            bail!("folds must be 0 (use the dataset's split) or at least 2");
        }
        if !(0.0..=1.0).contains(&self.focal_alpha) {
            bail!("focal_alpha must lie in [0, 1], got {}", self.focal_alpha);
        }
        if self.negatives_per_positive <= 0.0 {
            bail!("negatives_per_positive must be positive");
        }
        self.target().check().map_err(anyhow::Error::msg)?;
        if !(self.warmup_start > 0.0 && self.warmup_start <= 1.0) {
            bail!("warmup_start must lie in (0, 1], got {}", self.warmup_start);
        }
        if !(self.restart_epochs >= 0.0 && self.restart_epochs.is_finite()) {
            bail!("restart_epochs must be 0 (no restarts) or a positive number of epochs, got {}", self.restart_epochs);
        }
        if self.dropout_samples == 0 {
            bail!("dropout_samples must be at least 1");
        }
        let mut fields = self.metadata.clone();
        fields.sort_by_key(|f| *f as usize);
        fields.dedup();
        if fields.len() != self.metadata.len() {
            bail!("metadata lists a field twice: {:?}", self.metadata);
        }
        Ok(())
    }
}
