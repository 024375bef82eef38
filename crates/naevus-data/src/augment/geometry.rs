//! Warps: every output pixel takes a bilinear sample of the input at a source position
//! (inverse mapping), so no output pixel is left empty.

use rand::Rng;

use super::{Border, Crop, Distort, choose, symmetric, uniform};

/// Reflects a coordinate into 0..n-1 ("reflect 101": the edge pixel is not repeated).
pub(super) fn reflect(i: isize, n: usize) -> usize {
    if i >= 0 && (i as usize) < n {
        return i as usize;
    }
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Index of coordinate `i` along a side of `n` under `border`; None where it is black.
fn tap(i: isize, n: usize, border: Border) -> Option<usize> {
    match border {
        Border::Reflect => Some(reflect(i, n)),
        Border::Black => (i >= 0 && (i as usize) < n).then_some(i as usize),
    }
}

/// The bilinear sample at (sx, sy) (pixel centres at whole coordinates) into `out`.
fn bilinear(pixels: &[u8], n: usize, sx: f32, sy: f32, border: Border, out: &mut [u8]) {
    let x0 = sx.floor();
    let y0 = sy.floor();
    let fx = sx - x0;
    let fy = sy - y0;
    let (x0, y0) = (x0 as isize, y0 as isize);
    let xs = [tap(x0, n, border), tap(x0 + 1, n, border)];
    let ys = [tap(y0, n, border), tap(y0 + 1, n, border)];
    for ch in 0..3 {
        let p = |xi: usize, yi: usize| match (xs[xi], ys[yi]) {
            (Some(x), Some(y)) => f32::from(pixels[(y * n + x) * 3 + ch]),
            _ => 0.0,
        };
        let top = p(0, 0) * (1.0 - fx) + p(1, 0) * fx;
        let bottom = p(0, 1) * (1.0 - fx) + p(1, 1) * fx;
        out[ch] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
}

/// The image whose pixel (x, y) is the input sampled at `source(x, y)`.
fn remap(pixels: &[u8], n: usize, border: Border, mut source: impl FnMut(usize, usize) -> (f32, f32)) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = source(x, y);
            let d = (y * n + x) * 3;
            bilinear(pixels, n, sx, sy, border, &mut out[d..d + 3]);
        }
    }
    out
}

/// Rotation by `angle` (radians) and zoom `scale` about the centre, then a shift in pixels.
pub(super) fn affine(pixels: &[u8], n: usize, angle: f32, scale: f32, shift: (f32, f32), border: Border) -> Vec<u8> {
    let c = n as f32 / 2.0;
    let (sin, cos) = angle.sin_cos();
    let inv_scale = 1.0 / scale.max(1e-3);
    remap(pixels, n, border, |x, y| {
        // Output pixel centre relative to image centre, shift undone; then rotated back by
        // -angle and unzoomed.
        let px = x as f32 + 0.5 - c - shift.0;
        let py = y as f32 + 0.5 - c - shift.1;
        ((cos * px + sin * py) * inv_scale + c - 0.5, (-sin * px + cos * py) * inv_scale + c - 0.5)
    })
}

/// A rectangle of random area share and aspect (log-uniform), anywhere inside the image,
/// resized back to the whole side.
pub(super) fn random_resized_crop(pixels: &[u8], n: usize, op: &Crop, rng: &mut impl Rng) -> Vec<u8> {
    let side = n as f32;
    let area = uniform(rng, op.area_min, op.area_max);
    let aspect = uniform(rng, op.aspect_min.ln(), op.aspect_max.ln()).exp();
    let width = ((area * aspect).sqrt()).min(1.0) * side;
    let height = ((area / aspect).sqrt()).min(1.0) * side;
    let left = uniform(rng, 0.0, side - width);
    let top = uniform(rng, 0.0, side - height);
    let (kx, ky) = (width / side, height / side);
    remap(pixels, n, Border::Reflect, |x, y| (left + (x as f32 + 0.5) * kx - 0.5, top + (y as f32 + 0.5) * ky - 0.5))
}

/// One of optical, grid and elastic distortion, chosen by the weights.
pub(super) fn distort(pixels: &[u8], n: usize, op: &Distort, rng: &mut impl Rng) -> Vec<u8> {
    match choose(rng, &[op.optical, op.grid, op.elastic]) {
        Some(0) => optical(pixels, n, op.optical_limit, op.optical_shift, rng),
        Some(1) => grid(pixels, n, op.grid_steps as usize, op.grid_limit, rng),
        Some(_) => elastic(pixels, n, op.elastic_alpha, op.elastic_sigma, rng),
        None => pixels.to_vec(),
    }
}

