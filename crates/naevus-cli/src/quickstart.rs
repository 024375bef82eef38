//! `naevus quickstart`: the whole pipeline on the bundled CC0 sample in a few minutes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use naevus_data::{Cache, SourceKind, SourceSpec};
use naevus_engine::TrainConfig;
use naevus_engine::train::Start;

/// The recipe the quickstart trains with (also in configs/quickstart.toml).
const RECIPE: &str = include_str!("../../../configs/quickstart.toml");

/// Where the sample lives in a source checkout.
const SAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sample");

/// Prepare the bundled ISIC 2017 sample, train on its train split, and evaluate on its
/// validation split (150 images, 30 melanoma).
///
/// Writes OUT/cache (the prepared images) and OUT/run (the run directory) and prints the
/// validation AUC with its bootstrap 95% interval. Running it again resumes or reuses
/// what is already there.
#[derive(clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// The sample folder (images/ + labels.csv in the ISIC 2017 format).
    #[arg(long, default_value = SAMPLE_DIR)]
    sample: PathBuf,
    #[command(flatten)]
    recipe: crate::recipe_args::RecipeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let labels = args.sample.join("labels.csv");
    anyhow::ensure!(
        labels.exists(),
        "the bundled sample is not at {} (run from a naevus checkout, or pass --sample DIR)",
        args.sample.display()
    );
    let mut config = TrainConfig::from_toml(RECIPE).map_err(anyhow::Error::msg).context("the built-in quickstart recipe")?;
    args.recipe.to_flags().apply(&mut config);

    let cache_dir = args.out.join("cache");
    println!("1/3 preparing the sample into {}", cache_dir.display());
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(labels), images: args.sample.join("images"), metadata_csv: None };
    crate::prepare::prepare(&spec, None, &cache_dir, &naevus_data::PrepareOptions { size: 128, progress: true, ..Default::default() })?;

    let run_dir = args.out.join("run");
    println!("2/3 training {} for {} epochs into {}", config.model, config.epochs, run_dir.display());
    let cache = Arc::new(Cache::open(&cache_dir)?);
    // Run again, it continues (or reuses) what is there; a changed recipe is refused then.
    let start = if naevus_run::RunDir::new(&run_dir).holds_run() {
        Start::Resume { file: Some(config), flags: naevus_run::RecipeFlags::default() }
    } else {
        Start::Fresh(config)
    };
    let report = naevus_engine::train::train(cache, start, &run_dir, &[])?;

    println!("3/3 evaluating the best checkpoint on the validation split");
    // The table `naevus evaluate` prints for the run's validation predictions.
    let predictions = naevus_run::Predictions::read(&naevus_run::RunDir::new(&run_dir).oof_csv())?;
    let metrics = crate::evaluate::evaluate_full(&predictions, &naevus_run::Truth::read(&cache_dir)?, 0.5, 1000)?;
    crate::evaluate::print_table(&metrics);
    let b = &metrics.binary;
    println!(
        "validation AUC {:.3} (95% CI {:.3} to {:.3}) in {:.0} s; run directory: {}",
        b.auc,
        b.auc_ci95.0,
        b.auc_ci95.1,
        report.seconds,
        run_dir.display()
    );
    Ok(())
}
