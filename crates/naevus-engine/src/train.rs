//! The training loop: folds, epochs, validation, checkpoints and resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, decay::WeightDecayConfig};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use naevus_data::{Augment, Cache, Sampling, Split, batches, epoch_order, stratified_group_kfold};
use naevus_metrics::roc_auc;
use serde::{Deserialize, Serialize};

use crate::config::{OptimizerKind, SamplingKind, TrainConfig};
use crate::device::select_device;
use crate::loss;
use crate::predict::{InputSpec, batch_tensor, probabilities};
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
    /// Cache items validated on, and their probabilities at the best epoch.
    pub val_items: Vec<usize>,
    pub val_probabilities: Vec<f64>,
}

/// The outcome of a whole run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub folds: Vec<FoldReport>,
    /// AUC of all out-of-fold (or validation) predictions pooled.
    pub oof_auc: Option<f64>,
    pub seconds: f64,
}

fn label_of(cache: &Cache, item: usize) -> u8 {
    cache.records()[item].melanoma.map_or(0, u8::from)
}

/// Splits the labelled images of `cache` into folds as the recipe asks.
pub fn plan_folds(cache: &Cache, config: &TrainConfig) -> Result<Vec<FoldPlan>> {
    let labelled: Vec<usize> = (0..cache.len()).filter(|&i| cache.records()[i].melanoma.is_some()).collect();
    if labelled.len() < cache.len() {
        eprintln!("note: {} of {} images have no melanoma label and are not used for training", cache.len() - labelled.len(), cache.len());
    }
    if config.folds >= 2 {
        let labels: Vec<usize> = labelled.iter().map(|&i| label_of(cache, i) as usize).collect();
        let groups: Vec<&str> = labelled.iter().map(|&i| cache.records()[i].group.as_str()).collect();
        let fold_of = stratified_group_kfold(&labels, &groups, config.folds, config.seed)?;
        return Ok((0..config.folds)
            .map(|k| FoldPlan {
                name: format!("fold-{k}"),
                train: labelled.iter().zip(&fold_of).filter(|(_, f)| **f != k).map(|(i, _)| *i).collect(),
                val: labelled.iter().zip(&fold_of).filter(|(_, f)| **f == k).map(|(i, _)| *i).collect(),
            })
            .collect());
    }
    let split = |s: Split| -> Vec<usize> { labelled.iter().copied().filter(|&i| cache.records()[i].split == Some(s)).collect() };
    let (train, val) = (split(Split::Train), split(Split::Val));
    if train.is_empty() || val.is_empty() {
        bail!(
            "the cache has no train/val split ({} train, {} val images); use --folds K for grouped cross-validation",
            train.len(),
            val.len()
        );
    }
    Ok(vec![FoldPlan { name: "fold-0".into(), train, val }])
}

