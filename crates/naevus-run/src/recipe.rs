//! The training recipe: every knob of a run. Each key is defined once, in
//! [`recipe_key_list!`], which makes the [`TrainConfig`] struct (the TOML recipe in configs/
//! and the run's config.toml), its defaults and [`RecipeFlags`] (values given apart from a
//! recipe file); the command line makes its flags of the same names from the same list, with
//! the key's documentation as their help.

use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;

pub use naevus_data::{AugmentOps, AugmentPreset, ClassScheme, ColourConstancyKind, MetadataField};
use naevus_data::SHADES_OF_GRAY_P;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::guard::GUARD_PERCENTILES;

mod bounds;
use bounds::{in_range, positive_at_most};
use crate::source_options::{CheckpointSelection, SourceShares};

/// Which loss a run trains with; it also fixes how many logits the model has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// One logit, binary cross-entropy.
    Bce,
    /// One logit, focal loss (Lin et al. 2017) with `focal_alpha` and `focal_gamma`.
    Focal,
    /// Two logits, softmax cross-entropy (seed 003).
    CrossEntropy,
}

impl LossKind {
    /// Number of logits the model must produce.
    pub fn num_outputs(self) -> usize {
        match self {
            LossKind::Bce | LossKind::Focal => 1,
            LossKind::CrossEntropy => 2,
        }
    }
}

/// Number of logits a model trained with `loss` on `classes` has.
pub fn num_outputs(loss: LossKind, classes: ClassScheme) -> usize {
    match classes {
        ClassScheme::Binary => loss.num_outputs(),
        scheme => scheme.num_classes(),
    }
}

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
    /// Each source its `source_shares` of the epoch, `negatives_per_positive` benign images
    /// per melanoma within each; the epoch as long as undersampling's.
    SourceBalanced,
}

/// Floating-point type of every tensor of a run: weights, activations and gradients alike.
/// burn 0.22 has no automatic mixed precision (f32 master weights, loss scaling), so f16 and
/// bf16 halve memory and speed up GPUs at the cost of precision throughout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// The name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How a recipe key's type is given on the command line: most types as themselves, enums by
/// their kebab-case recipe names, an optional key by its value.
pub trait RecipeValue: Sized {
    type Flag: Clone + Send + Sync + 'static;
    fn from_flag(flag: Self::Flag) -> Self;
}

macro_rules! given_as_itself {
    ($($ty:ty),*) => { $( impl RecipeValue for $ty { type Flag = $ty; fn from_flag(flag: $ty) -> $ty { flag } } )* };
}
given_as_itself!(String, bool, u32, u64, usize, f32, f64, AugmentPreset, AugmentOps, SourceShares, CheckpointSelection, ColourConstancyKind);

macro_rules! given_by_name {
    ($($ty:ty),*) => { $( impl RecipeValue for $ty { type Flag = Kebab<$ty>; fn from_flag(flag: Kebab<$ty>) -> $ty { flag.0 } } )* };
}
given_by_name!(LossKind, OptimizerKind, SamplingKind, Precision, ClassScheme);

impl<T: RecipeValue<Flag = T> + Clone + Send + Sync + 'static> RecipeValue for Option<T> {
    type Flag = T;
    fn from_flag(flag: T) -> Self {
        Some(flag)
    }
}

impl RecipeValue for Vec<MetadataField> {
    type Flag = MetadataList;
    fn from_flag(flag: MetadataList) -> Self {
        flag.0
    }
}

/// An enum value parsed from its kebab-case name, the way the TOML recipe reads it.
#[derive(Debug, Clone)]
pub struct Kebab<T>(pub T);

impl<T: DeserializeOwned> FromStr for Kebab<T> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let name = text.trim();
        // serde's message quotes the whole text; a long one is no name, and is quoted short.
        if name.chars().count() > 80 {
            return Err(format!("\"{}\" is longer than any name this takes", naevus_data::error::excerpt(name)));
        }
        serde_json::from_value(serde_json::Value::String(name.to_string())).map(Kebab).map_err(|e| e.to_string())
    }
}

/// A comma-separated list of metadata fields ("none": image only).
#[derive(Debug, Clone)]
pub struct MetadataList(pub Vec<MetadataField>);

impl FromStr for MetadataList {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "none" {
            return Ok(MetadataList(Vec::new()));
        }
        text.split(',').map(|field| Kebab::<MetadataField>::from_str(field).map(|k| k.0)).collect::<Result<_, _>>().map(MetadataList)
    }
}

