//! The run directory's files: the recipe, resume rules, run.json's
//! format check, and the predictions CSV's one reader and writer.

use naevus_run::{Checkpoint, FoldState, Predictions, RecipeFlags, RunDir, RunInfo, TrainConfig, TrainingState, write_out_of_fold, write_predictions};

#[test]
fn the_recipe_round_trips_through_toml_and_refuses_bad_values() {
    let recipe = TrainConfig { model: "resnet18".into(), image_size: Some(64), backbone_lr: Some(1e-5), ..TrainConfig::default() };
    let text = recipe.to_toml().unwrap();
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), recipe);
    assert!(TrainConfig::from_toml("modle = \"resnet18\"").unwrap_err().contains("modle"));
    assert!(TrainConfig { image_size: Some(0), ..TrainConfig::default() }.validate().is_err());
    assert!(TrainConfig { weight_decay: f64::NAN, ..TrainConfig::default() }.validate().is_err());
    for decay in [1.0, -0.1, f64::NAN] {
        let error = TrainConfig { ema_decay: decay, ..TrainConfig::default() }.validate().unwrap_err().to_string();
        assert!(error.contains("ema_decay must lie in [0, 1)"), "{decay}: {error}");
    }
    assert!(TrainConfig { ema_decay: 0.999, ..TrainConfig::default() }.validate().is_ok());
}

/// last.bpk holds the weight average as a fourth section when there is one; files of three
/// sections (every run before it) still read, and bytes after the last section are damage.
#[test]
fn the_training_state_keeps_the_weight_average_and_reads_older_files() {
    let dir = tempfile::tempdir().unwrap();
    let fold = RunDir::new(dir.path()).fold("fold-0");
    std::fs::create_dir_all(&fold.path).unwrap();
    let state = FoldState { epochs_done: 2, step: 20, best_auc: Some(0.8), best_epoch: Some(1), best_ema_auc: Some(0.85), best_ema_epoch: Some(2), ..FoldState::default() };
    let with_average = TrainingState { state: state.clone(), weights: vec![1, 2, 3], optimizer: vec![4; 5], ema: Some(vec![6; 7]) };
    fold.write_training_state(&with_average).unwrap();
    assert_eq!(fold.read_training_state().unwrap(), Some(with_average));

    let without = TrainingState { state: FoldState::default(), weights: vec![1, 2, 3], optimizer: vec![4; 5], ema: None };
    fold.write_training_state(&without).unwrap();
    assert_eq!(fold.read_training_state().unwrap(), Some(without.clone()));

    // Three sections as builds before the weight average wrote them, by hand.
    let section = |bytes: &[u8]| [&(bytes.len() as u64).to_le_bytes()[..], bytes].concat();
    let state_json = serde_json::to_vec(&FoldState::default()).unwrap();
    let older = [section(&state_json), section(&[1, 2, 3]), section(&[4; 5])].concat();
    let path = fold.checkpoint(Checkpoint::Final);
    naevus_run::sealed::write_sealed(&path, "training", &older).unwrap();
    assert_eq!(fold.read_training_state().unwrap(), Some(without));

    let trailing = [older.clone(), section(&[6; 7]), vec![9]].concat();
    naevus_run::sealed::write_sealed(&path, "training", &trailing).unwrap();
    let error = fold.read_training_state().unwrap_err().to_string();
    assert!(error.contains("1 bytes follow its last section"), "{error}");
    let cut = [older, vec![7, 0, 0, 0, 0, 0, 0, 0, 6]].concat();
    naevus_run::sealed::write_sealed(&path, "training", &cut).unwrap();
    let error = fold.read_training_state().unwrap_err().to_string();
    assert!(error.contains("its sections do not add up"), "{error}");
}

