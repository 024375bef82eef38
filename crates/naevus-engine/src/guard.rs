//! The out-of-domain guard ([`DomainGuard`]) with a network: the features it computes for
//! cached images, and a fold's guard fitted on them.

use std::sync::Arc;

use anyhow::{Context, Result};
use naevus_data::{Cache, LoaderConfig, batches, image_at_size};
use naevus_models::Network;
use naevus_run::{Checkpoint, DomainGuard, GuardCheck, GuardInputs, KindCheck};

use crate::input::InputSpec;
use crate::predict::{batch_tensor, metadata_tensor};
use crate::trained::TrainedRun;
use burn::prelude::Device;

/// Training images a guard is fitted on at most, evenly spaced over the fold's: enough for
/// the covariance (shrinkage does the rest) and a minute of features on a CPU.
pub const MAX_GUARD_TRAINING_IMAGES: usize = 4000;

/// What the guard measures of cache `items` as stored (no augmentation, no test-time views),
/// in order: the classifier's image features and the image statistics.
pub fn cache_guard_inputs(model: &Network, cache: &Arc<Cache>, items: &[usize], input: &InputSpec, device: &Device) -> Result<GuardInputs> {
    let metadata = input.cache_metadata(cache);
    let loader = LoaderConfig { dihedral: 0, ..input.loader(cache, 32, None, 0) };
    let mut features = Vec::with_capacity(items.len());
    for batch in batches(cache.clone(), items.to_vec(), loader) {
        let batch = batch?;
        let meta = metadata.as_deref().map(|rows| metadata_tensor(rows, &batch.items, device));
        features.extend(input.forward_with_features(model, batch_tensor(batch, device), meta)?.1);
    }
    let statistics = items.iter().map(|&i| Ok(input.image_statistics(&image_at_size(cache, i, input.image_size)?))).collect::<Result<_>>()?;
    Ok(GuardInputs { features, statistics })
}

/// A fold's guard: `model` (the weights of `checkpoint`) measures its training images (at
/// most [`MAX_GUARD_TRAINING_IMAGES`], `classes` giving each cache item's class) and its
/// validation images; the threshold is the `percentile` of the training images' distances.
#[allow(clippy::too_many_arguments)]
pub fn fit_guard(
    model: &Network,
    cache: &Arc<Cache>,
    input: &InputSpec,
    device: &Device,
    train: &[usize],
    val: &[usize],
    classes: &[usize],
    percentile: f64,
    checkpoint: Checkpoint,
) -> Result<DomainGuard> {
    let step = train.len().div_ceil(MAX_GUARD_TRAINING_IMAGES).max(1);
    let fitted_on: Vec<usize> = train.iter().copied().step_by(step).collect();
    let training = cache_guard_inputs(model, cache, &fitted_on, input, device)?;
    let validation = cache_guard_inputs(model, cache, val, input, device)?;
    let training_classes: Vec<usize> = fitted_on.iter().map(|&i| classes[i]).collect();
    DomainGuard::fit(&training, &training_classes, &validation, percentile, checkpoint.name()).context("fitting the out-of-domain guard")
}

/// How well the run's guards for `checkpoint` tell each kind of image (`kinds`: a name and
/// images at the run's input size, as [`TrainedRun::load_images`] gives them) from the run's
/// validation images (the held-out images of oof.csv in `cache`).
pub fn check_guards(run: &TrainedRun, cache: &Arc<Cache>, checkpoint: Checkpoint, kinds: &[(String, Vec<Vec<u8>>)]) -> Result<GuardCheck> {
    let guards = run.guards(checkpoint)?.with_context(|| format!("{} has no out-of-domain guard for its {} weights; fit them with `naevus guard`", run.path().display(), checkpoint.name()))?;
    let ensemble = run.ensemble(checkpoint)?;
    // Each fold's validation images measured by its own guard, and each kind by each guard.
    let mut per_fold: Vec<(Vec<f64>, Vec<Vec<f64>>)> = Vec::new();
    for (fold, items) in run.held_out_items(cache)? {
        let k = run.info.folds.iter().position(|f| *f == fold).context("a held-out fold the run does not list")?;
        let (model, guard) = (&ensemble[k], &guards[k]);
        let inputs = cache_guard_inputs(model, cache, &items, &run.input, &run.device)?;
        let validation: Vec<f64> = inputs.features.iter().zip(&inputs.statistics).map(|(f, s)| guard.relative_distance(f, s)).collect();
        let mut kind_distances = Vec::new();
        for (_, images) in kinds {
            let pixels: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            let scores = run.score_images(std::slice::from_ref(model), Some(std::slice::from_ref(guard)), &pixels, None, 1)?;
            kind_distances.push(scores.domain.unwrap_or_default().iter().map(|d| d.distance).collect());
        }
        per_fold.push((validation, kind_distances));
    }
    let validation_images: usize = per_fold.iter().map(|(v, _)| v.len()).sum();
    anyhow::ensure!(validation_images > 0, "{} holds no validation images of the run to compare with", cache.dir().display());
    let outside = |d: &f64| !(*d <= 1.0);
    let validation_flagged = per_fold.iter().flat_map(|(v, _)| v).filter(|d| outside(d)).count() as f64 / validation_images as f64;

    let mut checks = Vec::new();
    for (n, (kind, images)) in kinds.iter().enumerate() {
        let pixels: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let ensemble_domain = run.score_images(&ensemble, Some(&guards), &pixels, None, 1)?.domain.unwrap_or_default();
        let flagged = ensemble_domain.iter().filter(|d| !d.within).count() as f64 / images.len().max(1) as f64;
        let mut aurocs = Vec::new();
        for (validation, kind_distances) in &per_fold {
            // Not a number counts as as far as can be: such features are outside anything.
            let finite = |d: &f64| if d.is_finite() { *d } else { f64::MAX };
            let scores: Vec<f64> = validation.iter().chain(&kind_distances[n]).map(finite).collect();
            let labels: Vec<u8> = std::iter::repeat_n(0, validation.len()).chain(std::iter::repeat_n(1, kind_distances[n].len())).collect();
            aurocs.push(naevus_metrics::roc_auc(&scores, &labels).with_context(|| format!("the detection AUROC of {kind}"))?);
        }
        let auroc = aurocs.iter().sum::<f64>() / aurocs.len() as f64;
        checks.push(KindCheck { kind: kind.clone(), images: images.len(), flagged, auroc });
    }
    Ok(GuardCheck { percentile: guards[0].percentile, validation_images, validation_flagged, kinds: checks })
}
