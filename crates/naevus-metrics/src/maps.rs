//! How well a saliency map (attention, Grad-CAM) finds the lesion, given a binary lesion
//! mask of the same size: the Jaccard index of the map binarised at half its range (how
//! Yan et al., IPMI 2019, score attention maps against ISIC masks) and the pointing game
//! (Zhang et al., ECCV 2016, here without a tolerance margin: is the map's maximum inside
//! the lesion).
//!
//! Maps and masks are row-major pixel arrays of one image; the callers resize both to the
//! model's input first.

use crate::MetricsError;

/// Rescales `map` in place to [0, 1] (minimum to 0, maximum to 1). A constant map, which
/// points nowhere, becomes all zeros.
pub fn min_max_normalise(map: &mut [f32]) {
    let (low, high) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = high - low;
    for value in map.iter_mut() {
        *value = if range > 0.0 { (*value - low) / range } else { 0.0 };
    }
}

/// Jaccard index (intersection over union) of the pixels where the min-max normalised `map`
/// is at least 0.5, against the `mask`'s lesion pixels.
pub fn map_jaccard(map: &[f32], mask: &[bool]) -> Result<f64, MetricsError> {
    check(map, mask)?;
    let mut normalised = map.to_vec();
    min_max_normalise(&mut normalised);
    let (mut intersection, mut union) = (0usize, 0usize);
    for (&value, &lesion) in normalised.iter().zip(mask) {
        let salient = value >= 0.5;
        intersection += usize::from(salient && lesion);
        union += usize::from(salient || lesion);
    }
    // The mask has a lesion pixel, so the union is never empty.
    Ok(intersection as f64 / union as f64)
}

/// Whether the map's maximum lies inside the lesion (the first maximum in row-major order
/// when several pixels share it).
pub fn pointing_game_hit(map: &[f32], mask: &[bool]) -> Result<bool, MetricsError> {
    check(map, mask)?;
    let mut peak = 0;
    for (index, &value) in map.iter().enumerate() {
        if value > map[peak] {
            peak = index;
        }
    }
    Ok(mask[peak])
}

/// Same length, finite values, at least one lesion pixel.
fn check(map: &[f32], mask: &[bool]) -> Result<(), MetricsError> {
    if map.len() != mask.len() {
        return Err(MetricsError::MapMaskMismatch { map: map.len(), mask: mask.len() });
    }
    if let Some(index) = map.iter().position(|v| !v.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if !mask.contains(&true) {
        return Err(MetricsError::EmptyMask);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A side x side mask with the rectangle rows top..bottom, columns left..right set.
    fn rectangle(side: usize, top: usize, bottom: usize, left: usize, right: usize) -> Vec<bool> {
        (0..side * side).map(|i| (top..bottom).contains(&(i / side)) && (left..right).contains(&(i % side))).collect()
    }

    /// A map that is `inside` on the mask's pixels and `outside` elsewhere.
    fn painted(mask: &[bool], inside: f32, outside: f32) -> Vec<f32> {
        mask.iter().map(|&m| if m { inside } else { outside }).collect()
    }

    #[test]
    fn a_map_covering_exactly_the_lesion_scores_one() {
        let mask = rectangle(8, 2, 6, 2, 6);
        let map = painted(&mask, 7.0, -3.0);
        assert_eq!(map_jaccard(&map, &mask).unwrap(), 1.0);
        assert!(pointing_game_hit(&map, &mask).unwrap());
    }

    #[test]
    fn jaccard_counts_the_overlap_of_two_drawn_squares() {
        // Lesion: rows 0..4, columns 0..4 (16 px); salient map region: rows 2..6, columns
        // 2..6 (16 px). Overlap rows 2..4, columns 2..4: 4 px; union 16 + 16 - 4 = 28.
        let mask = rectangle(8, 0, 4, 0, 4);
        let map = painted(&rectangle(8, 2, 6, 2, 6), 1.0, 0.0);
        assert!((map_jaccard(&map, &mask).unwrap() - 4.0 / 28.0).abs() < 1e-12);
        // Disjoint: no overlap at all.
        let map = painted(&rectangle(8, 5, 8, 5, 8), 1.0, 0.0);
        assert_eq!(map_jaccard(&map, &mask).unwrap(), 0.0);
    }

    #[test]
    fn the_map_is_binarised_at_half_its_range_whatever_its_scale() {
        // Values 10 (min), 14.9 (below the middle 15), 15 (the middle), 20 (max) on a 2x2 image.
        let map = [10.0, 14.9, 15.0, 20.0];
        let mask = [false, false, true, true];
        assert_eq!(map_jaccard(&map, &mask).unwrap(), 1.0);
        let wider_mask = [false, true, true, true];
        assert!((map_jaccard(&map, &wider_mask).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_pointing_game_looks_only_at_the_maximum() {
        let mask = rectangle(6, 0, 3, 0, 3);
        // Mostly on the lesion, but the single hottest pixel is outside it: a miss.
        let mut map = painted(&mask, 0.9, 0.0);
        map[5 * 6 + 5] = 1.0;
        assert!(!pointing_game_hit(&map, &mask).unwrap());
        map[6 + 1] = 2.0;
        assert!(pointing_game_hit(&map, &mask).unwrap());
    }

    #[test]
    fn a_constant_map_marks_nothing_and_points_at_the_first_pixel() {
        let mask = rectangle(4, 0, 1, 0, 1);
        let map = vec![0.3; 16];
        // Normalised to zeros: nothing is salient, the union is the lesion alone.
        assert_eq!(map_jaccard(&map, &mask).unwrap(), 0.0);
        assert!(pointing_game_hit(&map, &mask).unwrap());
        let mut normalised = map.clone();
        min_max_normalise(&mut normalised);
        assert!(normalised.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mask = rectangle(4, 0, 2, 0, 2);
        assert_eq!(map_jaccard(&[0.0; 15], &mask), Err(MetricsError::MapMaskMismatch { map: 15, mask: 16 }));
        let mut map = vec![0.0; 16];
        map[3] = f32::NAN;
        assert_eq!(pointing_game_hit(&map, &mask), Err(MetricsError::NonFinite { index: 3 }));
        assert_eq!(map_jaccard(&[0.0; 16], &[false; 16]), Err(MetricsError::EmptyMask));
    }

    #[test]
    fn min_max_normalise_maps_the_range_onto_zero_to_one() {
        let mut map = [-2.0, 0.0, 2.0];
        min_max_normalise(&mut map);
        assert_eq!(map, [0.0, 0.5, 1.0]);
    }
}