/// Makes the recipe ([`TrainConfig`], its defaults, [`RecipeFlags`]) from [`recipe_key_list`].
macro_rules! recipe_keys {
    ($( $(#[doc = $doc:literal])* $key:ident : $ty:ty = $default:expr, )*) => {
        /// A complete training recipe.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct TrainConfig {
            $( $(#[doc = $doc])* pub $key: $ty, )*
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                Self { $( $key: $default, )* }
            }
        }

        /// Values given for recipe keys apart from a recipe file (the command line's flags of
        /// the same names): each one given overrides the recipe's value.
        #[derive(Debug, Clone, Default)]
        pub struct RecipeFlags {
            $( pub $key: Option<<$ty as RecipeValue>::Flag>, )*
        }

        impl RecipeFlags {
            /// The keys given, in recipe order.
            pub fn given(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$key.is_some() { keys.push(stringify!($key)); } )*
                keys
            }

            /// Sets every key given on `recipe`.
            pub fn apply(&self, recipe: &mut TrainConfig) {
                $( if let Some(flag) = &self.$key { recipe.$key = RecipeValue::from_flag(flag.clone()); } )*
            }
        }

        impl TrainConfig {
            /// The keys whose values differ between `self` and `other`, in recipe order.
            pub fn differing_keys(&self, other: &TrainConfig) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$key != other.$key { keys.push(stringify!($key)); } )*
                keys
            }
        }
    };
}

