//! End-to-end test of `naevus explain` on a tiny run trained here from the CC0 fixtures.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, naevus, text};

/// Side of the prepared cache and so of the model input and every picture.
const SIDE: u32 = 32;

/// Prepares the fixture images at SIDE px and trains a small CNN on them for one epoch.
fn tiny_run(dir: &Path) -> PathBuf {
    let source = fixtures().join("isic2017");
    let cache = dir.join("cache");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", &SIDE.to_string(), "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.join("run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--folds", "2",
        "--epochs", "1", "--batch-size", "4", "--augment", "false", "--seed", "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    run
}

fn fixture_image(id: &str) -> PathBuf {
    fixtures().join("isic2017/images").join(format!("{id}.jpg"))
}

/// A white-on-black mask the size of the image `id`, lesion where `inside(x, y)` holds
/// (coordinates as fractions of the width and height).
fn draw_mask(id: &str, path: &Path, inside: impl Fn(f64, f64) -> bool) {
    let (width, height) = image::image_dimensions(fixture_image(id)).unwrap();
    let mask = image::GrayImage::from_fn(width, height, |x, y| {
        image::Luma([if inside(f64::from(x) / f64::from(width), f64::from(y) / f64::from(height)) { 255 } else { 0 }])
    });
    mask.save(path).unwrap();
}

fn dimensions_and_colour(path: &Path) -> ((u32, u32), image::ColorType) {
    let picture = image::open(path).unwrap_or_else(|e| panic!("{} is not a readable PNG: {e}", path.display()));
    ((picture.width(), picture.height()), picture.color())
}

#[test]
fn explain_writes_overlays_maps_a_grid_and_mask_scores() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let ids = ["ISIC_0000000", "ISIC_0000002", "ISIC_0000080"];
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&masks).unwrap();
    // The lesion everywhere: the map's maximum is always on it.
    draw_mask(ids[0], &masks.join(format!("{}_segmentation.png", ids[0])), |_, _| true);
    // A centred disc, named the other accepted way; the third image has no mask.
    draw_mask(ids[1], &masks.join(format!("{}.png", ids[1])), |x, y| (x - 0.5).powi(2) + (y - 0.5).powi(2) < 0.09);

    let out_dir = dir.path().join("explained");
    let mut args: Vec<String> = vec!["explain".into(), "--run".into(), run.to_str().unwrap().into()];
    args.extend(ids.iter().map(|id| fixture_image(id).to_str().unwrap().to_string()));
    let truncated = fixtures().join("bad/truncated.jpg");
    args.push(truncated.to_str().unwrap().into());
    args.extend(["--method", "gradcam", "--masks", masks.to_str().unwrap(), "--out", out_dir.to_str().unwrap()].map(String::from));
    let out = naevus(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    // The unreadable image is named; the others are explained at the default layer: at 32 px
    // the deepest with 6 cells a side or more.
    assert!(printed.contains("truncated.jpg") && printed.contains("truncated JPEG"), "{printed}");
    assert!(printed.contains("explained 3 image(s) with gradcam at block2 (8x8 grid)"), "{printed}");

    for id in ids {
        let overlay = out_dir.join(format!("{id}_gradcam_block2.png"));
        assert_eq!(dimensions_and_colour(&overlay), ((SIDE, SIDE), image::ColorType::Rgb8));
        let map = out_dir.join(format!("{id}_gradcam_block2_map.png"));
        assert_eq!(dimensions_and_colour(&map), ((SIDE, SIDE), image::ColorType::L8));
    }
    let (grid_size, _) = dimensions_and_colour(&out_dir.join("grid_gradcam.png"));
    assert!(grid_size.0 > 3 * SIDE && grid_size.1 > SIDE, "{grid_size:?}");

    // Mask scores: two images had masks, the first is all lesion so its pointing game hits.
    let scores = std::fs::read_to_string(out_dir.join("mask_scores_gradcam.csv")).unwrap();
    let rows: Vec<&str> = scores.lines().collect();
    assert_eq!(rows[0], "image,layer,jaccard,pointing_hit");
    assert_eq!(rows.len(), 3, "{scores}");
    assert!(rows[1].starts_with("ISIC_0000000,block2,") && rows[1].ends_with(",1"), "{scores}");
    for row in &rows[1..] {
        let jaccard: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&jaccard), "{row}");
    }
    assert!(printed.contains("mean Jaccard") && printed.contains("pointing game") && printed.contains("no mask for ISIC_0000080"), "{printed}");
}

