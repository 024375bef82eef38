//! Inference: model inputs from loader batches, and probabilities of cached images with
//! test-time augmentation. [`crate::TrainedRun`] puts a run's folds to work with these.

use std::sync::Arc;

use anyhow::Result;
use burn::prelude::*;
use naevus_data::{Cache, LoaderConfig, batches};
use naevus_models::Network;

pub use crate::input::InputSpec;

/// Turns a loader batch into a tensor on `device`.
pub fn batch_tensor(batch: naevus_data::Batch, device: &Device) -> Tensor<4> {
    let shape = [batch.batch, 3, batch.size as usize, batch.size as usize];
    Tensor::from_data(TensorData::new(batch.images, shape), device)
}

/// The metadata rows of cache `items` as a [items, features] tensor.
pub fn metadata_tensor(features: &[Vec<f32>], items: &[usize], device: &Device) -> Tensor<2> {
    let rows: Vec<&[f32]> = items.iter().map(|&i| features[i].as_slice()).collect();
    rows_tensor(&rows, device)
}

/// Rows of features as a [rows, features] tensor.
pub fn rows_tensor<R: AsRef<[f32]>>(rows: &[R], device: &Device) -> Tensor<2> {
    let width = rows.first().map_or(0, |r| r.as_ref().len());
    let values: Vec<f32> = rows.iter().flat_map(|r| r.as_ref().iter().copied()).collect();
    Tensor::from_data(TensorData::new(values, [rows.len(), width]), device)
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
    Ok(output_probabilities_and_features(model, cache, items, input, device, tta, false)?.0)
}

/// [`output_probabilities`], and with `keep_features` each item's image features from the
/// same forward pass (of view 0, the image as stored): what the out-of-domain guard measures.
pub fn output_probabilities_and_features(
    model: &Network,
    cache: &Arc<Cache>,
    items: &[usize],
    input: &InputSpec,
    device: &Device,
    tta: usize,
    keep_features: bool,
) -> Result<(Vec<Vec<f64>>, Vec<Vec<f32>>)> {
    let views = tta.clamp(1, MAX_TTA);
    let outputs = input.target.num_outputs();
    let metadata = input.cache_metadata(cache);
    let mut sum = vec![vec![0.0; outputs]; items.len()];
    let mut kept = Vec::new();
    for view in 0..views {
        let loader = LoaderConfig { dihedral: view as u8, ..input.loader(cache, 32, None, 0) };
        let mut offset = 0;
        for batch in batches(cache.clone(), items.to_vec(), loader) {
            let batch = batch?;
            let meta = metadata.as_deref().map(|features| metadata_tensor(features, &batch.items, device));
            let (p, features) = input.forward_with_features(model, batch_tensor(batch, device), meta)?;
            if keep_features && view == 0 {
                kept.extend(features);
            }
            for (row, values) in sum[offset..].iter_mut().zip(p.chunks(outputs)) {
                for (s, v) in row.iter_mut().zip(values) {
                    *s += f64::from(*v);
                }
            }
            offset += p.len() / outputs;
        }
    }
    Ok((sum.into_iter().map(|row| row.into_iter().map(|s| s / views as f64).collect()).collect(), kept))
}

/// Melanoma probability of each cache item in `items` (see [`output_probabilities`]).
pub fn probabilities(model: &Network, cache: &Arc<Cache>, items: &[usize], input: &InputSpec, device: &Device, tta: usize) -> Result<Vec<f64>> {
    let column = input.target.melanoma_column();
    Ok(output_probabilities(model, cache, items, input, device, tta)?.into_iter().map(|row| row[column]).collect())
}
