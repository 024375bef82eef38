//! Training-time augmentation on square HWC RGB u8 images, and conversion to
//! normalised CHW f32.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Augmentation strengths; zero turns a component off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Random horizontal/vertical flips (ignored when `dihedral` is on, which includes them).
    pub flips: bool,
    /// A random one of the 8 dihedral transforms (flips, 90-degree rotations, transposes).
    pub dihedral: bool,
    /// Largest rotation in degrees, either way.
    pub max_rotate_deg: f32,
    /// Largest relative zoom in or out (0.1 = 0.9x..1.1x).
    pub max_scale: f32,
    /// Largest shift as a fraction of the side.
    pub max_translate: f32,
    /// Largest relative brightness change.
    pub brightness: f32,
    /// Largest relative contrast change.
    pub contrast: f32,
    /// Largest relative saturation change.
    pub saturation: f32,
}

impl Default for Augment {
    /// Sensible for dermoscopy: lesions have no canonical orientation, so all 8 dihedral
    /// transforms are fair, plus mild affine and colour jitter.
    fn default() -> Self {
        Augment {
            flips: true,
            dihedral: true,
            max_rotate_deg: 15.0,
            max_scale: 0.1,
            max_translate: 0.05,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        }
    }
}

impl Augment {
    /// No augmentation at all: `augment` returns its input unchanged.
    pub fn none() -> Self {
        Augment {
            flips: false,
            dihedral: false,
            max_rotate_deg: 0.0,
            max_scale: 0.0,
            max_translate: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

/// Per-channel normalisation applied to values scaled to 0..1: (v - mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Default for Normalize {
    /// ImageNet statistics, which pretrained backbones expect.
    fn default() -> Self {
        Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }
}

/// A uniform draw in [-m, m]; 0 when m is zero, negative or not finite.
fn symmetric(rng: &mut impl Rng, m: f32) -> f32 {
    if m.is_finite() && m > 0.0 { rng.random_range(-m..=m) } else { 0.0 }
}

/// Applies random dihedral/flip, affine and colour jitter; output has the input's size.
pub fn augment(pixels: &[u8], size: u32, aug: &Augment, rng: &mut impl Rng) -> Vec<u8> {
    let n = size as usize;
    if pixels.len() != n * n * 3 {
        // Not a size x size RGB image: nothing sensible to do, return it untouched.
        return pixels.to_vec();
    }
    let mut out = if aug.dihedral {
        dihedral(pixels, size, rng.random_range(0..8u8))
    } else if aug.flips {
        // k = 0 none, 1 horizontal, 2 vertical, 3 both (= rotate 180).
        let k = u8::from(rng.random_bool(0.5)) | (u8::from(rng.random_bool(0.5)) << 1);
        dihedral(pixels, size, k)
    } else {
        pixels.to_vec()
    };

    let angle = symmetric(rng, aug.max_rotate_deg).to_radians();
    let scale = 1.0 + symmetric(rng, aug.max_scale);
    let tx = symmetric(rng, aug.max_translate) * size as f32;
    let ty = symmetric(rng, aug.max_translate) * size as f32;
    if angle != 0.0 || scale != 1.0 || tx != 0.0 || ty != 0.0 {
        out = affine(&out, size, angle, scale, (tx, ty));
    }

    let brightness = 1.0 + symmetric(rng, aug.brightness);
    let contrast = 1.0 + symmetric(rng, aug.contrast);
    let saturation = 1.0 + symmetric(rng, aug.saturation);
    if brightness != 1.0 || contrast != 1.0 || saturation != 1.0 {
        color_jitter(&mut out, brightness, contrast, saturation);
    }
    out
}

/// Source (column, row) for output (x, y) under dihedral transform k (k % 8):
/// 0 identity, 1 horizontal flip, 2 vertical flip, 3 rotate 180, 4 transpose,
/// 5 rotate 90 clockwise, 6 rotate 90 counter-clockwise, 7 anti-transpose.
fn dihedral_source(k: u8, x: usize, y: usize, last: usize) -> (usize, usize) {
    match k % 8 {
        0 => (x, y),
        1 => (last - x, y),
        2 => (x, last - y),
        3 => (last - x, last - y),
        4 => (y, x),
        5 => (y, last - x),
        6 => (last - y, x),
        _ => (last - y, last - x),
    }
}

/// One of the 8 symmetries of the square (see [`dihedral_inverse`] to undo it); k = 0 is identity.
pub fn dihedral(pixels: &[u8], size: u32, k: u8) -> Vec<u8> {
    let n = size as usize;
    if k.is_multiple_of(8) || n == 0 || pixels.len() != n * n * 3 {
        return pixels.to_vec();
    }
    let mut out = vec![0u8; pixels.len()];
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = dihedral_source(k, x, y, n - 1);
            let s = (sy * n + sx) * 3;
            let d = (y * n + x) * 3;
            out[d..d + 3].copy_from_slice(&pixels[s..s + 3]);
        }
    }
    out
}

