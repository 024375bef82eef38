mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{fixtures, images};
use naevus_data::{
    AugmentPlan, Border, Cache, LoaderConfig, Normalize, PrepareOptions, SourceKind, SourceSpec, batches, dihedral,
    dihedral_inverse, prepare, read_source, to_chw_f32,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// An image with no symmetry: every pixel value distinct.
fn asymmetric(n: u32) -> Vec<u8> {
    (0..n * n * 3).map(|i| (i % 256) as u8 ^ ((i / 256) as u8).wrapping_mul(31)).collect()
}

#[test]
fn dihedral_gives_eight_distinct_invertible_transforms() {
    let img = asymmetric(5);
    assert_eq!(dihedral(&img, 5, 0), img);
    let all: HashSet<Vec<u8>> = (0..8).map(|k| dihedral(&img, 5, k)).collect();
    assert_eq!(all.len(), 8);
    for k in 0..8 {
        let t = dihedral(&img, 5, k);
        assert_eq!(dihedral(&t, 5, dihedral_inverse(k)), img, "k={k}");
    }
    // Spot checks on a 2x2: pixels a b / c d (first channel only differs).
    let px = |v: [u8; 4]| v.iter().flat_map(|&x| [x, 0, 0]).collect::<Vec<u8>>();
    let abcd = px([1, 2, 3, 4]);
    assert_eq!(dihedral(&abcd, 2, 1), px([2, 1, 4, 3])); // horizontal flip
    assert_eq!(dihedral(&abcd, 2, 2), px([3, 4, 1, 2])); // vertical flip
    assert_eq!(dihedral(&abcd, 2, 5), px([3, 1, 4, 2])); // rotate 90 clockwise
    assert_eq!(dihedral(&abcd, 2, 4), px([1, 3, 2, 4])); // transpose
}

#[test]
fn augment_none_is_identity_and_default_keeps_size() {
    let img = asymmetric(16);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(AugmentPlan::none().apply(&img, 16, &mut rng), img);
    let mut changed = 0;
    for _ in 0..10 {
        let out = AugmentPlan::light().apply(&img, 16, &mut rng);
        assert_eq!(out.len(), img.len());
        changed += usize::from(out != img);
    }
    assert!(changed >= 9);
    // Same rng state, same output.
    let a = AugmentPlan::light().apply(&img, 16, &mut ChaCha8Rng::seed_from_u64(5));
    let b = AugmentPlan::light().apply(&img, 16, &mut ChaCha8Rng::seed_from_u64(5));
    assert_eq!(a, b);
    // A flat image stays flat under any geometric transform (reflect padding, no black corners).
    let flat = vec![120u8; 16 * 16 * 3];
    let geo = AugmentPlan {
        affine: Some(naevus_data::augment::Affine { p: 1.0, rotate: 30.0, scale: 0.2, shift: 0.1, border: Border::Reflect }),
        ..AugmentPlan::none()
    };
    assert_eq!(geo.apply(&flat, 16, &mut rng), flat);
}

#[test]
fn to_chw_normalises() {
    let pixels = [255u8, 0, 51, 0, 255, 102]; // 1x2 would not be square; use size 1 twice
    let norm = Normalize { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    let mut out = Vec::new();
    to_chw_f32(&pixels[..3], 1, &norm, &mut out);
    to_chw_f32(&pixels[3..], 1, &norm, &mut out);
    let want = [1.0, -1.0, -0.6, -1.0, 1.0, -0.2];
    assert!(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
    // CHW order on a 2x2.
    let px: Vec<u8> = (0..4).flat_map(|i| [i * 10, 100 + i, 200]).collect();
    let mut out = Vec::new();
    to_chw_f32(&px, 2, &Normalize { mean: [0.0; 3], std: [1.0 / 255.0; 3] }, &mut out);
    assert_eq!(out, [0.0, 10.0, 20.0, 30.0, 100.0, 101.0, 102.0, 103.0, 200.0, 200.0, 200.0, 200.0]);
}

fn fixture_cache(dir: &std::path::Path) -> Arc<Cache> {
    let spec = SourceSpec {
        kind: SourceKind::Isic2017,
        csv: Some(fixtures().join("isic2017/labels.csv")),
        images: images(),
        metadata_csv: None,
    };
    prepare(read_source(&spec).unwrap(), dir, &PrepareOptions { size: 16, threads: Some(2), ..PrepareOptions::default() }).unwrap();
    Arc::new(Cache::open(dir).unwrap())
}

#[test]
fn loader_batches_cover_order_and_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    assert_eq!(cache.len(), 8);
    let order = vec![7, 2, 5, 0, 1, 6, 3, 4];
    let cfg = LoaderConfig { batch_size: 3, augment: Some(AugmentPlan::light()), seed: 11, prefetch: 2, ..Default::default() };

    let run = |cfg: LoaderConfig| batches(cache.clone(), order.clone(), cfg).collect::<Result<Vec<_>, _>>().unwrap();
    let a = run(cfg.clone());
    assert_eq!(a.iter().map(|b| b.batch).collect::<Vec<_>>(), [3, 3, 2]);
    for b in &a {
        assert_eq!(b.size, 16);
        assert_eq!(b.images.len(), b.batch * 3 * 16 * 16);
        assert_eq!(b.items.len(), b.batch);
    }
    assert_eq!(a.iter().flat_map(|b| b.items.clone()).collect::<Vec<_>>(), order);
    assert_eq!(a, run(cfg.clone()));
    assert_ne!(a, run(LoaderConfig { seed: 12, ..cfg.clone() }));

    // Without augmentation the batch is exactly the normalised cache pixels.
    let plain = run(LoaderConfig { augment: None, ..cfg.clone() });
    let mut want = Vec::new();
    for &i in &order[..3] {
        to_chw_f32(cache.image(i).unwrap(), 16, &Normalize::default(), &mut want);
    }
    assert_eq!(plain[0].images, want);

    // A test-time view is the dihedral transform of the cached pixels.
    let flipped = run(LoaderConfig { augment: None, dihedral: 5, ..cfg.clone() });
    let mut want = Vec::new();
    for &i in &order[..3] {
        to_chw_f32(&dihedral(cache.image(i).unwrap(), 16, 5), 16, &Normalize::default(), &mut want);
    }
    assert_eq!(flipped[0].images, want);

    // Resized output, and out-of-range indices skipped.
    let big = batches(cache.clone(), vec![0, 1, 99], LoaderConfig { output_size: Some(24), batch_size: 4, ..cfg }).collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(big.len(), 1);
    assert_eq!((big[0].batch, big[0].size, big[0].images.len()), (2, 24, 2 * 3 * 24 * 24));
}

#[test]
fn dropping_the_loader_early_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    let mut it = batches(cache, (0..8).collect(), LoaderConfig { batch_size: 1, prefetch: 1, ..Default::default() });
    assert!(it.next().is_some());
    drop(it); // must not hang
}
