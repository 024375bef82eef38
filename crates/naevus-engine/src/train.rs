//! The training loop: folds, epochs, validation, checkpoints and resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, decay::WeightDecayConfig};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use naevus_data::{Augment, Cache, ClassScheme, MetadataEncoder, Sampling, Split, batches, epoch_order, stratified_group_kfold};
use naevus_metrics::roc_auc;
use serde::{Deserialize, Serialize};

use crate::config::{OptimizerKind, SamplingKind, TrainConfig};
use crate::device::select_device;
use crate::loss;
use crate::predict::{InputSpec, batch_logits, output_probabilities};
use crate::run::{RUN_FORMAT, RunInfo, load_checkpoint, load_weights, save_weights, write_atomic};

/// Consecutive non-finite losses after which a fold stops (a few isolated ones are skipped).
const MAX_BAD_STEPS: usize = 5;

/// Which cache items a fold trains and validates on.
#[derive(Debug, Clone)]
pub struct FoldPlan {
    pub name: String,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    /// None when the validation set holds a single class.
    pub val_auc: Option<f64>,
    /// AUC on the primary source's validation images, when external images are validated too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_auc_primary: Option<f64>,
    /// Diagnosis-class accuracy and one-vs-rest macro AUC, for runs with diagnosis classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_macro_auc: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub skipped_steps: usize,
}

/// Where a fold stands, saved after every epoch so `--resume` can continue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FoldState {
    epochs_done: usize,
    step: usize,
    best_auc: Option<f64>,
    best_epoch: Option<usize>,
    #[serde(default)]
    best_primary_auc: Option<f64>,
    /// Early stopping ended the fold before its last epoch.
    #[serde(default)]
    stopped_early: bool,
}

impl FoldState {
    fn finished(&self, config: &TrainConfig) -> bool {
        self.epochs_done >= config.epochs || self.stopped_early
    }
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
}

/// The outcome of a whole run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub folds: Vec<FoldReport>,
    /// AUC of all out-of-fold (or validation) predictions pooled.
    pub oof_auc: Option<f64>,
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
/// is not empty. With `resume`, finished epochs and folds of an interrupted run are kept and
/// training continues from the last checkpoint. Because each fold keeps its own directory,
/// processes given the same recipe and different `only_folds` can share one run (one per GPU,
/// say); oof.csv is written by the call that finds every fold trained.
pub fn train(cache: Arc<Cache>, config: &TrainConfig, run_dir: &Path, resume: bool, only_folds: &[String]) -> Result<TrainReport> {
    let started = Instant::now();
    let config = if resume {
        let saved = crate::run::read_config(run_dir).context("--resume needs the run directory of an earlier run")?;
        if &saved != config {
            eprintln!("note: resuming with the recipe saved in {}, not the one given now", run_dir.display());
        }
        saved
    } else {
        // Processes that train different folds of one run (`only_folds`) join it when their
        // recipe is the one it was started with.
        let joins = || !only_folds.is_empty() && crate::run::read_config(run_dir).is_ok_and(|saved| &saved == config);
        if run_dir.join("run.json").exists() && !joins() {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out (with --only-folds, the same recipe joins it)",
                run_dir.display()
            );
        }
        config.clone()
    };
    config.validate()?;
    let spec = naevus_models::spec(&config.model)?;
    let device = select_device(&config.device, config.precision)?;
    let image_size = if config.image_size == 0 { cache.size() } else { config.image_size };
    let classes = class_labels(&cache, config.classes)?;
    let plans = plan_folds(&cache, &config, &classes)?;
    if let Some(unknown) = only_folds.iter().find(|name| !plans.iter().any(|p| &p.name == *name)) {
        bail!("this run has no fold \"{unknown}\"; its folds are {}", plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "));
    }

    let metadata = (!config.metadata.is_empty()).then(|| MetadataEncoder::fit(cache.records(), &config.metadata));
    if let Some(encoder) = &metadata {
        eprintln!("metadata features: {}", encoder.feature_names().join(", "));
    }
    let info = RunInfo {
        format: RUN_FORMAT,
        naevus_version: env!("CARGO_PKG_VERSION").into(),
        model: config.model.clone(),
        loss: config.loss,
        num_outputs: config.target().num_outputs(),
        image_size,
        mean: spec.mean,
        std: spec.std,
        cache: std::fs::canonicalize(cache.dir()).unwrap_or_else(|_| cache.dir().to_path_buf()),
        folds: plans.iter().map(|p| p.name.clone()).collect(),
        classes: config.classes,
        metadata,
        dropout_samples: config.dropout_samples,
    };
    write_atomic(&run_dir.join("config.toml"), config.to_toml()?.as_bytes())?;
    info.write(run_dir)?;

    let input = InputSpec::from_run(&info);
    let mut reports = Vec::new();
    for (k, plan) in plans.iter().enumerate() {
        if !only_folds.is_empty() && !only_folds.contains(&plan.name) {
            continue;
        }
        eprintln!("{}: {} training images, {} validation images", plan.name, plan.train.len(), plan.val.len());
        reports.push(train_fold(&cache, &config, &info, &input, &classes, plan, k as u64, &device, &run_dir.join(&plan.name))?);
    }

    let (oof_auc, class_metrics) = if reports.len() == plans.len() {
        write_oof(run_dir, &cache, &info, &classes, &reports)?
    } else {
        eprintln!("trained {} of {} folds; once all are, `naevus train --resume` on {} writes oof.csv", reports.len(), plans.len(), run_dir.display());
        (None, None)
    };
    Ok(TrainReport { run_dir: run_dir.to_path_buf(), folds: reports, oof_auc, class_metrics, seconds: started.elapsed().as_secs_f64() })
}

