//! Each fold's out-of-domain guard, fitted on its best weights once the fold is trained, and
//! fitted again on demand (`naevus guard`) from the same fold plans.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::Cache;
use naevus_run::{Checkpoint, DomainGuard, FoldDir, RunDir};

use super::plan::{Sources, class_labels, plan_folds};
use super::{FoldPlan, RunSetup};
use crate::device::select_device;
use crate::guard::fit_guard;
use crate::sha256;
use crate::trained::load_network;

/// Fits the fold's guard on its best weights, unless it has one fitted on exactly these
/// weights (a resumed run keeps it, and so a percentile `naevus guard` chose). A damaged
/// guard file is fitted again.
pub(super) fn guard_fold(run: &RunSetup, plan: &FoldPlan, fold: &FoldDir) -> Result<()> {
    let weights = sha256::of_bytes(&fold.read_weights(Checkpoint::Best)?);
    match DomainGuard::read(fold) {
        Ok(Some(guard)) if guard.weights_sha256 == weights => return Ok(()),
        Err(e) => eprintln!("warning: {e}; fitting the guard again"),
        _ => {}
    }
    // A fold too small to fit a guard on still trained: it goes without one, said so.
    match fit(run, plan, fold, run.config.guard_percentile, weights) {
        Ok(guard) => eprintln!("{}: {}", plan.name, guard.summary()),
        Err(e) => eprintln!("warning: {}: no out-of-domain guard ({e:#}); predictions will not say whether an image is like the training images", plan.name),
    }
    Ok(())
}

fn fit(run: &RunSetup, plan: &FoldPlan, fold: &FoldDir, percentile: f64, weights_sha256: String) -> Result<DomainGuard> {
    let model = load_network(&run.info, fold, Checkpoint::Best, &run.device)?;
    let classes: Vec<usize> = run.classes.iter().map(|c| c.map_or(0, usize::from)).collect();
    let mut guard = fit_guard(&model, &run.cache, &run.input(), &run.device, &plan.train, &plan.val, &classes, percentile, Checkpoint::Best)?;
    guard.weights_sha256 = weights_sha256;
    guard.write(fold)?;
    Ok(guard)
}

/// Fits the guard of every fold of the trained run in `run_dir` again, on the cache it
/// trained on, at `percentile` (None: the recipe's `guard_percentile`). Returns each fold's
/// name and guard.
pub fn refit_guards(cache: Arc<Cache>, run_dir: &Path, percentile: Option<f64>) -> Result<Vec<(String, DomainGuard)>> {
    let dir = RunDir::new(run_dir);
    let _lock = dir.lock().context("refitting the guards needs the run to itself")?;
    let info = dir.read_info()?;
    let config = dir.read_recipe()?;
    if info.cache_id.as_ref().is_some_and(|id| *id != cache.identity().unwrap_or_default()) {
        bail!("{} was trained on the cache {}; --data {} holds other images", run_dir.display(), info.cache.display(), cache.dir().display());
    }
    let classes = class_labels(&cache, config.classes)?;
    let sources = Sources::of(&cache);
    let plans = plan_folds(&cache, &config, &classes, &sources)?;
    let device = select_device(&config.device, config.precision)?;
    let percentile = percentile.unwrap_or(config.guard_percentile);
    let run = RunSetup { cache, config, info, classes, sources, device };
    let mut guards = Vec::new();
    for fold_name in &run.info.folds {
        let plan = plans.iter().find(|p| &p.name == fold_name).with_context(|| format!("{}: the recipe no longer plans the fold {fold_name}", run_dir.display()))?;
        let fold = dir.fold(fold_name);
        let weights = sha256::of_bytes(&fold.read_weights(Checkpoint::Best).with_context(|| format!("{fold_name} is not trained yet"))?);
        guards.push((fold_name.clone(), fit(&run, plan, &fold, percentile, weights)?));
    }
    Ok(guards)
}
