//! [`TrainedRun`]: the one place that opens a trained run. Its run.json, recipe, input
//! settings, model and device are resolved once; predict, explain, crop (and the HTTP
//! service) use its folds through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::prelude::*;
use naevus_data::{Cache, DecodeLimits, RgbImage, center_crop_resize, decode_square_limited, image_at_size, load_square_limited, resize_square};
use naevus_models::{HeadOptions, ModelSpec, Network};
use naevus_run::{Calibration, Checkpoint, DomainCheck, DomainGuard, FoldDir, Predictions, RunDir, RunInfo, TrainConfig};

use crate::checkpoint::load_weights;
use crate::device::select_device;
use crate::explain::{Explanation, Method, explain_images};
use crate::input::InputSpec;
use crate::predict::{MAX_TTA, output_probabilities_and_features, probabilities, rows_tensor};

/// What [`TrainedRun::score_images`] says of each image.
#[derive(Debug, Clone)]
pub struct ImageScores {
    /// The probability of every output (one for a single-logit model, one per class),
    /// uncalibrated.
    pub outputs: Vec<Vec<f64>>,
    /// The melanoma probability on the run's one scale (see [`TrainedRun::calibrate`]).
    pub melanoma: Vec<f64>,
    /// The melanoma probability before calibration (one of `outputs`).
    pub melanoma_uncalibrated: Vec<f64>,
    /// What the guards say; None when the run has no guard for the weights used.
    pub domain: Option<Vec<DomainCheck>>,
}

/// A trained run, opened for inference on one device.
pub struct TrainedRun {
    pub dir: RunDir,
    pub info: RunInfo,
    /// The recipe it was trained with.
    pub recipe: TrainConfig,
    pub spec: &'static ModelSpec,
    pub input: InputSpec,
    pub device: Device,
    /// The temperature its probabilities are given on (calibration.json), when it has one:
    /// every path (predict, explain, the service, the card's thresholds) uses this one scale.
    pub calibration: Option<Calibration>,
}

impl TrainedRun {
    /// Opens the run in `dir` on `device` (None: the device and precision it trained with).
    pub fn open(dir: &Path, device: Option<&str>) -> Result<Self> {
        let dir = RunDir::new(dir);
        let info = dir.read_info()?;
        let recipe = dir.read_recipe()?;
        let spec = naevus_models::spec(&info.model)?;
        let device = select_device(device.unwrap_or(&recipe.device), recipe.precision)?;
        // read_info has checked that the folds are named; each must also be there.
        if let Some(missing) = info.folds.iter().map(|fold| dir.fold(fold)).find(|fold| !fold.path.is_dir()) {
            bail!("{}: run.json lists the fold {}, whose folder is missing; the run or model is incomplete", dir.path().display(), missing.path.display());
        }
        let input = InputSpec::from_run(&info);
        // A calibration that is there must be readable: probabilities on another scale than
        // the card's thresholds, without a word, would change every decision.
        let calibration = if dir.calibration_json().exists() { Some(Calibration::read(dir.path())?) } else { None };
        Ok(Self { dir, info, recipe, spec, input, device, calibration })
    }

    /// Puts melanoma probabilities (fold means) on the run's one scale: calibrated when the
    /// run has a calibration, else as they are.
    pub fn calibrate(&self, probabilities: &mut [f64]) {
        if let Some(calibration) = &self.calibration {
            calibration.apply(probabilities);
        }
    }

