//! Label CSVs that are broken as a careless export or a hostile file breaks them (issue 18):
//! an unterminated quote, text after a closing quote, rows that all disagree with the header,
//! a line of many megabytes. Each is reported with its file and line, a structural error stops
//! the job instead of swallowing rows, and messages quote only a short excerpt of the input.

mod common;

use std::fs;
use std::path::PathBuf;

use common::images;
use naevus_data::{DataError, SourceData, SourceKind, SourceSpec, read_source};

const HEADER: &str = "image_id,melanoma,seborrheic_keratosis,diagnosis";
const IDS: [&str; 8] =
    ["ISIC_0000000", "ISIC_0000002", "ISIC_0000004", "ISIC_0000013", "ISIC_0000080", "ISIC_0001769", "ISIC_0012090", "ISIC_0012103"];

fn read_csv(text: &[u8]) -> (Result<SourceData, DataError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    fs::write(&csv, text).unwrap();
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(csv.clone()), images: images(), metadata_csv: None };
    (read_source(&spec), csv, dir)
}

/// The header and a good row for each fixture image (80 rows, the ids repeated, so most are
/// duplicate rejects: only the row count matters here).
fn rows(edit: impl Fn(usize, String) -> String) -> String {
    let mut text = format!("{HEADER}\n");
    for i in 0..80 {
        text.push_str(&edit(i + 2, format!("{},0,0,nevus", IDS[i % IDS.len()])));
        text.push('\n');
    }
    text
}

fn csv_error(result: Result<SourceData, DataError>) -> (u64, String) {
    match result {
        Err(DataError::Csv { line, message, .. }) => (line, message),
        other => panic!("expected a CSV error, got {other:?}"),
    }
}

#[test]
fn an_unterminated_quote_stops_the_job_at_the_line_it_began() {
    // Line 5 opens a quote it never closes: the csv crate would read lines 5..81 as one field.
    let text = rows(|line, row| if line == 5 { row.replace(",nevus", ",\"nevus") } else { row });
    let (result, csv, _dir) = read_csv(text.as_bytes());
    let error = result.unwrap_err();
    let shown = error.to_string();
    let (line, message) = csv_error(Err(error));
    assert_eq!(line, 5);
    assert!(message.starts_with("field 4 opens a quote (at character 18) that is not closed on its line"), "{message}");
    assert!(shown.starts_with(&format!("{}: line 5: ", csv.display())), "{shown}");
}

#[test]
fn a_quote_error_rejects_its_row_naming_line_and_field() {
    // "0"0 would be read as 00, a valid melanoma flag, without a word.
    let text = rows(|line, row| if line == 3 { row.replace(",0,0,", ",\"0\"0,0,") } else { row });
    let (result, csv, _dir) = read_csv(text.as_bytes());
    let data = result.unwrap();
    let reject = data.rejects.iter().find(|r| r.row == Some(3)).expect("line 3 rejected");
    assert_eq!(reject.reason, "malformed CSV row: field 2 has text after its closing quote (at character 17): \"\"0\"0,0,nevus\"");
    assert_eq!(reject.path, csv.display().to_string());
    assert!(data.records.iter().all(|r| r.row != Some(3)));
    // Everything else still reads: 8 distinct images, the other rows duplicates.
    assert_eq!(data.records.len(), 8);
    // Doubled quotes inside a quoted field are fine.
    let text = rows(|line, row| if line == 2 { row.replace(",nevus", ",\"ne\"\"vus\"") } else { row });
    let data = read_csv(text.as_bytes()).0.unwrap();
    assert_eq!(data.records[0].diagnosis.as_deref(), Some("ne\"vus"));
}

#[test]
fn rows_that_all_have_another_field_count_fail_once_on_the_header() {
    let text = rows(|_, row| format!("{row},extra"));
    let (line, message) = csv_error(read_csv(text.as_bytes()).0);
    assert_eq!(line, 1);
    assert_eq!(message, "the header has 4 fields but no data row does (line 2 has 5); check the header and the delimiter");
    // One row off is still that row's reject, with its line.
    let text = rows(|line, row| if line == 7 { format!("{row},extra") } else { row });
    let data = read_csv(text.as_bytes()).0.unwrap();
    let reject = data.rejects.iter().find(|r| r.row == Some(7)).unwrap();
    assert_eq!(reject.reason, "malformed CSV row: expected 4 fields, found 5");
}

#[test]
fn a_50_mb_line_gives_a_short_error() {
    let mut text = format!("{HEADER}\nISIC_0000000,0,0,nevus\n").into_bytes();
    text.extend(std::iter::repeat_n(b'x', 50 << 20));
    let (line, message) = csv_error(read_csv(&text).0);
    assert_eq!(line, 3);
    assert!(message.starts_with("the line is 52428800 bytes long, over the 1048576 bytes a label CSV line may have"), "{message}");
    assert!(message.len() < 400, "{} bytes", message.len());
    // The same line as the header.
    let (line, message) = csv_error(read_csv(&text[HEADER.len() + 24..]).0);
    assert_eq!(line, 1);
    assert!(message.len() < 400, "{} bytes", message.len());
}

#[test]
fn messages_quote_only_an_excerpt_of_a_long_value() {
    let long = "y".repeat(100_000);
    let text = rows(|line, row| if line == 2 { row.replacen(",0,", &format!(",{long},"), 1) } else { row });
    let data = read_csv(text.as_bytes()).0.unwrap();
    let reject = data.rejects.iter().find(|r| r.row == Some(2)).unwrap();
    assert!(reject.reason.starts_with("column \"melanoma\": expected 0 or 1, got \"yyyy"), "{}", reject.reason);
    assert!(reject.reason.ends_with("... (100000 bytes in all)\""), "{}", &reject.reason[..200]);
    assert!(reject.reason.len() < 200);
    // A long header field in a missing-column error.
    let text = format!("{long},melanoma\nISIC_0000000,0\n");
    let message = read_csv(text.as_bytes()).0.unwrap_err().to_string();
    assert!(message.len() < 400 && message.contains("required column \"image_id\" not found"), "{message}");
}

/// A label CSV that never ends (`/dev/zero`, a FIFO) was read into memory without end; it is
/// refused at the 1 GiB every CSV may have.
#[cfg(unix)]
#[test]
fn a_label_csv_that_never_ends_is_refused_at_the_bound() {
    let images = tempfile::tempdir().unwrap();
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(PathBuf::from("/dev/zero")), images: images.path().to_path_buf(), metadata_csv: None };
    let message = read_source(&spec).unwrap_err().to_string();
    assert!(message.contains("/dev/zero is 1073741825 bytes long") && message.contains("1 GiB"), "{message}");
}
