mod common;

use std::path::PathBuf;

use common::{fixtures, images};
use naevus_data::{DataError, Record, SourceData, SourceKind, SourceSpec, Sex, Split, read_source};

fn read(kind: SourceKind, csv: &str) -> SourceData {
    let spec = SourceSpec { kind, csv: Some(fixtures().join(csv)), images: images(), metadata_csv: None };
    read_source(&spec).expect("fixture should read")
}

fn get<'a>(data: &'a SourceData, id: &str) -> &'a Record {
    data.records.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("{id} missing"))
}

/// (row, reason) pairs for compact assertions.
fn rejects(data: &SourceData) -> Vec<(Option<usize>, String)> {
    data.rejects.iter().map(|r| (r.row, r.reason.clone())).collect()
}

#[test]
fn source_kind_parses() {
    assert_eq!("isic2020".parse::<SourceKind>().unwrap(), SourceKind::Isic2020);
    assert_eq!("Folders".parse::<SourceKind>().unwrap(), SourceKind::Folders);
    assert_eq!("ISIC2018".parse::<SourceKind>().unwrap(), SourceKind::Isic2018);
    let err = "isic2016".parse::<SourceKind>().unwrap_err().to_string();
    assert!(err.contains("isic2018") && err.contains("ham10000"), "{err}");
    assert_eq!(Split::parse("valid"), Some(Split::Val));
    assert_eq!(Split::parse("Validation"), Some(Split::Val));
    assert_eq!(Split::parse("holdout"), None);
}

#[test]
fn isic2020_train_with_bom_and_bad_rows() {
    let data = read(SourceKind::Isic2020, "handwritten-csv/siim2020-format/train.csv");
    let ids: Vec<&str> = data.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ISIC_0000000", "ISIC_0000002", "ISIC_0000004", "ISIC_0012090", "ISIC_0000080"]);

    let r = get(&data, "ISIC_0000000");
    assert_eq!(r.group, "IP_0000001");
    assert_eq!(r.melanoma, Some(false));
    assert_eq!(r.diagnosis.as_deref(), Some("nevus"));
    assert_eq!(r.metadata.age, Some(55.0));
    assert_eq!(r.metadata.sex, Some(Sex::Female));
    assert_eq!(r.metadata.site.as_deref(), Some("torso"));
    assert_eq!(r.source, "isic2020");
    assert_eq!(r.split, None);
    // Stored canonical (absolute, links resolved), so that jobs work from any directory.
    assert_eq!(r.image_path, std::fs::canonicalize(images().join("ISIC_0000000.jpg")).unwrap());

    let r = get(&data, "ISIC_0000002");
    assert_eq!((r.melanoma, r.metadata.age), (Some(true), None));
    assert_eq!(r.metadata.site.as_deref(), Some("head/neck"));
    let r = get(&data, "ISIC_0000004");
    assert_eq!(r.metadata.sex, Some(Sex::Male)); // "MALE"
    assert_eq!(r.metadata.site.as_deref(), Some("lower extremity")); // " Lower Extremity "
    let r = get(&data, "ISIC_0012090");
    assert_eq!(r.diagnosis.as_deref(), Some("seborrheic_keratosis"));
    assert_eq!((r.metadata.sex, r.metadata.age, r.metadata.site.clone()), (None, None, None));
    assert_eq!(get(&data, "ISIC_0000080").metadata.age, None); // "unknown"

    let rej = rejects(&data);
    assert_eq!(rej.len(), 5, "{rej:#?}");
    assert_eq!(rej[0], (Some(6), "column \"target\": expected 0 or 1, got \"abc\"".to_string()));
    assert_eq!(rej[1], (Some(7), "column \"image_name\": expected a value, found an empty field".to_string()));
    assert_eq!(rej[2].0, Some(8));
    assert!(rej[2].1.starts_with("file not found: ") && rej[2].1.contains("ISIC_9999999.jpg"), "{}", rej[2].1);
    assert_eq!(rej[3], (Some(9), "duplicate image id ISIC_0000000 (first seen on line 2)".to_string()));
    assert_eq!(rej[4], (Some(10), "malformed CSV row: expected 9 fields, found 8".to_string()));
    assert!(data.rejects[0].path.ends_with("train.csv"));
    assert!(data.rejects[2].path.ends_with("ISIC_9999999.jpg"));
}

