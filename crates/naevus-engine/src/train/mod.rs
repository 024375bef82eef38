//! The training loop: a run's folds, each a [`FoldSession`] that steps through its epochs,
//! validates, checkpoints and stops early, and can be resumed after a kill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use naevus_data::{Cache, ColourConstancy, MetadataEncoder};
use naevus_metrics::SubgroupMetrics;
use naevus_run::recipe::MODEL_INPUT_SIDES;
use naevus_run::{CheckpointSelection, FoldState, RUN_FORMAT, RecipeFlags, RunDir, RunInfo};

use crate::config::{TrainConfig, check};
use crate::device::select_device;
use crate::input::{InputSpec, resolve_image_size};

mod guard;
mod out_of_fold;
mod plan;
mod session;

pub use guard::refit_guards;

pub use out_of_fold::ClassMetrics;
pub use session::{EpochTraining, FoldSession, Validation};

use plan::{Sources, class_labels, plan_folds};
use session::train_fold;

/// How a call of [`train`] begins.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run with this recipe. (Processes given the same recipe and different
    /// `only_folds` join one run: one per GPU, say.)
    Fresh(TrainConfig),
    /// Continue the run in the directory with its saved recipe, changed by a recipe file
    /// and flags where that is allowed (see [`TrainConfig::resumed`]).
    Resume { file: Option<TrainConfig>, flags: RecipeFlags },
}

