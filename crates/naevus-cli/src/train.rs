//! `naevus train`: train a registry model on a prepared cache into a run directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use naevus_data::Cache;
use naevus_engine::TrainConfig;
use naevus_engine::train::{Start, TrainReport};

use crate::recipe_args::RecipeArgs;

/// Train a model on a prepared cache.
///
/// Settings come from --config (a TOML recipe from configs/) and are overridden by the
/// flags below, which have the same names as the recipe keys. Without --folds the cache's
/// own train/val split is used; with --folds K, K-fold cross-validation grouped by patient
/// or lesion. Each epoch logs train loss, validation loss and AUC; the best-by-AUC and the
/// last checkpoint are kept; --resume continues an interrupted run.
#[derive(clap::Args)]
pub struct Args {
    /// Prepared cache (from `naevus prepare`).
    #[arg(long)]
    data: PathBuf,
    /// Run directory to create (or to continue with --resume).
    #[arg(long)]
    out: PathBuf,
    /// TOML recipe; flags given here override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue an interrupted run in --out with its saved recipe. Recipe flags given with
    /// it may extend epochs, change early_stopping_patience or device (recorded in the run);
    /// any other change is refused.
    #[arg(long)]
    resume: bool,
    /// Train only these folds (comma-separated, e.g. fold-0,fold-1), so that several
    /// processes or GPUs can share one run: each given the same recipe and its own folds;
    /// `--resume` alone afterwards pools the out-of-fold predictions. A name has at most 64
    /// characters.
    #[arg(long, value_delimiter = ',', value_parser = fold_name)]
    only_folds: Vec<String>,
    #[command(flatten)]
    recipe: RecipeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let file = args.config.as_deref().map(TrainConfig::from_toml_file).transpose()?;
    let start = if args.resume {
        Start::Resume { file, flags: args.recipe.to_flags() }
    } else {
        let mut config = file.unwrap_or_default();
        args.recipe.to_flags().apply(&mut config);
        // Checked before the run directory is made, so a refused recipe leaves nothing behind.
        naevus_engine::config::check(&config)?;
        Start::Fresh(config)
    };
    let cache = Arc::new(Cache::open(&args.data).with_context(|| format!("opening cache {}", args.data.display()))?);
    let report = naevus_engine::train::train(cache, start, &args.out, &args.only_folds)?;
    print_report(&report);
    Ok(())
}

/// A fold name as --only-folds takes it: fold-K, so a long one is a mistake, refused before
/// a message could quote it whole.
fn fold_name(text: &str) -> Result<String, String> {
    if text.chars().count() > 64 {
        return Err(format!("a fold name has at most 64 characters (fold-0, fold-1, ...); this one has {}", text.chars().count()));
    }
    Ok(text.to_string())
}

/// Prints the per-fold and pooled validation AUC of a finished run.
pub fn print_report(report: &TrainReport) {
    let figure = match &report.checkpoint_selection {
        naevus_run::CheckpointSelection::Pooled => "validation AUC".to_string(),
        rule => format!("{rule} AUC"),
    };
    for fold in &report.folds {
        println!(
            "{}: best {figure} {} at epoch {}",
            fold.name,
            fold.best_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
            fold.best_epoch.map_or("-".into(), |e| e.to_string())
        );
    }
    let what = if report.folds.len() > 1 { "out-of-fold" } else { "validation" };
    if let Some(m) = &report.class_metrics {
        println!(
            "{what} {}-class accuracy {:.4}, balanced accuracy {:.4}, macro AUC {} ({} images)",
            m.classes.len(),
            m.accuracy,
            m.balanced_accuracy,
            m.macro_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
            m.images
        );
    }
    if let Some(auc) = report.ema_oof_auc {
        println!("{what} AUC of the weight average {auc:.4} (each fold at its best epoch; {})", report.run_dir.join("oof_ema.csv").display());
    }
    if let Some(auc) = report.oof_auc {
        println!("{what} AUC {auc:.4} ({:.0} s); run directory {}", report.seconds, report.run_dir.display());
    }
    for source in &report.oof_by_source {
        println!("  {}", source.describe());
    }
}
