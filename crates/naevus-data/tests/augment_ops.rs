//! Each augmentation operation on its defining property, the plan's reproducibility, and the
//! strict parsing of `augment_ops`.

use naevus_data::augment::{Affine, Blur, Clahe, Crop, Cutout, Distort, Flip, Hair, Hsv, Level};
use naevus_data::{AugmentOps, AugmentPlan, AugmentPreset, Border, item_rng};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random values in 1..=255 with some structure (no zeros, so cutout holes show).
fn test_image(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * n * 3)
        .map(|i| {
            let (x, y) = ((i / 3) % n, (i / 3) / n);
            (1 + (x * 5 + y * 3) % 150 + rng.random_range(0..100)) as u8
        })
        .collect()
}

/// Every operation on, each with its defaults (and so p < 1 for most).
fn everything() -> AugmentPlan {
    let mut plan = AugmentPlan::none();
    for op in AugmentPlan::OPS {
        plan.op_mut(op).unwrap();
    }
    plan
}

/// Every operation on, each at p = 1.
fn everything_always() -> AugmentPlan {
    let mut plan = everything();
    for op in AugmentPlan::OPS {
        plan.op_mut(op).unwrap().set("p", "1").unwrap();
    }
    plan
}

fn mean(values: &[u8]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

fn one(plan: AugmentPlan, image: &[u8], n: usize, seed: u64) -> Vec<u8> {
    plan.apply(image, n as u32, &mut ChaCha8Rng::seed_from_u64(seed))
}

#[test]
fn p_zero_is_the_identity_and_draws_nothing() {
    let image = test_image(32, 1);
    let mut plan = everything();
    for op in AugmentPlan::OPS {
        plan.op_mut(op).unwrap().set("p", "0").unwrap();
    }
    assert!(plan.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let untouched = rng.clone();
    assert_eq!(plan.apply(&image, 32, &mut rng), image);
    assert_eq!(rng, untouched);
    assert_eq!(AugmentPlan::none().apply(&image, 32, &mut rng), image);
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_other_seeds_others() {
    let image = test_image(48, 2);
    for plan in [AugmentPlan::seed_004(), AugmentPlan::seed_002(), AugmentPlan::light(), everything(), everything_always()] {
        let runs: Vec<Vec<u8>> = (0..8).map(|position| plan.apply(&image, 48, &mut item_rng(5, position))).collect();
        for (position, run) in runs.iter().enumerate() {
            assert_eq!(run.len(), image.len());
            assert_eq!(&plan.apply(&image, 48, &mut item_rng(5, position)), run);
        }
        let distinct: std::collections::HashSet<&Vec<u8>> = runs.iter().collect();
        assert!(distinct.len() >= 7, "{plan:?}");
        assert_ne!(plan.apply(&image, 48, &mut item_rng(6, 0)), runs[0]);
    }
}

#[test]
fn every_plan_keeps_the_size_on_odd_and_tiny_images() {
    for n in [1usize, 2, 3, 7, 31] {
        let image = test_image(n, n as u64);
        for seed in 0..10 {
            assert_eq!(one(everything_always(), &image, n, seed).len(), image.len(), "{n} px");
        }
    }
    // Not a square RGB image: returned as it is.
    assert_eq!(everything_always().apply(&[1, 2, 3, 4], 2, &mut ChaCha8Rng::seed_from_u64(0)), [1, 2, 3, 4]);
}

#[test]
fn flips_and_transpose_undo_themselves() {
    let image = test_image(9, 3);
    for op in ["transpose", "vflip", "hflip"] {
        let mut plan = AugmentPlan::none();
        plan.op_mut(op).unwrap().set("p", "1").unwrap();
        let once = one(plan.clone(), &image, 9, 0);
        assert_ne!(once, image, "{op}");
        assert_eq!(one(plan, &once, 9, 0), image, "{op}");
    }
    let at = |img: &[u8], x: usize, y: usize| img[(y * 9 + x) * 3];
    let hflip = one(AugmentPlan { hflip: Some(Flip { p: 1.0 }), ..AugmentPlan::none() }, &image, 9, 0);
    let transpose = one(AugmentPlan { transpose: Some(Flip { p: 1.0 }), ..AugmentPlan::none() }, &image, 9, 0);
    assert_eq!((at(&hflip, 0, 2), at(&transpose, 2, 5)), (at(&image, 8, 2), at(&image, 5, 2)));
}

/// The zero pixels of an image with none before: a filled rectangle, returned as its sides.
fn hole_sides(before: &[u8], after: &[u8], n: usize) -> Option<(usize, usize)> {
    let zeros: Vec<(usize, usize)> = (0..n * n).filter(|&i| after[i * 3..i * 3 + 3] == [0, 0, 0]).map(|i| (i % n, i / n)).collect();
    if zeros.is_empty() {
        return None;
    }
    let (x0, x1) = (zeros.iter().map(|p| p.0).min()?, zeros.iter().map(|p| p.0).max()?);
    let (y0, y1) = (zeros.iter().map(|p| p.1).min()?, zeros.iter().map(|p| p.1).max()?);
    assert_eq!(zeros.len(), (x1 - x0 + 1) * (y1 - y0 + 1), "the hole is a filled rectangle");
    // Outside the hole nothing changed.
    for i in 0..n * n {
        let (x, y) = (i % n, i / n);
        if !(x0..=x1).contains(&x) || !(y0..=y1).contains(&y) {
            assert_eq!(before[i * 3..i * 3 + 3], after[i * 3..i * 3 + 3]);
        }
    }
    Some((x1 - x0 + 1, y1 - y0 + 1))
}

#[test]
fn cutout_cuts_one_hole_of_at_most_its_size_and_at_least_half() {
    let n = 64;
    let image = test_image(n, 4);
    let plan = AugmentPlan { cutout: Some(Cutout { p: 1.0, ..Cutout::default() }), ..AugmentPlan::none() };
    let side = (0.375f32 * n as f32).round() as usize; // 24
    let (mut smallest, mut largest) = (usize::MAX, 0);
    for seed in 0..300 {
        let (w, h) = hole_sides(&image, &one(plan.clone(), &image, n, seed), n).expect("a hole");
        for s in [w, h] {
            assert!((side / 2 + 1..=side).contains(&s), "side {s} of a {side} px hole");
            smallest = smallest.min(s);
            largest = largest.max(s);
        }
    }
    assert_eq!(largest, side);
    assert!(smallest < side * 3 / 4, "holes at the border are cut off");
}

/// A grey image, left half `low`, right half `low + 1`.
fn two_levels(n: usize, low: u8) -> Vec<u8> {
    (0..n * n).flat_map(|i| [if i % n < n / 2 { low } else { low + 1 }; 3]).collect()
}

#[test]
fn clahe_limits_how_far_it_stretches_contrast() {
    let n = 32;
    let image = two_levels(n, 100);
    let with_clip = |clip: f32| {
        let plan = AugmentPlan { clahe: Some(Clahe { p: 1.0, clip, tiles: 1 }), ..AugmentPlan::none() };
        let out = one(plan, &image, n, 0);
        // Still grey: R, G and B move together.
        assert!(out.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        let (left, right) = (out[0], out[(n - 1) * 3]);
        i32::from(right) - i32::from(left)
    };
    // Plain equalisation would pull the two levels ~128 apart; a clip of 2 flat bins allows
    // at most (2 + 1 + 1) / 256 of the range per level step, ~4 levels.
    let gap = with_clip(2.0);
    assert!((0..=4).contains(&gap), "gap {gap} at clip 2");
    assert!(with_clip(100.0) > 60, "a high clip limit equalises nearly fully");
    // On a real tile grid too, the output contrast stays bounded by the limit.
    let plan = AugmentPlan { clahe: Some(Clahe { p: 1.0, clip: 2.0, tiles: 4 }), ..AugmentPlan::none() };
    let out = one(plan, &image, n, 0);
    let spread = out.iter().max().unwrap() - out.iter().min().unwrap();
    assert!(spread <= 8, "spread {spread}");
}

fn blur_only(kind: &str, kernel: u32) -> AugmentPlan {
    let mut blur = Blur { p: 1.0, motion: 0.0, median: 0.0, gaussian: 0.0, noise: 0.0, kernel, ..Blur::default() };
    match kind {
        "motion" => blur.motion = 1.0,
        "median" => blur.median = 1.0,
        "gaussian" => blur.gaussian = 1.0,
        _ => blur.noise = 1.0,
    }
    AugmentPlan { blur: Some(blur), ..AugmentPlan::none() }
}

#[test]
fn linear_blurs_keep_the_mean_and_smooth() {
    let n = 48;
    let image = test_image(n, 5);
    let roughness = |img: &[u8]| img.windows(4).map(|w| (i32::from(w[0]) - i32::from(w[3])).abs()).sum::<i32>();
    for kind in ["motion", "gaussian"] {
        for seed in 0..6 {
            let out = one(blur_only(kind, 7), &image, n, seed);
            assert!((mean(&out) - mean(&image)).abs() < 0.5, "{kind}: mean {} vs {}", mean(&out), mean(&image));
            assert!(roughness(&out) < roughness(&image) * 9 / 10, "{kind} smooths");
        }
    }
}

#[test]
fn median_blur_removes_a_lone_outlier_and_keeps_edges() {
    let n = 16;
    let mut image: Vec<u8> = (0..n * n).flat_map(|i| [if i % n < 8 { 40 } else { 200 }; 3]).collect();
    image[(5 * n + 3) * 3] = 255;
    let out = one(blur_only("median", 5), &image, n, 0);
    assert_eq!(out[(5 * n + 3) * 3], 40);
    let clean: Vec<u8> = (0..n * n).flat_map(|i| [if i % n < 8 { 40 } else { 200 }; 3]).collect();
    assert_eq!(out, clean, "a straight edge survives a median");
}

#[test]
fn noise_has_zero_mean_and_its_variance() {
    let n = 96;
    let grey = vec![128u8; n * n * 3];
    let mut plan = blur_only("noise", 5);
    plan.blur.as_mut().unwrap().var_min = 30.0;
    plan.blur.as_mut().unwrap().var_max = 30.0;
    let out = one(plan, &grey, n, 7);
    let m = mean(&out) - 128.0;
    let variance = out.iter().map(|&v| (f64::from(v) - 128.0 - m).powi(2)).sum::<f64>() / out.len() as f64;
    assert!(m.abs() < 0.1, "mean shift {m}");
    // Rounding adds 1/12 to the variance.
    assert!((variance - 30.0 - 1.0 / 12.0).abs() < 1.5, "variance {variance}");
}

#[test]
fn distortions_and_warps_keep_size_and_value_range() {
    let n = 40;
    let image = test_image(n, 6);
    let (low, high) = (*image.iter().min().unwrap(), *image.iter().max().unwrap());
    let flat = vec![90u8; n * n * 3];
    let only = |optical: f32, grid: f32, elastic: f32| AugmentPlan {
        distort: Some(Distort { p: 1.0, optical, grid, elastic, ..Distort::default() }),
        ..AugmentPlan::none()
    };
    let crop = AugmentPlan { crop: Some(Crop::default()), ..AugmentPlan::none() };
    for (name, plan) in [("optical", only(1.0, 0.0, 0.0)), ("grid", only(0.0, 1.0, 0.0)), ("elastic", only(0.0, 0.0, 1.0)), ("crop", crop)] {
        let mut changed = 0;
        for seed in 0..8 {
            let out = one(plan.clone(), &image, n, seed);
            assert_eq!(out.len(), image.len());
            assert!(out.iter().all(|v| (low..=high).contains(v)), "{name} stays within the input's values");
            changed += usize::from(out != image);
            // Reflected borders: a flat image stays flat.
            assert_eq!(one(plan.clone(), &flat, n, seed), flat, "{name}");
        }
        assert!(changed >= 7, "{name} changes the image");
    }
}

#[test]
fn affine_with_a_black_border_blackens_the_corners_and_reflect_does_not() {
    let n = 32;
    let flat = vec![90u8; n * n * 3];
    let plan = |border| AugmentPlan { affine: Some(Affine { p: 1.0, rotate: 180.0, scale: 0.0, shift: 0.0, border }), ..AugmentPlan::none() };
    let mut corners_black = 0;
    for seed in 0..20 {
        let out = one(plan(Border::Black), &flat, n, seed);
        corners_black += usize::from(out[0] < 45);
        assert_eq!(&out[(16 * n + 16) * 3..][..3], &[90, 90, 90]);
        assert_eq!(one(plan(Border::Reflect), &flat, n, seed), flat);
    }
    assert!(corners_black >= 14, "most rotations leave dark corners ({corners_black} of 20)");
}

#[test]
fn hsv_with_zero_shifts_is_the_identity_and_hue_turns_keep_the_value() {
    let image = test_image(24, 7);
    let still = AugmentPlan { hsv: Some(Hsv { p: 1.0, hue: 0.0, sat: 0.0, val: 0.0 }), ..AugmentPlan::none() };
    assert_eq!(one(still, &image, 24, 0), image);
    // Any hue turn keeps a saturated pixel's value: one channel stays at full.
    let red: Vec<u8> = [255, 0, 0].repeat(4);
    let turn = AugmentPlan { hsv: Some(Hsv { p: 1.0, hue: 90.0, sat: 0.0, val: 0.0 }), ..AugmentPlan::none() };
    for seed in 0..10 {
        let out = one(turn.clone(), &red, 2, seed);
        assert!(out.chunks_exact(3).all(|p| p.iter().map(|&v| u32::from(v)).sum::<u32>() >= 255), "value kept: {out:?}");
    }
}

#[test]
fn brightness_and_contrast_move_values_as_albumentations_does() {
    let image = test_image(16, 8);
    let brighter = AugmentPlan { brightness: Some(Level { p: 1.0, limit: 0.2 }), ..AugmentPlan::none() };
    for seed in 0..10 {
        let out = one(brighter.clone(), &image, 16, seed);
        // One offset for every value (up to clipping).
        let offsets: std::collections::HashSet<i32> =
            image.iter().zip(&out).filter(|&(_, &o)| o != 0 && o != 255).map(|(&a, &b)| i32::from(b) - i32::from(a)).collect();
        assert!(offsets.len() <= 1 && offsets.iter().all(|d| d.abs() <= 51), "{offsets:?}");
    }
    let contrast = AugmentPlan { contrast: Some(Level { p: 1.0, limit: 0.2 }), ..AugmentPlan::none() };
    let black = vec![0u8; 4 * 4 * 3];
    assert_eq!(one(contrast, &black, 4, 0), black, "scaling keeps black black");
}

#[test]
fn hair_only_darkens_and_draws_thin_strands() {
    let n = 224;
    let image = test_image(n, 9);
    let plan = AugmentPlan { hair: Some(Hair { p: 1.0, count: 4, width: 2.0 }), ..AugmentPlan::none() };
    let mut with_hair = 0;
    for seed in 0..40 {
        let out = one(plan.clone(), &image, n, seed);
        assert!(out.iter().zip(&image).all(|(o, i)| o <= i), "seed {seed} brightened a pixel");
        let darkened = (0..n * n).filter(|&p| out[p * 3..p * 3 + 3] != image[p * 3..p * 3 + 3]).count();
        // Four strands of at most 0.9 sides and a few pixels' width cover a small share.
        assert!(darkened < n * n / 10, "seed {seed}: {darkened} pixels");
        with_hair += usize::from(darkened > 0);
    }
    assert!(with_hair >= 25, "0 to 4 strands: most images get some ({with_hair} of 40)");
    let none = AugmentPlan { hair: Some(Hair { p: 1.0, count: 0, width: 2.0 }), ..AugmentPlan::none() };
    assert_eq!(one(none, &image, n, 0), image);
}

#[test]
fn presets_hold_the_seeds_operations() {
    let seed_004 = AugmentPlan::seed_004();
    assert_eq!(seed_004.cutout.as_ref().map(|c| (c.p, c.size, c.holes)), Some((0.7, 0.375, 1)));
    assert_eq!(seed_004.affine.as_ref().map(|a| (a.p, a.rotate, a.scale, a.shift, a.border)), Some((0.85, 15.0, 0.1, 0.1, Border::Black)));
    assert_eq!(seed_004.clahe.as_ref().map(|c| c.clip), Some(4.0));
    assert_eq!(seed_004.hsv.as_ref().map(|h| (h.hue, h.sat, h.val, h.p)), Some((10.0, 20.0, 10.0, 0.5)));
    assert!(seed_004.hair.is_none() && seed_004.dihedral.is_none() && seed_004.color.is_none());
    let seed_002 = AugmentPlan::seed_002();
    assert_eq!(seed_002.affine.as_ref().map(|a| a.rotate), Some(180.0));
    assert!(seed_002.hair.is_some() && seed_002.cutout.is_none());
    for preset in [AugmentPreset::None, AugmentPreset::Light, AugmentPreset::Seed004, AugmentPreset::Seed002] {
        assert_eq!(AugmentPlan::of_recipe(preset, &AugmentOps::default()).unwrap().is_none(), preset == AugmentPreset::None);
        assert_eq!(preset.name().parse::<AugmentPreset>().unwrap(), preset);
    }
    assert_eq!("true".parse::<AugmentPreset>().unwrap(), AugmentPreset::Light);
    assert_eq!("false".parse::<AugmentPreset>().unwrap(), AugmentPreset::None);
}

#[test]
fn operations_override_the_preset() {
    let ops: AugmentOps = " cutout : p=0.5 , size=.3 ; hair:p=0; clahe:clip=2;dihedral".parse().unwrap();
    assert_eq!(ops.as_str(), "cutout:p=0.5,size=0.3;hair:p=0;clahe:clip=2;dihedral");
    assert_eq!(ops.as_str().parse::<AugmentOps>().unwrap(), ops);
    let plan = AugmentPlan::of_recipe(AugmentPreset::Seed004, &ops).unwrap().unwrap();
    assert_eq!(plan.cutout, Some(Cutout { p: 0.5, size: 0.3, holes: 1 }));
    assert_eq!(plan.hair.as_ref().map(|h| h.p), Some(0.0), "an absent operation is added; p=0 keeps it off");
    assert_eq!(plan.clahe, Some(Clahe { clip: 2.0, ..Clahe::default() }));
    assert_eq!(plan.dihedral.as_ref().map(|d| d.p), Some(1.0), "named alone: on with its defaults");
    // Everything else is the preset's.
    assert_eq!(plan.affine, AugmentPlan::seed_004().affine);
    // Turning off every operation of a preset leaves nothing to do.
    let off: AugmentOps = "dihedral:p=0;affine:p=0;color:p=0".parse().unwrap();
    assert!(AugmentPlan::of_recipe(AugmentPreset::Light, &off).unwrap().is_none());
    assert!(AugmentPlan::of_recipe(AugmentPreset::None, &"affine:border=reflect".parse().unwrap()).unwrap().is_some());
}

#[test]
fn operations_are_parsed_strictly_and_errors_name_the_culprit() {
    let error = |text: &str| text.parse::<AugmentOps>().unwrap_err();
    for (text, names) in [
        ("cutot:p=0.5", &["cutot", "cutout", "hair"][..]),
        ("cutout:sise=0.3", &["sise", "size", "holes"]),
        ("cutout:size=1.5", &["size=1.5", "out of range", "0 to 1"]),
        ("cutout:p=nan", &["p=nan", "out of range"]),
        ("cutout:holes=1.5", &["holes=1.5", "whole number"]),
        ("cutout:size", &["size", "no value"]),
        ("cutout:p=0.5;cutout:size=0.2", &["cutout", "twice"]),
        ("cutout:p=0.5,p=0.2", &["p", "twice"]),
        ("affine:border=white", &["border", "black or reflect"]),
        ("blur:var_min=40", &["var_min", "var_max"]),
        ("crop:area_min=0.9,area_max=0.8", &["area_min", "area_max"]),
        ("clahe:clip=0", &["clip=0", "out of range"]),
    ] {
        let message = error(text);
        for name in names {
            assert!(message.contains(name), "{text}: {message:?} lacks {name:?}");
        }
    }
    assert_eq!("".parse::<AugmentOps>().unwrap(), AugmentOps::default());
    assert_eq!(" ; ".parse::<AugmentOps>().unwrap(), AugmentOps::default());
    // Every operation and parameter can be set to its own default.
    for op in AugmentPlan::OPS {
        let mut plan = AugmentPlan::none();
        let params = plan.op_mut(op).unwrap();
        for param in params.params() {
            let text = format!("{op}:{}={}", param.name, params.get(param.name).unwrap());
            assert!(text.parse::<AugmentOps>().is_ok(), "{text}");
        }
    }
    // A megabyte of text is refused quoting only its start, as is a long unknown name.
    let huge = format!("cutout:p=0.5;{}", "x".repeat(1 << 20));
    let message = error(&huge);
    assert!(message.contains("1048589 bytes long") && message.len() < 400, "{}", &message[..message.len().min(400)]);
    let message = error(&"y".repeat(3000));
    assert!(message.contains("unknown operation") && message.len() < 400, "{}", &message[..message.len().min(400)]);
}