#[test]
fn explain_takes_a_layer_and_refuses_unknown_layers_and_missing_attention() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let image = fixture_image("ISIC_0000004");
    let out_dir = dir.path().join("explained");
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--run", run.to_str().unwrap(), image.to_str().unwrap(), "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        naevus(&args)
    };

    let out = explain(&["--method", "gradcam++", "--layer", "block2", "--fold", "fold-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dimensions_and_colour(&out_dir.join("ISIC_0000004_gradcam++_block2.png")).0, (SIDE, SIDE));
    assert!(out_dir.join("grid_gradcam++.png").exists());

    let out = explain(&["--layer", "conv5"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no layer \"conv5\"; its layers: block1, block2, block3"), "{}", text(&out));

    let out = explain(&["--method", "attention"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("attn-vgg16-bn") && text(&out).contains("chipnet"), "{}", text(&out));
}

#[test]
fn crop_recuts_every_image_from_its_original_around_the_chipnet_attention() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("isic2017");
    let cache = dir.path().join("cache");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", "64", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // 64 px: a 2 x 2 grid of 32 px chips.
    let run = dir.path().join("chipnet");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "chipnet", "--folds", "2",
        "--epochs", "1", "--batch-size", "4", "--augment", "false", "--seed", "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let cropped = dir.path().join("cropped");
    let out = naevus(&[
        "crop", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", cropped.to_str().unwrap(), "--size", "48",
        "--max-area", "1.0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cropped 8 images"), "{}", text(&out));
    let boxes = std::fs::read_to_string(cropped.join("crop_boxes.csv")).unwrap();
    assert_eq!(boxes.lines().count(), 1 + 8, "{boxes}");
    for line in boxes.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (left, top, side): (f64, f64, f64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap(), fields[3].parse().unwrap());
        assert!(side > 0.0 && side <= 1.0 && left >= 0.0 && top >= 0.0 && left + side <= 1.0 + 1e-9 && top + side <= 1.0 + 1e-9, "{line}");
    }
    // Cross-validation on the same cache: each image was cropped by the fold that held it out.
    let oof = std::fs::read_to_string(run.join("oof.csv")).unwrap();
    let held_out_by: std::collections::HashMap<&str, &str> =
        oof.lines().skip(1).map(|l| (l.split(',').next().unwrap(), l.split(',').nth(3).unwrap())).collect();
    for line in boxes.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(held_out_by[fields[0]], fields[5], "{line}");
    }
    // One named fold crops everything; an unknown fold is refused with the run's folds.
    let recropped = dir.path().join("recropped");
    let crop_with = |fold: &str| {
        naevus(&[
            "crop", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", recropped.to_str().unwrap(), "--fold", fold,
        ])
    };
    let out = crop_with("fold-1");
    assert!(out.status.success(), "{}", text(&out));
    let boxes = std::fs::read_to_string(recropped.join("crop_boxes.csv")).unwrap();
    assert!(boxes.lines().skip(1).all(|l| l.ends_with(",fold-1")), "{boxes}");
    let out = crop_with("fold-7");
    assert!(!out.status.success() && text(&out).contains("no fold \"fold-7\"; its folds are fold-0, fold-1"), "{}", text(&out));
    // The new cache trains like any other.
    let out = naevus(&[
        "train", "--data", cropped.to_str().unwrap(), "--out", dir.path().join("cropnet").to_str().unwrap(), "--model", "small-cnn",
        "--folds", "2", "--epochs", "1", "--batch-size", "4",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}