#[test]
fn isic2020_test_csv_is_unlabelled() {
    let data = read(SourceKind::Isic2020, "handwritten-csv/siim2020-format/test.csv");
    assert_eq!(data.records.len(), 2);
    assert!(data.rejects.is_empty());
    assert!(data.records.iter().all(|r| r.melanoma.is_none() && r.diagnosis.is_none()));
    assert_eq!(data.records[1].metadata.site, None);
    assert_eq!(data.records[1].group, "IP_0000011");
}

#[test]
fn missing_column_names_column_and_found_columns() {
    let spec = SourceSpec {
        kind: SourceKind::Isic2020,
        csv: Some(fixtures().join("handwritten-csv/siim2020-format/missing_target.csv")),
        images: images(),
        metadata_csv: None,
    };
    let err = read_source(&spec).unwrap_err();
    match &err {
        DataError::MissingColumn { column, found, .. } => {
            assert_eq!(column, "target");
            assert_eq!(found, &["image_name", "patient_id", "sex", "age_approx", "diagnosis", "benign_malignant"]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.ends_with("missing_target.csv: required column \"target\" not found; columns found: image_name, patient_id, sex, age_approx, diagnosis, benign_malignant"),
        "{text}"
    );
    // Same for a format mismatch: an ISIC 2017 file read as HAM10000.
    let spec = SourceSpec { kind: SourceKind::Ham10000, csv: Some(fixtures().join("isic2017/labels.csv")), images: images(), metadata_csv: None };
    let text = read_source(&spec).unwrap_err().to_string();
    assert!(text.contains("required column \"lesion_id\" not found; columns found: image_id, split, melanoma"), "{text}");
}

#[test]
fn isic2017_fixture() {
    let data = read(SourceKind::Isic2017, "isic2017/labels.csv");
    assert_eq!(data.records.len(), 8);
    assert!(data.rejects.is_empty(), "{:?}", data.rejects);
    assert_eq!(data.records.iter().filter(|r| r.melanoma == Some(true)).count(), 3);
    let sk = data.records.iter().filter(|r| r.diagnosis.as_deref() == Some("seborrheic_keratosis")).count();
    assert_eq!(sk, 2);
    let r = get(&data, "ISIC_0000002");
    assert_eq!((r.group.as_str(), r.melanoma, r.diagnosis.as_deref()), ("ISIC_0000002", Some(true), Some("melanoma")));
    assert_eq!((r.metadata.age, r.metadata.sex, r.split), (Some(60.0), Some(Sex::Female), Some(Split::Train)));
    let r = get(&data, "ISIC_0000080");
    assert_eq!((r.metadata.age, r.metadata.sex), (None, None)); // "unknown", "unknown"
    assert_eq!(get(&data, "ISIC_0001769").split, Some(Split::Val));
}

#[test]
fn isic2017_diagnosis_from_flags_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("gt.csv");
    std::fs::write(
        &csv,
        "image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0.0,0.0\nISIC_0000002,1,0\nISIC_0012090,0,1\nISIC_0000004,1,1\nISIC_0000013,yes,0\n",
    )
    .unwrap();
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(csv), images: images(), metadata_csv: None };
    let data = read_source(&spec).unwrap();
    let diags: Vec<_> = data.records.iter().map(|r| r.diagnosis.clone().unwrap()).collect();
    assert_eq!(diags, ["nevus", "melanoma", "seborrheic_keratosis"]);
    let rej = rejects(&data);
    assert_eq!(rej[0].0, Some(5));
    assert!(rej[0].1.contains("both 1"));
    assert_eq!(rej[1], (Some(6), "column \"melanoma\": expected 0 or 1, got \"yes\"".to_string()));
}