/// The k' with dihedral(dihedral(img, k), k') == img: the two quarter turns swap, the rest undo themselves.
pub fn dihedral_inverse(k: u8) -> u8 {
    match k % 8 {
        5 => 6,
        6 => 5,
        other => other,
    }
}

/// Rotation by `angle` (radians) and zoom `scale` about the centre, then a shift, done by
/// inverse mapping each output pixel with bilinear sampling and reflected borders.
fn affine(pixels: &[u8], size: u32, angle: f32, scale: f32, shift: (f32, f32)) -> Vec<u8> {
    let n = size as usize;
    let c = size as f32 / 2.0;
    let (sin, cos) = angle.sin_cos();
    let inv_scale = 1.0 / scale.max(1e-3);
    let mut out = vec![0u8; pixels.len()];
    for y in 0..n {
        for x in 0..n {
            // Output pixel centre relative to image centre, shift undone.
            let px = x as f32 + 0.5 - c - shift.0;
            let py = y as f32 + 0.5 - c - shift.1;
            // Rotate back by -angle and unzoom.
            let sx = (cos * px + sin * py) * inv_scale + c - 0.5;
            let sy = (-sin * px + cos * py) * inv_scale + c - 0.5;
            let d = (y * n + x) * 3;
            bilinear(pixels, n, sx, sy, &mut out[d..d + 3]);
        }
    }
    out
}

/// Reflects a coordinate into 0..n-1 ("reflect 101": the edge pixel is not repeated).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

fn bilinear(pixels: &[u8], n: usize, sx: f32, sy: f32, out: &mut [u8]) {
    let x0 = sx.floor();
    let y0 = sy.floor();
    let fx = sx - x0;
    let fy = sy - y0;
    let (x0, y0) = (x0 as isize, y0 as isize);
    let xs = [reflect(x0, n), reflect(x0 + 1, n)];
    let ys = [reflect(y0, n), reflect(y0 + 1, n)];
    for ch in 0..3 {
        let p = |xi: usize, yi: usize| f32::from(pixels[(ys[yi] * n + xs[xi]) * 3 + ch]);
        let top = p(0, 0) * (1.0 - fx) + p(1, 0) * fx;
        let bottom = p(0, 1) * (1.0 - fx) + p(1, 1) * fx;
        out[ch] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
}

/// Brightness scales values, contrast pulls towards/away from the mean grey level,
/// saturation blends each pixel with its own grey value.
fn color_jitter(pixels: &mut [u8], brightness: f32, contrast: f32, saturation: f32) {
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

/// Appends one size x size HWC RGB u8 image to `out` as normalised CHW f32
/// (3*size*size values: all R, then all G, then all B).
pub fn to_chw_f32(pixels: &[u8], size: u32, norm: &Normalize, out: &mut Vec<f32>) {
    let plane = size as usize * size as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    write_chw_f32(pixels, size, norm, &mut out[start..]);
}

/// Writes one image as normalised CHW f32 into `dst` (length 3*size*size).
pub(crate) fn write_chw_f32(pixels: &[u8], size: u32, norm: &Normalize, dst: &mut [f32]) {
    let plane = size as usize * size as usize;
    for c in 0..3 {
        // Precompute per channel: (v/255 - mean)/std = v*a + b.
        let std = if norm.std[c] != 0.0 { norm.std[c] } else { 1.0 };
        let a = 1.0 / (255.0 * std);
        let b = -norm.mean[c] / std;
        for (i, d) in dst[c * plane..(c + 1) * plane].iter_mut().enumerate() {
            *d = pixels.get(i * 3 + c).map_or(0.0, |&v| f32::from(v) * a + b);
        }
    }
}
