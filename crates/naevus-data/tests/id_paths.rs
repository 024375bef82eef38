//! Image ids are names, never paths (issue 18): an id that would read a file outside the
//! images folder is a rejected row, and records and caches hold absolute image paths so that
//! every job works from any directory.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{fixtures, images};
use naevus_data::{Cache, PrepareOptions, SourceKind, SourceSpec, prepare, read_source};

#[test]
fn image_ids_that_are_paths_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    fs::create_dir(&images).unwrap();
    let image = fs::read(common::images().join("ISIC_0000000.jpg")).unwrap();
    fs::write(images.join("inside.jpg"), &image).unwrap();
    // Real images outside --images that a crafted id could reach.
    fs::write(dir.path().join("outside.jpg"), &image).unwrap();
    fs::create_dir(images.join("sub")).unwrap();
    fs::write(images.join("sub/nested.jpg"), &image).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.jpg"), images.join("link.jpg")).unwrap();
    let outside = dir.path().join("outside.jpg");
    let csv = dir.path().join("labels.csv");
    fs::write(
        &csv,
        format!(
            "image_id,melanoma,seborrheic_keratosis\ninside,0,0\n../outside,0,0\n{},0,0\nsub/nested,0,0\n..,0,0\nlink,0,0\n",
            outside.with_extension("").display()
        ),
    )
    .unwrap();
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(csv.clone()), images: images.clone(), metadata_csv: None };
    let data = read_source(&spec).unwrap();
    assert_eq!(data.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["inside"]);
    let rejects: Vec<(Option<usize>, &str)> = data.rejects.iter().map(|r| (r.row, r.reason.as_str())).collect();
    assert_eq!(rejects[0], (Some(3), "image id \"../outside\" contains a path separator; ids are file names, not paths"));
    assert_eq!(rejects[1].0, Some(4));
    assert!(rejects[1].1.ends_with("is an absolute path; ids are file names in the images folder"), "{}", rejects[1].1);
    assert_eq!(rejects[2], (Some(5), "image id \"sub/nested\" contains a path separator; ids are file names, not paths"));
    assert_eq!(rejects[3], (Some(6), "image id \"..\" is not a file name"));
    assert_eq!(rejects[4].0, Some(7));
    assert!(rejects[4].1.contains("outside the images folder"), "{}", rejects[4].1);
    // Each reject names the file: the label CSV, or the image that leads outside.
    assert!(data.rejects[..4].iter().all(|r| r.path == csv.display().to_string()));
    assert_eq!(data.rejects[4].path, images.join("link.jpg").display().to_string());

    // A folder of class folders may not lead outside either.
    let root = dir.path().join("classes");
    fs::create_dir_all(root.join("benign")).unwrap();
    fs::write(root.join("benign/a.jpg"), &image).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("benign/b.jpg")).unwrap();
    let data = read_source(&SourceSpec { kind: SourceKind::Folders, csv: None, images: root, metadata_csv: None }).unwrap();
    assert_eq!(data.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert!(data.rejects[0].reason.contains("outside the images folder"), "{:?}", data.rejects);
}

#[test]
fn records_and_the_cache_hold_absolute_image_paths() {
    // The tests run in the package directory: the fixtures by a relative path.
    let relative = PathBuf::from("../../tests/fixtures/isic2017/images");
    assert!(relative.is_dir());
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(fixtures().join("isic2017/labels.csv")), images: relative, metadata_csv: None };
    let data = read_source(&spec).unwrap();
    assert_eq!(data.records.len(), 8);
    let canonical = fs::canonicalize(images()).unwrap();
    for r in &data.records {
        assert!(r.image_path.is_absolute() && r.image_path.starts_with(&canonical), "{}", r.image_path.display());
    }
    let dir = tempfile::tempdir().unwrap();
    prepare(data, dir.path(), &PrepareOptions { size: 16, threads: Some(1), ..PrepareOptions::default() }).unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    assert!(cache.records().iter().all(|r| r.image_path.is_absolute()));
}

#[test]
fn a_missing_relative_path_from_an_older_cache_says_why() {
    // Older caches stored image paths relative to the directory prepare ran in.
    let record = naevus_data::Record { id: "old".into(), image_path: PathBuf::from("no/such/dir/old.jpg"), row: Some(2), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let options = PrepareOptions { size: 16, threads: Some(1), ..PrepareOptions::default() };
    let summary = prepare(naevus_data::SourceData { records: vec![record], rejects: Vec::new() }, dir.path(), &options).unwrap();
    assert_eq!((summary.prepared, summary.rejected), (0, 1));
    let rejects = fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert!(rejects.contains("the path is relative to the directory an older naevus prepared the cache in"), "{rejects}");
}