#[test]
fn ham10000_fixture() {
    let data = read(SourceKind::Ham10000, "handwritten-csv/ham-format/metadata.csv");
    let ids: Vec<&str> = data.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ISIC_0000000", "ISIC_0000002", "ISIC_0000004", "ISIC_0012090", "ISIC_0000013"]);
    // An empty lesion_id (as in the ISIC 2018 test metadata) makes the image its own lesion.
    assert_eq!(get(&data, "ISIC_0000013").group, "ISIC_0000013");
    let r = get(&data, "ISIC_0000004");
    assert_eq!((r.group.as_str(), r.melanoma, r.diagnosis.as_deref()), ("HAM_0000002", Some(true), Some("melanoma")));
    assert_eq!((r.metadata.age, r.metadata.site.as_deref(), r.split), (None, Some("torso"), Some(Split::Val))); // HAM10000 "back" in the ISIC 2020 vocabulary
    let r = get(&data, "ISIC_0000000");
    assert_eq!((r.melanoma, r.diagnosis.as_deref(), r.metadata.age), (Some(false), Some("nevus"), Some(55.0)));
    let r = get(&data, "ISIC_0012090");
    assert_eq!((r.diagnosis.as_deref(), r.metadata.sex, r.metadata.site.clone()), (Some("bkl"), None, None));

    let rej = rejects(&data);
    assert_eq!(rej.len(), 1, "{rej:#?}");
    assert_eq!(rej[0].0, Some(6));
    assert!(rej[0].1.starts_with("column \"dx\": unknown label \"xyz\""), "{}", rej[0].1);
}

#[test]
fn isic2018_task3_with_ham10000_metadata() {
    let dir = fixtures().join("handwritten-csv/isic2018-format");
    let spec = SourceSpec {
        kind: SourceKind::Isic2018,
        csv: Some(dir.join("ground_truth.csv")),
        images: images(),
        metadata_csv: Some(dir.join("metadata.csv")),
    };
    let data = read_source(&spec).unwrap();
    let got: Vec<(&str, &str, Option<bool>, &str)> =
        data.records.iter().map(|r| (r.id.as_str(), r.diagnosis.as_deref().unwrap(), r.melanoma, r.group.as_str())).collect();
    assert_eq!(
        got,
        [
            ("ISIC_0000000", "nevus", Some(false), "HAM_0000001"),
            ("ISIC_0000002", "melanoma", Some(true), "HAM_0000001"),
            ("ISIC_0012090", "akiec", Some(false), "ISIC_0012090"),
            ("ISIC_0001769", "vasc", Some(false), "ISIC_0001769"),
        ]
    );
    let r = get(&data, "ISIC_0000002");
    assert_eq!((r.metadata.age, r.metadata.sex, r.source.as_str()), (Some(60.0), Some(Sex::Female), "isic2018"));
    assert_eq!(get(&data, "ISIC_0012090").metadata.sex, Some(Sex::Male));
    assert_eq!(get(&data, "ISIC_0001769").metadata, Default::default());

    let rej = rejects(&data);
    assert_eq!(rej.len(), 2, "{rej:#?}");
    assert_eq!(rej[0].0, Some(5));
    assert!(rej[0].1.contains("MEL, BKL"), "{}", rej[0].1);
    assert_eq!(rej[1], (Some(6), "no class column is 1; expected exactly one of MEL..VASC".to_string()));

    // ISIC 2019's columns are not ISIC 2018's: the missing one is named.
    let wrong = SourceSpec { csv: Some(fixtures().join("handwritten-csv/isic2019-format/ground_truth.csv")), ..spec };
    let err = read_source(&wrong).unwrap_err().to_string();
    assert!(err.contains("AKIEC"), "{err}");
}

