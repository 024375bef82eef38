//! One rule for metadata and label cells (issue 29.12): an age, sex, site or split that does
//! not parse leaves the field unknown, keeps the image, and is listed in rejects.csv with its
//! row, column and value; a label is 0 or 1 and nothing else; a header naming a column twice
//! is refused.

mod common;

use std::fs;

use common::images;
use naevus_data::metadata::{AGE_YEARS, parse_age, parse_label, parse_sex, parse_site};
use naevus_data::sources::is_kept_note;
use naevus_data::{DataError, Reject, SourceData, SourceKind, SourceSpec, Sex, read_source};

fn read(kind: SourceKind, csv_text: &str, metadata_text: Option<&str>) -> (Result<SourceData, DataError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    fs::write(&csv, csv_text).unwrap();
    let metadata_csv = metadata_text.map(|text| {
        let path = dir.path().join("metadata.csv");
        fs::write(&path, text).unwrap();
        path
    });
    let spec = SourceSpec { kind, csv: Some(csv), images: images(), metadata_csv };
    (read_source(&spec), dir)
}

fn notes(data: &SourceData) -> Vec<(Option<usize>, String)> {
    data.rejects.iter().map(|r: &Reject| (r.row, r.reason.clone())).collect()
}

#[test]
fn cells_follow_one_rule() {
    assert_eq!(parse_age("55.0"), Ok(Some(55.0)));
    assert_eq!(parse_age(" Unknown "), Ok(None));
    assert_eq!(parse_age(""), Ok(None));
    for bad in ["1e308", "-1", "NaN", "abc", "200", "inf"] {
        let message = parse_age(bad).unwrap_err();
        assert!(message.contains(&format!("got \"{bad}\"")) && message.contains(&AGE_YEARS.end().to_string()), "{bad}: {message}");
    }
    assert_eq!(parse_sex("MALE"), Ok(Some(Sex::Male)));
    assert_eq!(parse_sex("unknown"), Ok(None));
    assert!(parse_sex("M").unwrap_err().contains("expected male or female"));
    assert_eq!(parse_site(" Back "), Ok(Some("torso".into())));
    assert_eq!(parse_site("palms/soles"), Ok(Some("palms/soles".into())));
    assert!(parse_site("moon").unwrap_err().contains("head/neck"));
    for (text, label) in [("0", false), ("1", true), ("0.0", false), ("1.0", true), ("true", true), ("False", false)] {
        assert_eq!(parse_label(text), Ok(label), "{text}");
    }
    for bad in ["-1", "1e308", "0.7", "2", "NaN", "yes", ""] {
        assert!(parse_label(bad).unwrap_err().starts_with("expected 0 or 1"), "{bad}");
    }
    // A long cell is quoted short.
    let message = parse_age(&"9".repeat(100_000)).unwrap_err();
    assert!(message.len() < 300, "{} bytes", message.len());
}

#[test]
fn unparseable_metadata_keeps_the_image_and_is_listed_with_row_column_and_value() {
    let csv = "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,target\n\
        ISIC_0000000,P1,female,1e308,torso,0\n\
        ISIC_0000002,P1,female,-1,torso,1\n\
        ISIC_0000004,P2,male,NaN,torso,1\n\
        ISIC_0012090,P3,male,abc,torso,0\n\
        ISIC_0012103,P4,male,200,torso,0\n\
        ISIC_0000013,P5,M,40,moon,0\n\
        ISIC_0000080,P6,female,45,,0\n";
    let (data, _dir) = read(SourceKind::Isic2020, csv, None);
    let data = data.unwrap();
    // Every image is kept.
    assert_eq!(data.records.len(), 7, "{:?}", notes(&data));
    assert!(data.records[..5].iter().all(|r| r.metadata.age.is_none()));
    assert_eq!((data.records[5].metadata.sex, data.records[5].metadata.site.clone(), data.records[5].metadata.age), (None, None, Some(40.0)));
    assert_eq!(data.records[6].metadata.age, Some(45.0));
    // ...and each unreadable cell is a line naming the row, the column and the value.
    let listed = notes(&data);
    let expected_ages = ["1e308", "-1", "NaN", "abc", "200"];
    assert_eq!(listed.len(), 7, "{listed:#?}");
    for (i, value) in expected_ages.iter().enumerate() {
        assert_eq!(listed[i].0, Some(i + 2));
        assert!(listed[i].1.starts_with("kept, age unknown: column \"age_approx\": expected an age in years"), "{}", listed[i].1);
        assert!(listed[i].1.ends_with(&format!("got \"{value}\"")), "{}", listed[i].1);
    }
    assert_eq!(listed[5].0, Some(7));
    assert!(listed[5].1.starts_with("kept, sex unknown: column \"sex\"") && listed[5].1.contains("\"M\""), "{}", listed[5].1);
    assert!(listed[6].1.starts_with("kept, site unknown: column \"anatom_site_general_challenge\"") && listed[6].1.contains("\"moon\""), "{}", listed[6].1);
    assert!(data.rejects.iter().all(is_kept_note));
    assert!(data.rejects.iter().all(|r| r.path.ends_with("labels.csv")));
}

