mod common;

use std::io::Cursor;
use std::path::Path;

use common::{fixtures, images};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba};
use naevus_data::{CropBox, DataError, center_crop_resize, crop_resize, load_rgb, load_square, resize_square};

fn reason(path: &Path) -> String {
    match load_rgb(path) {
        Err(DataError::Image { path: p, reason }) => {
            assert_eq!(p, path);
            reason
        }
        other => panic!("expected an image error for {}, got {other:?}", path.display()),
    }
}

#[test]
fn fixture_jpegs_decode() {
    for entry in std::fs::read_dir(images()).unwrap() {
        let img = load_rgb(&entry.unwrap().path()).unwrap();
        assert!(img.width() <= 128 && img.height() <= 128 && img.width() >= 64);
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let bad = fixtures().join("bad");
    assert_eq!(reason(&bad.join("empty.jpg")), "empty file (0 bytes)");
    assert!(reason(&bad.join("truncated.jpg")).starts_with("truncated JPEG"));
    assert!(reason(&bad.join("text.jpg")).starts_with("not a JPEG or PNG image"));
    // Missing file: an I/O error naming the path.
    let err = load_rgb(&bad.join("nope.jpg")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope.jpg"));
}

#[test]
fn corrupt_png_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    RgbImage::from_pixel(32, 32, Rgb([9, 9, 9])).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    let path = dir.path().join("cut.png");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_rgb(&path).is_err());
}

#[test]
fn cmyk_jpeg_becomes_rgb() {
    let img = load_rgb(&fixtures().join("bad/cmyk.jpg")).unwrap();
    assert_eq!(img.dimensions(), (24, 16));
    // Pillow decodes this file (an Adobe CMYK JPEG it wrote) to mean RGB (136, 151, 188);
    // an un-inverted or unconverted decode would be far off.
    let mean: Vec<f64> = (0..3).map(|c| img.pixels().map(|p| f64::from(p[c])).sum::<f64>() / 384.0).collect();
    for (got, want) in mean.iter().zip([136.0, 151.0, 188.0]) {
        assert!((got - want).abs() < 8.0, "mean RGB {mean:?}");
    }
}

#[test]
fn odd_png_formats_become_rgb8() {
    let dir = tempfile::tempdir().unwrap();
    let gray = ImageBuffer::from_fn(30, 20, |x, _| Luma([(x * 8) as u8]));
    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(30, 20, |_, _| Luma([0xFFFFu16]));
    let rgba = ImageBuffer::from_fn(30, 20, |_, _| Rgba([10u8, 200, 30, 128]));
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(30, 20, |_, _| Rgb([0xFFFFu16, 0, 0x8080]));
    let cases: Vec<(&str, DynamicImage, [u8; 3])> = vec![
        ("gray.png", DynamicImage::ImageLuma8(gray), [16, 16, 16]),
        ("gray16.png", DynamicImage::ImageLuma16(gray16), [255, 255, 255]),
        ("rgba.png", DynamicImage::ImageRgba8(rgba), [10, 200, 30]),
        ("rgb16.png", DynamicImage::ImageRgb16(rgb16), [255, 0, 128]),
    ];
    for (name, img, pixel_2_0) in cases {
        let path = dir.path().join(name);
        img.save(&path).unwrap();
        let rgb = load_rgb(&path).unwrap();
        assert_eq!(rgb.dimensions(), (30, 20), "{name}");
        assert_eq!(rgb.get_pixel(2, 0).0, pixel_2_0, "{name}");
    }
}

/// A JPEG with an EXIF APP1 segment whose only tag is Orientation = `orientation`.
fn jpeg_with_orientation(img: &RgbImage, orientation: u8) -> Vec<u8> {
    let mut jpeg = Vec::new();
    img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
    // TIFF header (big endian), IFD at offset 8 with one entry: tag 0x0112, SHORT, count 1.
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&[0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    tiff.extend_from_slice(&[0x00, orientation, 0x00, 0x00]);
    tiff.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]); // original minus its SOI
    out
}