#[test]
fn resuming_takes_more_epochs_and_refuses_other_changes() {
    let saved = TrainConfig { epochs: 5, ..TrainConfig::default() };
    let (same, changed) = TrainConfig::resumed(&saved, None, &RecipeFlags::default()).unwrap();
    assert!(same == saved && changed.is_empty());

    let (longer, changed) = TrainConfig::resumed(&saved, None, &RecipeFlags { epochs: Some(20), ..RecipeFlags::default() }).unwrap();
    assert_eq!((longer.epochs, changed), (20, vec!["epochs"]));

    let changes = RecipeFlags { epochs: Some(20), lr: Some(0.1), model: Some("resnet18".into()), ..RecipeFlags::default() };
    let error = TrainConfig::resumed(&saved, None, &changes).unwrap_err().to_string();
    assert!(error.contains("model, lr") && error.contains("cannot change"), "{error}");
    // A recipe file that differs only where resuming allows is taken too.
    let file = TrainConfig { early_stopping_patience: 3, ..saved.clone() };
    assert_eq!(TrainConfig::resumed(&saved, Some(&file), &RecipeFlags::default()).unwrap().1, ["early_stopping_patience"]);
}

fn info() -> RunInfo {
    serde_json::from_value(serde_json::json!({
        "format": naevus_run::RUN_FORMAT, "naevus_version": "0.1.0", "model": "small-cnn", "loss": "bce", "num_outputs": 1,
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "cache": "cache", "folds": ["fold-0"],
        "classes": "binary", "dropout_samples": 1
    }))
    .unwrap()
}

#[test]
fn run_json_of_another_format_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    assert!(run.read_info().unwrap_err().to_string().contains("is not a naevus run directory"));
    run.write_info(&info()).unwrap();
    assert_eq!(run.read_info().unwrap(), info());
    std::fs::write(run.info_path(), r#"{"format": 1, "model": "small-cnn"}"#).unwrap();
    let error = run.read_info().unwrap_err().to_string();
    assert!(error.contains("run format 1") && error.contains(&format!("reads format {}", naevus_run::RUN_FORMAT)), "{error}");
}

#[test]
fn predictions_round_trip_and_bad_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oof.csv");
    let ids = vec!["a".to_string(), "b".to_string()];
    write_out_of_fold(&path, &ids, &[0.125, 0.1 + 0.2], &[0, 1], &["fold-0".into(), "fold-1".into()], &["isic2017".into(), "ham10000".into()]).unwrap();
    let read = Predictions::read(&path).unwrap();
    assert_eq!(read.scores, [0.125, 0.1 + 0.2], "shortest round-trip form keeps every digit");
    assert_eq!(read.labels, Some(vec![0, 1]));
    assert_eq!(read.folds, Some(vec!["fold-0".to_string(), "fold-1".to_string()]));
    assert_eq!(read.sources, Some(vec!["isic2017".to_string(), "ham10000".to_string()]));

    // Columns by name, in any order.
    std::fs::write(&path, "fold,target,image_name\nf,0.5,x\n").unwrap();
    assert_eq!(Predictions::read(&path).unwrap().ids, ["x"]);

    let bad = |text: &str| {
        std::fs::write(&path, text).unwrap();
        Predictions::read(&path).unwrap_err().to_string()
    };
    assert!(bad("image_name,target\nx,0.2\nx,0.3\n").contains("line 3, column 1: image id \"x\" appears twice (first on line 2)"));
    assert!(bad("image_name,target\nx,1.5\n").contains("line 2, column 2 (target): expected a probability between 0 and 1, found 1.5"));
    assert!(bad("image_name,target\nx,-0.1\n").contains("found -0.1"));
    let long = format!("image_name,target\nx,{}\n", "9".repeat(100_000));
    let message = bad(&long);
    assert!(message.len() < 400, "a huge cell is quoted as an excerpt, not whole: {} bytes", message.len());

    write_predictions(&path, &ids, &[0.0, 1.0]).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "image_name,target\na,0\nb,1\n");
}

