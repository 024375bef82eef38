//! Inference: melanoma probabilities for cached images, one fold or a fold ensemble.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use naevus_data::{Augment, Cache, LoaderConfig, Normalize, batches};
use naevus_models::Network;

use crate::loss::{self, LossKind};
use crate::run::{RunInfo, load_fold_model};

/// How to turn cached images into model inputs.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub image_size: u32,
    pub normalize: Normalize,
    pub loss: LossKind,
}

impl InputSpec {
    pub fn from_run(info: &RunInfo) -> Self {
        Self { image_size: info.image_size, normalize: Normalize { mean: info.mean, std: info.std }, loss: info.loss }
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
        }
    }
}

/// Turns a loader batch into a tensor on `device`.
pub fn batch_tensor(batch: naevus_data::Batch, device: &Device) -> Tensor<4> {
    let shape = [batch.batch, 3, batch.size as usize, batch.size as usize];
    Tensor::from_data(TensorData::new(batch.images, shape), device)
}

/// Melanoma probability of each cache item in `items`, in the same order.
pub fn probabilities(model: &Network, cache: &Arc<Cache>, items: &[usize], input: &InputSpec, device: &Device) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(items.len());
    for batch in batches(cache.clone(), items.to_vec(), input.loader(cache, 32, None, 0)) {
        let x = batch_tensor(batch, device);
        let logits = model.forward(x).logits;
        let p = loss::melanoma_probability(input.loss, logits).into_data().try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading predictions: {e:?}"))?;
        out.extend(p.into_iter().map(f64::from));
    }
    Ok(out)
}

/// Mean probability over every fold's `checkpoint` ("best" or "last") of a run: the fold ensemble.
pub fn ensemble_probabilities(run_dir: &Path, checkpoint: &str, cache: &Arc<Cache>, items: &[usize], device: &Device) -> Result<Vec<f64>> {
    let info = RunInfo::read(run_dir)?;
    let input = InputSpec::from_run(&info);
    let mut sum = vec![0.0; items.len()];
    for fold in &info.folds {
        let model = load_fold_model(run_dir, &info, fold, checkpoint, device)?;
        for (s, p) in sum.iter_mut().zip(probabilities(&model, cache, items, &input, device)?) {
            *s += p;
        }
    }
    let n = info.folds.len() as f64;
    Ok(sum.into_iter().map(|s| s / n).collect())
}