#[test]
fn exif_orientation_is_applied() {
    // 40x20, top-left 16x8 block red, the rest blue.
    let img = RgbImage::from_fn(40, 20, |x, y| if x < 16 && y < 8 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rot6.jpg");
    std::fs::write(&path, jpeg_with_orientation(&img, 6)).unwrap();
    let out = load_rgb(&path).unwrap();
    // Orientation 6 = rotate 90 degrees clockwise: 40x20 becomes 20x40, top-left goes top-right.
    assert_eq!(out.dimensions(), (20, 40));
    let red = |p: &Rgb<u8>| p[0] > 180 && p[2] < 80;
    assert!(red(out.get_pixel(16, 4)), "{:?}", out.get_pixel(16, 4));
    assert!(!red(out.get_pixel(3, 4)), "{:?}", out.get_pixel(3, 4));
    assert!(!red(out.get_pixel(16, 35)));

    // Orientation 1 leaves it alone.
    std::fs::write(&path, jpeg_with_orientation(&img, 1)).unwrap();
    assert_eq!(load_rgb(&path).unwrap().dimensions(), (40, 20));
}

#[test]
fn center_crop_resize_crops_the_middle() {
    // 30x10: left third red, middle green, right third blue; the center square is all green.
    let img = RgbImage::from_fn(30, 10, |x, _| match x / 10 {
        0 => Rgb([255, 0, 0]),
        1 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    let out = center_crop_resize(&img, 4);
    assert_eq!(out.len(), 4 * 4 * 3);
    // The Lanczos kernel may peek just past the crop box, so allow slight bleeding at the edges.
    assert!(out.chunks(3).all(|p| p[1] >= 230 && p[0] <= 20 && p[2] <= 20), "{out:?}");
    // Portrait works too, and upscaling.
    let tall = RgbImage::from_pixel(5, 9, Rgb([7, 8, 9]));
    let out = center_crop_resize(&tall, 16);
    assert_eq!(out.len(), 16 * 16 * 3);
    assert!(out.chunks(3).all(|p| p == [7, 8, 9]));
    // Degenerate input does not panic.
    assert_eq!(center_crop_resize(&RgbImage::new(0, 0), 3), vec![0u8; 27]);
}

#[test]
fn resize_square_sizes_and_identity() {
    let pixels: Vec<u8> = (0..8 * 8 * 3).map(|i| (i % 251) as u8).collect();
    assert_eq!(resize_square(&pixels, 8, 8), pixels);
    let small = resize_square(&pixels, 8, 4);
    assert_eq!(small.len(), 4 * 4 * 3);
    let flat = vec![100u8; 8 * 8 * 3];
    assert!(resize_square(&flat, 8, 5).iter().all(|&v| v == 100));
}

/// A smooth 1600x1200 test photograph: a dark disc (the "lesion") on skin-coloured gradient.
fn large_photo() -> RgbImage {
    RgbImage::from_fn(1600, 1200, |x, y| {
        let (dx, dy) = (x as f64 - 900.0, y as f64 - 500.0);
        if dx * dx + dy * dy < 250.0 * 250.0 {
            Rgb([90, 50, 40])
        } else {
            Rgb([200 + (x % 50) as u8, 150 + (y / 24) as u8, 130])
        }
    })
}

fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.len() as f64
}

#[test]
fn load_square_matches_a_full_decode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.jpg");
    large_photo().save(&path).unwrap();
    let full = load_rgb(&path).unwrap();
    // 1200 px short side to 128 px: decoded at 1/8 (150 px) then resized; to 512 px: in full.
    for size in [128, 300, 512] {
        let reduced = load_square(&path, None, size).unwrap();
        let reference = center_crop_resize(&full, size);
        let difference = mean_abs_difference(&reduced, &reference);
        assert!(difference < 2.0, "{size} px: mean difference {difference:.2} grey levels");
    }
    // A crop needs more source pixels: a quarter-side box at 128 px must come from >= 512 px.
    let region = CropBox { left: 0.3, top: 0.1, side: 0.25 };
    let reduced = load_square(&path, Some(&region), 128).unwrap();
    let difference = mean_abs_difference(&reduced, &crop_resize(&full, &region, 128));
    assert!(difference < 2.0, "crop: mean difference {difference:.2}");
}

#[test]
fn load_square_keeps_orientation_grey_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Orientation 6 on a large image: the rotated picture, not the stored one, is cropped.
    let photo = large_photo();
    let rotated = DynamicImage::ImageRgb8(photo.clone()).rotate90().into_rgb8();
    let path = dir.path().join("rot6.jpg");
    std::fs::write(&path, jpeg_with_orientation(&photo, 6)).unwrap();
    let difference = mean_abs_difference(&load_square(&path, None, 128).unwrap(), &center_crop_resize(&rotated, 128));
    assert!(difference < 3.0, "rotated: mean difference {difference:.2}");

    // A greyscale JPEG comes out as RGB with equal channels.
    let grey = ImageBuffer::from_fn(1024, 1024, |x, y| Luma([((x + y) / 8) as u8]));
    let path = dir.path().join("grey.jpg");
    DynamicImage::ImageLuma8(grey).save(&path).unwrap();
    let out = load_square(&path, None, 64).unwrap();
    assert!(out.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));

    // Broken files give the same errors as load_rgb.
    let bad = fixtures().join("bad");
    for name in ["empty.jpg", "truncated.jpg", "text.jpg"] {
        let path = bad.join(name);
        let err = load_square(&path, None, 64).unwrap_err().to_string();
        assert_eq!(err, load_rgb(&path).unwrap_err().to_string(), "{name}");
    }
    assert_eq!(load_square(&bad.join("cmyk.jpg"), None, 16).unwrap().len(), 16 * 16 * 3);
}
