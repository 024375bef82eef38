//! Neighbourhood filters (motion, median and Gaussian blur, with reflected borders) and
//! Gaussian noise. Kernels are integers summing to [`ONE`], so a blur keeps the image's mean
//! up to rounding.

use rand::Rng;

use super::geometry::reflect;
use super::{Blur, choose, uniform};

/// Kernel weights are fixed-point fractions of this.
const ONE: u32 = 1 << 14;

/// One of motion blur, median blur, Gaussian blur and noise, chosen by the weights.
pub(super) fn blur_or_noise(pixels: &[u8], n: usize, op: &Blur, rng: &mut impl Rng) -> Vec<u8> {
    match choose(rng, &[op.motion, op.median, op.gaussian, op.noise]) {
        Some(0) => {
            let side = kernel_side(op.kernel, rng);
            let angle = uniform(rng, 0.0, std::f32::consts::PI);
            convolve(pixels, n, &motion_kernel(side, angle))
        }
        Some(1) => median(pixels, n, kernel_side(op.kernel, rng) / 2),
        Some(2) => gaussian(pixels, n, kernel_side(op.kernel, rng)),
        Some(_) => {
            let sigma = uniform(rng, op.var_min, op.var_max).max(0.0).sqrt();
            noise(pixels, sigma, rng)
        }
        None => pixels.to_vec(),
    }
}

/// One of the odd kernel sides 3, 5, ... up to `largest`, all equally likely.
fn kernel_side(largest: u32, rng: &mut impl Rng) -> usize {
    let sides = (largest.max(3) as usize - 1) / 2;
    3 + 2 * if sides > 1 { rng.random_range(0..sides) } else { 0 }
}

/// For each offset -r..=r, the reflected index of every position along a side.
fn offsets(n: usize, r: usize) -> Vec<Vec<usize>> {
    (-(r as isize)..=r as isize).map(|d| (0..n).map(|i| reflect(i as isize + d, n)).collect()).collect()
}

/// `weights` (non-negative) as integers summing to exactly [`ONE`]; the rounding's remainder
/// goes to the largest weight.
fn fixed_point(weights: &[f32]) -> Vec<u32> {
    let total: f32 = weights.iter().sum();
    let mut fixed: Vec<u32> = weights.iter().map(|w| (w / total * ONE as f32).round() as u32).collect();
    let sum: u32 = fixed.iter().sum();
    let largest = (0..fixed.len()).max_by(|&a, &b| weights[a].total_cmp(&weights[b])).unwrap_or(0);
    fixed[largest] = (fixed[largest] + ONE).saturating_sub(sum);
    fixed
}

/// A motion-blur kernel: a line of length `side` through the centre at `angle`, as taps
/// (dx, dy, weight) antialiased by spreading each point of the line bilinearly.
fn motion_kernel(side: usize, angle: f32) -> Vec<(isize, isize, u32)> {
    let r = side / 2;
    let mut grid = vec![0.0f32; side * side];
    let (sin, cos) = angle.sin_cos();
    let samples = 4 * side;
    for s in 0..=samples {
        let t = (s as f32 / samples as f32 - 0.5) * (side - 1) as f32;
        let (x, y) = (r as f32 + t * cos, r as f32 + t * sin);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        for (dx, dy, w) in [(0, 0, (1.0 - fx) * (1.0 - fy)), (1, 0, fx * (1.0 - fy)), (0, 1, (1.0 - fx) * fy), (1, 1, fx * fy)] {
            let (gx, gy) = (x0 as usize + dx, y0 as usize + dy);
            if gx < side && gy < side {
                grid[gy * side + gx] += w;
            }
        }
    }
    let positions: Vec<usize> = (0..grid.len()).filter(|&i| grid[i] > 1e-4).collect();
    let weights = fixed_point(&positions.iter().map(|&i| grid[i]).collect::<Vec<_>>());
    positions.iter().zip(weights).map(|(&i, w)| ((i % side) as isize - r as isize, (i / side) as isize - r as isize, w)).collect()
}