fn build_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay((config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)))
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new().with_weight_decay(config.weight_decay as f32).init(),
    }
}

fn sampling(config: &TrainConfig) -> Sampling {
    match config.sampling {
        SamplingKind::Shuffle => Sampling::Shuffle,
        SamplingKind::Balanced => Sampling::Balanced,
        SamplingKind::Undersample => Sampling::Undersample { negatives_per_positive: config.negatives_per_positive },
    }
}

#[allow(clippy::too_many_arguments)]
fn train_fold(
    cache: &Arc<Cache>,
    config: &TrainConfig,
    info: &RunInfo,
    input: &InputSpec,
    classes: &[Option<u8>],
    plan: &FoldPlan,
    fold: u64,
    device: &Device,
    dir: &Path,
) -> Result<FoldReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let state_path = dir.join("state.json");
    let mut state: FoldState = match std::fs::read_to_string(&state_path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))?,
        Err(_) => FoldState::default(),
    };
    let val_labels: Vec<u8> = plan.val.iter().map(|&i| melanoma_of(cache, i)).collect();
    let class_of = |item: usize| classes[item].unwrap_or(0);
    let val_classes: Vec<usize> = plan.val.iter().map(|&i| class_of(i) as usize).collect();
    // AUC on primary images apart, when external images are validated too.
    let primary: Vec<usize> = (0..plan.val.len()).filter(|&n| !cache.records()[plan.val[n]].is_external).collect();
    let score_primary = primary.len() < plan.val.len();
    if state.finished(config) {
        eprintln!("{}: already trained ({} epochs), kept", plan.name, state.epochs_done);
        return Ok(fold_report(plan, &state, rescore_best(cache, info, input, plan, device, dir)?));
    }

    forget_unfinished_epochs(&dir.join("metrics.jsonl"), state.epochs_done)?;

    let train_device = device.clone().autodiff();
    train_device.seed(config.seed.wrapping_add(fold));
    let spec = naevus_models::spec(&config.model)?;
    let mut model = if config.pretrained {
        crate::weights::pretrained_network(spec, info.head_options(), &train_device)?
    } else {
        spec.build_with(info.head_options(), &train_device)
    };
    let metadata = input.cache_metadata(cache);
    let mut optimizer = build_optimizer(config);
    if state.epochs_done > 0 {
        model = load_weights(model, &dir.join("last.bpk"))?;
        let bytes = std::fs::read(dir.join("optimizer.bpk")).context("reading optimizer state for --resume")?;
        optimizer = optimizer
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("loading optimizer state of {}: {e}", dir.display()))?;
        eprintln!("{}: resuming after epoch {}", plan.name, state.epochs_done);
    }

    // Undersampling keeps every melanoma; balancing evens out the trained classes.
    let strategy = sampling(config);
    let sampling_labels: Vec<usize> = match strategy {
        Sampling::Undersample { .. } => plan.train.iter().map(|&i| melanoma_of(cache, i) as usize).collect(),
        _ => plan.train.iter().map(|&i| class_of(i) as usize).collect(),
    };
    let steps_per_epoch = epoch_order(&sampling_labels, &strategy, config.seed, 0).len().div_ceil(config.batch_size);
    let schedule = crate::schedule::Schedule::new(config, steps_per_epoch);
    let augment = config.augment.then(Augment::default);
    let fold_seed = config.seed.wrapping_mul(1_000_003).wrapping_add(fold);

    // The best epoch's validation predictions; an earlier session's best is re-scored below.
    let mut best_probabilities = None;
    for epoch in state.epochs_done..config.epochs {
        let epoch_started = Instant::now();
        let order: Vec<usize> = epoch_order(&sampling_labels, &strategy, fold_seed, epoch).into_iter().map(|p| plan.train[p]).collect();
        let progress = ProgressBar::new(order.len() as u64).with_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images, {per_sec}, ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        progress.set_prefix(format!("{} epoch {}/{}", plan.name, epoch + 1, config.epochs));
        let loader = input.loader(cache, config.batch_size, augment.clone(), fold_seed.wrapping_add(epoch as u64 * 7919));
        let (mut loss_sum, mut seen, mut skipped, mut bad_in_a_row) = (0.0, 0usize, 0usize, 0usize);
        let mut lr = config.lr;
        let frozen = epoch < config.freeze_backbone_epochs;
        if config.freeze_backbone_epochs > 0 {
            model = model.with_backbone_frozen(frozen);
        }
        for batch in batches(cache.clone(), order, loader) {
            let count = batch.batch;
            progress.inc(count as u64);
            if count < 2 {
                continue; // BatchNorm cannot train on a single image
            }
            let labels: Vec<u8> = batch.items.iter().map(|&i| class_of(i)).collect();
            let logits = batch_logits(&model, batch, metadata.as_deref(), &train_device);
            let batch_loss = loss::loss(config.loss, logits, &labels, config.focal_alpha, config.focal_gamma);
            let value = f64::from(batch_loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                skipped += 1;
                bad_in_a_row += 1;
                if bad_in_a_row >= MAX_BAD_STEPS {
                    bail!(
                        "{}: the loss was not finite for {MAX_BAD_STEPS} steps in a row (epoch {}); the last good checkpoint is {}; try a lower --lr",
                        plan.name,
                        epoch + 1,
                        dir.join("last.bpk").display()
                    );
                }
                continue;
            }
            bad_in_a_row = 0;
            // One schedule scales both learning rates; a frozen backbone has no gradients.
            let factor = schedule.factor(state.step);
            lr = factor * config.lr;
            let (backbone_grads, head_grads) = model.split_gradients(batch_loss.backward());
            model = optimizer.step(lr, model, head_grads);
            if !frozen {
                model = optimizer.step(factor * config.backbone_lr.unwrap_or(config.lr), model, backbone_grads);
            }
            state.step += 1;
            loss_sum += value * count as f64;
            seen += count;
            progress.set_message(format!("loss {:.4}", loss_sum / seen as f64));
        }
        progress.finish_and_clear();
        let train_seconds = epoch_started.elapsed().as_secs_f64();

        let eval_model = model.valid();
        let outputs = output_probabilities(&eval_model, cache, &plan.val, input, device, 1)?;
        let column = input.target.melanoma_column();
        let probs: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
        let val_loss = naevus_metrics::binary_cross_entropy(&probs, &val_labels).unwrap_or(f64::NAN);
        let val_auc = roc_auc(&probs, &val_labels).ok();
        let val_auc_primary = if score_primary {
            let pick = |values: &[f64]| primary.iter().map(|&n| values[n]).collect::<Vec<_>>();
            roc_auc(&pick(&probs), &primary.iter().map(|&n| val_labels[n]).collect::<Vec<_>>()).ok()
        } else {
            None
        };
        let class_metrics = ClassMetrics::of(config.classes, &outputs, &val_classes);
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: if seen > 0 { loss_sum / seen as f64 } else { f64::NAN },
            val_loss,
            val_auc,
            val_auc_primary,
            val_accuracy: class_metrics.as_ref().map(|m| m.accuracy),
            val_macro_auc: class_metrics.as_ref().and_then(|m| m.macro_auc),
            seconds: epoch_started.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds.max(1e-9),
            skipped_steps: skipped,
        };
        let figure = |value: Option<f64>| value.map_or("n/a".to_string(), |a| format!("{a:.4}"));
        let mut extra = String::new();
        if score_primary {
            extra += &format!(", primary AUC {}", figure(val_auc_primary));
        }
        if let Some(m) = &class_metrics {
            extra += &format!(", {}-class accuracy {:.4}, macro AUC {}", m.classes.len(), m.accuracy, figure(m.macro_auc));
        }
        eprintln!(
            "{} epoch {}/{}: train loss {:.4}, val loss {:.4}, val AUC {}{extra}, {:.0} s, {:.1} images/s",
            plan.name,
            epoch + 1,
            config.epochs,
            metrics.train_loss,
            metrics.val_loss,
            figure(val_auc),
            metrics.seconds,
            metrics.images_per_second
        );
        append_line(&dir.join("metrics.jsonl"), &serde_json::to_string(&metrics)?)?;

        let improved = match (val_auc, state.best_auc) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => state.best_epoch.is_none(),
        };
        if improved {
            save_weights(&eval_model, &dir.join("best.bpk"))?;
            write_predictions(&dir.join("val_predictions.csv"), cache, &plan.val, &probs, None)?;
            state.best_auc = val_auc;
            state.best_epoch = Some(epoch + 1);
            best_probabilities = Some(outputs);
        }
        if let Some(auc) = val_auc_primary
            && state.best_primary_auc.is_none_or(|best| auc > best)
        {
            save_weights(&eval_model, &dir.join("best_primary.bpk"))?;
            state.best_primary_auc = Some(auc);
        }
        // Last checkpoint, optimiser and state together: the state file is written last, so
        // a kill between them resumes from the previous epoch's complete set.
        save_weights(&model, &dir.join("last.bpk"))?;
        let optimizer_bytes = optimizer.into_bytes().map_err(|e| anyhow::anyhow!("serialising optimizer state: {e}"))?;
        write_atomic(&dir.join("optimizer.bpk"), &optimizer_bytes)?;
        state.epochs_done = epoch + 1;
        let patience = config.early_stopping_patience;
        state.stopped_early = patience > 0 && state.best_epoch.is_some_and(|best| state.epochs_done - best >= patience);
        write_atomic(&state_path, serde_json::to_string_pretty(&state)?.as_bytes())?;
        if state.stopped_early {
            eprintln!("{}: no better validation AUC for {patience} epochs; stopping early", plan.name);
            break;
        }
    }
    let val_probabilities = match best_probabilities {
        Some(probs) => probs,
        None => rescore_best(cache, info, input, plan, device, dir)?,
    };
    Ok(fold_report(plan, &state, val_probabilities))
}

