//! What a fold records as it trains: one line per epoch (metrics.jsonl) and where it stands
//! (state.json, read by `--resume`).

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`. Fields other than the epoch are optional so that a line
/// written by hand or by an older naevus still reads; training writes them all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// None when the validation set holds a single class.
    #[serde(default)]
    pub val_auc: Option<f64>,
    /// AUC on the primary source's validation images, when external images are validated too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_auc_primary: Option<f64>,
    /// AUC on each source's validation images, when more than one source is validated (a
    /// source whose images hold one class is left out).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub val_auc_by_source: std::collections::BTreeMap<String, f64>,
    /// Diagnosis-class accuracy and one-vs-rest macro AUC, for runs with diagnosis classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_macro_auc: Option<f64>,
    /// Validation loss and AUC of the weight average, for runs with `ema_decay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_auc: Option<f64>,
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub images_per_second: Option<f64>,
    #[serde(default)]
    pub skipped_steps: Option<usize>,
}

/// Where a fold stands, saved after every epoch so `--resume` can continue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldState {
    pub epochs_done: usize,
    /// Optimiser steps taken (the schedule's position).
    pub step: usize,
    /// The best epoch's figure under the run's checkpoint selection rule (the pooled
    /// validation AUC unless the recipe names another).
    pub best_auc: Option<f64>,
    pub best_epoch: Option<usize>,
    #[serde(default)]
    pub best_primary_auc: Option<f64>,
    /// The weight average's best validation AUC and its epoch (runs with `ema_decay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_ema_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_ema_epoch: Option<usize>,
    /// Early stopping ended the fold before its last epoch.
    #[serde(default)]
    pub stopped_early: bool,
    /// Times the learning rates were halved after a numerical fault (non-finite losses or
    /// weights); both are scaled by 0.5 to this power from then on.
    #[serde(default)]
    pub lr_halvings: u32,
}

impl FoldState {
    /// The fold has nothing left to train for a run of `epochs` epochs.
    pub fn finished(&self, epochs: usize) -> bool {
        self.epochs_done >= epochs || self.stopped_early
    }
}