/// 2-D convolution with `taps` (dx, dy, weight), weights summing to [`ONE`].
fn convolve(pixels: &[u8], n: usize, taps: &[(isize, isize, u32)]) -> Vec<u8> {
    let r = taps.iter().map(|&(dx, dy, _)| dx.unsigned_abs().max(dy.unsigned_abs())).max().unwrap_or(0);
    let index = offsets(n, r);
    let at = |d: isize| &index[(d + r as isize) as usize];
    let mut out = vec![0u8; pixels.len()];
    let mut row = vec![0u32; n * 3];
    for y in 0..n {
        row.fill(ONE / 2);
        for &(dx, dy, w) in taps {
            let source = &pixels[at(dy)[y] * n * 3..][..n * 3];
            for (x, &sx) in at(dx).iter().enumerate() {
                for c in 0..3 {
                    row[x * 3 + c] += w * u32::from(source[sx * 3 + c]);
                }
            }
        }
        for (dst, acc) in out[y * n * 3..(y + 1) * n * 3].iter_mut().zip(&row) {
            *dst = (acc / ONE).min(255) as u8;
        }
    }
    out
}

/// Gaussian blur with a `side` x `side` kernel and OpenCV's sigma for that side,
/// 0.3 ((side - 1) / 2 - 1) + 0.8, done as two 1-D passes.
fn gaussian(pixels: &[u8], n: usize, side: usize) -> Vec<u8> {
    let r = side / 2;
    let sigma = 0.3 * ((side as f32 - 1.0) * 0.5 - 1.0) + 0.8;
    let weights: Vec<f32> = (0..side).map(|i| (-((i as f32 - r as f32).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let kernel = fixed_point(&weights);
    let index = offsets(n, r);
    // Horizontal pass into 7 extra bits of precision, then vertical.
    const EXTRA: u32 = 7;
    let mut across = vec![0u16; pixels.len()];
    for y in 0..n {
        let source = &pixels[y * n * 3..(y + 1) * n * 3];
        for x in 0..n {
            for c in 0..3 {
                let acc: u32 = kernel.iter().zip(&index).map(|(&w, idx)| w * u32::from(source[idx[x] * 3 + c])).sum();
                across[(y * n + x) * 3 + c] = ((acc + (ONE >> (EXTRA + 1))) >> (14 - EXTRA)) as u16;
            }
        }
    }
    let mut out = vec![0u8; pixels.len()];
    let shift = 14 + EXTRA;
    let mut row = vec![0u32; n * 3];
    for y in 0..n {
        row.fill(1 << (shift - 1));
        for (&w, idx) in kernel.iter().zip(&index) {
            let source = &across[idx[y] * n * 3..][..n * 3];
            for (acc, &v) in row.iter_mut().zip(source) {
                *acc += w * u32::from(v);
            }
        }
        for (dst, acc) in out[y * n * 3..(y + 1) * n * 3].iter_mut().zip(&row) {
            *dst = (acc >> shift).min(255) as u8;
        }
    }
    out
}

/// Median of each channel over the (2r + 1)^2 neighbourhood, by a histogram of the window
/// slid along each row (Huang's method): a step changes 2 (2r + 1) counts and moves the
/// median by a few levels, where sorting every window would cost far more.
fn median(pixels: &[u8], n: usize, r: usize) -> Vec<u8> {
    let index = offsets(n, r);
    let (first, last) = (&index[0], &index[2 * r]);
    // Values strictly below the median number at most this many, as in a sorted window.
    let half = ((2 * r + 1) * (2 * r + 1) / 2) as u32;
    let mut out = vec![0u8; pixels.len()];
    for c in 0..3 {
        let value = |x: usize, y: usize| pixels[(y * n + x) * 3 + c] as usize;
        for y in 0..n {
            let rows: Vec<usize> = index.iter().map(|rows| rows[y]).collect();
            let mut hist = [0u32; 256];
            for columns in &index {
                for &row in &rows {
                    hist[value(columns[0], row)] += 1;
                }
            }
            let (mut median, mut below) = (0usize, 0u32);
            for x in 0..n {
                if x > 0 {
                    // The window loses column first[x - 1] and gains last[x].
                    for &row in &rows {
                        let gone = value(first[x - 1], row);
                        hist[gone] -= 1;
                        below -= u32::from(gone < median);
                        let new = value(last[x], row);
                        hist[new] += 1;
                        below += u32::from(new < median);
                    }
                }
                while below > half {
                    median -= 1;
                    below -= hist[median];
                }
                while below + hist[median] <= half {
                    below += hist[median];
                    median += 1;
                }
                out[(y * n + x) * 3 + c] = median as u8;
            }
        }
    }
    out
}

/// The plain median of every window, sorting it: what [`median`] must equal.
#[cfg(test)]
fn median_by_sorting(pixels: &[u8], n: usize, r: usize) -> Vec<u8> {
    let index = offsets(n, r);
    let mut out = vec![0u8; pixels.len()];
    for y in 0..n {
        for x in 0..n {
            for c in 0..3 {
                let mut window: Vec<u8> = index.iter().flat_map(|rows| index.iter().map(move |columns| (rows[y], columns[x]))).map(|(row, column)| pixels[(row * n + column) * 3 + c]).collect();
                window.sort_unstable();
                out[(y * n + x) * 3 + c] = window[window.len() / 2];
            }
        }
    }
    out
}

/// Adds independent Gaussian noise of standard deviation `sigma` levels to every value
/// (Box-Muller, two normals per pair of uniform draws).
fn noise(pixels: &[u8], sigma: f32, rng: &mut impl Rng) -> Vec<u8> {
    let mut out = pixels.to_vec();
    if sigma.is_nan() || sigma <= 0.0 {
        return out;
    }
    let scale = 1.0 / (1u32 << 24) as f32;
    for pair in out.chunks_mut(2) {
        let bits: u64 = rng.random();
        // u1 in (0, 1] so that its logarithm is finite.
        let u1 = (((bits >> 40) as u32) + 1) as f32 * scale;
        let u2 = ((bits & 0xff_ffff) as u32) as f32 * scale;
        let radius = sigma * (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f32::consts::TAU * u2).sin_cos();
        for (value, z) in pair.iter_mut().zip([radius * cos, radius * sin]) {
            *value = (f32::from(*value) + z).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sum_to_one_exactly() {
        for side in [3, 5, 7, 15] {
            for angle in [0.0, 0.3, 1.2, 2.9] {
                let taps = motion_kernel(side, angle);
                assert_eq!(taps.iter().map(|t| t.2).sum::<u32>(), ONE, "side {side} angle {angle}");
                assert!(taps.iter().all(|&(dx, dy, _)| dx.unsigned_abs() <= side / 2 && dy.unsigned_abs() <= side / 2));
            }
        }
        assert_eq!(fixed_point(&[0.1, 0.7, 0.2]).iter().sum::<u32>(), ONE);
    }

    #[test]
    fn the_sliding_median_is_the_median_of_every_window() {
        let mut state = 12345u32;
        let image: Vec<u8> = (0..23 * 23 * 3)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for n in [1, 2, 5, 23] {
            let pixels = &image[..n * n * 3];
            for r in [1, 2, 3] {
                assert_eq!(median(pixels, n, r), median_by_sorting(pixels, n, r), "{n} px, radius {r}");
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_under_every_blur() {
        let flat = vec![77u8; 9 * 9 * 3];
        assert_eq!(convolve(&flat, 9, &motion_kernel(5, 0.7)), flat);
        assert_eq!(gaussian(&flat, 9, 5), flat);
        assert_eq!(median(&flat, 9, 2), flat);
    }
}