/// Validation predictions of the fold's best checkpoint, for a best epoch trained in an
/// earlier (interrupted) session.
fn rescore_best(cache: &Arc<Cache>, info: &RunInfo, input: &InputSpec, plan: &FoldPlan, device: &Device, dir: &Path) -> Result<Vec<Vec<f64>>> {
    let model = load_checkpoint(info, &dir.join("best.bpk"), device)?;
    output_probabilities(&model, cache, &plan.val, input, device, 1)
}

fn fold_report(plan: &FoldPlan, state: &FoldState, val_probabilities: Vec<Vec<f64>>) -> FoldReport {
    FoldReport {
        name: plan.name.clone(),
        best_epoch: state.best_epoch,
        best_auc: state.best_auc,
        val_items: plan.val.clone(),
        val_probabilities,
    }
}

/// Drops metric lines of epochs after `epochs_done`: an epoch whose checkpoint was not
/// completed before a kill is trained again and must not be logged twice.
fn forget_unfinished_epochs(path: &Path, epochs_done: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let epoch = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|m| m["epoch"].as_u64());
            epoch.is_some_and(|e| e as usize <= epochs_done)
        })
        .collect();
    if kept.len() != text.lines().count() {
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        write_atomic(path, body.as_bytes())?;
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("writing {} (is the disk full?)", path.display()))
}

