//! The run directory: one format for everything a trained model needs.
//!
//! ```text
//! RUN/
//!   config.toml          the resolved recipe
//!   run.json             model, outputs, input size and normalisation, folds
//!   fold-K/              one per fold (fold-0 alone when the dataset's own split is used)
//!     metrics.jsonl      one JSON line per epoch
//!     best.bpk           weights of the epoch with the best validation AUC (all validation images)
//!     best_primary.bpk   ... with the best AUC on the primary source's images, when external
//!                        images are validated too (seed 004's best_20)
//!     last.bpk           the final weights, after the last finished epoch (with optimizer.bpk
//!                        and state.json: resume)
//!     val_predictions.csv  validation predictions of the best epoch
//!   oof.csv              out-of-fold (or validation) predictions: image_name,target,label,fold
//!   oof_classes.csv      for diagnosis classes: image_name,fold,class,p_<class>... of the same images
//!   class_metrics.json   ... and their accuracy, balanced accuracy and macro AUC
//!   metrics.json         validation metrics of oof.csv
//!   calibration.json     temperature fitted on oof.csv (`predict --calibrated`)
//! ```
//! Every file is written atomically (temporary file, then rename), so a killed process
//! leaves either the old or the new version, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Bytes, Device};
use naevus_data::{ClassScheme, MetadataEncoder};
use naevus_models::{HeadOptions, Network};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::loss::{LossKind, Target};

/// Bumped when the layout changes incompatibly.
pub const RUN_FORMAT: u32 = 3;

/// What predict, evaluate and explain need to know about a trained run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub format: u32,
    pub naevus_version: String,
    pub model: String,
    pub loss: LossKind,
    pub num_outputs: usize,
    /// Side of the square input the model was trained at.
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The prepared cache it was trained on.
    pub cache: PathBuf,
    /// Fold directory names, e.g. ["fold-0", "fold-1"].
    pub folds: Vec<String>,
    /// The classes the logits stand for.
    pub classes: ClassScheme,
    /// The metadata features the network takes, when it has a metadata branch.
    pub metadata: Option<MetadataEncoder>,
    /// Multi-sample dropout masks in training (does not change inference, but the network
    /// is built the same way).
    pub dropout_samples: usize,
}

impl RunInfo {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("run.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a naevus run directory (cannot read {})", run_dir.display(), path.display()))?;
        let info: RunInfo = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            info.format == RUN_FORMAT,
            "{} has run format {}, this naevus reads format {RUN_FORMAT}",
            path.display(),
            info.format
        );
        Ok(info)
    }

    pub fn write(&self, run_dir: &Path) -> Result<()> {
        write_atomic(&run_dir.join("run.json"), serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn target(&self) -> Target {
        Target { loss: self.loss, classes: self.classes }
    }

    /// How the network's classifier is built.
    pub fn head_options(&self) -> HeadOptions {
        HeadOptions {
            num_outputs: self.num_outputs,
            metadata_features: self.metadata.as_ref().map_or(0, MetadataEncoder::num_features),
            dropout_samples: self.dropout_samples,
        }
    }
}

/// Reads the resolved recipe saved in a run.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    TrainConfig::from_toml_file(&run_dir.join("config.toml"))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The process id keeps processes that share a run (train --only-folds) off each other's file.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {} (is the disk full?)", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Saves a network's weights atomically.
pub fn save_weights(model: &Network, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("serialising weights: {e}"))?;
    let bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("serialising weights: {e}"))?;
    write_atomic(path, &bytes)
}

/// Loads weights saved by [`save_weights`] into `model`; every tensor must match.
pub fn load_weights(model: Network, path: &Path) -> Result<Network> {
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let mut model = model;
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("loading checkpoint {}: {e}", path.display()))?;
    anyhow::ensure!(
        result.missing.is_empty() && result.unused.is_empty() && result.errors.is_empty(),
        "checkpoint {} does not fit the model: missing {:?}, unused {:?}, errors {:?}",
        path.display(),
        result.missing,
        result.unused,
        result.errors
    );
    Ok(model)
}

/// Builds the run's network on `device` in inference mode with the weights of `path`.
pub fn load_checkpoint(info: &RunInfo, path: &Path, device: &Device) -> Result<Network> {
    let network = naevus_models::spec(&info.model)?.build_with(info.head_options(), device);
    Ok(load_weights(network, path)?.valid())
}

/// Checkpoints predict can choose, and the file each is.
pub const CHECKPOINTS: [(&str, &str); 3] = [("best", "best.bpk"), ("best_primary", "best_primary.bpk"), ("final", "last.bpk")];

/// The run's network with the weights of `checkpoint` (best, best_primary or final) of `fold`.
pub fn load_fold_model(run_dir: &Path, info: &RunInfo, fold: &str, checkpoint: &str, device: &Device) -> Result<Network> {
    // "last" is what earlier versions called the final weights.
    let checkpoint = if checkpoint == "last" { "final" } else { checkpoint };
    let Some((_, file)) = CHECKPOINTS.iter().find(|(name, _)| *name == checkpoint) else {
        anyhow::bail!("unknown checkpoint {checkpoint:?}; choose one of best, best_primary, final");
    };
    let path = run_dir.join(fold).join(file);
    if checkpoint == "best_primary" && !path.exists() {
        anyhow::bail!(
            "{} has no best_primary checkpoint: it is written only when external images are validated too \
             (external_in_validation); otherwise best already is the best on primary images",
            run_dir.display()
        );
    }
    load_checkpoint(info, &path, device)
}
