//! Attention-guided cropping (seed 002): from a saliency map to a square box around what the
//! model looked at, so a second model can see the lesion at full resolution. When the map is
//! diffuse the box would cover most of the image anyway, and the image is kept whole.

use serde::{Deserialize, Serialize};

/// A square region as fractions of the image's centre square (what the models see), so it
/// applies to the original file whatever its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub side: f64,
}

/// How a map becomes a box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropSettings {
    /// Share of the attention mass the box must hold (the map's lowest value is taken as zero).
    pub mass: f64,
    /// Added on each side, as a fraction of the box's longer side.
    pub margin: f64,
    /// A box holding that mass over more than this fraction of the image means the map is
    /// diffuse: keep the whole image.
    pub max_area: f64,
}

impl Default for CropSettings {
    fn default() -> Self {
        Self { mass: 0.8, margin: 0.15, max_area: 0.6 }
    }
}

/// The box for a row-major `height` x `width` map, or None to keep the whole image (a diffuse
/// or constant map, or a box that its margin grows to the whole image).
pub fn attention_box(map: &[f32], height: usize, width: usize, settings: &CropSettings) -> Option<CropBox> {
    assert_eq!(map.len(), height * width, "map size");
    let lowest = map.iter().copied().fold(f32::INFINITY, f32::min);
    let weights: Vec<f64> = map.iter().map(|&v| f64::from(v - lowest)).collect();
    let total: f64 = weights.iter().sum();
    if !(total > 0.0) {
        return None;
    }
    // The fewest positions that hold the wanted mass: the strongest first.
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    let (mut top, mut bottom, mut left, mut right) = (height, 0, width, 0);
    let mut held = 0.0;
    for &i in &order {
        let (row, col) = (i / width, i % width);
        top = top.min(row);
        bottom = bottom.max(row + 1);
        left = left.min(col);
        right = right.max(col + 1);
        held += weights[i];
        if held >= settings.mass * total {
            break;
        }
    }
    let (box_height, box_width) = ((bottom - top) as f64 / height as f64, (right - left) as f64 / width as f64);
    if box_height * box_width > settings.max_area {
        return None;
    }
    let side = box_height.max(box_width) * (1.0 + 2.0 * settings.margin);
    if side >= 1.0 {
        // With its margin the box covers the whole centre square: nothing to crop.
        return None;
    }
    let centre_y = (top + bottom) as f64 / 2.0 / height as f64;
    let centre_x = (left + right) as f64 / 2.0 / width as f64;
    let clamp = |centre: f64| (centre - side / 2.0).clamp(0.0, 1.0 - side);
    Some(CropBox { left: clamp(centre_x), top: clamp(centre_y), side })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with_blob(size: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Vec<f32> {
        let mut map = vec![0.0; size * size];
        for r in rows {
            for c in cols.clone() {
                map[r * size + c] = 1.0;
            }
        }
        map
    }

    #[test]
    fn a_concentrated_map_gives_a_square_with_margin_around_it() {
        // A 4 x 2 blob in a 10 x 10 map: rows 2..6, columns 3..5.
        let map = map_with_blob(10, 2..6, 3..5);
        let settings = CropSettings { mass: 0.99, margin: 0.25, max_area: 0.6 };
        let b = attention_box(&map, 10, 10, &settings).unwrap();
        assert!((b.side - 0.6).abs() < 1e-9, "0.4 longer side with 25% margin each way: {b:?}");
        assert!((b.top - 0.1).abs() < 1e-9 && (b.left - 0.1).abs() < 1e-9, "centred on (0.4, 0.4): {b:?}");
    }

    #[test]
    fn boxes_stay_inside_the_image() {
        let map = map_with_blob(10, 0..2, 8..10);
        let b = attention_box(&map, 10, 10, &CropSettings::default()).unwrap();
        assert!(b.top == 0.0 && (b.left + b.side - 1.0).abs() < 1e-12, "{b:?}");
    }

    #[test]
    fn a_box_that_grows_to_the_whole_image_is_no_crop() {
        // 3 x 3 of a 4 x 4 grid (area 0.56, under max_area) is 0.75 wide, 0.975 with a 15%
        // margin; 3 x 3 and a 20% margin would exceed the image: the whole image.
        let map = map_with_blob(4, 0..3, 1..4);
        let settings = |margin| CropSettings { mass: 0.99, margin, max_area: 0.6 };
        assert!((attention_box(&map, 4, 4, &settings(0.15)).unwrap().side - 0.975).abs() < 1e-9);
        assert_eq!(attention_box(&map, 4, 4, &settings(0.2)), None);
    }

    #[test]
    fn diffuse_or_constant_maps_keep_the_whole_image() {
        let uniform = vec![0.5; 100];
        assert_eq!(attention_box(&uniform, 10, 10, &CropSettings::default()), None);
        let noisy: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32).collect();
        assert_eq!(attention_box(&noisy, 10, 10, &CropSettings::default()), None);
    }
}
