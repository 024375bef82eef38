mod common;

use std::fs;
use std::path::Path;

use common::{fixtures, images};
use naevus_data::{
    Cache, DataError, Metadata, PrepareOptions, Record, Reject, SourceData, SourceKind, SourceSpec, load_square,
    prepare, read_source,
};

/// The 8 ISIC 2017 fixture images plus three broken files and one reader reject.
fn inputs() -> SourceData {
    let spec = SourceSpec {
        kind: SourceKind::Isic2017,
        csv: Some(fixtures().join("isic2017/labels.csv")),
        images: images(),
        metadata_csv: None,
    };
    let mut data = read_source(&spec).unwrap();
    for (i, name) in ["empty.jpg", "truncated.jpg", "text.jpg"].iter().enumerate() {
        // Spread the bad files between good ones so slots are not contiguous.
        data.records.insert(
            2 * i + 1,
            Record {
                id: format!("BAD_{i}"),
                image_path: fixtures().join("bad").join(name),
                group: format!("BAD_{i}"),
                melanoma: Some(false),
                diagnosis: None,
                metadata: Metadata::default(),
                split: None,
                source: "isic2017".into(),
                row: None,
                file_bytes: None,
                crop: None,
                is_external: false,
            },
        );
    }
    data.rejects.push(Reject { row: Some(42), path: "labels.csv".into(), reason: "column \"melanoma\": expected 0 or 1, got \"x\"".into() });
    data
}

fn opts(size: u32) -> PrepareOptions {
    PrepareOptions { size, threads: Some(2), ..PrepareOptions::default() }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

#[test]
fn prepare_and_open() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    let summary = prepare(inputs(), &out, &opts(32)).unwrap();
    assert_eq!((summary.prepared, summary.already_done, summary.rejected), (8, 0, 4));
    assert_eq!(summary.rejects_csv, out.join("rejects.csv"));
    assert_eq!(summary.to_string(), format!("prepared 8 images, 4 rejected (see {})", out.join("rejects.csv").display()));

    let mut rdr = csv::Reader::from_path(&summary.rejects_csv).unwrap();
    assert_eq!(rdr.headers().unwrap(), vec!["row", "path", "reason"]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][0], "42");
    let find = |name: &str| rows.iter().find(|r| r[1].ends_with(name)).unwrap_or_else(|| panic!("{name} not in rejects"));
    assert_eq!(&find("empty.jpg")[2], "empty file (0 bytes)");
    assert!(find("truncated.jpg")[2].starts_with("truncated JPEG"));
    assert!(find("text.jpg")[2].starts_with("not a JPEG or PNG"));
    assert_eq!(&find("text.jpg")[0], "");

    let cache = Cache::open(&out).unwrap();
    assert_eq!((cache.len(), cache.size(), cache.dir()), (8, 32, out.as_path()));
    assert!(cache.records().iter().all(|r| !r.id.starts_with("BAD")));
    for (i, record) in cache.records().iter().enumerate() {
        let expected = load_square(&record.image_path, None, 32).unwrap();
        assert_eq!(cache.image(i).unwrap(), expected.as_slice(), "{}", record.id);
    }
    // Re-running a finished job does nothing new.
    let again = prepare(inputs(), &out, &opts(32)).unwrap();
    assert_eq!((again.prepared, again.already_done, again.rejected), (8, 8, 4));
}

#[test]
fn resume_after_kill_gives_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    prepare(inputs(), &out, &opts(24)).unwrap();
    let images = read(&out.join("images.u8"));
    let index = read(&out.join("index.jsonl"));

    // Simulate a kill: no index, progress log cut after 4 entries plus half a line,
    // and slots that were never logged hold garbage.
    fs::remove_file(out.join("index.jsonl")).unwrap();
    let log = fs::read_to_string(out.join("progress.log")).unwrap();
    let kept: Vec<&str> = log.lines().take(4).collect();
    let torn = format!("{}\n{{\"slot\":", kept.join("\n"));
    fs::write(out.join("progress.log"), torn).unwrap();
    let slot = 24 * 24 * 3;
    let kept_slots: Vec<usize> =
        kept.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["slot"].as_u64().unwrap() as usize).collect();
    let mut garbage = images.clone();
    for s in 0..11 {
        if !kept_slots.contains(&s) {
            garbage[s * slot..(s + 1) * slot].fill(7);
        }
    }
    fs::write(out.join("images.u8"), &garbage).unwrap();
    let err = Cache::open(&out).unwrap_err().to_string();
    assert!(err.contains("prepare has not finished"), "{err}");

    let summary = prepare(inputs(), &out, &opts(24)).unwrap();
    let ok_kept = kept.iter().filter(|l| !l.contains("reject")).count();
    assert_eq!((summary.prepared, summary.already_done, summary.rejected), (8, ok_kept, 4));
    assert!(read(&out.join("images.u8")) == images, "images.u8 differs after resume");
    assert!(read(&out.join("index.jsonl")) == index, "index.jsonl differs after resume");
    assert_eq!(Cache::open(&out).unwrap().len(), 8);
}

