//! The `light` preset is naevus's augmentation from before plans existed: the same random
//! draws in the same order and the same bytes, so that runs started with older builds resume
//! identically. `reference` below is that older code, kept verbatim as the yardstick.

mod common;

use common::{fixtures, images};
use naevus_data::{AugmentPlan, LoaderConfig, Normalize, PrepareOptions, SourceKind, SourceSpec, item_rng, prepare, read_source, to_chw_f32};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The augmentation code of naevus before `AugmentPlan` (crates/naevus-data/src/augment.rs
/// at commit 54fd717), unchanged but for what the test does not use.
mod reference {
    use rand::Rng;

    pub struct Augment {
        pub flips: bool,
        pub dihedral: bool,
        pub max_rotate_deg: f32,
        pub max_scale: f32,
        pub max_translate: f32,
        pub brightness: f32,
        pub contrast: f32,
        pub saturation: f32,
    }

    impl Default for Augment {
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

    fn symmetric(rng: &mut impl Rng, m: f32) -> f32 {
        if m.is_finite() && m > 0.0 { rng.random_range(-m..=m) } else { 0.0 }
    }

    pub fn augment(pixels: &[u8], size: u32, aug: &Augment, rng: &mut impl Rng) -> Vec<u8> {
        let n = size as usize;
        if pixels.len() != n * n * 3 {
            return pixels.to_vec();
        }
        let mut out = if aug.dihedral {
            dihedral(pixels, size, rng.random_range(0..8u8))
        } else if aug.flips {
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

    fn affine(pixels: &[u8], size: u32, angle: f32, scale: f32, shift: (f32, f32)) -> Vec<u8> {
        let n = size as usize;
        let c = size as f32 / 2.0;
        let (sin, cos) = angle.sin_cos();
        let inv_scale = 1.0 / scale.max(1e-3);
        let mut out = vec![0u8; pixels.len()];
        for y in 0..n {
            for x in 0..n {
                let px = x as f32 + 0.5 - c - shift.0;
                let py = y as f32 + 0.5 - c - shift.1;
                let sx = (cos * px + sin * py) * inv_scale + c - 0.5;
                let sy = (-sin * px + cos * py) * inv_scale + c - 0.5;
                let d = (y * n + x) * 3;
                bilinear(pixels, n, sx, sy, &mut out[d..d + 3]);
            }
        }
        out
    }

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
}

/// A smooth pattern with noise on top, so that every interpolation weight matters.
fn test_image(n: u32, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * n * 3)
        .map(|i| {
            let (x, y, c) = ((i / 3) % n, (i / 3) / n, i % 3);
            ((x * 7 + y * 3 + c * 60) % 200) as u8 + rng.random_range(0..56u8)
        })
        .collect()
}

#[test]
fn light_preset_gives_the_bytes_of_the_augmentation_before_plans() {
    let old = reference::Augment::default();
    let light = AugmentPlan::light();
    let mut compared = 0;
    for n in [1u32, 2, 5, 16, 33, 96, 224] {
        let image = test_image(n, u64::from(n));
        for seed in [0u64, 1, 7, 42, 1234, u64::MAX] {
            for position in [0usize, 1, 5, 31] {
                let new = light.apply(&image, n, &mut item_rng(seed, position));
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(position as u64);
                assert_eq!(new, reference::augment(&image, n, &old, &mut rng), "size {n}, seed {seed}, position {position}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 7 * 6 * 4);
}

#[test]
fn light_preset_leaves_the_rng_where_the_old_augmentation_did() {
    // A caller drawing after the augmentation sees the same numbers too.
    let image = test_image(24, 3);
    for seed in 0..20u64 {
        let mut new = ChaCha8Rng::seed_from_u64(seed);
        let mut old = new.clone();
        AugmentPlan::light().apply(&image, 24, &mut new);
        reference::augment(&image, 24, &reference::Augment::default(), &mut old);
        assert_eq!(new.random::<u64>(), old.random::<u64>(), "seed {seed}");
    }
}

#[test]
fn the_loader_with_the_light_preset_batches_what_it_did_before() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20u32;
    let cache = std::sync::Arc::new(fixture_cache(dir.path(), n));
    let order = vec![3, 0, 7, 4, 1, 2, 6, 5];
    let seed = 42u64.wrapping_mul(1_000_003).wrapping_add(1).wrapping_add(2 * 7919);
    let config = LoaderConfig { batch_size: 2, augment: Some(AugmentPlan::light()), seed, ..LoaderConfig::default() };
    let got: Vec<f32> = naevus_data::batches(cache.clone(), order.clone(), config).flat_map(|b| b.unwrap().images).collect();
    let mut want = Vec::new();
    for (position, &item) in order.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(position as u64);
        let old = reference::augment(cache.image(item).unwrap(), n, &reference::Augment::default(), &mut rng);
        to_chw_f32(&old, n, &Normalize::default(), &mut want);
    }
    assert_eq!(got, want);
}

/// The test fixtures' ISIC 2017 images, cached at `n` px.
fn fixture_cache(dir: &std::path::Path, n: u32) -> naevus_data::Cache {
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(fixtures().join("isic2017/labels.csv")), images: images(), metadata_csv: None };
    prepare(read_source(&spec).unwrap(), dir, &PrepareOptions { size: n, threads: Some(2), ..PrepareOptions::default() }).unwrap();
    naevus_data::Cache::open(dir).unwrap()
}
