//! Bounds on what a user gives, and metadata that does not parse (issue 29, items 11, 12 and
//! part of 14): recipe values and flags that used to panic or abort are refused with their
//! bound before a run directory exists, a retry then works, unreadable metadata cells are
//! listed in rejects.csv, and no message quotes more than an excerpt of a huge value.

mod common;

use std::path::Path;

use common::{fixtures, naevus, text};

/// What the binary printed on stderr, which must be short however long the input was.
fn short_stderr(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.len() < 2_000, "{} bytes of stderr: {}", stderr.len(), &stderr[..600]);
    stderr
}

fn prepare_isic2017(cache: &Path) {
    let source = fixtures().join("isic2017");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", "32", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn recipe_values_that_panicked_are_refused_before_the_run_exists_and_a_retry_trains() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    prepare_isic2017(&cache);
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--batch-size", "4", "--epochs", "1"];
        args.extend_from_slice(extra);
        naevus(&args)
    };
    for (flags, expected) in [
        (&["--image-size", "1"][..], "image_size must be between 16 and 2048 pixels, got 1"),
        (&["--image-size", "100000"], "image_size must be between 16 and 2048 pixels, got 100000"),
        (&["--dropout-samples", "1000000000"], "dropout_samples must be between 1 and 64, got 1000000000"),
        (&["--loss", "focal", "--focal-gamma", "1e308"], "focal_gamma must be between 0 and 10, got 1e308"),
    ] {
        let out = train(flags);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", text(&out));
        assert!(short_stderr(&out).contains(expected), "{flags:?}: {}", text(&out));
        assert!(!run.exists(), "{flags:?} left {} behind", run.display());
    }
    // The same from a recipe file.
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, "image_size = 1\n").unwrap();
    let out = train(&["--config", recipe.to_str().unwrap()]);
    assert!(short_stderr(&out).contains("image_size must be between 16 and 2048"), "{}", text(&out));
    assert!(!run.exists());

    // The smallest input trains, in the folder the refused tries would have used.
    let out = train(&["--image-size", "16"]);
    assert!(out.status.success(), "{}", text(&out));
    // A saved recipe damaged afterwards is refused on --resume, with the bound, not a panic.
    let saved = run.join("config.toml");
    let damaged = std::fs::read_to_string(&saved).unwrap().replace("image_size = 16", "image_size = 1");
    std::fs::write(&saved, damaged).unwrap();
    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--resume", "--epochs", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(short_stderr(&out).contains("image_size must be between 16 and 2048 pixels, got 1"), "{}", text(&out));
}

