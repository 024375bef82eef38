//! Images a hostile or careless user may hand naevus (issue 18): a header that claims a huge
//! size, a decompression bomb, a FIFO or a device. Each is refused quickly, with a reason,
//! before any large allocation, and prepare turns it into a rejected row and finishes.

mod common;
mod hostile_images;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::images;
use hostile_images::{jpeg_claiming, png_bomb, png_claiming};
use naevus_data::{
    Cache, DataError, DecodeLimits, Metadata, PrepareOptions, Record, SourceData, decode_rgb, decode_rgb_limited, load_rgb,
    load_rgb_limited, load_square, prepare,
};

/// Runs `f` on another thread; panics if it has not returned within `seconds` (a read that
/// blocks on a FIFO would otherwise hang the test run).
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(seconds)).unwrap_or_else(|_| panic!("still running after {seconds} s"))
}

fn image_reason(result: Result<impl std::fmt::Debug, DataError>) -> String {
    match result {
        Err(DataError::Image { reason, .. }) => reason,
        other => panic!("expected an image error, got {other:?}"),
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success());
}

#[test]
fn a_png_claiming_100000_by_100000_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    fs::write(&path, png_claiming(100_000, 100_000)).unwrap();
    let started = Instant::now();
    let reason = within(20, move || image_reason(load_rgb(&path)));
    assert_eq!(reason, "image is 100000 x 100000 pixels (10000 megapixels), over the limit of 100 megapixels; not decoded");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The same from bytes (the coming service) and through the resizing path (prepare).
    assert_eq!(decode_rgb(&png_claiming(100_000, 100_000)).unwrap_err(), reason);
}

#[test]
fn a_png_bomb_is_refused_before_it_inflates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    let bomb = png_bomb(20_000);
    assert!(bomb.len() < 2_000_000, "the bomb is {} bytes", bomb.len());
    fs::write(&path, &bomb).unwrap();
    let started = Instant::now();
    let reason = within(20, move || image_reason(load_square(&path, None, 64)));
    assert!(reason.starts_with("image is 20000 x 20000 pixels (400 megapixels), over the limit of 100 megapixels"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn the_pixel_limit_is_the_callers_to_set() {
    // A 2000 x 2000 bomb (4 megapixels) decodes within the default limits and not within 1.
    let bomb = png_bomb(2_000);
    assert_eq!(decode_rgb(&bomb).unwrap().dimensions(), (2_000, 2_000));
    let one = DecodeLimits { max_pixels: 1_000_000 };
    let reason = decode_rgb_limited(&bomb, &one).unwrap_err();
    assert_eq!(reason, "image is 2000 x 2000 pixels (4 megapixels), over the limit of 1 megapixels; not decoded");
    // A file larger than any image within the limit is not even read (a sparse 1 GB file).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.png");
    fs::File::create(&path).unwrap().set_len(1 << 30).unwrap();
    let reason = image_reason(load_rgb_limited(&path, &DecodeLimits { max_pixels: 10 }));
    assert_eq!(reason, "file is 1073741824 bytes, more than any image within the limit of 10 pixels takes (16777296 bytes)");
}

#[test]
fn a_jpeg_claiming_65000_by_65000_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.jpg");
    fs::write(&path, jpeg_claiming(65_000, 65_000)).unwrap();
    let expected = "image is 65000 x 65000 pixels (4225 megapixels), over the limit of 100 megapixels; not decoded";
    let started = Instant::now();
    let full = path.clone();
    assert_eq!(within(20, move || image_reason(load_rgb(&full))), expected);
    // load_square would decode it at 1/8 scale (jpeg-decoder's reduced path): refused too.
    assert_eq!(within(20, move || image_reason(load_square(&path, None, 256))), expected);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.jpg");
    mkfifo(&fifo);
    let path = fifo.clone();
    let reason = within(10, move || image_reason(load_rgb(&path)));
    assert_eq!(reason, "not a regular file (a FIFO); only image files are read");
    let reason = within(10, move || image_reason(load_square(&fifo, None, 32)));
    assert_eq!(reason, "not a regular file (a FIFO); only image files are read");
    let reason = within(10, || image_reason(load_rgb(Path::new("/dev/null"))));
    assert_eq!(reason, "not a regular file (a character device); only image files are read");
    let reason = within(10, || image_reason(load_rgb(&images())));
    assert_eq!(reason, "not a regular file (a directory); only image files are read");
}

/// A record of the image at `path`, from line `row` of a label CSV.
fn record(id: &str, path: PathBuf, row: usize) -> Record {
    Record {
        id: id.into(),
        group: id.into(),
        image_path: path,
        melanoma: Some(false),
        diagnosis: None,
        metadata: Metadata::default(),
        split: None,
        source: "isic2017".into(),
        row: Some(row),
        file_bytes: None,
        crop: None,
        is_external: false,
    }
}

#[test]
fn prepare_rejects_hostile_images_and_finishes_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("images");
    fs::create_dir(&files).unwrap();
    fs::write(files.join("png_header.png"), png_claiming(100_000, 100_000)).unwrap();
    fs::write(files.join("jpeg_header.jpg"), jpeg_claiming(65_000, 65_000)).unwrap();
    fs::write(files.join("bomb.png"), png_bomb(20_000)).unwrap();
    mkfifo(&files.join("fifo.jpg"));
    let records = vec![
        record("good", images().join("ISIC_0000000.jpg"), 2),
        record("png_header", files.join("png_header.png"), 3),
        record("jpeg_header", files.join("jpeg_header.jpg"), 4),
        record("bomb", files.join("bomb.png"), 5),
        record("fifo", files.join("fifo.jpg"), 6),
        record("small_limit", images().join("ISIC_0000002.jpg"), 7),
    ];
    let out = dir.path().join("cache");
    let options = PrepareOptions { size: 32, threads: Some(2), progress: false, ..PrepareOptions::default() };
    let cache_dir = out.clone();
    let summary = within(60, move || prepare(SourceData { records, rejects: Vec::new() }, &cache_dir, &options).unwrap());
    assert_eq!((summary.prepared, summary.rejected), (2, 4));
    let cache = Cache::open(&out).expect("the index is written");
    assert_eq!(cache.records().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["good", "small_limit"]);

    let mut rows = csv::Reader::from_path(out.join("rejects.csv")).unwrap();
    let rows: Vec<(String, String)> = rows.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[2].to_string())).collect();
    assert_eq!(rows[0].0, "3");
    assert!(rows[0].1.contains("100000 x 100000 pixels"), "{rows:?}");
    assert!(rows[1].1.contains("65000 x 65000 pixels"), "{rows:?}");
    assert!(rows[2].1.contains("20000 x 20000 pixels"), "{rows:?}");
    assert_eq!((rows[3].0.as_str(), rows[3].1.as_str()), ("6", "not a regular file (a FIFO); only image files are read"));

    // The limit comes from the options: the same inputs at 1 pixel reject every image.
    let records = vec![record("small_limit", images().join("ISIC_0000002.jpg"), 7)];
    let options = PrepareOptions { size: 32, threads: Some(1), progress: false, limits: DecodeLimits { max_pixels: 1 } };
    let summary = prepare(SourceData { records, rejects: Vec::new() }, &dir.path().join("strict"), &options).unwrap();
    assert_eq!((summary.prepared, summary.rejected), (0, 1));
}
