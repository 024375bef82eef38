//! Operations on pixel values alone: brightness, contrast, colour jitter, HSV shifts, CLAHE.

/// Every value through a 256-entry table.
fn map_values(pixels: &mut [u8], value: impl Fn(f32) -> f32) {
    let table: Vec<u8> = (0..=255u8).map(|v| value(f32::from(v)).round().clamp(0.0, 255.0) as u8).collect();
    for p in pixels.iter_mut() {
        *p = table[*p as usize];
    }
}

/// Adds `beta` x 255 levels to every value.
pub(super) fn brightness(pixels: &mut [u8], beta: f32) {
    if beta != 0.0 {
        map_values(pixels, |v| v + beta * 255.0);
    }
}

/// Scales every value by `alpha`.
pub(super) fn contrast(pixels: &mut [u8], alpha: f32) {
    if alpha != 1.0 {
        map_values(pixels, |v| v * alpha);
    }
}

/// Brightness scales values, contrast pulls towards/away from the mean grey level,
/// saturation blends each pixel with its own grey value.
pub(super) fn color_jitter(pixels: &mut [u8], brightness: f32, contrast: f32, saturation: f32) {
    let gray = |p: &[u8]| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
    let count = (pixels.len() / 3).max(1) as f32;
    let mean_gray = pixels.chunks_exact(3).map(gray).sum::<f32>() / count * brightness;
    for p in pixels.chunks_exact_mut(3) {
        let mut v = [f32::from(p[0]) * brightness, f32::from(p[1]) * brightness, f32::from(p[2]) * brightness];
        let g = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
        for c in &mut v {
            *c = g + (*c - g) * saturation;
            *c = mean_gray + (*c - mean_gray) * contrast;
        }
        for (dst, val) in p.iter_mut().zip(v) {
            *dst = val.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Hue in degrees (0..360), saturation (0..1) and value (0..255) of an RGB pixel.
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let hue = if delta <= 0.0 {
        0.0
    } else if max == r {
        (60.0 * (g - b) / delta).rem_euclid(360.0)
    } else if max == g {
        60.0 * (b - r) / delta + 120.0
    } else {
        60.0 * (r - g) / delta + 240.0
    };
    let saturation = if max > 0.0 { delta / max } else { 0.0 };
    [hue, saturation, max]
}

fn hsv_to_rgb([hue, saturation, value]: [f32; 3]) -> [f32; 3] {
    let chroma = value * saturation;
    let sector = hue.rem_euclid(360.0) / 60.0;
    let x = chroma * (1.0 - (sector.rem_euclid(2.0) - 1.0).abs());
    let (r, g, b) = match sector as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = value - chroma;
    [r + m, g + m, b + m]
}

/// Shifts hue by `hue` OpenCV half-degrees, saturation by `sat` and value by `val` levels
/// of 255 (albumentations' HueSaturationValue), in floating point so that zero shifts give
/// the image back exactly.
pub(super) fn hsv_shift(pixels: &mut [u8], [hue, sat, val]: [f32; 3]) {
    for p in pixels.chunks_exact_mut(3) {
        let [h, s, v] = rgb_to_hsv([f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]);
        let shifted = [h + 2.0 * hue, (s + sat / 255.0).clamp(0.0, 1.0), (v + val).clamp(0.0, 255.0)];
        for (dst, value) in p.iter_mut().zip(hsv_to_rgb(shifted)) {
            *dst = value.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Caps every bin of `hist` at `limit`; returns what was cut off.
pub(super) fn clip_histogram(hist: &mut [u32; 256], limit: u32) -> u32 {
    let mut excess = 0;
    for bin in hist.iter_mut() {
        if *bin > limit {
            excess += *bin - limit;
            *bin = limit;
        }
    }
    excess
}

/// Spreads `excess` counts evenly over the bins (the remainder one each, evenly spaced), so
/// the histogram's total is what it was before clipping.
pub(super) fn redistribute(hist: &mut [u32; 256], excess: u32) {
    let each = excess / 256;
    let rest = (excess % 256) as usize;
    for bin in hist.iter_mut() {
        *bin += each;
    }
    if let Some(step) = 256usize.checked_div(rest) {
        for i in 0..rest {
            hist[i * step] += 1;
        }
    }
}

/// The equalising table of one tile's clipped histogram: value -> 255 x share at or below it.
fn tile_table(luma: &[u8], n: usize, columns: std::ops::Range<usize>, rows: std::ops::Range<usize>, clip: f32) -> [u8; 256] {
    let mut hist = [0u32; 256];
    for y in rows.clone() {
        for &v in &luma[y * n + columns.start..y * n + columns.end] {
            hist[v as usize] += 1;
        }
    }
    let area = (columns.len() * rows.len()).max(1) as u32;
    let limit = ((clip * area as f32 / 256.0) as u32).max(1);
    let excess = clip_histogram(&mut hist, limit);
    redistribute(&mut hist, excess);
    let mut table = [0u8; 256];
    let mut below = 0u32;
    for (entry, count) in table.iter_mut().zip(hist) {
        below += count;
        *entry = (below as f32 * 255.0 / area as f32).round().min(255.0) as u8;
    }
    table
}

/// For each pixel index along a side: the two nearest tile centres and the weight of the
/// second (edges take their tile's table alone).
fn tile_weights(n: usize, tiles: usize) -> Vec<(usize, usize, f32)> {
    let tile = n as f32 / tiles as f32;
    (0..n)
        .map(|i| {
            let u = (i as f32 + 0.5) / tile - 0.5;
            if u <= 0.0 {
                (0, 0, 0.0)
            } else if u >= (tiles - 1) as f32 {
                (tiles - 1, tiles - 1, 0.0)
            } else {
                let first = u as usize;
                (first, first + 1, u - first as f32)
            }
        })
        .collect()
}

/// Contrast-limited adaptive histogram equalisation of the luma (BT.601 Y) on a `tiles` x
/// `tiles` grid, each pixel's new luma interpolated between its four nearest tiles' tables;
/// R, G and B all move by the luma's change, which keeps YCbCr's chroma.
pub(super) fn clahe(pixels: &mut [u8], n: usize, clip: f32, tiles: usize) {
    let tiles = tiles.clamp(1, n.max(1));
    let luma: Vec<u8> = pixels.chunks_exact(3).map(|p| ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128) >> 8) as u8).collect();
    let bounds: Vec<usize> = (0..=tiles).map(|i| i * n / tiles).collect();
    let mut tables = Vec::with_capacity(tiles * tiles);
    for ty in 0..tiles {
        for tx in 0..tiles {
            tables.push(tile_table(&luma, n, bounds[tx]..bounds[tx + 1], bounds[ty]..bounds[ty + 1], clip));
        }
    }
    let weights = tile_weights(n, tiles);
    for y in 0..n {
        let (ty0, ty1, fy) = weights[y];
        for x in 0..n {
            let (tx0, tx1, fx) = weights[x];
            let v = luma[y * n + x] as usize;
            let at = |tx: usize, ty: usize| f32::from(tables[ty * tiles + tx][v]);
            let top = at(tx0, ty0) + (at(tx1, ty0) - at(tx0, ty0)) * fx;
            let bottom = at(tx0, ty1) + (at(tx1, ty1) - at(tx0, ty1)) * fx;
            let change = (top + (bottom - top) * fy).round() as i32 - v as i32;
            for value in &mut pixels[(y * n + x) * 3..(y * n + x) * 3 + 3] {
                *value = (i32::from(*value) + change).clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defining property of CLAHE: after clipping no bin is above the limit, and
    /// redistribution gives back exactly what was clipped.
    #[test]
    fn clipping_caps_every_bin_and_redistribution_keeps_the_total() {
        let mut hist = [0u32; 256];
        hist[100] = 5000;
        hist[101] = 300;
        hist[7] = 17;
        let total: u32 = hist.iter().sum();
        for limit in [1, 16, 40, 299, 10_000] {
            let mut clipped = hist;
            let excess = clip_histogram(&mut clipped, limit);
            assert!(clipped.iter().all(|&bin| bin <= limit), "limit {limit}");
            assert_eq!(clipped.iter().sum::<u32>() + excess, total);
            redistribute(&mut clipped, excess);
            assert_eq!(clipped.iter().sum::<u32>(), total, "limit {limit}");
            // Redistribution adds at most one more than the even share to any bin.
            assert!(clipped.iter().all(|&bin| bin <= limit + excess / 256 + 1));
        }
    }

    #[test]
    fn hsv_round_trip_is_exact_on_every_grey_and_many_colours() {
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(15) {
                for b in (0..=255u8).step_by(17) {
                    let mut p = [r, g, b];
                    hsv_shift(&mut p, [0.0, 0.0, 0.0]);
                    assert_eq!(p, [r, g, b]);
                }
            }
        }
    }
}
