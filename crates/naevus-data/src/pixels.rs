//! A square image's pixels on their way to the model, apart from augmentation: the eight
//! dihedral views (training draws, test-time views) and normalisation to CHW f32.

use serde::{Deserialize, Serialize};

/// Per-channel normalisation applied to values scaled to 0..1: (v - mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

/// ImageNet's channel statistics, which torchvision's pretrained backbones expect: their one
/// definition (the model registry takes them from here).
pub const IMAGENET: Normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

impl Default for Normalize {
    /// ImageNet statistics, which pretrained backbones expect.
    fn default() -> Self {
        IMAGENET
    }
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