/// Every recipe key, once: `key: type = default`, each with its documentation (the recipe's
/// reference and the flag's help). It hands the list to `$callback`, a macro of the caller:
/// [`recipe_keys`] makes the recipe from it here, and the command line makes its flags from
/// it (so this crate carries no command-line code).
#[macro_export]
macro_rules! recipe_key_list {
    ($callback:ident) => {
        $callback! {
            /// Registry name of the model (`naevus models` lists them).
            model: String = "small-cnn".into(),
            /// Start from the model's ImageNet weights (fetched on first use; see `naevus weights`).
            pretrained: bool = false,
            /// Side of the square model input in pixels, 16 to 2048; absent: the model's own input
            /// size from the registry, or the cache's image size when that is smaller.
            image_size: Option<u32> = None,
            /// Training epochs, 1 to 10000.
            epochs: usize = 10,
            /// Images per optimiser step, 2 to 1024.
            batch_size: usize = 32,
            /// Peak learning rate (of the head, when `backbone_lr` is given), above 0 and at most 1e10.
            lr: f64 = 1e-3,
            /// Peak learning rate of the backbone, as `lr`; absent: the same as `lr`. Seed 002
            /// fine-tunes its ImageNet ResNet at 1e-5 under a 5e-5 head.
            backbone_lr: Option<f64> = None,
            /// Train only the head for this many first epochs (backbone weights and BatchNorm
            /// statistics fixed), then everything; fewer than `epochs`.
            freeze_backbone_epochs: usize = 0,
            /// Stop a fold when its validation AUC has not improved for this many epochs; 0: never;
            /// at most 10000.
            early_stopping_patience: usize = 0,
            /// Weight decay of the optimiser, 0 to 10.
            weight_decay: f64 = 1e-4,
            /// adam or adamw.
            optimizer: $crate::recipe::OptimizerKind = $crate::recipe::OptimizerKind::Adamw,
            /// Decay of an exponential moving average of the weights (timm's ModelEma), kept next
            /// to the trained weights, validated every epoch and checkpointed as best_ema; 0: none.
            /// Early steps average with less memory, min(decay, (1 + t) / (10 + t)) at step t, so
            /// that the random head is forgotten quickly. 0.999 spans about 1,000 steps.
            ema_decay: f64 = 0.0,
            /// Linear warm-up length in epochs (fractions allowed) before the cosine decay, 0 to 10000.
            warmup_epochs: f64 = 1.0,
            /// Learning rate at the start of the warm-up, as a share of `lr` (seed 004 ramps up
            /// tenfold: 0.1).
            warmup_start: f64 = 0.01,
            /// Length in epochs of each cosine cycle after the warm-up, the learning rate restarting
            /// at its peak after each (SGDR); 0: one cycle over all remaining epochs; at most 10000.
            restart_epochs: f64 = 0.0,
            /// bce, focal or cross-entropy.
            loss: $crate::recipe::LossKind = $crate::recipe::LossKind::Bce,
            /// Classes the model tells apart: binary (melanoma or not), or diagnoses (four, nine,
            /// ham7) trained with cross-entropy, the melanoma score being its class's probability.
            classes: $crate::recipe::ClassScheme = $crate::recipe::ClassScheme::Binary,
            /// Patient metadata fed to a metadata branch next to the image features (seed 004),
            /// comma-separated: any of sex, age, images-of-patient, file-bytes, site; empty ("none"):
            /// image only.
            metadata: Vec<$crate::recipe::MetadataField> = Vec::new(),
            /// Probability that each metadata field of a training image is masked to "unknown" in
            /// a step, so that a metadata model stays sound on images whose fields are missing.
            metadata_dropout: f64 = 0.0,
            /// Dropout masks averaged in training (multi-sample dropout; seed 004 uses 5), 1 to 64.
            dropout_samples: usize = 1,
            /// Focal loss: weight of the positive class, 0 to 1.
            focal_alpha: f64 = 0.25,
            /// Focal loss: focusing exponent, 0 to 10.
            focal_gamma: f64 = 2.0,
            /// shuffle, balanced, undersample or source-balanced.
            sampling: $crate::recipe::SamplingKind = $crate::recipe::SamplingKind::Shuffle,
            /// For sampling = undersample or source-balanced: benign images kept per melanoma each
            /// epoch (within each source), above 0 and at most 1000.
            negatives_per_positive: f32 = 3.0,
            /// For sampling = source-balanced: each source's share of an epoch, "isic2017=1,ham10000=1"
            /// (a table in a recipe); empty: equal shares. A source left out, or at 0, never trains
            /// but is still validated on.
            source_shares: $crate::source_options::SourceShares = $crate::source_options::SourceShares::default(),
            /// Augmentation of training images, a preset: light (a random flip, quarter turn or
            /// transpose, up to ±15 degrees, ±10% zoom and ±5% shift, ±20% brightness, contrast and
            /// saturation), seed-004 (the SIIM-ISIC 2020 winners' albumentations set: flips, transpose,
            /// brightness, contrast, one of blurs or noise, one of optical, grid or elastic distortion,
            /// CLAHE, HSV shifts, shift-scale-rotate, cutout), seed-002 (synthetic hair, flips, any
            /// rotation, colour jitter) or none. Older recipes' true and false mean light and none.
            augment: $crate::recipe::AugmentPreset = $crate::recipe::AugmentPreset::Light,
            /// Changes to single operations of the augment preset: "op:param=value,...;op:...", e.g.
            /// "cutout:p=0.5,size=0.3;hair:p=0;clahe:clip=2". An operation the preset lacks is added
            /// with its defaults (named alone, e.g. "hair", with nothing else changed); p=0 turns one
            /// off. Operations, in the order they run: crop, hair, dihedral, transpose, vflip, hflip,
            /// brightness, contrast, blur, distort, clahe, hsv, affine, color, cutout; `naevus augment
            /// --list` prints every parameter with its default and range.
            augment_ops: $crate::recipe::AugmentOps = $crate::recipe::AugmentOps::default(),
            /// Colour constancy before augmentation, in training and in every later prediction:
            /// none, shades-of-gray (with `shades_of_gray_p`) or gray-world (`naevus augment
            /// --colour-constancy` shows images before and after).
            colour_constancy: $crate::recipe::ColourConstancyKind = $crate::recipe::ColourConstancyKind::None,
            /// Minkowski norm p of Shades of Gray, 1 to 20 (the ISIC 2019 winners used 6).
            shades_of_gray_p: f64 = 6.0,
            /// The out-of-domain guard's threshold: this percentile (50 to 100) of the training
            /// images' own feature distances; `naevus guard` refits it with another.
            guard_percentile: f64 = 99.0,
            /// 0: train on the dataset's own train split and validate on its val split;
            /// K from 2 to 100: K-fold cross-validation grouped by patient or lesion.
            folds: usize = 0,
            /// External images (see `naevus combine`) also go into validation folds; by default
            /// they only ever train, and validation holds primary-source images alone.
            external_in_validation: bool = false,
            /// Which validation figure picks each fold's best epoch: pooled (every validation image),
            /// primary (the primary cache's images), mean-of-sources, worst-source, or source:NAME
            /// (per-source AUCs need external_in_validation when the sources were combined).
            checkpoint_selection: $crate::source_options::CheckpointSelection = $crate::source_options::CheckpointSelection::Pooled,
            /// Seed of folds, sampling, augmentation and initialisation.
            seed: u64 = 42,
            /// Compute backend: flex, tch, vulkan or cuda (cuda:N for the N-th GPU), as compiled in.
            device: String = "flex".into(),
            /// f32, or f16 / bf16 for every tensor (GPUs; see `Precision`).
            precision: $crate::recipe::Precision = $crate::recipe::Precision::F32,
        }
    };
}

