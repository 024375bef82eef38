//! Every count, size and number of a recipe has a stated bound, checked when the recipe is
//! validated (issue 29.11): values that used to panic or exhaust memory mid-run are refused
//! with the key and the bound; messages quote at most an excerpt (issue 29.14).

use naevus_run::TrainConfig;
use naevus_run::recipe::{MAX_DROPOUT_SAMPLES, MODEL_INPUT_SIDES};

/// The message `validate` gives for `recipe` (TOML), which must parse.
fn refusal(recipe: &str) -> String {
    let config = TrainConfig::from_toml(recipe).unwrap_or_else(|e| panic!("{recipe}: {e}"));
    let message = config.validate().map(|_| panic!("{recipe}: accepted")).unwrap_err().to_string();
    // 1e308 is written as such, not as its 309 digits.
    assert!(message.len() < 200, "{recipe}: {} bytes: {message}", message.len());
    message
}

#[test]
fn values_that_panicked_or_aborted_are_refused_with_their_bound() {
    for (recipe, expected) in [
        ("image_size = 1", "image_size must be between 16 and 2048 pixels, got 1"),
        ("image_size = 100000", "image_size must be between 16 and 2048 pixels, got 100000"),
        ("dropout_samples = 1000000000", "dropout_samples must be between 1 and 64, got 1000000000"),
        ("focal_gamma = 1e308", "focal_gamma must be between 0 and 10, got 1e308"),
    ] {
        let message = refusal(recipe);
        assert!(message.contains(expected), "{recipe}: {message}");
    }
    assert_eq!((*MODEL_INPUT_SIDES.start(), *MODEL_INPUT_SIDES.end(), MAX_DROPOUT_SAMPLES), (16, 2048, 64));
}

#[test]
fn every_count_size_and_number_key_has_a_bound() {
    for (recipe, key, bound) in [
        ("epochs = 100000000", "epochs", "between 1 and 10000"),
        ("batch_size = 100000000", "batch_size", "between 2 and 1024"),
        ("lr = 1e308", "lr", "at most 10000000000, got 1e308"),
        ("backbone_lr = 1e308", "backbone_lr", "at most 10000000000, got 1e308"),
        ("lr = nan", "lr", "above 0"),
        ("weight_decay = 1e308", "weight_decay", "between 0 and 10"),
        ("early_stopping_patience = 100000000", "early_stopping_patience", "between 0 and 10000"),
        ("warmup_epochs = 1e308", "warmup_epochs", "between 0 and 10000"),
        ("restart_epochs = inf", "restart_epochs", "between 0 and 10000"),
        ("metadata_dropout = nan", "metadata_dropout", "between 0 and 1"),
        ("focal_alpha = 2.0", "focal_alpha", "between 0 and 1"),
        ("sampling = \"undersample\"\nnegatives_per_positive = 1e30", "negatives_per_positive", "at most 1000"),
        ("folds = 1000000", "folds", "between 0 and 100"),
        ("folds = 1", "folds", "between 2 and 100"),
    ] {
        let message = refusal(recipe);
        assert!(message.contains(key) && message.contains(bound), "{recipe}: {message}");
    }
    // The bounds leave room for every recipe a person writes.
    let generous = "image_size = 2048\nepochs = 500\nbatch_size = 1024\nlr = 1.0\nfolds = 100\ndropout_samples = 64\nfocal_gamma = 5.0";
    assert!(TrainConfig::from_toml(generous).unwrap().validate().is_ok());
    assert!(TrainConfig::from_toml("image_size = 16").unwrap().validate().is_ok());
}

#[test]
fn a_million_metadata_entries_give_a_short_message() {
    let entries = vec!["\"sex\""; 1_000_000].join(",");
    let message = refusal(&format!("metadata = [{entries}]"));
    assert!(message.contains("metadata lists sex twice (entries 1 and 2)"), "{}", &message[..message.len().min(300)]);
    assert!(message.len() < 200, "{} bytes", message.len());
    // A name of 100 KB on the command line or in the recipe is quoted short.
    let long = "x".repeat(100_000);
    let message = TrainConfig::from_toml(&format!("metadata = [\"{long}\"]")).unwrap_err();
    assert!(message.len() < 300, "{} bytes", message.len());
    let message = long.parse::<naevus_run::recipe::MetadataList>().unwrap_err();
    assert!(message.len() < 300, "{} bytes", message.len());
}
