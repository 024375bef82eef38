//! Inference: melanoma probabilities for cached images, one fold or a fold ensemble.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::prelude::*;
use naevus_data::{Augment, Cache, LoaderConfig, MetadataEncoder, Normalize, batches};
use naevus_models::Network;

use crate::loss::Target;
use crate::run::{RunInfo, load_fold_model};

/// How to turn cached images (and their records' metadata) into model inputs, and the
/// model's logits into probabilities.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub image_size: u32,
    pub normalize: Normalize,
    pub target: Target,
    pub metadata: Option<MetadataEncoder>,
}

impl InputSpec {
    pub fn from_run(info: &RunInfo) -> Self {
        Self {
            image_size: info.image_size,
            normalize: Normalize { mean: info.mean, std: info.std },
            target: info.target(),
            metadata: info.metadata.clone(),
        }
    }

    /// Metadata features of every cache record (patients' image counts taken over the
    /// cache), or None for image-only runs.
    pub fn cache_metadata(&self, cache: &Cache) -> Option<Vec<Vec<f32>>> {
        self.metadata.as_ref().map(|encoder| encoder.encode_all(cache.records()))
    }

    /// Loader settings for `batch_size` images with optional augmentation.
    pub fn loader(&self, cache: &Cache, batch_size: usize, augment: Option<Augment>, seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            augment,
            normalize: self.normalize.clone(),
            seed,
            prefetch: 2,
            output_size: (self.image_size != cache.size()).then_some(self.image_size),
            dihedral: 0,
        }
    }
}

/// Turns a loader batch into a tensor on `device`.
pub fn batch_tensor(batch: naevus_data::Batch, device: &Device) -> Tensor<4> {
    let shape = [batch.batch, 3, batch.size as usize, batch.size as usize];
    Tensor::from_data(TensorData::new(batch.images, shape), device)
}

/// The metadata rows of cache `items` as a [items, features] tensor.
pub fn metadata_tensor(features: &[Vec<f32>], items: &[usize], device: &Device) -> Tensor<2> {
    let width = features.first().map_or(0, Vec::len);
    let values: Vec<f32> = items.iter().flat_map(|&i| features[i].iter().copied()).collect();
    Tensor::from_data(TensorData::new(values, [items.len(), width]), device)
}

/// The logits of a loader batch, with its metadata when the run has any.
pub fn batch_logits(model: &Network, batch: naevus_data::Batch, metadata: Option<&[Vec<f32>]>, device: &Device) -> Tensor<2> {
    let meta = metadata.map(|features| metadata_tensor(features, &batch.items, device));
    model.forward_with_metadata(batch_tensor(batch, device), meta).logits
}

/// Most test-time views: the 8 dihedral variants (identity, flips, rotations, transposes).
pub const MAX_TTA: usize = 8;

/// Probabilities of every output (one for a single-logit model, one per class otherwise)
/// of each cache item in `items`, in the same order, averaged over the first `tta`
/// dihedral views (1: the image as it is).
pub fn output_probabilities(
    model: &Network,
    cache: &Arc<Cache>,
    items: &[usize],
    input: &InputSpec,
    device: &Device,
    tta: usize,
) -> Result<Vec<Vec<f64>>> {
    let views = tta.clamp(1, MAX_TTA);
    let outputs = input.target.num_outputs();
    let metadata = input.cache_metadata(cache);
    let mut sum = vec![vec![0.0; outputs]; items.len()];
    for view in 0..views {
        let loader = LoaderConfig { dihedral: view as u8, ..input.loader(cache, 32, None, 0) };
        let mut offset = 0;
        for batch in batches(cache.clone(), items.to_vec(), loader) {
            let logits = batch_logits(model, batch, metadata.as_deref(), device);
            let p = input
                .target
                .output_probabilities(logits)
                .into_data()
                .try_to_vec_as::<f32>()
                .map_err(|e| anyhow::anyhow!("reading predictions: {e:?}"))?;
            for (row, values) in sum[offset..].iter_mut().zip(p.chunks(outputs)) {
                for (s, v) in row.iter_mut().zip(values) {
                    *s += f64::from(*v);
                }
            }
            offset += p.len() / outputs;
        }
    }
    Ok(sum.into_iter().map(|row| row.into_iter().map(|s| s / views as f64).collect()).collect())
}

