//! Recipes and their augmentation keys: old run directories (boolean `augment`) keep opening
//! and resuming; presets and operations round-trip through config.toml; bad ones are named.

use naevus_data::AugmentPreset;
use naevus_run::{RecipeFlags, TrainConfig};


/// A run's config.toml as builds before augmentation presets wrote it (2026-12).
const SAVED_BEFORE_PRESETS: &str = r#"model = "efficientnet-lite0"
pretrained = true
image_size = 96
epochs = 3
batch_size = 32
lr = 0.001
backbone_lr = 0.0005
freeze_backbone_epochs = 1
early_stopping_patience = 0
weight_decay = 0.0001
optimizer = "adamw"
warmup_epochs = 0.5
warmup_start = 0.01
restart_epochs = 0.0
loss = "bce"
classes = "binary"
metadata = [
"sex",
"age",
]
metadata_dropout = 0.0
dropout_samples = 1
focal_alpha = 0.25
focal_gamma = 2.0
sampling = "undersample"
negatives_per_positive = 3.0
augment = true
folds = 5
external_in_validation = false
seed = 42
device = "flex"
precision = "f32"
"#;

/// Changes asking for the augmentation preset `preset`.
fn augment(preset: AugmentPreset) -> RecipeFlags {
    RecipeFlags { augment: Some(preset), ..RecipeFlags::default() }
}

#[test]
fn saved_runs_with_boolean_augment_keep_opening_and_resuming() {
    let saved = TrainConfig::from_toml(SAVED_BEFORE_PRESETS).unwrap();
    assert_eq!(saved.augment, AugmentPreset::Light);
    assert!(saved.augment_ops.is_empty());
    assert!(saved.validate().is_ok());
    let off = TrainConfig::from_toml(&SAVED_BEFORE_PRESETS.replace("augment = true", "augment = false")).unwrap();
    assert_eq!(off.augment, AugmentPreset::None);
    // Resuming with the saved recipe changes nothing, nor does saying "light" now.
    let again = TrainConfig::from_toml(SAVED_BEFORE_PRESETS).unwrap();
    assert!(TrainConfig::resumed(&saved, Some(&again), &RecipeFlags::default()).unwrap().1.is_empty());
    assert!(TrainConfig::resumed(&saved, None, &augment(AugmentPreset::Light)).unwrap().1.is_empty());
    assert!(TrainConfig::resumed(&saved, None, &augment(AugmentPreset::Seed004)).is_err());
}

#[test]
fn presets_and_operations_round_trip_through_config_toml() {
    let recipe = TrainConfig {
        augment: AugmentPreset::Seed004,
        augment_ops: "cutout:p=.5,size=0.3; hair:p=0;clahe:clip=2".parse().unwrap(),
        ..TrainConfig::default()
    };
    let text = recipe.to_toml().unwrap();
    assert!(text.contains("augment = \"seed-004\""), "{text}");
    assert!(text.contains("augment_ops = \"cutout:p=0.5,size=0.3;hair:p=0;clahe:clip=2\""), "{text}");
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), recipe);
    for preset in ["light", "seed-004", "seed-002", "none"] {
        let parsed = TrainConfig::from_toml(&format!("augment = \"{preset}\"")).unwrap();
        assert_eq!(parsed.augment.name(), preset);
        assert_eq!(TrainConfig::from_toml(&parsed.to_toml().unwrap()).unwrap(), parsed);
    }
}

#[test]
fn bad_presets_and_operations_are_errors_naming_them() {
    let error = TrainConfig::from_toml("augment = \"heavy\"").unwrap_err();
    assert!(error.contains("heavy") && error.contains("seed-004"), "{error}");
    let error = TrainConfig::from_toml("augment_ops = \"cutot:p=1\"").unwrap_err();
    assert!(error.contains("line 1") && error.contains("cutot") && error.contains("cutout"), "{error}");
    let error = TrainConfig::from_toml("augment_ops = \"cutout:sise=0.3\"").unwrap_err();
    assert!(error.contains("sise") && error.contains("size"), "{error}");
    let error = TrainConfig::from_toml("augment_ops = \"clahe:clip=1000\"").unwrap_err();
    assert!(error.contains("clip=1000") && error.contains("out of range"), "{error}");
    let error = TrainConfig::from_toml("augment = \"seed-004\"\naugment_ops = \"blur:var_max=2\"").unwrap_err();
    assert!(error.contains("line 2") && error.contains("var_min") && error.contains("var_max"), "{error}");
}