/// Trains every fold of a run into `run_dir`. With `resume`, finished epochs and folds of an
/// interrupted run are kept and training continues from the last checkpoint.
pub fn train(cache: Arc<Cache>, config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<TrainReport> {
    let started = Instant::now();
    let config = if resume {
        let saved = crate::run::read_config(run_dir).context("--resume needs the run directory of an earlier run")?;
        if &saved != config {
            eprintln!("note: resuming with the recipe saved in {}, not the one given now", run_dir.display());
        }
        saved
    } else {
        if run_dir.join("run.json").exists() {
            bail!("{} already holds a run; pass --resume to continue it or choose another --out", run_dir.display());
        }
        config.clone()
    };
    config.validate()?;
    let spec = naevus_models::spec(&config.model)?;
    let device = select_device(&config.device)?;
    let image_size = if config.image_size == 0 { cache.size() } else { config.image_size };
    let plans = plan_folds(&cache, &config)?;

    let info = RunInfo {
        format: RUN_FORMAT,
        naevus_version: env!("CARGO_PKG_VERSION").into(),
        model: config.model.clone(),
        loss: config.loss,
        num_outputs: config.loss.num_outputs(),
        image_size,
        mean: spec.mean,
        std: spec.std,
        cache: std::fs::canonicalize(cache.dir()).unwrap_or_else(|_| cache.dir().to_path_buf()),
        folds: plans.iter().map(|p| p.name.clone()).collect(),
    };
    write_atomic(&run_dir.join("config.toml"), config.to_toml()?.as_bytes())?;
    info.write(run_dir)?;

    let input = InputSpec::from_run(&info);
    let mut reports = Vec::new();
    for (k, plan) in plans.iter().enumerate() {
        eprintln!("{}: {} training images, {} validation images", plan.name, plan.train.len(), plan.val.len());
        reports.push(train_fold(&cache, &config, &info, &input, plan, k as u64, &device, &run_dir.join(&plan.name))?);
    }

    let oof_auc = write_oof(run_dir, &cache, &reports)?;
    Ok(TrainReport { run_dir: run_dir.to_path_buf(), folds: reports, oof_auc, seconds: started.elapsed().as_secs_f64() })
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
    let val_labels: Vec<u8> = plan.val.iter().map(|&i| label_of(cache, i)).collect();
    if state.finished(config) {
        eprintln!("{}: already trained ({} epochs), kept", plan.name, state.epochs_done);
        return Ok(fold_report(plan, &state, rescore_best(cache, info, input, plan, device, dir)?));
    }

    forget_unfinished_epochs(&dir.join("metrics.jsonl"), state.epochs_done)?;

    let train_device = device.clone().autodiff();
    train_device.seed(config.seed.wrapping_add(fold));
    let spec = naevus_models::spec(&config.model)?;
    let mut model = if config.pretrained {
        crate::weights::pretrained_network(spec, info.num_outputs, &train_device)?
    } else {
        spec.build(info.num_outputs, &train_device)
    };
    let mut optimizer = build_optimizer(config);
    if state.epochs_done > 0 {
        model = load_weights(model, &dir.join("last.bpk"))?;
        let bytes = std::fs::read(dir.join("optimizer.bpk")).context("reading optimizer state for --resume")?;
        optimizer = optimizer
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("loading optimizer state of {}: {e}", dir.display()))?;
        eprintln!("{}: resuming after epoch {}", plan.name, state.epochs_done);
    }

    let train_labels: Vec<usize> = plan.train.iter().map(|&i| label_of(cache, i) as usize).collect();
    let strategy = sampling(config);
    let steps_per_epoch = epoch_order(&train_labels, &strategy, config.seed, 0).len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let warmup_steps = (config.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let augment = config.augment.then(Augment::default);
    let fold_seed = config.seed.wrapping_mul(1_000_003).wrapping_add(fold);

    // The best epoch's validation predictions; an earlier session's best is re-scored below.
    let mut best_probabilities = None;
    for epoch in state.epochs_done..config.epochs {
        let epoch_started = Instant::now();
        let order: Vec<usize> = epoch_order(&train_labels, &strategy, fold_seed, epoch).into_iter().map(|p| plan.train[p]).collect();
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
            let labels: Vec<u8> = batch.items.iter().map(|&i| label_of(cache, i)).collect();
            let logits = model.forward(batch_tensor(batch, &train_device)).logits;
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
            let factor = crate::schedule::warmup_cosine(state.step, total_steps, warmup_steps, 1.0);
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
        let probs = probabilities(&eval_model, cache, &plan.val, input, device, 1)?;
        let val_loss = naevus_metrics::binary_cross_entropy(&probs, &val_labels).unwrap_or(f64::NAN);
        let val_auc = roc_auc(&probs, &val_labels).ok();
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: if seen > 0 { loss_sum / seen as f64 } else { f64::NAN },
            val_loss,
            val_auc,
            seconds: epoch_started.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds.max(1e-9),
            skipped_steps: skipped,
        };
        eprintln!(
            "{} epoch {}/{}: train loss {:.4}, val loss {:.4}, val AUC {}, {:.0} s, {:.1} images/s",
            plan.name,
            epoch + 1,
            config.epochs,
            metrics.train_loss,
            metrics.val_loss,
            val_auc.map_or("n/a".to_string(), |a| format!("{a:.4}")),
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
            best_probabilities = Some(probs);
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
fn rescore_best(cache: &Arc<Cache>, info: &RunInfo, input: &InputSpec, plan: &FoldPlan, device: &Device, dir: &Path) -> Result<Vec<f64>> {
    let model = load_checkpoint(info, &dir.join("best.bpk"), device)?;
    probabilities(&model, cache, &plan.val, input, device, 1)
}

fn fold_report(plan: &FoldPlan, state: &FoldState, val_probabilities: Vec<f64>) -> FoldReport {
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

/// Pools every fold's best validation predictions into `oof.csv` and `metrics.json`.
fn write_oof(run_dir: &Path, cache: &Cache, folds: &[FoldReport]) -> Result<Option<f64>> {
    let (mut items, mut probs, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for fold in folds {
        items.extend_from_slice(&fold.val_items);
        probs.extend_from_slice(&fold.val_probabilities);
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
    }
    write_predictions(&run_dir.join("oof.csv"), cache, &items, &probs, Some(&names))?;
    let labels: Vec<u8> = items.iter().map(|&i| label_of(cache, i)).collect();
    let groups: Vec<&str> = items.iter().map(|&i| cache.records()[i].group.as_str()).collect();
    match naevus_metrics::binary_report(&probs, &labels, Some(&groups), 0.5, 1000, 0) {
        Ok(report) => {
            write_atomic(&run_dir.join("metrics.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
            crate::calibration::Calibration::fit(&probs, &labels, "oof.csv")?.write(run_dir)?;
            Ok(Some(report.auc))
        }
        Err(e) => {
            eprintln!("note: no validation metrics: {e}");
            Ok(None)
        }
    }
}