recipe_key_list!(recipe_keys);

/// Sides of a model's square input, in pixels, that a recipe and a run may give: below 16 a
/// network's downsampling leaves nothing (image_size 1 panicked deep in a kernel), above 2048
/// one batch takes tens of gigabytes. Shared by every check of a model's input size.
pub const MODEL_INPUT_SIDES: RangeInclusive<u32> = 16..=2048;
/// Most epochs (also the bound of the warm-up, restart and patience lengths).
pub const MAX_EPOCHS: usize = 10_000;
/// Most images per optimiser step.
pub const MAX_BATCH_SIZE: usize = 1024;
/// Most dropout masks averaged in training (the seeds use 5; each is a copy of the features).
pub const MAX_DROPOUT_SAMPLES: usize = 64;
/// Most cross-validation folds.
pub const MAX_FOLDS: usize = 100;
/// Largest learning rate (peak, of the head or the backbone): far above any that trains, so
/// that a wild one still reaches the engine's guard against numerical faults.
const MAX_LR: f64 = 1e10;
/// Largest weight decay.
const MAX_WEIGHT_DECAY: f64 = 10.0;
/// Largest focal-loss exponent (papers use 0 to 5).
const MAX_FOCAL_GAMMA: f64 = 10.0;
/// Most benign images drawn per melanoma each epoch.
const MAX_NEGATIVES_PER_POSITIVE: f64 = 1000.0;

/// "parsing the recipe: line L, column C: what", without the source line that toml's own
/// message repeats (a hostile file's line may be megabytes long). A syntax error's message
/// can quote a key of any length, so it is cut to its start (`cut`); once the strings are
/// known to be short, a message is given whole.
fn toml_error(text: &str, error: &toml::de::Error, cut: bool) -> String {
    let message = if cut { naevus_data::error::excerpt(error.message()) } else { error.message().to_string() };
    let Some(span) = error.span() else { return format!("parsing the recipe: {message}") };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("parsing the recipe: line {line}, column {column}: {message}")
}

/// Keys that may change when a run is resumed: they do not change what the epochs already
/// trained mean. Every other key is fixed once a run has started.
pub const RESUMABLE_KEYS: [&str; 3] = ["epochs", "early_stopping_patience", "device"];

