//! A picture of what a plan does to real images, to look at before training with it.

use image::{Rgb, RgbImage};

use super::AugmentPlan;
use crate::cache::Cache;
use crate::colour::ColourConstancy;
use crate::error::DataError;
use crate::loader::{image_at_size, item_rng};

/// Gap between tiles, and the wider one after each row's original.
const GAP: u32 = 4;
const ORIGINAL_GAP: u32 = 12;

/// One row per cache item: its image at `size` px as it is stored, then (with a `colour`
/// correction) the corrected image the model sees, then `per_image` versions of that
/// augmented by `plan`, the k-th of row r drawn with [`item_rng`]`(seed, r * per_image + k)`,
/// on white. Wider gaps set the stored and the corrected image apart.
pub fn augment_preview(
    cache: &Cache,
    plan: &AugmentPlan,
    colour: ColourConstancy,
    items: &[usize],
    per_image: usize,
    size: u32,
    seed: u64,
) -> Result<RgbImage, DataError> {
    let fixed = if colour == ColourConstancy::None { 1 } else { 2 };
    let columns = fixed + per_image as u32;
    let width = columns * size + fixed * ORIGINAL_GAP + per_image.saturating_sub(1) as u32 * GAP;
    let height = items.len() as u32 * size + items.len().saturating_sub(1) as u32 * GAP;
    let mut grid = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([255, 255, 255]));
    for (row, &item) in items.iter().enumerate() {
        let stored = image_at_size(cache, item, size)?;
        let top = row as u32 * (size + GAP);
        paste(&mut grid, &stored, size, 0, top);
        let mut original = stored;
        if fixed == 2 {
            colour.apply(&mut original);
            paste(&mut grid, &original, size, size + ORIGINAL_GAP, top);
        }
        for k in 0..per_image {
            let augmented = plan.apply(&original, size, &mut item_rng(seed, row * per_image + k));
            let left = fixed * (size + ORIGINAL_GAP) + k as u32 * (size + GAP);
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