#[test]
fn mismatched_or_foreign_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    prepare(inputs(), &out, &opts(16)).unwrap();
    let err = prepare(inputs(), &out, &opts(20)).unwrap_err();
    assert!(matches!(err, DataError::Cache { .. }));
    let text = err.to_string();
    assert!(text.contains("11 records at 16 px") && text.contains("11 records at 20 px") && text.contains("empty directory"), "{text}");

    let mut fewer = inputs();
    fewer.records.pop();
    assert!(prepare(fewer, &out, &opts(16)).unwrap_err().to_string().contains("10 records at 16 px"));

    let foreign = dir.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("thesis.tex"), "precious").unwrap();
    let text = prepare(inputs(), &foreign, &opts(16)).unwrap_err().to_string();
    assert!(text.contains("not empty"), "{text}");
    assert_eq!(fs::read_to_string(foreign.join("thesis.tex")).unwrap(), "precious");

    assert!(prepare(inputs(), &dir.path().join("zero"), &opts(0)).is_err());
}

#[test]
fn empty_input_gives_empty_cache() {
    let dir = tempfile::tempdir().unwrap();
    let summary = prepare(SourceData::default(), dir.path(), &opts(8)).unwrap();
    assert_eq!((summary.prepared, summary.rejected), (0, 0));
    let cache = Cache::open(dir.path()).unwrap();
    assert!(cache.is_empty());
}

#[test]
fn combine_marks_external_images_and_keeps_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SourceSpec { kind: SourceKind::Isic2017, csv: Some(fixtures().join("isic2017/labels.csv")), images: images(), metadata_csv: None };
    let mut primary = read_source(&spec).unwrap();
    let external = SourceData { records: primary.records.split_off(5), rejects: Vec::new() };
    prepare(primary, &dir.path().join("a"), &opts(16)).unwrap();
    prepare(external, &dir.path().join("b"), &opts(16)).unwrap();
    let (a, b) = (Cache::open(&dir.path().join("a")).unwrap(), Cache::open(&dir.path().join("b")).unwrap());

    let n = naevus_data::combine(&a, std::slice::from_ref(&b), &dir.path().join("ab")).unwrap();
    let ab = Cache::open(&dir.path().join("ab")).unwrap();
    assert_eq!((n, ab.len(), ab.size()), (8, 8, 16));
    assert_eq!(ab.records().iter().filter(|r| r.is_external).count(), 3);
    assert!(ab.records()[..5].iter().all(|r| !r.is_external));
    assert_eq!(ab.records()[6].id, b.records()[1].id);
    assert_eq!(ab.image(6).unwrap(), b.image(1).unwrap());
    assert_eq!(ab.image(2).unwrap(), a.image(2).unwrap());

    // The same image twice, or two sizes, are refused with the reason.
    let err = naevus_data::combine(&a, std::slice::from_ref(&a), &dir.path().join("aa")).unwrap_err().to_string();
    assert!(err.contains("is in both"), "{err}");
    let spec_c = SourceSpec { kind: SourceKind::Isic2017, csv: Some(fixtures().join("isic2017/labels.csv")), images: images(), metadata_csv: None };
    prepare(read_source(&spec_c).unwrap(), &dir.path().join("c"), &opts(8)).unwrap();
    let c = Cache::open(&dir.path().join("c")).unwrap();
    let err = naevus_data::combine(&b, &[c], &dir.path().join("bc")).unwrap_err().to_string();
    assert!(err.contains("8 px") && err.contains("16 px"), "{err}");
    // A non-empty output directory is never overwritten.
    let err = naevus_data::combine(&a, &[], &dir.path().join("ab")).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
}

/// The slot of `id` in images.u8, from index.jsonl.
fn slot_of(out: &Path, id: &str) -> usize {
    let index = fs::read_to_string(out.join("index.jsonl")).unwrap();
    let line = index.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|l| l["record"]["id"] == id).unwrap();
    line["slot"].as_u64().unwrap() as usize
}