impl TrainConfig {
    /// Reads a TOML recipe; unknown keys are an error so typos do not pass silently.
    pub fn from_toml_file(path: &Path) -> Result<Self, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
        Self::from_toml(&text).map_err(|message| RunError::Toml { path: path.to_path_buf(), message })
    }

    /// Parses a TOML recipe. The syntax and the strings' lengths are checked first, so that no
    /// message quotes more than the start of an overlong value.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e, true))?;
        let value = serde_json::to_value(&table).map_err(|e| format!("parsing the recipe: {e}"))?;
        if let Some(problem) = crate::text_limits::overlong_string(&value) {
            return Err(format!("parsing the recipe: {problem}"));
        }
        toml::from_str(text).map_err(|e| toml_error(text, &e, false))
    }

    /// The recipe as TOML text.
    pub fn to_toml(&self) -> Result<String, RunError> {
        toml::to_string_pretty(self).map_err(|e| RunError::Invalid(format!("writing the recipe as TOML: {e}")))
    }

    /// Number of logits the model must produce.
    pub fn num_outputs(&self) -> usize {
        num_outputs(self.loss, self.classes)
    }

    /// Rejects values that cannot train, each with its bound, before anything is written: a
    /// value that would panic or exhaust memory mid-run must never reach the run directory.
    /// (The model's own limits, such as whether it has ImageNet weights, are checked where
    /// the registry is known: the engine.)
    pub fn validate(&self) -> Result<(), RunError> {
        let fail = |message: String| Err(RunError::Invalid(message));
        if let Some(size) = self.image_size
            && !MODEL_INPUT_SIDES.contains(&size)
        {
            return fail(format!(
                "image_size must be between {} and {} pixels, got {size}; leave it out for the model's own input size",
                MODEL_INPUT_SIDES.start(),
                MODEL_INPUT_SIDES.end()
            ));
        }
        in_range("epochs", self.epochs, 1, MAX_EPOCHS)?;
        if !(2..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return fail(format!("batch_size must be between 2 and {MAX_BATCH_SIZE} (BatchNorm needs more than one image), got {}", self.batch_size));
        }
        positive_at_most("lr", self.lr, MAX_LR)?;
        if let Some(lr) = self.backbone_lr {
            positive_at_most("backbone_lr", lr, MAX_LR)?;
        }
        in_range("weight_decay", self.weight_decay, 0.0, MAX_WEIGHT_DECAY)?;
        if !(0.0..1.0).contains(&self.ema_decay) {
            return fail(format!("ema_decay must lie in [0, 1) (0: no weight average; 0.999 is common), got {:?}", self.ema_decay));
        }
        if self.freeze_backbone_epochs >= self.epochs {
            return fail(format!(
                "freeze_backbone_epochs ({}) must be smaller than epochs ({}): the backbone would never train",
                self.freeze_backbone_epochs, self.epochs
            ));
        }
        in_range("early_stopping_patience", self.early_stopping_patience, 0, MAX_EPOCHS)?;
        if self.folds == 1 {
            return fail(format!("folds must be 0 (use the dataset's split) or be between 2 and {MAX_FOLDS}, got 1"));
        }
        in_range("folds", self.folds, 0, MAX_FOLDS)?;
        in_range("focal_alpha", self.focal_alpha, 0.0, 1.0)?;
        in_range("focal_gamma", self.focal_gamma, 0.0, MAX_FOCAL_GAMMA)?;
        positive_at_most("negatives_per_positive", f64::from(self.negatives_per_positive), MAX_NEGATIVES_PER_POSITIVE)?;
        if self.classes != ClassScheme::Binary && self.loss != LossKind::CrossEntropy {
            return fail(format!("the {:?} class scheme trains with loss = \"cross-entropy\", not {:?}", self.classes, self.loss));
        }
        in_range("warmup_epochs", self.warmup_epochs, 0.0, MAX_EPOCHS as f64)?;
        if !(self.warmup_start > 0.0 && self.warmup_start <= 1.0) {
            return fail(format!("warmup_start must lie in (0, 1], got {:?}", self.warmup_start));
        }
        in_range("restart_epochs", self.restart_epochs, 0.0, MAX_EPOCHS as f64)?;
        in_range("metadata_dropout", self.metadata_dropout, 0.0, 1.0)?;
        if let Err(problem) = naevus_data::AugmentPlan::of_recipe(self.augment, &self.augment_ops) {
            return fail(problem);
        }
        in_range("dropout_samples", self.dropout_samples, 1, MAX_DROPOUT_SAMPLES)?;
        self.source_shares.check().map_err(RunError::Invalid)?;
        if !self.source_shares.is_empty() && self.sampling != SamplingKind::SourceBalanced {
            // The shares are not quoted: a hostile recipe may list a million of them.
            return fail(format!("source_shares ({} sources) applies to sampling = \"source-balanced\" only", self.source_shares.0.len()));
        }
        in_range("shades_of_gray_p", self.shades_of_gray_p, *SHADES_OF_GRAY_P.start(), *SHADES_OF_GRAY_P.end())?;
        in_range("guard_percentile", self.guard_percentile, *GUARD_PERCENTILES.start(), *GUARD_PERCENTILES.end())?;
        // Only the repeated field is named: the list may be as long as the recipe file.
        for (i, field) in self.metadata.iter().enumerate() {
            if let Some(first) = self.metadata[..i].iter().position(|f| f == field) {
                return fail(format!(
                    "metadata lists {} twice (entries {} and {}); each field may be given once",
                    field.name(),
                    first + 1,
                    i + 1
                ));
            }
        }
        Ok(())
    }

    /// The recipe a resumed run continues with: `saved` with the changes asked for now (a
    /// recipe file, flags, or both; neither: `saved` as it is). Keys of [`RESUMABLE_KEYS`]
    /// are taken (epochs may be extended, say); a change to any other key is refused with
    /// the keys that conflict. Returns the recipe and the keys that changed.
    pub fn resumed(saved: &TrainConfig, file: Option<&TrainConfig>, flags: &RecipeFlags) -> Result<(TrainConfig, Vec<&'static str>), RunError> {
        let mut wanted = file.cloned().unwrap_or_else(|| saved.clone());
        flags.apply(&mut wanted);
        let changed = saved.differing_keys(&wanted);
        let conflicts: Vec<&str> = changed.iter().copied().filter(|key| !RESUMABLE_KEYS.contains(key)).collect();
        if !conflicts.is_empty() {
            return Err(RunError::Invalid(format!(
                "--resume continues the run with its saved recipe; these keys differ from it and cannot change once a run has \
                 started: {} (only {} can). Drop them, or start a new run with another --out",
                conflicts.join(", "),
                RESUMABLE_KEYS.join(", ")
            )));
        }
        Ok((wanted, changed))
    }
}