#[test]
fn a_row_rejected_for_its_label_is_not_also_listed_as_kept() {
    let csv = "image_id,melanoma,seborrheic_keratosis,age_approximate,sex,split\n\
        ISIC_0000000,-1,0,abc,female,train\n\
        ISIC_0000002,1,0,55,female,holdout\n";
    let (data, _dir) = read(SourceKind::Isic2017, csv, None);
    let listed = notes(&data.unwrap());
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert_eq!(listed[0], (Some(2), "column \"melanoma\": expected 0 or 1, got \"-1\"".to_string()));
    assert_eq!(listed[1].0, Some(3));
    assert!(listed[1].1.starts_with("kept, split unknown: column \"split\": expected train, val or test, got \"holdout\""), "{}", listed[1].1);
}

#[test]
fn one_hot_values_are_0_or_1_only() {
    let header = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC";
    let csv = format!(
        "{header}\nISIC_0000000,-1,1,0,0,0,0,0\nISIC_0000002,1e308,0,0,0,0,0,0\nISIC_0012090,0.7,0,0,0,0,0,0\nISIC_0000004,1.0,0.0,0,0,0,0,0\n"
    );
    // The second row of an image is ignored, its cells unread.
    let metadata = "image_id,lesion_id,age,sex,localization\nISIC_0000004,HAM_1,-1,female,back\nISIC_0000004,HAM_2,abc,female,back\n";
    let (data, _dir) = read(SourceKind::Isic2018, &csv, Some(metadata));
    let data = data.unwrap();
    assert_eq!(data.records.len(), 1);
    assert_eq!((data.records[0].id.as_str(), data.records[0].metadata.age, data.records[0].group.as_str()), ("ISIC_0000004", None, "HAM_1"));
    let listed = notes(&data);
    assert_eq!(listed.len(), 4, "{listed:#?}");
    let reasons: Vec<&str> = listed.iter().map(|(_, reason)| reason.as_str()).collect();
    assert!(reasons.contains(&"column \"MEL\": expected 0 or 1, got \"-1\""), "{reasons:#?}");
    assert!(reasons.contains(&"column \"MEL\": expected 0 or 1, got \"1e308\""), "{reasons:#?}");
    assert!(reasons.contains(&"column \"MEL\": expected 0 or 1, got \"0.7\""), "{reasons:#?}");
    let side = data.rejects.iter().find(|r| is_kept_note(r)).unwrap();
    assert!(side.path.ends_with("metadata.csv") && side.row == Some(2), "{side:?}");
    assert!(side.reason.starts_with("kept, age unknown: column \"age\"") && side.reason.ends_with("got \"-1\""), "{}", side.reason);
}

#[test]
fn a_header_naming_a_column_twice_is_refused() {
    let csv = "image_id,melanoma,seborrheic_keratosis,Melanoma\nISIC_0000000,0,0,1\n";
    let (result, _dir) = read(SourceKind::Isic2017, csv, None);
    match result {
        Err(DataError::Csv { line, message, .. }) => {
            assert_eq!(line, 1);
            assert!(message.contains("column \"Melanoma\" twice (fields 2 and 4)"), "{message}");
        }
        other => panic!("expected the header refused, got {other:?}"),
    }
    // The side metadata CSV too.
    let metadata = "image,age_approx,sex,age_approx\nISIC_0000000,40,male,50\n";
    let (result, _dir) = read(SourceKind::Isic2019, "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC\nISIC_0000000,0,1,0,0,0,0,0,0\n", Some(metadata));
    let message = result.unwrap_err().to_string();
    assert!(message.contains("metadata.csv") && message.contains("\"age_approx\" twice"), "{message}");
}