#[test]
fn a_metadata_model_warns_when_far_more_images_lack_a_field_than_in_training() {
    use naevus_data::{MetadataEncoder, MetadataField, Record, Sex};
    let with_sex = |sex: Option<Sex>| Record { metadata: naevus_data::Metadata { sex, age: Some(40.0), site: None }, ..Record::default() };
    let training: Vec<Record> = (0..10).map(|i| with_sex(if i == 0 { None } else { Some(Sex::Male) })).collect();
    let encoder = MetadataEncoder::fit(&training, &[MetadataField::Sex, MetadataField::Age]);
    let mut run = info();
    run.metadata_missing = encoder.missing_shares(&training);
    run.metadata = Some(encoder);
    assert_eq!(run.metadata_missing[0], (MetadataField::Sex, 0.1));

    assert!(run.metadata_warnings(&training).is_empty());
    let unknown: Vec<Record> = (0..4).map(|_| with_sex(None)).collect();
    let warnings = run.metadata_warnings(&unknown);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("100% of these images lack sex against 10%"), "{}", warnings[0]);
    run.metadata = None;
    assert!(run.metadata_warnings(&unknown).is_empty(), "an image-only model reads no metadata");
}

/// A 50 MB model name, a 10 MB fold name or an unknown value 10 MB long in run.json, and a
/// 10 MB line in config.toml, give a message that quotes only their start.
#[test]
fn huge_values_in_run_json_or_config_toml_give_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut json = serde_json::to_value(info()).unwrap();
    let short = |error: String| {
        assert!(error.len() < 400, "{} bytes: {}...", error.len(), &error[..400]);
        error
    };
    for (key, value) in [
        ("model", serde_json::json!("m".repeat(50 << 20))),
        ("folds", serde_json::json!(["f".repeat(10 << 20)])),
        ("loss", serde_json::json!("l".repeat(10 << 20))),
    ] {
        let saved = json[key].clone();
        json[key] = value;
        std::fs::write(run.info_path(), serde_json::to_vec(&json).unwrap()).unwrap();
        let error = short(run.read_info().unwrap_err().to_string());
        assert!(error.contains("run.json") && error.contains(key) && error.contains("bytes long"), "{error}");
        json[key] = saved;
    }

    let long = "t".repeat(10 << 20);
    for (toml, wanted) in [
        (format!("model = \"{long}\"\n"), "model is 10485760 bytes long"),
        (format!("model = \"{long}\n"), "line 1, column"),
        (format!("{long} = 1\n"), "a key in the file is 10485760 bytes long"),
        (format!("epochs = {}\n", "9".repeat(10 << 20)), "line 1, column 10"),
        (format!("metadata = [{}\"bogus\"]\n", "\"age\", ".repeat(1 << 20)), "unknown variant `bogus`"),
    ] {
        std::fs::write(run.recipe_path(), toml).unwrap();
        let error = short(run.read_recipe().unwrap_err().to_string());
        assert!(error.contains("config.toml") && error.contains(wanted), "{error}");
    }
    // An ordinary mistake keeps its whole message, and where it is.
    let error = TrainConfig::from_toml("epochs = 3\noptimizer = \"adamw2\"\n").unwrap_err();
    assert!(error.contains("line 2, column 13") && error.contains("unknown variant `adamw2`, expected `adam` or `adamw`"), "{error}");
}

#[test]
fn fold_names_that_are_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut json = serde_json::to_value(info()).unwrap();
    for fold in ["../outside", "/etc", "..", "fold-0/../../x", ""] {
        json["folds"] = serde_json::json!(["fold-0", fold]);
        std::fs::write(run.info_path(), serde_json::to_vec(&json).unwrap()).unwrap();
        let error = run.read_info().unwrap_err().to_string();
        assert!(error.contains("run.json") && error.contains("not a plain name"), "{fold}: {error}");
    }
    json["folds"] = serde_json::json!(["fold-0", "fold-1", "split"]);
    std::fs::write(run.info_path(), serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(run.read_info().unwrap().folds, ["fold-0", "fold-1", "split"]);
}