    /// The scale [`calibrate`](Self::calibrate) gives, in words.
    pub fn scale(&self) -> String {
        match &self.calibration {
            Some(c) => format!("calibrated (temperature {:.3})", c.temperature),
            None => "uncalibrated (the run has no calibration)".into(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fold named `fold`, or an error listing the run's folds.
    pub fn fold_name<'a>(&self, fold: &'a str) -> Result<&'a str> {
        self.info.check_fold(fold).map_err(|e| anyhow::anyhow!("{}: {e}", self.path().display()))?;
        Ok(fold)
    }

    /// The first fold (the one explain uses unless told otherwise).
    pub fn first_fold(&self) -> Result<&str> {
        self.info.folds.first().map(String::as_str).with_context(|| format!("{} has no folds", self.path().display()))
    }

    /// The network of `fold` with the weights of `checkpoint`, in inference mode.
    pub fn fold_model(&self, fold: &str, checkpoint: Checkpoint) -> Result<Network> {
        let fold = self.dir.fold(fold);
        self.check_checkpoint(&fold, checkpoint)?;
        load_network(&self.info, &fold, checkpoint, &self.device)
    }

    /// Why `fold` has no `checkpoint` file, when that is a recipe's choice rather than damage.
    fn check_checkpoint(&self, fold: &FoldDir, checkpoint: Checkpoint) -> Result<()> {
        let missing = match checkpoint {
            _ if fold.checkpoint(checkpoint).exists() => None,
            Checkpoint::BestPrimary => Some(
                "it is written only when external images are validated too (external_in_validation); otherwise best already is the best on primary images",
            ),
            Checkpoint::BestEma => Some("it is written only by recipes that keep a weight average (ema_decay above 0)"),
            _ => None,
        };
        match missing {
            Some(why) => bail!("{} has no {} checkpoint: {why}", self.path().display(), checkpoint.name()),
            None => Ok(()),
        }
    }

    /// Every fold's weights of `checkpoint`, read once, and `RunDir::model_sha256` of them:
    /// what [`ensemble_of`](Self::ensemble_of) builds the fold ensemble from.
    pub fn read_model(&self, checkpoint: Checkpoint) -> Result<(String, Vec<Vec<u8>>)> {
        for fold in &self.info.folds {
            self.check_checkpoint(&self.dir.fold(fold), checkpoint)?;
        }
        Ok(self.dir.read_model(&self.info, checkpoint)?)
    }

    /// Every fold's network with the weights of `checkpoint`: the fold ensemble.
    pub fn ensemble(&self, checkpoint: Checkpoint) -> Result<Vec<Network>> {
        self.info.folds.iter().map(|fold| self.fold_model(fold, checkpoint)).collect()
    }

    /// The fold ensemble from weights already read (see [`read_model`](Self::read_model)), one
    /// per fold in fold order.
    pub fn ensemble_of(&self, checkpoint: Checkpoint, weights: Vec<Vec<u8>>) -> Result<Vec<Network>> {
        self.info
            .folds
            .iter()
            .zip(weights)
            .map(|(fold, weights)| network_of_weights(&self.info, &self.dir.fold(fold), checkpoint, weights, &self.device))
            .collect()
    }

    /// Mean melanoma probability over the fold ensemble of each cache item in `items`, each
    /// averaged over `tta` dihedral views; and, with `guards` (one per fold, see
    /// [`guards`](Self::guards)), what they say of each item, from the features of the same
    /// forward pass (of the image as stored).
    pub fn predict_cache(&self, ensemble: &[Network], guards: Option<&[DomainGuard]>, cache: &Arc<Cache>, items: &[usize], tta: usize) -> Result<(Vec<f64>, Option<Vec<DomainCheck>>)> {
        let column = self.input.target.melanoma_column();
        let statistics: Vec<Vec<f32>> = match guards {
            Some(_) => items.iter().map(|&i| Ok(self.input.image_statistics(&image_at_size(cache, i, self.input.image_size)?))).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let mut sum = vec![0.0; items.len()];
        let mut distances = vec![Vec::with_capacity(ensemble.len()); items.len()];
        for (k, (model, fold)) in ensemble.iter().zip(&self.info.folds).enumerate() {
            let guard = guards.and_then(|g| g.get(k));
            let (rows, features) = output_probabilities_and_features(model, cache, items, &self.input, &self.device, tta, guard.is_some())?;
            let probs: Vec<f64> = rows.iter().map(|row| row[column]).collect();
            self.refuse_non_finite(&probs, fold)?;
            for (s, p) in sum.iter_mut().zip(probs) {
                *s += p;
            }
            if let Some(guard) = guard {
                if let (Some(row), Some(image)) = (features.first(), statistics.first()) {
                    self.check_guard(fold, guard, row.len(), image.len())?;
                }
                for ((image, row), image_statistics) in distances.iter_mut().zip(&features).zip(&statistics) {
                    image.push(guard.relative_distance(row, image_statistics));
                }
            }
        }
        let n = ensemble.len().max(1) as f64;
        let domain = guards.map(|_| distances.iter().map(|d| DomainCheck::of_folds(d)).collect());
        Ok((sum.into_iter().map(|s| s / n).collect(), domain))
    }

    /// Out-of-fold predictions again, now with `tta` views: each image of the run's oof.csv
    /// scored by the fold that did not train on it. Returns cache items, probabilities and folds.
    pub fn predict_out_of_fold(&self, checkpoint: Checkpoint, cache: &Arc<Cache>, tta: usize) -> Result<(Vec<usize>, Vec<f64>, Vec<String>)> {
        let (mut items, mut probs, mut folds) = (Vec::new(), Vec::new(), Vec::new());
        for (fold, fold_items) in self.held_out_items(cache)? {
            let model = self.fold_model(&fold, checkpoint)?;
            let fold_probs = probabilities(&model, cache, &fold_items, &self.input, &self.device, tta)?;
            self.refuse_non_finite(&fold_probs, &fold)?;
            probs.extend(fold_probs);
            items.extend_from_slice(&fold_items);
            folds.extend(std::iter::repeat_n(fold, fold_items.len()));
        }
        Ok((items, probs, folds))
    }

    /// An error naming the fold's checkpoints when a probability is not a finite number (a
    /// model whose weights went bad must not write NaN predictions).
    fn refuse_non_finite(&self, probs: &[f64], fold: &str) -> Result<()> {
        let bad = probs.iter().filter(|p| !p.is_finite()).count();
        if bad > 0 {
            bail!(
                "{} of {} probabilities from {} are not finite numbers: that checkpoint is unusable; retrain the fold",
                bad,
                probs.len(),
                self.dir.fold(fold).path.display()
            );
        }
        Ok(())
    }

    /// An error naming the fold's guard.bin when it measures other features than the
    /// network and the input path give (a guard fitted for another model): its distances
    /// would be NaN, and every image would be called outside the domain without a reason.
    fn check_guard(&self, fold: &str, guard: &DomainGuard, features: usize, statistics: usize) -> Result<()> {
        let (expected_features, expected_statistics) = (guard.features.dimension(), guard.statistics.dimension());
        if (expected_features, expected_statistics) != (features, statistics) {
            bail!(
                "{}: the guard measures {expected_features} network features and {expected_statistics} image statistics, but this \
                 model gives {features} and {statistics}: it was fitted for another model; fit it again with `naevus guard --run {}`",
                self.dir.fold(fold).path.join(naevus_run::guard::GUARD_FILE).display(),
                self.path().display()
            );
        }
        Ok(())
    }

    /// Which cache items each fold held out, read from the run's oof.csv, in the run's fold
    /// order (folds that held out nothing are left out). An image of oof.csv missing from the
    /// cache is an error naming it.
    pub fn held_out_items(&self, cache: &Cache) -> Result<Vec<(String, Vec<usize>)>> {
        let by_id: HashMap<&str, usize> = cache.records().iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
        let oof = Predictions::read(&self.dir.oof_csv())?;
        let folds = oof.folds.as_ref().with_context(|| format!("{} has no fold column", oof.path.display()))?;
        let mut fold_items: HashMap<&str, Vec<usize>> = HashMap::new();
        for (id, fold) in oof.ids.iter().zip(folds) {
            let item = *by_id
                .get(id.as_str())
                .with_context(|| format!("{}: image {id} is not in the cache {}", oof.path.display(), cache.dir().display()))?;
            fold_items.entry(fold.as_str()).or_default().push(item);
        }
        Ok(self.info.folds.iter().filter_map(|fold| fold_items.remove(fold.as_str()).map(|items| (fold.clone(), items))).collect())
    }

    /// Each image file decoded, oriented, cropped and resized exactly as `naevus prepare`
    /// stores it in a cache of the run's training cache size, then resized to the model's
    /// input as the loader does: HWC RGB u8 at the run's input size, or the reason it cannot
    /// be read (named per file; an unreadable file is not an error of the whole batch).
    pub fn load_images(&self, paths: &[PathBuf], limits: &DecodeLimits) -> Result<Vec<Result<Vec<u8>, String>>> {
        let cache_size = self.cache_size()?;
        let side = self.input.image_size;
        Ok(paths
            .iter()
            .map(|path| {
                let stored = load_square_limited(path, None, cache_size, limits).map_err(|e| e.to_string())?;
                Ok(resize_square(&stored, cache_size, side))
            })
            .collect())
    }

    /// [`load_images`](Self::load_images) of one image's bytes already in memory (an upload).
    /// An image that cannot be decoded is a [`naevus_data::DecodeError`] in the error.
    pub fn decode_image(&self, bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>> {
        let cache_size = self.cache_size()?;
        let stored = decode_square_limited(bytes, None, cache_size, limits)?;
        Ok(resize_square(&stored, cache_size, self.input.image_size))
    }

    /// An image already decoded (RGB of any size, e.g. a caller's array) made the model's
    /// input as [`load_images`](Self::load_images) makes a decoded file's: its centre square
    /// at the training cache's size, then the input size.
    pub fn rgb_image(&self, image: &RgbImage) -> Result<Vec<u8>> {
        let cache_size = self.cache_size()?;
        Ok(resize_square(&center_crop_resize(image, cache_size), cache_size, self.input.image_size))
    }

    /// The image side of the cache the run trained on: images are stored at it first, as
    /// prepare did, so that a file scores as it would through prepare + predict.
    fn cache_size(&self) -> Result<u32> {
        self.info.cache_size.with_context(|| {
            format!("{} does not record its cache's image size (trained by an older naevus); score a prepared cache with --data", self.path().display())
        })
    }

    /// Every fold's out-of-domain guard for the weights of `checkpoint`, or None when a fold
    /// has none for them (a run trained by an older naevus: `naevus guard` fits them).
    pub fn guards(&self, checkpoint: Checkpoint) -> Result<Option<Vec<DomainGuard>>> {
        let mut guards = Vec::with_capacity(self.info.folds.len());
        for fold in &self.info.folds {
            match DomainGuard::read(&self.dir.fold(fold))? {
                Some(guard) if guard.checkpoint == checkpoint.name() => guards.push(guard),
                _ => return Ok(None),
            }
        }
        Ok(Some(guards))
    }

    /// Scores square RGB images at the run's input size (HWC u8, as
    /// [`load_images`](Self::load_images) gives them) with the fold ensemble, each with its
    /// metadata features (None: a patient whose metadata is unknown): the probabilities of
    /// every output averaged over the folds and the first `tta` dihedral views, as
    /// [`predict_cache`](Self::predict_cache) does, and with `guards` (one per fold, see
    /// [`guards`](Self::guards)) whether each image lies in the model's domain.
    pub fn score_images(
        &self,
        ensemble: &[Network],
        guards: Option<&[DomainGuard]>,
        images: &[&[u8]],
        metadata: Option<&[Vec<f32>]>,
        tta: usize,
    ) -> Result<ImageScores> {
        let unknown = self.unknown_metadata();
        let outputs = self.input.target.num_outputs();
        let views = tta.clamp(1, MAX_TTA);
        let mut sum = vec![vec![0.0; outputs]; images.len()];
        let mut distances = vec![Vec::with_capacity(ensemble.len()); images.len()];
        let statistics: Vec<Vec<f32>> = if guards.is_some() { images.iter().map(|image| self.input.image_statistics(image)).collect() } else { Vec::new() };
        for (chunk_index, chunk) in images.chunks(32).enumerate() {
            let first = chunk_index * 32;
            let rows: Option<Vec<&[f32]>> = match (metadata, &unknown) {
                (Some(rows), _) => Some(rows[first..first + chunk.len()].iter().map(Vec::as_slice).collect()),
                (None, Some(row)) => Some(vec![row.as_slice(); chunk.len()]),
                (None, None) => None,
            };
            let meta = rows.as_ref().map(|rows| rows_tensor(rows, &self.device));
            for view in 0..views {
                let batch = self.input.images_tensor(chunk, view as u8, &self.device);
                for (k, (model, fold)) in ensemble.iter().zip(&self.info.folds).enumerate() {
                    let (p, features) = self.input.forward_with_features(model, batch.clone(), meta.clone())?;
                    let p: Vec<f64> = p.into_iter().map(f64::from).collect();
                    self.refuse_non_finite(&p, fold)?;
                    for (row, values) in sum[first..].iter_mut().zip(p.chunks(outputs)) {
                        for (s, v) in row.iter_mut().zip(values) {
                            *s += v;
                        }
                    }
                    // The guard measures the image as it is, not its test-time views.
                    if let (0, Some(guard)) = (view, guards.and_then(|g| g.get(k))) {
                        if let (Some(row), Some(image)) = (features.first(), statistics.get(first)) {
                            self.check_guard(fold, guard, row.len(), image.len())?;
                        }
                        for ((image, row), statistics) in distances[first..].iter_mut().zip(&features).zip(&statistics[first..]) {
                            image.push(guard.relative_distance(row, statistics));
                        }
                    }
                }
            }
        }
        let n = (ensemble.len().max(1) * views) as f64;
        let outputs: Vec<Vec<f64>> = sum.into_iter().map(|row| row.into_iter().map(|s| s / n).collect()).collect();
        let column = self.input.target.melanoma_column();
        let melanoma_uncalibrated: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
        let mut melanoma = melanoma_uncalibrated.clone();
        self.calibrate(&mut melanoma);
        Ok(ImageScores {
            melanoma,
            melanoma_uncalibrated,
            outputs,
            domain: guards.map(|_| distances.iter().map(|d| DomainCheck::of_folds(d)).collect()),
        })
    }

    /// The metadata features of a patient whose metadata is unknown, for a run with a
    /// metadata branch (image files come without metadata); None for image-only runs.
    pub fn unknown_metadata(&self) -> Option<Vec<f32>> {
        self.info.metadata.as_ref().map(|encoder| encoder.encode_unknown())
    }

    /// Explains square RGB images at the run's input size (HWC u8) with `network`, as of a
    /// patient whose metadata is unknown; see [`crate::explain::explain`].
    pub fn explain(&self, network: &Network, images: &[&[u8]], method: Method, layer: Option<&str>) -> Result<Vec<Explanation>> {
        let metadata = self.unknown_metadata();
        self.explain_with_metadata(network, images, metadata.as_deref(), method, layer)
    }

    /// [`explain`](Self::explain) with the metadata features every image is explained with.
    pub fn explain_with_metadata(
        &self,
        network: &Network,
        images: &[&[u8]],
        metadata: Option<&[f32]>,
        method: Method,
        layer: Option<&str>,
    ) -> Result<Vec<Explanation>> {
        explain_images(network, self.spec, &self.input, metadata, images, &self.device, method, layer)
    }
}

/// How the classifier of a run's network is built.
pub fn head_options(info: &RunInfo) -> HeadOptions {
    HeadOptions { num_outputs: info.num_outputs, metadata_features: info.metadata_features(), dropout_samples: info.dropout_samples }
}

/// Builds the run's network on `device` in inference mode with the weights of `checkpoint`
/// of `fold` (checked against their checksum, every tensor matched).
pub fn load_network(info: &RunInfo, fold: &FoldDir, checkpoint: Checkpoint, device: &Device) -> Result<Network> {
    network_of_weights(info, fold, checkpoint, fold.read_weights(checkpoint)?, device)
}

/// [`load_network`] with the weights read already.
fn network_of_weights(info: &RunInfo, fold: &FoldDir, checkpoint: Checkpoint, weights: Vec<u8>, device: &Device) -> Result<Network> {
    let network = naevus_models::spec(&info.model)?.build_with(head_options(info), device);
    Ok(load_weights(network, weights, &fold.checkpoint(checkpoint))?.valid())
}