#[test]
fn a_recipe_with_a_million_metadata_entries_gives_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, format!("metadata = [{}]\n", vec!["\"sex\""; 1_000_000].join(","))).unwrap();
    let run = dir.path().join("run");
    let out = naevus(&["train", "--data", dir.path().join("no-cache").to_str().unwrap(), "--out", run.to_str().unwrap(), "--config", recipe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", &text(&out)[..300]);
    assert!(short_stderr(&out).contains("metadata lists sex twice"), "{}", text(&out));
    assert!(!run.exists());
}

#[test]
fn huge_flag_values_are_quoted_short() {
    let ops = format!("cutout:p={}", "9".repeat(120_000));
    let out = naevus(&["augment", "--data", "cache", "--out", "grid.png", "--ops", &ops]);
    assert_eq!(out.status.code(), Some(2), "{}", &text(&out)[..300]);
    assert!(short_stderr(&out).contains("--ops"), "{}", text(&out));
    let out = naevus(&["train", "--data", "cache", "--out", "run", "--augment-ops", &ops]);
    assert!(short_stderr(&out).contains("--augment-ops"), "{}", text(&out));
    // A value under the length limit but long is cut too, in clap's part and in ours.
    let out = naevus(&["augment", "--data", "cache", "--out", "grid.png", "--ops", &format!("cutout:p={}", "9".repeat(3_000))]);
    let stderr = short_stderr(&out);
    assert!(stderr.contains("out of range"), "{stderr}");
    let out = naevus(&["train", "--data", "cache", "--out", "run", "--metadata", &"x".repeat(120_000)]);
    assert!(short_stderr(&out).contains("--metadata"), "{}", text(&out));
    let out = naevus(&["train", "--data", "cache", "--out", "run", "--only-folds", &format!("fold-0,{}", "z".repeat(120_000))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(short_stderr(&out).contains("at most 64 characters"), "{}", text(&out));
    let out = naevus(&["train", &format!("--{}", "y".repeat(120_000))]);
    assert_eq!(out.status.code(), Some(2));
    short_stderr(&out);
}

#[test]
fn augment_prepare_predict_crop_and_bench_flags_are_bounded_in_help_and_message() {
    for (args, expected) in [
        (&["augment", "--data", "c", "--out", "g.png", "--per-image", "100000000"][..], "expected a whole number from 0 to 32"),
        (&["augment", "--data", "c", "--out", "g.png", "--per-image", "1e8"], "expected a whole number from 0 to 32"),
        (&["augment", "--data", "c", "--out", "g.png", "--images", "0"], "expected a whole number from 1 to 64"),
        (&["augment", "--data", "c", "--out", "g.png", "--size", "100000"], "expected a whole number from 16 to 2048"),
        (&["prepare", "--source", "folders", "--images", "i", "--out", "o", "--size", "1"], "expected a whole number from 16 to 8192"),
        (&["prepare", "--source", "folders", "--images", "i", "--out", "o", "--threads", "100000000"], "expected a whole number from 1 to 1024"),
        (&["prepare", "--source", "folders", "--images", "i", "--out", "o", "--max-pixels", "18446744073709551615"], "from 1 to 1000000000"),
        (&["predict", "--run", "r", "--out", "p.csv", "--images", "a.jpg", "--max-pixels", "0"], "from 1 to 1000000000"),
        (&["crop", "--run", "r", "--data", "c", "--out", "o", "--size", "4"], "expected a whole number from 16 to 8192"),
        (&["bench", "--train-batch", "100000000"], "expected a whole number from 2 to 1024"),
        (&["bench", "--sizes", "224,1"], "expected a whole number from 16 to 2048"),
    ] {
        let out = naevus(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(short_stderr(&out).contains(expected), "{args:?}: {}", text(&out));
    }
    let help = text(&naevus(&["augment", "--help"]));
    assert!(help.contains("0 to 32") && help.contains("1 to 64") && help.contains("16 to 2048"), "{help}");
    let help = text(&naevus(&["prepare", "--help"]));
    assert!(help.contains("16 to 8192") && help.contains("1 to 1024"), "{help}");
    let help = text(&naevus(&["train", "--help"]));
    assert!(help.contains("16 to 2048") && help.contains("1 to 64") && help.contains("0 to 10"), "{help}");
}

#[test]
fn the_preview_grid_is_bounded_before_it_is_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    prepare_isic2017(&cache);
    let grid = dir.path().join("grid.png");
    let args = |extra: &[&str]| {
        let mut args = vec!["augment", "--data", cache.to_str().unwrap(), "--out", grid.to_str().unwrap()];
        args.extend_from_slice(extra);
        naevus(&args)
    };
    let out = args(&["--images", "64", "--per-image", "32", "--size", "2048"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(short_stderr(&out).contains("over the 100 a preview may have"), "{}", text(&out));
    assert!(!grid.exists());
    let items = (0..65).map(|i| (i % 8).to_string()).collect::<Vec<_>>().join(",");
    let out = args(&["--items", &items]);
    assert!(short_stderr(&out).contains("--items lists 65 images; a grid has at most 64 rows"), "{}", text(&out));
    let out = args(&["--images", "2", "--per-image", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(grid.exists());
}

#[test]
fn prepare_lists_unreadable_metadata_and_keeps_the_images() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "image_id,melanoma,seborrheic_keratosis,age_approximate,sex\n\
         ISIC_0000000,0,0,1e308,female\n\
         ISIC_0000002,1,0,abc,M\n\
         ISIC_0000004,1,0,55,male\n\
         ISIC_0000013,-1,0,55,male\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let images = fixtures().join("isic2017/images");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", csv.to_str().unwrap(), "--images", images.to_str().unwrap(), "--size", "16", "--out",
        cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("prepared 3 images (0 already done), 1 rejected, 3 metadata value(s) unreadable"), "{}", text(&out));
    let rejects = std::fs::read_to_string(cache.join("rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 5, "{rejects}");
    assert!(lines[1].starts_with("2,") && lines[1].contains("kept, age unknown: column \"\"age_approximate\"\"") && lines[1].contains("1e308"), "{rejects}");
    assert!(lines[2].starts_with("3,") && lines[2].contains("kept, age unknown") && lines[2].contains("abc"), "{rejects}");
    assert!(lines[3].starts_with("3,") && lines[3].contains("kept, sex unknown: column \"\"sex\"\"") && lines[3].contains("\"\"M\"\""), "{rejects}");
    assert!(lines[4].starts_with("5,") && lines[4].contains("column \"\"melanoma\"\": expected 0 or 1, got \"\"-1\"\""), "{rejects}");

    // A header naming a column twice stops the job, naming it.
    std::fs::write(&csv, "image_id,melanoma,seborrheic_keratosis,sex,SEX\nISIC_0000000,0,0,female,male\n").unwrap();
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", csv.to_str().unwrap(), "--images", images.to_str().unwrap(), "--size", "16", "--out",
        dir.path().join("cache2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("line 1: the header names column \"SEX\" twice (fields 4 and 5)"), "{}", text(&out));
}

/// Issue 29.11: a cache below the smallest model input (the library's prepare and older
/// caches allow one) trained at its own size without a recipe image_size; it is refused with
/// the bound, and no run.json is written.
#[test]
fn a_cache_below_the_smallest_model_input_is_refused_by_train() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("isic2017");
    let spec = naevus_data::SourceSpec {
        kind: naevus_data::SourceKind::Isic2017,
        csv: Some(source.join("labels.csv")),
        images: source.join("images"),
        metadata_csv: None,
    };
    let cache = dir.path().join("cache8");
    let options = naevus_data::PrepareOptions { size: 8, ..naevus_data::PrepareOptions::default() };
    naevus_data::prepare(naevus_data::read_source(&spec).unwrap(), &cache, &options).unwrap();
    let run = dir.path().join("run");
    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--epochs", "1"]);
    let message = short_stderr(&out);
    assert!(!out.status.success() && message.contains("8 px images, below the 16 px"), "{message}");
    assert!(!run.join("run.json").exists());
}