/// Writes `image_name,target[,label,fold]` rows.
pub fn write_predictions(path: &Path, cache: &Cache, items: &[usize], probs: &[f64], folds: Option<&[String]>) -> Result<()> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let with_extra = folds.is_some();
    if with_extra {
        out.write_record(["image_name", "target", "label", "fold"])?;
    } else {
        out.write_record(["image_name", "target"])?;
    }
    for (n, (&item, p)) in items.iter().zip(probs).enumerate() {
        let record = &cache.records()[item];
        let mut row = vec![record.id.clone(), format!("{p:.6}")];
        if let Some(folds) = folds {
            row.push(record.melanoma.map_or(String::new(), |m| u8::from(m).to_string()));
            row.push(folds[n].clone());
        }
        out.write_record(&row)?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Pools every fold's best validation predictions into `oof.csv` and `metrics.json`, and
/// for diagnosis classes `oof_classes.csv` and `class_metrics.json`.
fn write_oof(
    run_dir: &Path,
    cache: &Cache,
    info: &RunInfo,
    classes: &[Option<u8>],
    folds: &[FoldReport],
) -> Result<(Option<f64>, Option<ClassMetrics>)> {
    let (mut items, mut outputs, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for fold in folds {
        items.extend_from_slice(&fold.val_items);
        outputs.extend_from_slice(&fold.val_probabilities);
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
    }
    let column = info.target().melanoma_column();
    let probs: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
    write_predictions(&run_dir.join("oof.csv"), cache, &items, &probs, Some(&names))?;
    let class_metrics = if info.classes == ClassScheme::Binary {
        None
    } else {
        let truth: Vec<usize> = items.iter().map(|&i| classes[i].unwrap_or(0) as usize).collect();
        write_class_predictions(&run_dir.join("oof_classes.csv"), cache, info.classes, &items, &outputs, &truth, &names)?;
        let metrics = ClassMetrics::of(info.classes, &outputs, &truth);
        if let Some(m) = &metrics {
            write_atomic(&run_dir.join("class_metrics.json"), serde_json::to_string_pretty(m)?.as_bytes())?;
        }
        metrics
    };
    let labels: Vec<u8> = items.iter().map(|&i| melanoma_of(cache, i)).collect();
    let groups: Vec<&str> = items.iter().map(|&i| cache.records()[i].group.as_str()).collect();
    let auc = match naevus_metrics::binary_report(&probs, &labels, Some(&groups), 0.5, 1000, 0) {
        Ok(report) => {
            write_atomic(&run_dir.join("metrics.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
            crate::calibration::Calibration::fit(&probs, &labels, "oof.csv")?.write(run_dir)?;
            Some(report.auc)
        }
        Err(e) => {
            eprintln!("note: no validation metrics: {e}");
            None
        }
    };
    Ok((auc, class_metrics))
}

/// Writes `image_name,fold,class,p_<class>...` rows: every class's probability.
fn write_class_predictions(
    path: &Path,
    cache: &Cache,
    scheme: ClassScheme,
    items: &[usize],
    outputs: &[Vec<f64>],
    truth: &[usize],
    folds: &[String],
) -> Result<()> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let names = scheme.class_names();
    let mut header = vec!["image_name".to_string(), "fold".into(), "class".into()];
    header.extend(names.iter().map(|c| format!("p_{c}")));
    out.write_record(&header)?;
    for (n, &item) in items.iter().enumerate() {
        let mut row = vec![cache.records()[item].id.clone(), folds[n].clone(), names[truth[n]].to_string()];
        row.extend(outputs[n].iter().map(|p| format!("{p:.6}")));
        out.write_record(&row)?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    write_atomic(path, &bytes)
}