/// Melanoma probability of each cache item in `items` (see [`output_probabilities`]).
pub fn probabilities(model: &Network, cache: &Arc<Cache>, items: &[usize], input: &InputSpec, device: &Device, tta: usize) -> Result<Vec<f64>> {
    let column = input.target.melanoma_column();
    Ok(output_probabilities(model, cache, items, input, device, tta)?.into_iter().map(|row| row[column]).collect())
}

/// Mean probability over every fold's `checkpoint` ("best" or "last") of a run: the fold ensemble.
pub fn ensemble_probabilities(
    run_dir: &Path,
    checkpoint: &str,
    cache: &Arc<Cache>,
    items: &[usize],
    device: &Device,
    tta: usize,
) -> Result<Vec<f64>> {
    let info = RunInfo::read(run_dir)?;
    let input = InputSpec::from_run(&info);
    let mut sum = vec![0.0; items.len()];
    for fold in &info.folds {
        let model = load_fold_model(run_dir, &info, fold, checkpoint, device)?;
        for (s, p) in sum.iter_mut().zip(probabilities(&model, cache, items, &input, device, tta)?) {
            *s += p;
        }
    }
    let n = info.folds.len() as f64;
    Ok(sum.into_iter().map(|s| s / n).collect())
}

/// Out-of-fold predictions again, now with `tta` views: each image of the run's `oof.csv`
/// scored by the fold that did not train on it. Returns cache items, probabilities and folds.
pub fn out_of_fold_probabilities(
    run_dir: &Path,
    checkpoint: &str,
    cache: &Arc<Cache>,
    device: &Device,
    tta: usize,
) -> Result<(Vec<usize>, Vec<f64>, Vec<String>)> {
    let info = RunInfo::read(run_dir)?;
    let input = InputSpec::from_run(&info);
    let (mut items, mut probs, mut folds) = (Vec::new(), Vec::new(), Vec::new());
    for (fold, fold_items) in held_out_items(run_dir, &info, cache)? {
        let model = load_fold_model(run_dir, &info, &fold, checkpoint, device)?;
        probs.extend(probabilities(&model, cache, &fold_items, &input, device, tta)?);
        items.extend_from_slice(&fold_items);
        folds.extend(std::iter::repeat_n(fold, fold_items.len()));
    }
    Ok((items, probs, folds))
}

/// Which cache items each fold of a run held out, read from the run's oof.csv, in the run's
/// fold order (folds that held out nothing are left out). An image of oof.csv missing from
/// the cache is an error naming the line.
pub fn held_out_items(run_dir: &Path, info: &RunInfo, cache: &Cache) -> Result<Vec<(String, Vec<usize>)>> {
    let by_id: HashMap<&str, usize> = cache.records().iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    let oof_path = run_dir.join("oof.csv");
    let mut reader = csv::Reader::from_path(&oof_path).with_context(|| format!("opening {}", oof_path.display()))?;
    let mut fold_items: HashMap<String, Vec<usize>> = HashMap::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} line {}", oof_path.display(), n + 2))?;
        let (id, fold) = (row.get(0).unwrap_or(""), row.get(3).unwrap_or(""));
        let item = *by_id
            .get(id)
            .with_context(|| format!("{} line {}: image {id} is not in the cache {}", oof_path.display(), n + 2, cache.dir().display()))?;
        fold_items.entry(fold.to_string()).or_default().push(item);
    }
    Ok(info.folds.iter().filter_map(|fold| fold_items.remove(fold).map(|items| (fold.clone(), items))).collect())
}
