//! Background batch loader: a producer thread assembles batches (items in parallel on
//! rayon) ahead of the consumer, so the model rarely waits for data.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentPlan;
use crate::pixels::{Normalize, dihedral, write_chw_f32};
use crate::cache::Cache;
use crate::colour::ColourConstancy;
use crate::error::DataError;
use crate::image_io::resize_square;

/// One batch of normalised images.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// [batch, 3, size, size] CHW normalised f32, flattened.
    pub images: Vec<f32>,
    /// Number of images in this batch (the last batch may be short).
    pub batch: usize,
    /// Side of each image in pixels.
    pub size: u32,
    /// Cache indices of the images, in batch order.
    pub items: Vec<usize>,
}

/// How [`batches`] builds batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// Augmentation to apply; None for evaluation.
    pub augment: Option<AugmentPlan>,
    /// Colour correction of each image, before augmentation.
    pub colour: ColourConstancy,
    /// Normalisation applied after augmentation.
    pub normalize: Normalize,
    /// Seed for augmentation; use a different one per epoch.
    pub seed: u64,
    /// Batches prepared ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Resize from the cache size to this size when different.
    pub output_size: Option<u32>,
    /// Dihedral variant (0..8, see [`dihedral`]) applied to every image: one view of
    /// test-time augmentation. 0 is the image as it is.
    pub dihedral: u8,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            augment: None,
            colour: ColourConstancy::None,
            normalize: Normalize::default(),
            seed: 0,
            prefetch: 2,
            output_size: None,
            dihedral: 0,
        }
    }
}

/// Iterator over batches, fed by a background thread. Dropping it stops the thread. A batch
/// with an image the cache cannot give (damaged bytes) is an error, and the last item.
pub struct BatchIter {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for BatchIter {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Result<Batch, DataError>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, so it exits promptly.
        self.rx.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Batches of `order` (cache indices; out-of-range indices are skipped), keeping the last
/// partial batch. Item i's augmentation rng depends only on (seed, position of i in
/// `order`), so results never depend on thread timing. An image whose cached bytes are
/// damaged ends the batches with that error.
pub fn batches(cache: Arc<Cache>, order: Vec<usize>, cfg: LoaderConfig) -> impl Iterator<Item = Result<Batch, DataError>> + Send {
    let order: Vec<usize> = order.into_iter().filter(|&i| i < cache.len()).collect();
    let (tx, rx) = bounded(cfg.prefetch.max(1));
    let worker = std::thread::spawn(move || {
        let batch_size = cfg.batch_size.max(1);
        for (b, items) in order.chunks(batch_size).enumerate() {
            let batch = build_batch(&cache, items, b * batch_size, &cfg);
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return; // consumer gone, or nothing sound left to give it
            }
        }
    });
    BatchIter { rx: Some(rx), worker: Some(worker) }
}

/// The cached image of `item` at `size` x `size` px (HWC RGB u8), resized from the cache's
/// size when they differ: what the model sees of it before augmentation.
pub fn image_at_size(cache: &Cache, item: usize, size: u32) -> Result<Vec<u8>, DataError> {
    let stored = cache.image(item)?;
    Ok(if size == cache.size() { stored.to_vec() } else { resize_square(stored, cache.size(), size) })
}

/// The augmentation rng of the image at `position` of an epoch's order under `seed`: its own
/// stream, so that no image's draws depend on another's or on thread timing.
pub fn item_rng(seed: u64, position: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(position as u64);
    rng
}

/// Builds one batch; `first_position` is the position of items[0] within the epoch order.
fn build_batch(cache: &Cache, items: &[usize], first_position: usize, cfg: &LoaderConfig) -> Result<Batch, DataError> {
    let size = cfg.output_size.unwrap_or(cache.size());
    let plane = 3 * size as usize * size as usize;
    let mut images = vec![0.0f32; items.len() * plane];
    images.par_chunks_mut(plane).zip(items.par_iter()).enumerate().try_for_each(|(j, (dst, &item))| {
        let mut pixels = image_at_size(cache, item, size)?;
        cfg.colour.apply(&mut pixels);
        let pixels = if !cfg.dihedral.is_multiple_of(8) { dihedral(&pixels, size, cfg.dihedral % 8) } else { pixels };
        let pixels = match &cfg.augment {
            Some(plan) => plan.apply(&pixels, size, &mut item_rng(cfg.seed, first_position + j)),
            None => pixels,
        };
        write_chw_f32(&pixels, size, &cfg.normalize, dst);
        Ok(())
    })?;
    Ok(Batch { images, batch: items.len(), size, items: items.to_vec() })
}