#[test]
fn isic2019_with_metadata() {
    let spec = SourceSpec {
        kind: SourceKind::Isic2019,
        csv: Some(fixtures().join("handwritten-csv/isic2019-format/ground_truth.csv")),
        images: images(),
        metadata_csv: Some(fixtures().join("handwritten-csv/isic2019-format/metadata.csv")),
    };
    let data = read_source(&spec).unwrap();
    let got: Vec<(&str, &str, Option<bool>, &str)> = data
        .records
        .iter()
        .map(|r| (r.id.as_str(), r.diagnosis.as_deref().unwrap(), r.melanoma, r.group.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ISIC_0000000", "nevus", Some(false), "BCN_0000001"),
            ("ISIC_0000002", "melanoma", Some(true), "BCN_0000001"),
            ("ISIC_0012090", "bkl", Some(false), "ISIC_0012090"),
            ("ISIC_0001769", "bcc", Some(false), "ISIC_0001769"),
        ]
    );
    let r = get(&data, "ISIC_0000000");
    assert_eq!((r.metadata.age, r.metadata.site.as_deref(), r.metadata.sex), (Some(55.0), Some("torso"), Some(Sex::Female)));
    assert_eq!(get(&data, "ISIC_0012090").metadata.sex, Some(Sex::Male));
    assert_eq!(get(&data, "ISIC_0001769").metadata, Default::default());

    let rej = rejects(&data);
    assert_eq!(rej.len(), 3, "{rej:#?}");
    assert_eq!(rej[0].0, Some(5));
    assert!(rej[0].1.contains("MEL, NV"), "{}", rej[0].1);
    assert_eq!(rej[1].0, Some(6));
    assert!(rej[1].1.starts_with("no class column is 1"));
    assert_eq!(rej[2], (Some(7), "column \"NV\": expected 0 or 1, got \"x\"".to_string()));
}

#[test]
fn folders_fixture() {
    let spec = SourceSpec { kind: SourceKind::Folders, csv: None, images: fixtures().join("folders"), metadata_csv: None };
    let data = read_source(&spec).unwrap();
    let got: Vec<(&str, &str, Option<bool>)> =
        data.records.iter().map(|r| (r.id.as_str(), r.diagnosis.as_deref().unwrap(), r.melanoma)).collect();
    assert_eq!(
        got,
        [
            ("ISIC_0000000", "benign", Some(false)),
            ("ISIC_0001769", "benign", Some(false)),
            ("ISIC_0012090", "benign", Some(false)), // .JPG upper case
            ("ISIC_0000002", "malignant", Some(true)),
            ("ISIC_0000004", "malignant", Some(true)), // .jpeg
        ]
    );
    assert!(data.records.iter().all(|r| r.group == r.id && r.source == "folders"));
    assert!(data.rejects.is_empty());
}

#[test]
fn missing_csv_file_is_an_io_error_naming_it() {
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(PathBuf::from("/nonexistent/labels.csv")), images: images(), metadata_csv: None };
    let text = read_source(&spec).unwrap_err().to_string();
    assert!(text.starts_with("/nonexistent/labels.csv: "), "{text}");
}

/// The real datasets (never committed, so not on every machine): run with `--ignored` where
/// ../shared/data is; without it the test fails rather than pass having read nothing.
#[test]
#[ignore = "needs the shared datasets in ../shared/data; run with --ignored where they are"]
fn real_shared_data_reads_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(root.join("isic2017/labels.csv").exists(), "{} holds no isic2017/labels.csv", root.display());
    let read = |kind, csv: &str, dir: &str| {
        let spec = SourceSpec { kind, csv: Some(root.join(csv)), images: root.join(dir).join("images"), metadata_csv: None };
        read_source(&spec).unwrap()
    };
    let d = read(SourceKind::Isic2017, "isic2017/labels.csv", "isic2017");
    assert_eq!((d.records.len(), d.rejects.len()), (2150, 0));
    assert_eq!(d.records.iter().filter(|r| r.melanoma == Some(true)).count(), 404);
    let d = read(SourceKind::Ham10000, "ham10000/metadata.csv", "ham10000");
    assert_eq!((d.records.len(), d.rejects.len()), (8010, 0));
    assert_eq!(d.records.iter().filter(|r| r.melanoma == Some(true)).count(), 890);
    let d = read(SourceKind::Isic2020, "isic2020_sample/train.csv", "isic2020_sample");
    assert_eq!((d.records.len(), d.rejects.len()), (2669, 0));
    assert_eq!(d.records.iter().filter(|r| r.melanoma == Some(true)).count(), 38);
    assert_eq!(d.records.iter().map(|r| r.group.as_str()).collect::<std::collections::HashSet<_>>().len(), 98);
}
