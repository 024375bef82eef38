//! A handful of numbers that say what kind of picture an image is: its colours, how grey,
//! how textured and how structured it is, and how much of it is paper-white or black. A
//! network's pooled features can put a flat or smoothly shaded picture right beside the
//! average lesion (nothing in it excites the network); these numbers cannot, so the
//! out-of-domain guard measures both.

/// How many numbers [`image_statistics`] gives.
pub const IMAGE_STATISTICS: usize = 15;

/// Statistics of a square HWC RGB u8 image of `side` pixels: mean of each channel; the log of
/// each channel's spread, of the mean and spread of saturation, of the mean gradient and
/// Laplacian of the luminance and of the spread of its 4 x 4 block means; the shares of
/// near-white and near-black pixels; the log ratios of red and blue to green. Scale
/// measures are logs so that "no texture at all" lies far from "little texture".
pub fn image_statistics(pixels: &[u8], side: u32) -> [f32; IMAGE_STATISTICS] {
    let side = side as usize;
    let n = (side * side).max(1) as f64;
    let log = |v: f64| (v + 1e-3).ln();
    let mut luminance = vec![0.0f64; side * side];
    let (mut sum, mut sum2) = ([0.0f64; 3], [0.0f64; 3]);
    let (mut saturation, mut saturation2, mut white, mut black) = (0.0f64, 0.0f64, 0usize, 0usize);
    for (i, pixel) in pixels.chunks_exact(3).take(side * side).enumerate() {
        let rgb = [pixel[0], pixel[1], pixel[2]].map(|v| f64::from(v) / 255.0);
        for c in 0..3 {
            sum[c] += rgb[c];
            sum2[c] += rgb[c] * rgb[c];
        }
        let (max, min) = (rgb[0].max(rgb[1]).max(rgb[2]), rgb[0].min(rgb[1]).min(rgb[2]));
        let s = (max - min) / (max + 1e-3);
        saturation += s;
        saturation2 += s * s;
        white += usize::from(min > 0.94);
        black += usize::from(max < 0.06);
        luminance[i] = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    }
    let mean = sum.map(|s| s / n);
    let spread = |s2: f64, m: f64| (s2 / n - m * m).max(0.0).sqrt();

    // Central differences and the 4-neighbour Laplacian over the interior.
    let (mut gradient, mut laplacian, mut interior) = (0.0f64, 0.0f64, 0usize);
    for y in 1..side.saturating_sub(1) {
        for x in 1..side - 1 {
            let at = |y: usize, x: usize| luminance[y * side + x];
            let (gx, gy) = ((at(y, x + 1) - at(y, x - 1)) / 2.0, (at(y + 1, x) - at(y - 1, x)) / 2.0);
            gradient += gx.hypot(gy);
            laplacian += (4.0 * at(y, x) - at(y - 1, x) - at(y + 1, x) - at(y, x - 1) - at(y, x + 1)).abs();
            interior += 1;
        }
    }
    let interior = interior.max(1) as f64;
    let mut blocks = [(0.0f64, 0usize); 16];
    for y in 0..side {
        for x in 0..side {
            let block = &mut blocks[(y * 4 / side) * 4 + x * 4 / side];
            block.0 += luminance[y * side + x];
            block.1 += 1;
        }
    }
    let block_means: Vec<f64> = blocks.iter().filter(|b| b.1 > 0).map(|b| b.0 / b.1 as f64).collect();
    let block_mean = block_means.iter().sum::<f64>() / block_means.len().max(1) as f64;
    let block_spread = (block_means.iter().map(|m| (m - block_mean).powi(2)).sum::<f64>() / block_means.len().max(1) as f64).sqrt();

    let saturation_mean = saturation / n;
    [
        mean[0],
        mean[1],
        mean[2],
        log(spread(sum2[0], mean[0])),
        log(spread(sum2[1], mean[1])),
        log(spread(sum2[2], mean[2])),
        log(saturation_mean),
        log(spread(saturation2, saturation_mean)),
        white as f64 / n,
        black as f64 / n,
        log(gradient / interior),
        log(laplacian / interior),
        log(block_spread),
        ((mean[0] + 0.01) / (mean[1] + 0.01)).ln(),
        ((mean[2] + 0.01) / (mean[1] + 0.01)).ln(),
    ]
    .map(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_grey_image_has_no_spread_no_saturation_and_no_texture() {
        let stats = image_statistics(&[128u8; 16 * 16 * 3], 16);
        let floor = (1e-3f64).ln() as f32;
        for i in [3, 4, 5, 6, 7, 10, 11, 12] {
            assert!((stats[i] - floor).abs() < 1e-3, "statistic {i}: {}", stats[i]);
        }
        assert!((stats[0] - 128.0 / 255.0).abs() < 1e-6);
        assert_eq!((stats[8], stats[9], stats[13], stats[14]), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn white_black_and_colour_casts_show() {
        // Left half white, right half black: half of each, strong blocks and edges.
        let side = 16;
        let pixels: Vec<u8> = (0..side * side).flat_map(|i| if i % side < side / 2 { [255u8; 3] } else { [0u8; 3] }).collect();
        let stats = image_statistics(&pixels, side as u32);
        assert_eq!((stats[8], stats[9]), (0.5, 0.5));
        assert!(stats[12] > -1.0 && stats[10] > -4.0, "{stats:?}");
        let green: Vec<u8> = std::iter::repeat_n([40u8, 200, 40], 64).flatten().collect();
        let stats = image_statistics(&green, 8);
        assert!(stats[13] < -1.0 && stats[14] < -1.0 && stats[6] > -0.3, "{stats:?}");
    }
}
