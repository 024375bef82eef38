//! Input settings: how cached images (and their records' metadata) become model inputs, and
//! the model's logits probabilities. Built once, when training starts (from the recipe, the
//! registry and the cache) or when a trained run is opened (from run.json).

use burn::prelude::*;
use naevus_data::{AugmentPlan, Cache, ColourConstancy, LoaderConfig, MetadataEncoder, Normalize};
use naevus_models::Network;
use naevus_models::ModelSpec;
use naevus_run::RunInfo;

use crate::loss::Target;

/// What a model's input and output mean.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Side of the square input in pixels.
    pub image_size: u32,
    /// Colour correction of each image before anything else is done to it.
    pub colour: ColourConstancy,
    pub normalize: Normalize,
    pub target: Target,
    pub metadata: Option<MetadataEncoder>,
}

impl InputSpec {
    /// The input of a trained run, as run.json records it.
    pub fn from_run(info: &RunInfo) -> Self {
        Self {
            image_size: info.image_size,
            colour: info.colour_constancy,
            normalize: Normalize { mean: info.mean, std: info.std },
            target: Target::of_run(info),
            metadata: info.metadata.clone(),
        }
    }

    /// Metadata features of every cache record (patients' image counts taken over the
    /// cache), or None for image-only runs.
    pub fn cache_metadata(&self, cache: &Cache) -> Option<Vec<Vec<f32>>> {
        self.metadata.as_ref().map(|encoder| encoder.encode_all(cache.records()))
    }

    /// Square HWC RGB u8 images at the input size (as [`crate::TrainedRun::load_images`] gives
    /// them) as one [n, 3, side, side] model input on `device`: each turned by the dihedral
    /// `view` (0: as it is; a test-time view), colour-corrected and normalised, as the loader
    /// does to a cached image without augmentation. The way files, uploads and explained
    /// images become inputs.
    pub fn images_tensor(&self, images: &[&[u8]], view: u8, device: &Device) -> Tensor<4> {
        let side = self.image_size;
        let mut values = Vec::with_capacity(images.len() * 3 * (side * side) as usize);
        for pixels in images {
            let mut pixels = naevus_data::dihedral(pixels, side, view);
            self.colour.apply(&mut pixels);
            naevus_data::to_chw_f32(&pixels, side, &self.normalize, &mut values);
        }
        Tensor::from_data(TensorData::new(values, [images.len(), 3, side as usize, side as usize]), device)
    }

    /// The out-of-domain guard's image statistics of a square HWC RGB u8 image at the input
    /// size, colour-corrected as the model sees it.
    pub fn image_statistics(&self, image: &[u8]) -> Vec<f32> {
        let mut pixels = image.to_vec();
        self.colour.apply(&mut pixels);
        naevus_data::image_statistics(&pixels, self.image_size).to_vec()
    }

    /// The probabilities of every output for a batch of inputs (with its metadata rows for a
    /// metadata model), row after row: the one way a batch becomes probabilities.
    pub fn forward_probabilities(&self, model: &Network, images: Tensor<4>, metadata: Option<Tensor<2>>) -> anyhow::Result<Vec<f32>> {
        Ok(self.forward_with_features(model, images, metadata)?.0)
    }

    /// [`forward_probabilities`](Self::forward_probabilities) and the image features the
    /// classifier read, one row per image (what the out-of-domain guard measures).
    pub fn forward_with_features(&self, model: &Network, images: Tensor<4>, metadata: Option<Tensor<2>>) -> anyhow::Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let output = model.forward_with_metadata(images, metadata);
        let probabilities = self.target.output_probabilities(output.logits).into_data().try_to_vec_as::<f32>().map_err(|e| anyhow::anyhow!("reading predictions: {e:?}"))?;
        Ok((probabilities, feature_rows(output.features)?))
    }

    /// Loader settings for `batch_size` images with optional augmentation.
    pub fn loader(&self, cache: &Cache, batch_size: usize, augment: Option<AugmentPlan>, seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size,
            augment,
            colour: self.colour,
            normalize: self.normalize.clone(),
            seed,
            prefetch: 2,
            output_size: (self.image_size != cache.size()).then_some(self.image_size),
            dihedral: 0,
        }
    }
}

/// The input side a run trains at: the recipe's `image_size` when it gives one, else the
/// model's own input size from the registry (as timm's data config does), capped by the
/// cache's image size, since upscaling adds no detail (said in a note).
pub fn resolve_image_size(recipe: Option<u32>, spec: &ModelSpec, cache_size: u32) -> u32 {
    if let Some(size) = recipe {
        return size;
    }
    if spec.input_size > cache_size {
        eprintln!(
            "note: {} takes {} px inputs; the cache holds {cache_size} px images, so it trains at {cache_size} px (set image_size to choose)",
            spec.name, spec.input_size
        );
        return cache_size;
    }
    spec.input_size
}

/// A [rows, width] tensor of features as one vector per row.
pub fn feature_rows(features: Tensor<2>) -> anyhow::Result<Vec<Vec<f32>>> {
    let [_, width] = features.dims();
    let values = features.into_data().try_to_vec_as::<f32>().map_err(|e| anyhow::anyhow!("reading features: {e:?}"))?;
    Ok(values.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
}