#[test]
fn a_flipped_byte_in_images_u8_is_refused_by_every_reader_and_prepare_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    prepare(inputs(), &out, &opts(16)).unwrap();
    let good = read(&out.join("images.u8"));
    let id = Cache::open(&out).unwrap().records()[2].id.clone();
    let mut damaged = good.clone();
    damaged[slot_of(&out, &id) * 16 * 16 * 3 + 100] ^= 0x01;
    fs::write(out.join("images.u8"), &damaged).unwrap();

    let cache = std::sync::Arc::new(Cache::open(&out).unwrap());
    let error = cache.image(2).unwrap_err().to_string();
    assert!(error.contains("images.u8") && error.contains(&id) && error.contains("checksum") && error.contains("naevus prepare"), "{error}");
    assert!(cache.image(1).is_ok() && cache.image(3).is_ok());
    // Every path that reads pixels: the loader, one image at another size, combine.
    let loaded = naevus_data::batches(cache.clone(), (0..8).collect(), naevus_data::LoaderConfig { batch_size: 2, ..Default::default() })
        .collect::<Result<Vec<_>, _>>();
    assert_eq!(loaded.unwrap_err().to_string(), error);
    assert_eq!(naevus_data::image_at_size(&cache, 2, 8).unwrap_err().to_string(), error);
    assert_eq!(naevus_data::combine(&cache, &[], &dir.path().join("combined")).unwrap_err().to_string(), error);

    // Run again on the same directory, prepare decodes the damaged image again, and only it.
    let again = prepare(inputs(), &out, &opts(16)).unwrap();
    assert_eq!((again.prepared, again.already_done, again.redone_damaged), (8, 7, 1));
    assert!(read(&out.join("images.u8")) == good, "images.u8 differs after the repair");
    assert!(Cache::open(&out).unwrap().image(2).is_ok());
}

#[test]
fn a_cache_of_the_format_before_checksums_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    prepare(inputs(), &out, &opts(16)).unwrap();
    let manifest = fs::read_to_string(out.join("cache.json")).unwrap();
    fs::write(out.join("cache.json"), manifest.replace("\"format_version\": 2", "\"format_version\": 1")).unwrap();
    for error in [Cache::open(&out).unwrap_err().to_string(), prepare(inputs(), &out, &opts(16)).unwrap_err().to_string()] {
        assert!(error.contains("cache format 1") && error.contains("delete the directory and run `naevus prepare` again"), "{error}");
    }
}

#[test]
fn cache_json_names_the_cache_identity_and_a_cache_an_older_naevus_began_still_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cache");
    prepare(inputs(), &out, &opts(16)).unwrap();
    let manifest = fs::read_to_string(out.join("cache.json")).unwrap();
    let identity = naevus_data::cache::identity(16, &inputs().records).unwrap();
    assert!(manifest.contains(&format!("\"fingerprint\": \"{identity}\"")), "{manifest}");
    // The run's identity covers the accepted records only: the rejects are not in it.
    let cache = Cache::open(&out).unwrap();
    assert_eq!(cache.identity().unwrap(), naevus_data::cache::identity(16, cache.records()).unwrap());
    assert_ne!(cache.identity().unwrap(), identity);

    // cache.json as naevus wrote it before: FNV-1a of the records' JSON.
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in serde_json::to_vec(&inputs().records).unwrap() {
        fnv = (fnv ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fs::write(out.join("cache.json"), manifest.replace(&identity, &format!("{fnv:016x}"))).unwrap();
    assert_eq!(prepare(inputs(), &out, &opts(16)).unwrap().prepared, cache.len());

    fs::write(out.join("cache.json"), manifest.replace(&identity, "0123456789abcdef")).unwrap();
    let text = prepare(inputs(), &out, &opts(16)).unwrap_err().to_string();
    assert!(text.contains("already holds a cache") && text.contains("0123456789abcdef"), "{text}");
}

/// The id of a process that has ended.
#[cfg(unix)]
fn ended_process_id() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

#[cfg(unix)]
#[test]
fn temporaries_that_killed_runs_left_are_removed_by_the_next_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let dead = ended_process_id();
    // Killed while writing its first file: the directory holds nothing but that temporary.
    let out = dir.path().join("cache");
    fs::create_dir(&out).unwrap();
    fs::write(out.join(format!(".cache.json.{dead}.tmp")), "{\"format_ver").unwrap();
    prepare(inputs(), &out, &opts(16)).unwrap();
    assert!(!out.join(format!(".cache.json.{dead}.tmp")).exists());

    // Killed later: stale temporaries go; a live process's, and files of other names, stay.
    let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let names = [format!(".index.jsonl.{dead}.tmp"), format!(".progress.log.{dead}.tmp"), format!(".index.jsonl.{}.tmp", live.id()), "notes.tmp".into()];
    for name in &names {
        fs::write(out.join(name), "partial").unwrap();
    }
    prepare(inputs(), &out, &opts(16)).unwrap();
    let present: Vec<bool> = names.iter().map(|name| out.join(name).exists()).collect();
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(present, [false, false, true, true]);
}
