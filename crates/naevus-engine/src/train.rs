//! The training loop: a run's folds, each a [`FoldSession`] that steps through its epochs,
//! validates, checkpoints and stops early, and can be resumed after a kill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use naevus_data::{AugmentPlan, Cache, ClassScheme, MetadataEncoder, Sampling, Split, batches, epoch_order, stratified_group_kfold};
use naevus_metrics::roc_auc;
use naevus_models::Network;
use naevus_run::recipe::MODEL_INPUT_SIDES;
use naevus_run::{Calibration, Checkpoint, EpochMetrics, FoldDir, FoldState, RUN_FORMAT, RecipeFlags, RunDir, RunInfo, TrainingState, write_atomic};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_weights, weights_bytes, weights_finite};
use crate::config::{SamplingKind, TrainConfig, check};
use crate::device::select_device;
use crate::ema::WeightAverage;
use crate::input::{InputSpec, resolve_image_size};
use crate::predict::output_probabilities;
use crate::step::{Snapshot, StepOutcome, Trainer};
use crate::trained::{head_options, load_network};

/// Consecutive non-finite losses after which a fold returns to the epoch's start with half
/// the learning rate (a few isolated ones are skipped).
const MAX_BAD_STEPS: usize = 5;
/// Numerical faults (see [`FoldSession::recover`]) a fold survives before it stops.
const MAX_RECOVERIES: u32 = 4;

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
    /// The same for the weight average's best epochs (oof_ema.csv; recipes with `ema_decay`).
    pub ema_oof_auc: Option<f64>,
    /// Accuracy, balanced accuracy and macro AUC of the pooled predictions, for diagnosis classes.
    pub class_metrics: Option<ClassMetrics>,
    pub seconds: f64,
}

/// Multi-class figures of pooled validation predictions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub classes: Vec<String>,
    pub images: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    /// One-vs-rest macro AUC over the classes present among the validation images (a
    /// nine-class model on three-diagnosis data is scored on those three).
    pub macro_auc: Option<f64>,
}

impl ClassMetrics {
    fn of(scheme: ClassScheme, probs: &[Vec<f64>], labels: &[usize]) -> Option<Self> {
        if scheme == ClassScheme::Binary || labels.is_empty() {
            return None;
        }
        let predicted: Vec<usize> = probs.iter().map(|row| argmax(row)).collect();
        let correct = predicted.iter().zip(labels).filter(|(p, t)| p == t).count();
        Some(Self {
            classes: scheme.class_names().iter().map(|c| c.to_string()).collect(),
            images: labels.len(),
            accuracy: correct as f64 / labels.len() as f64,
            balanced_accuracy: naevus_metrics::balanced_accuracy(&predicted, labels).ok()?,
            macro_auc: macro_auc_of_present_classes(probs, labels),
        })
    }
}

