//! A picture of what a plan does to real images, to look at before training with it.

use image::{Rgb, RgbImage};

use super::AugmentPlan;
use crate::cache::Cache;
use crate::error::DataError;
use crate::loader::{image_at_size, item_rng};

/// Gap between tiles, and the wider one after each row's original.
const GAP: u32 = 4;
const ORIGINAL_GAP: u32 = 12;

/// One row per cache item: its image at `size` px as the model would see it, then
/// `per_image` versions augmented by `plan`, the k-th of row r drawn with
/// [`item_rng`]`(seed, r * per_image + k)`, on white.
pub fn augment_preview(cache: &Cache, plan: &AugmentPlan, items: &[usize], per_image: usize, size: u32, seed: u64) -> Result<RgbImage, DataError> {
    let columns = 1 + per_image as u32;
    let width = columns * size + ORIGINAL_GAP + per_image.saturating_sub(1) as u32 * GAP;
    let height = items.len() as u32 * size + items.len().saturating_sub(1) as u32 * GAP;
    let mut grid = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([255, 255, 255]));
    for (row, &item) in items.iter().enumerate() {
        let original = image_at_size(cache, item, size)?;
        let top = row as u32 * (size + GAP);
        paste(&mut grid, &original, size, 0, top);
        for k in 0..per_image {
            let augmented = plan.apply(&original, size, &mut item_rng(seed, row * per_image + k));
            let left = size + ORIGINAL_GAP + k as u32 * (size + GAP);
            paste(&mut grid, &augmented, size, left, top);
        }
    }
    Ok(grid)
}

fn paste(grid: &mut RgbImage, pixels: &[u8], size: u32, left: u32, top: u32) {
    for (i, p) in pixels.chunks_exact(3).enumerate() {
        let (x, y) = (i as u32 % size, i as u32 / size);
        grid.put_pixel(left + x, top + y, Rgb([p[0], p[1], p[2]]));
    }
}
