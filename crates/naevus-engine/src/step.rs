//! One optimiser step of training: the forward pass, the loss, the backward pass and the
//! optimiser update with the schedule's learning rates. `naevus train` runs it on the
//! loader's batches and `naevus bench` times it, so the speed table measures the step that
//! training runs.

use anyhow::Result;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, decay::WeightDecayConfig};
use burn::tensor::{Bytes, Device};
use naevus_data::Batch;
use naevus_models::Network;
use naevus_run::{OptimizerKind, TrainConfig};

use crate::ema::WeightAverage;
use crate::loss;
use crate::predict::{batch_tensor, rows_tensor};
use crate::schedule::Schedule;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// The weights were updated; the batch's mean loss and the head's learning rate.
    Trained { loss: f64, lr: f64 },
    /// The loss was not finite: the weights were left as they were.
    NotFinite,
}

/// A network being trained, with its optimiser and learning-rate schedule.
pub struct Trainer {
    /// The network, on an autodiff device.
    pub model: Network,
    optimizer: ModuleOptimizer,
    schedule: Schedule,
    config: TrainConfig,
    device: Device,
    /// Optimiser steps taken (the schedule's position).
    pub steps_done: usize,
    /// Both learning rates are scaled by this (halved after each numerical fault).
    pub lr_scale: f64,
    frozen: bool,
    /// The weight average (recipes with `ema_decay`): made from the weights after the first
    /// step and updated after every one after it. Not before: copying the network before its
    /// first forward pass would initialise its lazily made head in another order of random
    /// draws, and the trained weights must follow the same path with or without an average.
    pub ema: Option<WeightAverage>,
}

/// A copy of a trainer's weights, optimiser state and weight average, to return to after a
/// numerical fault.
pub struct Snapshot {
    model: Network,
    optimizer: Vec<u8>,
    ema: Option<WeightAverage>,
}

impl Trainer {
    /// A trainer for `model` (on the autodiff `device`) under `config`, whose epochs have
    /// `steps_per_epoch` steps.
    pub fn new(config: &TrainConfig, model: Network, steps_per_epoch: usize, device: &Device) -> Self {
        Self {
            ema: None,
            model,
            optimizer: build_optimizer(config),
            schedule: Schedule::new(config, steps_per_epoch),
            config: config.clone(),
            device: device.clone(),
            steps_done: 0,
            lr_scale: 1.0,
            frozen: false,
        }
    }

    /// Fixes the backbone (weights and BatchNorm statistics) or lets it train.
    pub fn freeze_backbone(&mut self, frozen: bool) {
        if frozen != self.frozen {
            self.model = self.model.clone().with_backbone_frozen(frozen);
            self.frozen = frozen;
        }
    }

    /// One step on `batch` with its `labels` (0/1, or class indices for cross-entropy) and,
    /// when the network takes metadata, the batch's metadata rows. One schedule scales both
    /// learning rates; a frozen backbone has no gradients. The weight average follows.
    pub fn step(&mut self, batch: Batch, labels: &[u8], metadata: Option<Vec<Vec<f32>>>) -> Result<StepOutcome> {
        let meta = metadata.map(|rows| rows_tensor(&rows, &self.device));
        let logits = self.model.forward_with_metadata(batch_tensor(batch, &self.device), meta).logits;
        let batch_loss = loss::loss(self.config.loss, logits, labels, self.config.focal_alpha, self.config.focal_gamma);
        // Reading the loss also waits for the device to finish the forward pass.
        let value = f64::from(batch_loss.clone().into_scalar::<f32>());
        if !value.is_finite() {
            return Ok(StepOutcome::NotFinite);
        }
        let factor = self.schedule.factor(self.steps_done) * self.lr_scale;
        let lr = factor * self.config.lr;
        let (backbone_grads, head_grads) = self.model.split_gradients(batch_loss.backward());
        let model = self.optimizer.step(lr, self.model.clone(), head_grads);
        self.model = if self.frozen { model } else { self.optimizer.step(factor * self.config.backbone_lr.unwrap_or(self.config.lr), model, backbone_grads) };
        match &mut self.ema {
            Some(ema) => ema.update(&self.model, self.steps_done)?,
            None if self.config.ema_decay > 0.0 => self.ema = Some(WeightAverage::new(&self.model, self.config.ema_decay)),
            None => {}
        }
        self.steps_done += 1;
        Ok(StepOutcome::Trained { loss: value, lr })
    }

    /// Seeds the device's random numbers (dropout): training seeds it at every epoch's start,
    /// so that a resumed run draws what the uninterrupted one drew.
    pub fn seed(&self, seed: u64) {
        self.device.seed(seed);
    }

    /// The weights and optimiser state as they are now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot { model: self.model.clone(), optimizer: self.optimizer_bytes()?, ema: self.ema.clone() })
    }

    /// Returns to `snapshot`.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.model = snapshot.model.clone();
        self.ema = snapshot.ema.clone();
        self.restore_optimizer(snapshot.optimizer.clone())
    }

    /// The optimiser's state (moments and step counts), for a resumable checkpoint.
    pub fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        let bytes = self.optimizer.into_bytes().map_err(|e| anyhow::anyhow!("serialising optimizer state: {e}"))?;
        Ok(bytes.to_vec())
    }

    /// Restores the optimiser's state saved by [`optimizer_bytes`](Self::optimizer_bytes).
    pub fn restore_optimizer(&mut self, bytes: Vec<u8>) -> Result<()> {
        let optimizer = build_optimizer(&self.config);
        self.optimizer = optimizer.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

fn build_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay((config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)))
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new().with_weight_decay(config.weight_decay as f32).init(),
    }
}
