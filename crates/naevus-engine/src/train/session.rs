//! One fold in training: its epochs, validation (pooled, per source, and by the run's
//! checkpoint selection rule), checkpoints, and recovery from numerical faults.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use naevus_data::{AugmentPlan, Sampling, batches, epoch_order};
use naevus_metrics::roc_auc;
use naevus_models::Network;
use naevus_run::{Checkpoint, CheckpointSelection, EpochMetrics, FoldDir, FoldState, TrainingState, ValidationAucs};

use super::out_of_fold::ClassMetrics;
use super::plan::{Sources, sampling};
use super::{FoldPlan, FoldReport, RunSetup, ids_of, melanoma_of};
use crate::checkpoint::{load_weights, weights_bytes, weights_finite};
use crate::ema::WeightAverage;
use crate::input::InputSpec;
use crate::predict::output_probabilities;
use crate::step::{Snapshot, StepOutcome, Trainer};
use crate::trained::{head_options, load_network};


/// Consecutive non-finite losses after which a fold returns to the epoch's start with half
/// the learning rate (a few isolated ones are skipped).
const MAX_BAD_STEPS: usize = 5;
/// Numerical faults (see [`FoldSession::recover`]) a fold survives before it stops.
const MAX_RECOVERIES: u32 = 4;


/// Trains one fold to its end (or early stop), from where an earlier session left it.
pub(super) fn train_fold(run: &RunSetup, plan: &FoldPlan, fold: u64, dir: FoldDir) -> Result<FoldReport> {
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
    /// Positions in `plan.val` of each source's images, when more than one source is
    /// validated (each source's AUC is kept apart).
    by_source: Vec<(String, Vec<usize>)>,
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
    pub auc_by_source: BTreeMap<String, f64>,
    /// The figure the run's checkpoint selection rule reads from these.
    pub selection: Option<f64>,
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
        let (sampling, sampling_labels) = sampling(config, &run.cache, &run.classes, &run.sources, &plan.train);
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
            by_source: positions_by_source(&run.sources, &plan.val),
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
        let auc_of = |positions: &[usize]| {
            let pick = |values: &[f64]| positions.iter().map(|&n| values[n]).collect::<Vec<_>>();
            roc_auc(&pick(&probs), &positions.iter().map(|&n| self.val_labels[n]).collect::<Vec<_>>()).ok()
        };
        let auc_primary = self.primary.as_deref().and_then(auc_of);
        let auc_by_source: BTreeMap<String, f64> = self.by_source.iter().filter_map(|(name, positions)| Some((name.clone(), auc_of(positions)?))).collect();
        let auc = roc_auc(&probs, &self.val_labels).ok();
        let selection = self.run.info.checkpoint_selection.score(&ValidationAucs { pooled: auc, primary: auc_primary, by_source: auc_by_source.clone() });
        Ok(Validation {
            loss: naevus_metrics::binary_cross_entropy(&probs, &self.val_labels).unwrap_or(f64::NAN),
            auc,
            auc_primary,
            auc_by_source,
            selection,
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
            val_auc_by_source: validation.auc_by_source.clone(),
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
        for (source, auc) in &validation.auc_by_source {
            extra += &format!(", {source} {auc:.4}");
        }
        if self.run.info.checkpoint_selection != CheckpointSelection::Pooled {
            extra += &format!(", {} {}", self.run.info.checkpoint_selection, figure(validation.selection));
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
        let improved = improves(validation.selection, self.state.best_auc, self.state.best_epoch);
        if improved {
            self.dir.write_weights(Checkpoint::Best, &weights)?;
            let column = self.input.target.melanoma_column();
            let probs: Vec<f64> = validation.outputs.iter().map(|row| row[column]).collect();
            naevus_run::write_predictions(&self.dir.val_predictions_csv(), &ids_of(&self.run.cache, &self.plan.val), &probs)?;
            self.state.best_auc = validation.selection;
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
            ema_improved = improves(scored.selection, self.state.best_ema_auc, self.state.best_ema_epoch);
            if ema_improved {
                self.dir.write_weights(Checkpoint::BestEma, bytes)?;
                self.state.best_ema_auc = scored.selection;
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

/// Positions in `val` of each source's images, when it holds more than one source.
fn positions_by_source(sources: &Sources, val: &[usize]) -> Vec<(String, Vec<usize>)> {
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (n, &item) in val.iter().enumerate() {
        by_source.entry(sources.name_of(item)).or_default().push(n);
    }
    if by_source.len() < 2 {
        return Vec::new();
    }
    by_source.into_iter().map(|(name, positions)| (name.to_string(), positions)).collect()
}

/// Whether a validation figure beats the best so far (`best_epoch`: whether there is one
/// yet; without a figure, as with one class only, the first epoch counts as the best).
fn improves(auc: Option<f64>, best_auc: Option<f64>, best_epoch: Option<usize>) -> bool {
    match (auc, best_auc) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        (None, _) => best_epoch.is_none(),
    }
}