fn macro_auc_of_present_classes(probs: &[Vec<f64>], labels: &[usize]) -> Option<f64> {
    let mut present = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    let columns: Vec<Vec<f64>> = probs.iter().map(|row| present.iter().map(|&c| row[c]).collect()).collect();
    let labels: Vec<usize> = labels.iter().filter_map(|l| present.iter().position(|c| c == l)).collect();
    naevus_metrics::macro_auc_ovr(&columns, &labels).ok()
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Melanoma (1) or not (0): what the AUC is computed on.
fn melanoma_of(cache: &Cache, item: usize) -> u8 {
    cache.records()[item].melanoma.map_or(0, u8::from)
}

/// The class of every cache item under `scheme` (None: unlabelled); a diagnosis the scheme
/// does not know is an error naming the image and its source row.
fn class_labels(cache: &Cache, scheme: ClassScheme) -> Result<Vec<Option<u8>>> {
    cache
        .records()
        .iter()
        .map(|record| {
            let class = scheme.class_of(record).map_err(|e| match record.row {
                Some(row) => anyhow::anyhow!("{e} (source {}, line {row})", record.source),
                None => anyhow::anyhow!("{e} (source {})", record.source),
            })?;
            Ok(class.map(|c| c as u8))
        })
        .collect()
}

/// Splits the labelled images of `cache` (those with a class in `classes`, see
/// `class_labels`) into folds as the recipe asks. External images join every fold's
/// training set, and its validation folds only when the recipe says so.
fn plan_folds(cache: &Cache, config: &TrainConfig, classes: &[Option<u8>]) -> Result<Vec<FoldPlan>> {
    let labelled: Vec<usize> = (0..cache.len()).filter(|&i| classes[i].is_some()).collect();
    if labelled.len() < cache.len() {
        eprintln!("note: {} of {} images have no label and are not used for training", cache.len() - labelled.len(), cache.len());
    }
    let validatable = |i: &usize| config.external_in_validation || !cache.records()[*i].is_external;
    let (candidates, train_only): (Vec<usize>, Vec<usize>) = labelled.into_iter().partition(validatable);
    if !train_only.is_empty() {
        eprintln!("{} external images train in every fold and are never validated on", train_only.len());
    }
    if config.folds >= 2 {
        let labels: Vec<usize> = candidates.iter().map(|&i| melanoma_of(cache, i) as usize).collect();
        let groups: Vec<&str> = candidates.iter().map(|&i| cache.records()[i].group.as_str()).collect();
        let fold_of = stratified_group_kfold(&labels, &groups, config.folds, config.seed)?;
        return Ok((0..config.folds)
            .map(|k| FoldPlan {
                name: format!("fold-{k}"),
                train: candidates.iter().zip(&fold_of).filter(|(_, f)| **f != k).map(|(i, _)| *i).chain(train_only.iter().copied()).collect(),
                val: candidates.iter().zip(&fold_of).filter(|(_, f)| **f == k).map(|(i, _)| *i).collect(),
            })
            .collect());
    }
    let split = |s: Split| -> Vec<usize> { candidates.iter().copied().filter(|&i| cache.records()[i].split == Some(s)).collect() };
    let (mut train, val) = (split(Split::Train), split(Split::Val));
    train.extend(train_only.iter().copied());
    if train.is_empty() || val.is_empty() {
        bail!(
            "the cache has no train/val split ({} train, {} val images); use --folds K for grouped cross-validation",
            train.len(),
            val.len()
        );
    }
    Ok(vec![FoldPlan { name: "fold-0".into(), train, val }])
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
    let cache_id = cache_identity(&cache)?;
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
    let plans = plan_folds(&cache, &config, &classes)?;
    if let Some(unknown) = only_folds.iter().find(|name| !plans.iter().any(|p| &p.name == *name)) {
        bail!("this run has no fold \"{unknown}\"; its folds are {}", plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "));
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
    };
    dir.write_recipe(&config)?;
    dir.write_info(&info)?;
    if !only_folds.is_empty() {
        // Processes that share the run train their own folds, each fold locked on its own.
        run_lock = None;
    }

    let run = RunSetup { cache, config, info, classes, device };
    let mut reports = Vec::new();
    for (k, plan) in plans.iter().enumerate() {
        if !only_folds.is_empty() && !only_folds.contains(&plan.name) {
            continue;
        }
        eprintln!("{}: {} training images, {} validation images", plan.name, plan.train.len(), plan.val.len());
        let fold = dir.fold(&plan.name);
        let _fold_lock = fold.lock()?;
        fold.remove_stale_temporaries();
        reports.push(train_fold(&run, plan, k as u64, fold)?);
    }

    let (oof_auc, class_metrics, ema_oof_auc) = if reports.len() == plans.len() {
        let (auc, class_metrics) = write_oof(&dir, &run, &reports)?;
        (auc, class_metrics, write_ema_oof(&dir, &run, &reports)?)
    } else {
        eprintln!("trained {} of {} folds; once all are, `naevus train --resume` on {} writes oof.csv", reports.len(), plans.len(), run_dir.display());
        (None, None, None)
    };
    drop(run_lock);
    Ok(TrainReport { run_dir: run_dir.to_path_buf(), folds: reports, oof_auc, ema_oof_auc, class_metrics, seconds: started.elapsed().as_secs_f64() })
}

/// What every fold of a run shares.
struct RunSetup {
    cache: Arc<Cache>,
    config: TrainConfig,
    info: RunInfo,
    /// The class of every cache item (None: unlabelled).
    classes: Vec<Option<u8>>,
    /// The inference device (training runs on its autodiff twin).
    device: Device,
}

impl RunSetup {
    fn input(&self) -> InputSpec {
        InputSpec::from_run(&self.info)
    }
}

/// Trains one fold to its end (or early stop), from where an earlier session left it.
fn train_fold(run: &RunSetup, plan: &FoldPlan, fold: u64, dir: FoldDir) -> Result<FoldReport> {
    std::fs::create_dir_all(&dir.path).with_context(|| format!("creating {}", dir.path.display()))?;
    let training = dir.read_training_state()?;
    let state = training.as_ref().map(|t| t.state.clone()).unwrap_or_default();
    if state.finished(run.config.epochs) {
        eprintln!("{}: already trained ({} epochs), kept", plan.name, state.epochs_done);
        let ema = if state.best_ema_epoch.is_some() { Some(rescore(run, plan, &dir, Checkpoint::BestEma)?) } else { None };
        return Ok(FoldReport::of(plan, &state, rescore(run, plan, &dir, Checkpoint::Best)?, ema));
    }
    let mut session = FoldSession::open(run, plan, fold, dir, training)?;
    // The best epochs' validation predictions (of the weights and of their average); an
    // earlier session's best is re-scored below.
    let (mut best, mut best_ema) = (None, None);
    for epoch in session.state.epochs_done..run.config.epochs {
        // A network whose weights became non-finite is never validated or saved: the epoch is
        // trained again from its start, with half the learning rate.
        let (trained, validation) = loop {
            let start = session.trainer.snapshot()?;
            let trained = session.train_epoch(epoch, &start)?;
            if weights_finite(&session.trainer.model) {
                let validation = session.validate()?;
                if validation.finite() {
                    break (trained, validation);
                }
            }
            session.recover(&start, epoch, "the weights are no longer finite numbers")?;
        };
        session.log(epoch, &trained, &validation)?;
        let (improved, ema_improved) = session.checkpoint(epoch, &validation)?;
        if ema_improved {
            best_ema = validation.ema.as_ref().map(|ema| ema.outputs.clone());
        }
        if improved {
            best = Some(validation.outputs);
        }
        if session.state.stopped_early {
            eprintln!("{}: no better validation AUC for {} epochs; stopping early", plan.name, run.config.early_stopping_patience);
            break;
        }
    }
    let probabilities = match best {
        Some(outputs) => outputs,
        None => rescore(run, plan, &session.dir, Checkpoint::Best)?,
    };
    let ema_probabilities = match best_ema {
        Some(outputs) => Some(outputs),
        None if session.state.best_ema_epoch.is_some() => Some(rescore(run, plan, &session.dir, Checkpoint::BestEma)?),
        None => None,
    };
    Ok(FoldReport::of(plan, &session.state, probabilities, ema_probabilities))
}

/// The output probabilities of the fold's validation images under its `checkpoint` (for a
/// best epoch of an earlier session).
fn rescore(run: &RunSetup, plan: &FoldPlan, dir: &FoldDir, checkpoint: Checkpoint) -> Result<Vec<Vec<f64>>> {
    let model = load_network(&run.info, dir, checkpoint, &run.device)?;
    output_probabilities(&model, &run.cache, &plan.val, &run.input(), &run.device, 1)
}

/// One fold in training: its network, optimiser and schedule ([`Trainer`]), the images it
/// samples and validates on, and where it stands.
pub struct FoldSession<'a> {
    run: &'a RunSetup,
    /// The fold's number, which seeds its random numbers.
    fold: u64,
    plan: &'a FoldPlan,
    dir: FoldDir,
    state: FoldState,
    trainer: Trainer,
    input: InputSpec,
    metadata: Option<Vec<Vec<f32>>>,
    sampling: Sampling,
    /// Labels the sampler balances or undersamples on, one per training image.
    sampling_labels: Vec<usize>,
    augment: Option<AugmentPlan>,
    fold_seed: u64,
    val_labels: Vec<u8>,
    val_classes: Vec<usize>,
    /// Positions in `plan.val` of the primary source's images, when external images are
    /// validated too (their AUC is kept apart).
    primary: Option<Vec<usize>>,
}

/// The training half of an epoch.
pub struct EpochTraining {
    pub mean_loss: f64,
    pub images: usize,
    pub skipped_steps: usize,
    pub lr: f64,
    pub seconds: f64,
}

/// Validation after an epoch.
pub struct Validation {
    /// Every output's probability, per validation image.
    pub outputs: Vec<Vec<f64>>,
    pub loss: f64,
    pub auc: Option<f64>,
    pub auc_primary: Option<f64>,
    pub class_metrics: Option<ClassMetrics>,
    /// The same for the weight average (recipes with `ema_decay`).
    pub ema: Option<Box<Validation>>,
}

impl Validation {
    /// Whether every output (of the weights and of their average) is a finite number.
    fn finite(&self) -> bool {
        self.outputs.iter().flatten().all(|p| p.is_finite()) && self.ema.as_ref().is_none_or(|ema| ema.finite())
    }
}

impl<'a> FoldSession<'a> {
    /// The fold's network at the start (ImageNet or random weights), or at the end of the
    /// last finished epoch when `state` says epochs are done.
    fn open(run: &'a RunSetup, plan: &'a FoldPlan, fold: u64, dir: FoldDir, training: Option<TrainingState>) -> Result<Self> {
        let config = &run.config;
        let state = training.as_ref().map(|t| t.state.clone()).unwrap_or_default();
        dir.forget_epochs_after(state.epochs_done)?;
        let train_device = run.device.clone().autodiff();
        train_device.seed(config.seed.wrapping_add(fold));
        let spec = naevus_models::spec(&config.model)?;
        let options = head_options(&run.info);
        let mut model = if config.pretrained {
            crate::weights::pretrained_network(spec, options, &train_device)?
        } else {
            spec.build_with(options, &train_device)
        };
        let final_path = dir.checkpoint(Checkpoint::Final);
        if let Some(training) = &training {
            model = load_weights(model, training.weights.clone(), &final_path)?;
        }

        let class_of = |item: usize| run.classes[item].unwrap_or(0);
        let sampling = sampling(config);
        // Undersampling keeps every melanoma; balancing evens out the trained classes.
        let sampling_labels: Vec<usize> = match sampling {
            Sampling::Undersample { .. } => plan.train.iter().map(|&i| melanoma_of(&run.cache, i) as usize).collect(),
            _ => plan.train.iter().map(|&i| class_of(i) as usize).collect(),
        };
        let steps_per_epoch = epoch_order(&sampling_labels, &sampling, config.seed, 0).len().div_ceil(config.batch_size);
        let mut trainer = Trainer::new(config, model, steps_per_epoch, &train_device);
        trainer.steps_done = state.step;
        trainer.lr_scale = 0.5f64.powi(state.lr_halvings as i32);
        if let Some(training) = training {
            trainer.restore_optimizer(training.optimizer).with_context(|| format!("loading the optimizer state of {}", final_path.display()))?;
            if let Some(bytes) = training.ema.filter(|_| config.ema_decay > 0.0) {
                let average = load_weights(trainer.model.valid(), bytes, &final_path).context("loading the weight average")?;
                trainer.ema = Some(WeightAverage::with_model(average, config.ema_decay));
            }
            eprintln!("{}: resuming after epoch {}", plan.name, state.epochs_done);
        }
        let input = run.input();
        let primary: Vec<usize> = (0..plan.val.len()).filter(|&n| !run.cache.records()[plan.val[n]].is_external).collect();
        Ok(Self {
            fold,
            metadata: input.cache_metadata(&run.cache),
            input,
            sampling,
            sampling_labels,
            augment: AugmentPlan::of_recipe(config.augment, &config.augment_ops).map_err(anyhow::Error::msg)?,
            fold_seed: config.seed.wrapping_mul(1_000_003).wrapping_add(fold),
            val_labels: plan.val.iter().map(|&i| melanoma_of(&run.cache, i)).collect(),
            val_classes: plan.val.iter().map(|&i| class_of(i) as usize).collect(),
            primary: (primary.len() < plan.val.len()).then_some(primary),
            run,
            plan,
            dir,
            state,
            trainer,
        })
    }

    /// Trains epoch `epoch` (0-based) on a fresh sample of the fold's training images;
    /// `start` is the state it started from, returned to when losses stop being finite.
    pub fn train_epoch(&mut self, epoch: usize, start: &Snapshot) -> Result<EpochTraining> {
        let config = &self.run.config;
        let started = Instant::now();
        // Dropout draws depend on the seed, fold and epoch alone, so a resumed run repeats them.
        self.trainer.seed(config.seed.wrapping_mul(31).wrapping_add(self.fold).wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let order: Vec<usize> = epoch_order(&self.sampling_labels, &self.sampling, self.fold_seed, epoch).into_iter().map(|p| self.plan.train[p]).collect();
        let progress = ProgressBar::new(order.len() as u64).with_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images, {per_sec}, ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        progress.set_prefix(format!("{} epoch {}/{}", self.plan.name, epoch + 1, config.epochs));
        let loader = self.input.loader(&self.run.cache, config.batch_size, self.augment.clone(), self.fold_seed.wrapping_add(epoch as u64 * 7919));
        self.trainer.freeze_backbone(epoch < config.freeze_backbone_epochs);
        let (mut loss_sum, mut seen, mut skipped, mut bad_in_a_row, mut lr) = (0.0, 0usize, 0usize, 0usize, config.lr);
        for batch in batches(self.run.cache.clone(), order, loader) {
            let batch = batch?;
            let count = batch.batch;
            progress.inc(count as u64);
            if count < 2 {
                continue; // BatchNorm cannot train on a single image
            }
            let labels: Vec<u8> = batch.items.iter().map(|&i| self.run.classes[i].unwrap_or(0)).collect();
            let metadata = self.metadata_rows(&batch.items, epoch, self.trainer.steps_done);
            match self.trainer.step(batch, &labels, metadata)? {
                StepOutcome::Trained { loss, lr: step_lr } => {
                    bad_in_a_row = 0;
                    lr = step_lr;
                    loss_sum += loss * count as f64;
                    seen += count;
                    progress.set_message(format!("loss {:.4}", loss_sum / seen as f64));
                }
                StepOutcome::NotFinite => {
                    skipped += 1;
                    bad_in_a_row += 1;
                    if bad_in_a_row >= MAX_BAD_STEPS {
                        self.recover(start, epoch, &format!("the loss was not finite for {MAX_BAD_STEPS} steps in a row"))?;
                        bad_in_a_row = 0;
                    }
                }
            }
        }
        progress.finish_and_clear();
        Ok(EpochTraining {
            mean_loss: if seen > 0 { loss_sum / seen as f64 } else { f64::NAN },
            images: seen,
            skipped_steps: skipped,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The metadata rows of a batch's `items`, each field masked to "unknown" with the
    /// recipe's `metadata_dropout` probability (drawn from the seed, fold, epoch and step).
    fn metadata_rows(&self, items: &[usize], epoch: usize, step: usize) -> Option<Vec<Vec<f32>>> {
        let all = self.metadata.as_ref()?;
        let mut rows: Vec<Vec<f32>> = items.iter().map(|&i| all[i].clone()).collect();
        let p = self.run.config.metadata_dropout;
        if let (true, Some(encoder)) = (p > 0.0, &self.input.metadata) {
            use rand::{Rng, SeedableRng};
            let unknown = encoder.encode_unknown();
            let ranges = encoder.field_ranges();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.fold_seed ^ 0x6d65_7461);
            rng.set_stream(((epoch as u64) << 32) | step as u64);
            for row in &mut rows {
                for (_, range) in &ranges {
                    if rng.random_bool(p) {
                        row[range.clone()].copy_from_slice(&unknown[range.clone()]);
                    }
                }
            }
        }
        Some(rows)
    }

    /// A numerical fault in epoch `epoch`: returns to `start` with half the learning rates,
    /// and says so; after [`MAX_RECOVERIES`] of them the fold stops with an error.
    fn recover(&mut self, start: &Snapshot, epoch: usize, what: &str) -> Result<()> {
        self.state.lr_halvings += 1;
        if self.state.lr_halvings > MAX_RECOVERIES {
            let last = self.dir.checkpoint(Checkpoint::Final);
            let last = if last.exists() { format!("the last good training state is {}", last.display()) } else { "no epoch has finished yet".into() };
            bail!(
                "{}: {what} (epoch {}) after {MAX_RECOVERIES} returns to an earlier state with the learning rate halved each time; \
                 {last}; try a much lower --lr or check the data",
                self.plan.name,
                epoch + 1
            );
        }
        self.trainer.restore(start)?;
        self.trainer.lr_scale = 0.5f64.powi(self.state.lr_halvings as i32);
        eprintln!(
            "{}: {what} in epoch {}; returned to the epoch's start and halved the learning rates (now {} of the recipe's)",
            self.plan.name,
            epoch + 1,
            self.trainer.lr_scale
        );
        Ok(())
    }

    /// Scores every validation image with the network as it is now, and with the weight
    /// average when the recipe keeps one.
    pub fn validate(&self) -> Result<Validation> {
        let mut validation = self.score(&self.trainer.model.valid())?;
        if let Some(ema) = &self.trainer.ema {
            validation.ema = Some(Box::new(self.score(&ema.model)?));
        }
        Ok(validation)
    }

    fn score(&self, model: &Network) -> Result<Validation> {
        let outputs = output_probabilities(model, &self.run.cache, &self.plan.val, &self.input, &self.run.device, 1)?;
        let column = self.input.target.melanoma_column();
        let probs: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
        let auc_primary = self.primary.as_ref().and_then(|primary| {
            let pick = |values: &[f64]| primary.iter().map(|&n| values[n]).collect::<Vec<_>>();
            roc_auc(&pick(&probs), &primary.iter().map(|&n| self.val_labels[n]).collect::<Vec<_>>()).ok()
        });
        Ok(Validation {
            loss: naevus_metrics::binary_cross_entropy(&probs, &self.val_labels).unwrap_or(f64::NAN),
            auc: roc_auc(&probs, &self.val_labels).ok(),
            auc_primary,
            class_metrics: ClassMetrics::of(self.run.config.classes, &outputs, &self.val_classes),
            outputs,
            ema: None,
        })
    }

    /// Prints the epoch's line and appends it to metrics.jsonl.
    fn log(&self, epoch: usize, trained: &EpochTraining, validation: &Validation) -> Result<()> {
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr: Some(trained.lr),
            train_loss: Some(trained.mean_loss),
            val_loss: Some(validation.loss),
            val_auc: validation.auc,
            val_auc_primary: validation.auc_primary,
            val_accuracy: validation.class_metrics.as_ref().map(|m| m.accuracy),
            val_macro_auc: validation.class_metrics.as_ref().and_then(|m| m.macro_auc),
            ema_val_loss: validation.ema.as_ref().map(|ema| ema.loss),
            ema_val_auc: validation.ema.as_ref().and_then(|ema| ema.auc),
            seconds: Some(trained.seconds),
            images_per_second: Some(trained.images as f64 / trained.seconds.max(1e-9)),
            skipped_steps: Some(trained.skipped_steps),
        };
        let figure = |value: Option<f64>| value.map_or("n/a".to_string(), |a| format!("{a:.4}"));
        let mut extra = String::new();
        if self.primary.is_some() {
            extra += &format!(", primary AUC {}", figure(validation.auc_primary));
        }
        if let Some(m) = &validation.class_metrics {
            extra += &format!(", {}-class accuracy {:.4}, macro AUC {}", m.classes.len(), m.accuracy, figure(m.macro_auc));
        }
        if let Some(ema) = &validation.ema {
            extra += &format!(", EMA val loss {:.4}, EMA val AUC {}", ema.loss, figure(ema.auc));
        }
        eprintln!(
            "{} epoch {}/{}: train loss {:.4}, val loss {:.4}, val AUC {}{extra}, {:.0} s, {:.1} images/s",
            self.plan.name,
            epoch + 1,
            self.run.config.epochs,
            trained.mean_loss,
            validation.loss,
            figure(validation.auc),
            trained.seconds,
            trained.images as f64 / trained.seconds.max(1e-9)
        );
        Ok(self.dir.append_epoch(&metrics)?)
    }

    /// Saves what epoch `epoch` (0-based) leaves: the best checkpoints when it improved on
    /// them, then the training state (final weights, optimiser, weight average, where the
    /// fold stands) as one file. Returns whether the best of the weights, and of their
    /// average, improved.
    fn checkpoint(&mut self, epoch: usize, validation: &Validation) -> Result<(bool, bool)> {
        let weights = weights_bytes(&self.trainer.model.valid())?;
        let improved = improves(validation.auc, self.state.best_auc, self.state.best_epoch);
        if improved {
            self.dir.write_weights(Checkpoint::Best, &weights)?;
            let column = self.input.target.melanoma_column();
            let probs: Vec<f64> = validation.outputs.iter().map(|row| row[column]).collect();
            naevus_run::write_predictions(&self.dir.val_predictions_csv(), &ids_of(&self.run.cache, &self.plan.val), &probs)?;
            self.state.best_auc = validation.auc;
            self.state.best_epoch = Some(epoch + 1);
        }
        if let Some(auc) = validation.auc_primary
            && self.state.best_primary_auc.is_none_or(|best| auc > best)
        {
            self.dir.write_weights(Checkpoint::BestPrimary, &weights)?;
            self.state.best_primary_auc = Some(auc);
        }
        let ema = self.trainer.ema.as_ref().map(|ema| weights_bytes(&ema.model)).transpose()?;
        let mut ema_improved = false;
        if let (Some(bytes), Some(scored)) = (&ema, &validation.ema) {
            ema_improved = improves(scored.auc, self.state.best_ema_auc, self.state.best_ema_epoch);
            if ema_improved {
                self.dir.write_weights(Checkpoint::BestEma, bytes)?;
                self.state.best_ema_auc = scored.auc;
                self.state.best_ema_epoch = Some(epoch + 1);
            }
        }
        self.state.epochs_done = epoch + 1;
        self.state.step = self.trainer.steps_done;
        let patience = self.run.config.early_stopping_patience;
        self.state.stopped_early = patience > 0 && self.state.best_epoch.is_some_and(|best| self.state.epochs_done - best >= patience);
        let training = TrainingState { state: self.state.clone(), weights, optimizer: self.trainer.optimizer_bytes()?, ema };
        self.dir.write_training_state(&training)?;
        Ok((improved, ema_improved))
    }
}

/// Whether a validation AUC beats the best so far (`best_epoch`: whether there is one yet;
/// without an AUC, as with one class only, the first epoch counts as the best).
fn improves(auc: Option<f64>, best_auc: Option<f64>, best_epoch: Option<usize>) -> bool {
    match (auc, best_auc) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        (None, _) => best_epoch.is_none(),
    }
}

fn sampling(config: &TrainConfig) -> Sampling {
    match config.sampling {
        SamplingKind::Shuffle => Sampling::Shuffle,
        SamplingKind::Balanced => Sampling::Balanced,
        SamplingKind::Undersample => Sampling::Undersample { negatives_per_positive: config.negatives_per_positive },
    }
}

/// What a cache holds, as a short hash of its records and image size: a run resumed on a
/// cache of other images would mix two datasets in one model.
fn cache_identity(cache: &Cache) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(cache.size().to_le_bytes());
    hasher.update(serde_json::to_vec(cache.records())?);
    Ok(hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The image ids of cache `items`.
fn ids_of(cache: &Cache, items: &[usize]) -> Vec<String> {
    items.iter().map(|&i| cache.records()[i].id.clone()).collect()
}

/// Pools every fold's best validation predictions into `oof.csv` and `metrics.json`, and
/// for diagnosis classes `oof_classes.csv` and `class_metrics.json`.
fn write_oof(dir: &RunDir, run: &RunSetup, folds: &[FoldReport]) -> Result<(Option<f64>, Option<ClassMetrics>)> {
    let (cache, info, classes) = (&run.cache, &run.info, &run.classes);
    let (mut items, mut outputs, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for fold in folds {
        items.extend_from_slice(&fold.val_items);
        outputs.extend_from_slice(&fold.val_probabilities);
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
    }
    let column = run.input().target.melanoma_column();
    let probs: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
    let ids = ids_of(cache, &items);
    let labels: Vec<u8> = items.iter().map(|&i| melanoma_of(cache, i)).collect();
    naevus_run::write_out_of_fold(&dir.oof_csv(), &ids, &probs, &labels, &names)?;
    let class_metrics = if info.classes == ClassScheme::Binary {
        None
    } else {
        let truth: Vec<usize> = items.iter().map(|&i| classes[i].unwrap_or(0) as usize).collect();
        naevus_run::write_class_predictions(&dir.oof_classes_csv(), info.classes, &ids, &outputs, &truth, &names)?;
        let metrics = ClassMetrics::of(info.classes, &outputs, &truth);
        if let Some(m) = &metrics {
            write_atomic(&dir.class_metrics_json(), serde_json::to_string_pretty(m)?.as_bytes())?;
        }
        metrics
    };
    let groups: Vec<&str> = items.iter().map(|&i| cache.records()[i].group.as_str()).collect();
    let auc = match naevus_metrics::binary_report(&probs, &labels, Some(&groups), 0.5, 1000, 0) {
        Ok(report) => {
            write_atomic(&dir.metrics_json(), serde_json::to_string_pretty(&report)?.as_bytes())?;
            Calibration::fit(&probs, &labels, "oof.csv")?.write(dir.path())?;
            Some(report.auc)
        }
        Err(e) => {
            eprintln!("note: no validation metrics: {e}");
            None
        }
    };
    Ok((auc, class_metrics))
}

/// Pools every fold's best validation predictions of the weight average into oof_ema.csv
/// (recipes with `ema_decay`), and returns their AUC.
fn write_ema_oof(dir: &RunDir, run: &RunSetup, folds: &[FoldReport]) -> Result<Option<f64>> {
    let Some(outputs) = folds.iter().map(|fold| fold.ema_val_probabilities.as_ref()).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let column = run.input().target.melanoma_column();
    let (mut ids, mut probs, mut labels, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (fold, outputs) in folds.iter().zip(outputs) {
        ids.extend(ids_of(&run.cache, &fold.val_items));
        probs.extend(outputs.iter().map(|row| row[column]));
        labels.extend(fold.val_items.iter().map(|&i| melanoma_of(&run.cache, i)));
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
    }
    naevus_run::write_out_of_fold(&dir.oof_ema_csv(), &ids, &probs, &labels, &names)?;
    Ok(roc_auc(&probs, &labels).ok())
}
