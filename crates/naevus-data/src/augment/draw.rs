//! Things drawn onto the image: synthetic hair and cutout holes.

use std::f32::consts::TAU;

use rand::Rng;

use super::{Cutout, Hair, uniform};

/// Seed 002's hair: 0 to `count` strands, each a quadratic Bézier curve of 0.3 to 0.9 sides,
/// bent sideways by up to 0.3 of its length, 0.5 to 1 times the widest width, in a near-black
/// brown, antialiased. A pixel only ever gets darker.
pub(super) fn hair(pixels: &mut [u8], n: usize, op: &Hair, rng: &mut impl Rng) {
    let side = n as f32;
    let widest = (op.width * side / 224.0).max(0.5);
    for _ in 0..rng.random_range(0..=op.count) {
        let start = (uniform(rng, 0.0, side), uniform(rng, 0.0, side));
        let angle = uniform(rng, 0.0, TAU);
        let length = uniform(rng, 0.3, 0.9) * side;
        let bend = uniform(rng, -0.3, 0.3) * length;
        let width = uniform(rng, 0.5, 1.0) * widest;
        let darkness = uniform(rng, 0.0, 60.0);
        let opacity = uniform(rng, 0.75, 1.0);
        let (dx, dy) = (angle.cos(), angle.sin());
        let end = (start.0 + length * dx, start.1 + length * dy);
        // The control point sits off the chord's middle, along its normal.
        let control = ((start.0 + end.0) / 2.0 - bend * dy, (start.1 + end.1) / 2.0 + bend * dx);
        let colour = [darkness, darkness * 0.8, darkness * 0.65];
        strand(pixels, n, [start, control, end], width, colour, opacity);
    }
}

/// Draws one curve of `width` px with the given colour and opacity: coverage is built by
/// stamping antialiased discs every half pixel along it, then blended, never brightening.
fn strand(pixels: &mut [u8], n: usize, [p0, p1, p2]: [(f32, f32); 3], width: f32, colour: [f32; 3], opacity: f32) {
    let radius = width / 2.0;
    let margin = radius + 1.0;
    let clamp = |v: f32| v.clamp(0.0, n as f32) as usize;
    let left = clamp(p0.0.min(p1.0).min(p2.0) - margin);
    let right = clamp(p0.0.max(p1.0).max(p2.0) + margin + 1.0);
    let top = clamp(p0.1.min(p1.1).min(p2.1) - margin);
    let bottom = clamp(p0.1.max(p1.1).max(p2.1) + margin + 1.0);
    if left >= right || top >= bottom {
        return;
    }
    let box_width = right - left;
    let mut coverage = vec![0.0f32; box_width * (bottom - top)];
    let polygon = ((p1.0 - p0.0).hypot(p1.1 - p0.1) + (p2.0 - p1.0).hypot(p2.1 - p1.1)).max(1.0);
    let steps = (polygon * 2.0).ceil() as usize;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
        let (x, y) = (a * p0.0 + b * p1.0 + c * p2.0, a * p0.1 + b * p1.1 + c * p2.1);
        for py in clamp(y - margin).max(top)..clamp(y + margin + 1.0).min(bottom) {
            for px in clamp(x - margin).max(left)..clamp(x + margin + 1.0).min(right) {
                let distance = (px as f32 + 0.5 - x).hypot(py as f32 + 0.5 - y);
                let cover = (radius + 0.5 - distance).clamp(0.0, 1.0);
                let slot = &mut coverage[(py - top) * box_width + px - left];
                *slot = slot.max(cover);
            }
        }
    }
    for py in top..bottom {
        for px in left..right {
            let alpha = coverage[(py - top) * box_width + px - left] * opacity;
            if alpha <= 0.0 {
                continue;
            }
            for (value, &ink) in pixels[(py * n + px) * 3..][..3].iter_mut().zip(&colour) {
                let blended = (f32::from(*value) * (1.0 - alpha) + ink * alpha).round() as u8;
                *value = (*value).min(blended);
            }
        }
    }
}

/// Black square holes of `size` sides, centred at uniformly drawn pixels and cut off where
/// they overhang the image: each side of a hole spans from half the size (plus one) to all of it.
pub(super) fn cutout(pixels: &mut [u8], n: usize, op: &Cutout, rng: &mut impl Rng) {
    let hole = ((op.size * n as f32).round() as usize).min(n);
    for _ in 0..op.holes {
        let (cy, cx) = (rng.random_range(0..n), rng.random_range(0..n));
        if hole == 0 {
            continue;
        }
        let (top, left) = (cy.saturating_sub(hole / 2), cx.saturating_sub(hole / 2));
        let (bottom, right) = ((top + hole).min(n), (left + hole).min(n));
        for y in top..bottom {
            pixels[(y * n + left) * 3..(y * n + right) * 3].fill(0);
        }
    }
}