/// Lens distortion about a slightly shifted centre: the source of a pixel at radius r (in
/// sides) lies at r (1 + k r^2 + k r^4), k in ±limit; k > 0 squeezes the periphery towards
/// the middle (barrel), k < 0 stretches it (pincushion).
fn optical(pixels: &[u8], n: usize, limit: f32, shift: f32, rng: &mut impl Rng) -> Vec<u8> {
    let side = n as f32;
    let k = symmetric(rng, limit);
    let cx = side / 2.0 + symmetric(rng, shift) * side;
    let cy = side / 2.0 + symmetric(rng, shift) * side;
    remap(pixels, n, Border::Reflect, |x, y| {
        let dx = (x as f32 + 0.5 - cx) / side;
        let dy = (y as f32 + 0.5 - cy) / side;
        let r2 = dx * dx + dy * dy;
        let factor = 1.0 + k * r2 + k * r2 * r2;
        (cx + dx * factor * side - 0.5, cy + dy * factor * side - 0.5)
    })
}

/// Source coordinate of every output column (or row): `steps` equal output cells, each
/// showing a source stretch 1 ± limit times as wide, the stretches renormalised to the side.
fn grid_axis(n: usize, steps: usize, limit: f32, rng: &mut impl Rng) -> Vec<f32> {
    let widths: Vec<f32> = (0..steps).map(|_| (1.0 + symmetric(rng, limit)).max(0.0)).collect();
    let total: f32 = widths.iter().sum();
    let side = n as f32;
    if total <= 0.0 {
        return (0..n).map(|i| i as f32).collect();
    }
    let mut starts = Vec::with_capacity(steps);
    let mut acc = 0.0;
    for w in &widths {
        starts.push(acc / total * side);
        acc += w;
    }
    (0..n)
        .map(|i| {
            let t = (i as f32 + 0.5) / side * steps as f32;
            let cell = (t as usize).min(steps - 1);
            starts[cell] + (t - cell as f32) * widths[cell] / total * side - 0.5
        })
        .collect()
}

/// Grid distortion: columns and rows moved by piecewise-linear maps (see [`grid_axis`]).
fn grid(pixels: &[u8], n: usize, steps: usize, limit: f32, rng: &mut impl Rng) -> Vec<u8> {
    let steps = steps.max(1);
    let columns = grid_axis(n, steps, limit, rng);
    let rows = grid_axis(n, steps, limit, rng);
    remap(pixels, n, Border::Reflect, |x, y| (columns[x], rows[y]))
}

/// Elastic distortion: random displacements of up to `alpha` sides on a grid of spacing
/// `sigma` sides, interpolated smoothly (bilinear with smoothstep weights) between.
fn elastic(pixels: &[u8], n: usize, alpha: f32, sigma: f32, rng: &mut impl Rng) -> Vec<u8> {
    let side = n as f32;
    let cells = ((1.0 / sigma.max(1e-3)).round() as usize).clamp(1, 64);
    let points = cells + 1;
    let amplitude = alpha * side;
    let field: Vec<(f32, f32)> = (0..points * points).map(|_| (symmetric(rng, amplitude), symmetric(rng, amplitude))).collect();
    // Per column (and row): the cell it falls in and its smoothed fraction across it.
    let position: Vec<(usize, f32)> = (0..n)
        .map(|i| {
            let t = (i as f32 + 0.5) / side * cells as f32;
            let cell = (t as usize).min(cells - 1);
            let f = t - cell as f32;
            (cell, f * f * (3.0 - 2.0 * f))
        })
        .collect();
    remap(pixels, n, Border::Reflect, |x, y| {
        let (cx, fx) = position[x];
        let (cy, fy) = position[y];
        let at = |i: usize, j: usize| field[(cy + j) * points + cx + i];
        let mix = |a: f32, b: f32, f: f32| a + (b - a) * f;
        let (a, b, c, d) = (at(0, 0), at(1, 0), at(0, 1), at(1, 1));
        let dx = mix(mix(a.0, b.0, fx), mix(c.0, d.0, fx), fy);
        let dy = mix(mix(a.1, b.1, fx), mix(c.1, d.1, fx), fy);
        (x as f32 + dx, y as f32 + dy)
    })
}