/// Which cache items a fold trains and validates on.
#[derive(Debug, Clone)]
pub struct FoldPlan {
    pub name: String,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// The outcome of one fold.
#[derive(Debug, Clone)]
pub struct FoldReport {
    pub name: String,
    pub best_epoch: Option<usize>,
    pub best_auc: Option<f64>,
    /// Cache items validated on, and their output probabilities at the best epoch.
    pub val_items: Vec<usize>,
    pub val_probabilities: Vec<Vec<f64>>,
    /// The weight average's output probabilities at its best epoch (recipes with `ema_decay`).
    pub ema_val_probabilities: Option<Vec<Vec<f64>>>,
}

impl FoldReport {
    fn of(plan: &FoldPlan, state: &FoldState, val_probabilities: Vec<Vec<f64>>, ema_val_probabilities: Option<Vec<Vec<f64>>>) -> Self {
        Self {
            name: plan.name.clone(),
            best_epoch: state.best_epoch,
            best_auc: state.best_auc,
            val_items: plan.val.clone(),
            val_probabilities,
            ema_val_probabilities,
        }
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub folds: Vec<FoldReport>,
    /// AUC of all out-of-fold (or validation) predictions pooled.
    pub oof_auc: Option<f64>,
    /// The same per source with intervals, when they hold more than one source.
    pub oof_by_source: Vec<SubgroupMetrics>,
    /// The rule that picked each fold's best epoch (what `FoldReport::best_auc` is).
    pub checkpoint_selection: CheckpointSelection,
    /// The same for the weight average's best epochs (oof_ema.csv; recipes with `ema_decay`).
    pub ema_oof_auc: Option<f64>,
    /// Accuracy, balanced accuracy and macro AUC of the pooled predictions, for diagnosis classes.
    pub class_metrics: Option<ClassMetrics>,
    pub seconds: f64,
}


/// Melanoma (1) or not (0): what the AUC is computed on.
pub(super) fn melanoma_of(cache: &Cache, item: usize) -> u8 {
    cache.records()[item].melanoma.map_or(0, u8::from)
}


/// Trains every fold of a run into `run_dir`, or only the folds named in `only_folds` when it
/// is not empty. Resumed, finished epochs and folds of an interrupted run are kept and
/// training continues from the last checkpoint. Because each fold keeps its own directory,
/// processes given the same recipe and different `only_folds` can share one run; oof.csv is
/// written by the call that finds every fold trained.
pub fn train(cache: Arc<Cache>, start: Start, run_dir: &Path, only_folds: &[String]) -> Result<TrainReport> {
    let started = Instant::now();
    let dir = RunDir::new(run_dir);
    // One process at a time sets a run up; without --only-folds it keeps the run to itself.
    let mut run_lock = Some(if only_folds.is_empty() { dir.lock()? } else { dir.lock_waiting()? });
    dir.remove_stale_temporaries();
    let cache_id = cache.identity()?;
    let same_cache = |what: &str| -> Result<()> {
        let saved = dir.read_info()?;
        if saved.cache_id.as_ref().is_some_and(|id| id != &cache_id) {
            bail!(
                "{what} {} was trained on the cache {}; --data {} holds other images (cache identity {} against {cache_id}). \
                 Pass the run's own cache, or start a new run with another --out",
                run_dir.display(),
                saved.cache.display(),
                cache.dir().display(),
                saved.cache_id.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    };
    let config = match start {
        Start::Resume { file, flags } => {
            let saved = dir.read_recipe().context("--resume needs the run directory of an earlier run")?;
            same_cache("--resume continues the run: ")?;
            let (config, changed) = TrainConfig::resumed(&saved, file.as_ref(), &flags)?;
            if !changed.is_empty() {
                eprintln!("note: resuming with {} changed from the saved recipe; recorded in {}", changed.join(", "), dir.recipe_path().display());
            }
            config
        }
        Start::Fresh(config) => {
            let joins = || !only_folds.is_empty() && dir.read_recipe().is_ok_and(|saved| saved == config);
            if dir.holds_run() {
                if !joins() {
                    bail!(
                        "{} already holds a run; pass --resume to continue it or choose another --out (with --only-folds, the same recipe joins it)",
                        run_dir.display()
                    );
                }
                same_cache("--only-folds joins the run")?;
            }
            config
        }
    };
    check(&config)?;
    let spec = naevus_models::spec(&config.model)?;
    let device = select_device(&config.device, config.precision)?;
    let classes = class_labels(&cache, config.classes)?;
    let sources = Sources::of(&cache);
    sources.check_recipe(&config)?;
    let plans = plan_folds(&cache, &config, &classes, &sources)?;
    plan::check_selection(&config, &sources, &plans)?;
    let fold_names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    for fold in only_folds {
        naevus_run::check_fold(fold, &fold_names).map_err(anyhow::Error::msg)?;
    }

    let metadata = (!config.metadata.is_empty()).then(|| MetadataEncoder::fit(cache.records(), &config.metadata));
    if let Some(encoder) = &metadata {
        eprintln!("metadata features: {}", encoder.feature_names().join(", "));
    }
    let image_size = resolve_image_size(config.image_size, spec, cache.size());
    if !MODEL_INPUT_SIDES.contains(&image_size) {
        bail!(
            "the cache {} holds {} px images, below the {} px a model takes; prepare it at a larger --size, or set image_size",
            cache.dir().display(),
            cache.size(),
            MODEL_INPUT_SIDES.start()
        );
    }
    let info = RunInfo {
        format: RUN_FORMAT,
        naevus_version: env!("CARGO_PKG_VERSION").into(),
        built_with: crate::device::compiled_backends().into_iter().map(String::from).collect(),
        model: config.model.clone(),
        loss: config.loss,
        num_outputs: config.num_outputs(),
        image_size,
        mean: spec.mean,
        std: spec.std,
        cache: std::fs::canonicalize(cache.dir()).unwrap_or_else(|_| cache.dir().to_path_buf()),
        cache_size: Some(cache.size()),
        cache_id: Some(cache_id.clone()),
        folds: plans.iter().map(|p| p.name.clone()).collect(),
        classes: config.classes,
        metadata_missing: metadata.as_ref().map(|encoder| encoder.missing_shares(cache.records())).unwrap_or_default(),
        metadata,
        dropout_samples: config.dropout_samples,
        colour_constancy: ColourConstancy::of_recipe(config.colour_constancy, config.shades_of_gray_p),
        checkpoint_selection: config.checkpoint_selection.clone(),
        sources: sources.summary(&cache, &classes, &config),
    };
    dir.write_recipe(&config)?;
    dir.write_info(&info)?;
    if !only_folds.is_empty() {
        // Processes that share the run train their own folds, each fold locked on its own.
        run_lock = None;
    }

    let run = RunSetup { cache, config, info, classes, sources, device };
    let mut reports = Vec::new();
    for (k, plan) in plans.iter().enumerate() {
        if !only_folds.is_empty() && !only_folds.contains(&plan.name) {
            continue;
        }
        eprintln!("{}: {} training images, {} validation images", plan.name, plan.train.len(), plan.val.len());
        let fold = dir.fold(&plan.name);
        let _fold_lock = fold.lock()?;
        fold.remove_stale_temporaries();
        reports.push(train_fold(&run, plan, k as u64, fold.clone())?);
        guard::guard_fold(&run, plan, &fold)?;
    }

    let (oof, ema_oof_auc) = if reports.len() == plans.len() {
        (Some(out_of_fold::write_oof(&dir, &run, &reports)?), out_of_fold::write_ema_oof(&dir, &run, &reports)?)
    } else {
        eprintln!("trained {} of {} folds; once all are, `naevus train --resume` on {} writes oof.csv", reports.len(), plans.len(), run_dir.display());
        (None, None)
    };
    drop(run_lock);
    let (oof_auc, oof_by_source, class_metrics) = oof.map_or((None, Vec::new(), None), |oof| (oof.auc, oof.by_source, oof.class_metrics));
    Ok(TrainReport {
        run_dir: run_dir.to_path_buf(),
        folds: reports,
        oof_auc,
        oof_by_source,
        checkpoint_selection: run.info.checkpoint_selection.clone(),
        ema_oof_auc,
        class_metrics,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What every fold of a run shares.
pub(crate) struct RunSetup {
    cache: Arc<Cache>,
    config: TrainConfig,
    info: RunInfo,
    /// The class of every cache item (None: unlabelled).
    classes: Vec<Option<u8>>,
    sources: Sources,
    /// The inference device (training runs on its autodiff twin).
    device: Device,
}

impl RunSetup {
    fn input(&self) -> InputSpec {
        InputSpec::from_run(&self.info)
    }
}


/// The image ids of cache `items`.
pub(super) fn ids_of(cache: &Cache, items: &[usize]) -> Vec<String> {
    items.iter().map(|&i| cache.records()[i].id.clone()).collect()
}
