//! Where results go (issue 29, items 9, 10 and part of 14): `predict --images` ids that
//! identify files, with a path column; `--out` onto standard output, a FIFO, a symbolic link
//! or a device written through rather than replaced; export and combine folders that appear
//! whole or not at all, under a lock; repeated `export --folds`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fixtures, naevus, text};

/// A prepared fixture cache and a tiny two-fold run on it, in `dir`.
fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    let source = fixtures().join("isic2017");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", "32", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let run = dir.join("run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--folds", "2",
        "--epochs", "1", "--batch-size", "4", "--image-size", "24",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    (cache, run)
}

fn fixture_image(id: &str) -> PathBuf {
    fixtures().join(format!("isic2017/images/{id}.jpg"))
}

fn predict(run: &Path, images: &[&Path], out: &str) -> std::process::Output {
    let mut args = vec!["predict", "--run", run.to_str().unwrap(), "--out", out, "--images"];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    naevus(&args)
}

/// The rows of a predictions CSV written by predict --images: id -> (score, path).
fn rows(csv: &str) -> HashMap<String, (f64, String)> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    // The tiny run is calibrated and too small for an out-of-domain guard.
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), ["image_name", "target", "target_uncalibrated", "path"]);
    reader.records().map(|r| {
        let r = r.unwrap();
        (r[0].to_string(), (r[1].parse().unwrap(), r[3].to_string()))
    }).collect()
}

/// Issue 29.9: with d1/a.jpg, d2/a.jpg and d3/a-2.jpg, every row names its own file.
#[test]
fn predict_ids_are_paths_relative_to_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    let images = dir.path().join("images");
    for (sub, name, source) in [("d1", "a.jpg", "ISIC_0000000"), ("d2", "a.jpg", "ISIC_0000002"), ("d3", "a-2.jpg", "ISIC_0000004")] {
        std::fs::create_dir_all(images.join(sub)).unwrap();
        std::fs::copy(fixture_image(source), images.join(sub).join(name)).unwrap();
    }
    let alone = |path: &Path| -> f64 {
        let csv = dir.path().join("alone.csv");
        let out = predict(run, &[path], csv.to_str().unwrap());
        assert!(out.status.success(), "{}", text(&out));
        let rows = rows(&std::fs::read_to_string(&csv).unwrap());
        // A file given alone has its name without extension as its id.
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(rows.len(), 1);
        rows[stem].0
    };

    // One folder: ids relative to it, '/'-separated, sub-folders included.
    let csv = dir.path().join("folder.csv");
    let out = predict(run, &[&images], csv.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    let found = rows(&std::fs::read_to_string(&csv).unwrap());
    let mut ids: Vec<&String> = found.keys().collect();
    ids.sort();
    assert_eq!(ids, ["d1/a", "d2/a", "d3/a-2"]);
    for (id, (score, path)) in &found {
        assert_eq!(Path::new(path), images.join(id).with_extension("jpg"), "{id}");
        assert!((score - alone(Path::new(path))).abs() < 1e-9, "{id} holds another file's score");
    }
    // Several inputs: each id is the path as given, so equal names in two folders never meet.
    let csv = dir.path().join("several.csv");
    let (d1, d2) = (images.join("d1"), images.join("d2"));
    let out = predict(run, &[&d1, &d2], csv.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    let found = rows(&std::fs::read_to_string(&csv).unwrap());
    for d in [&d1, &d2] {
        let id = d.join("a").to_str().unwrap().to_string();
        assert_eq!(Path::new(&found[&id].1), d.join("a.jpg"));
    }
    // One file named twice is refused, not numbered.
    let a = d1.join("a.jpg");
    let out = predict(run, &[&d1, &a], dir.path().join("twice.csv").to_str().unwrap());
    assert!(!out.status.success() && text(&out).contains("both have the id"), "{}", text(&out));
    // Two files that differ only in their extension would share an id: refused too.
    std::fs::copy(&a, d1.join("a.png")).unwrap();
    let out = predict(run, &[&d1], dir.path().join("twins.csv").to_str().unwrap());
    assert!(!out.status.success() && text(&out).contains("both have the id \"a\""), "{}", text(&out));
    std::fs::remove_file(d1.join("a.png")).unwrap();

    // What reads predictions back takes the path column: evaluate and ensemble.
    let csv = dir.path().join("folder.csv");
    let truth = dir.path().join("truth.csv");
    std::fs::write(&truth, "image_name,target\nd1/a,0\nd2/a,1\nd3/a-2,0\n").unwrap();
    let out = naevus(&["evaluate", "--pred", csv.to_str().unwrap(), "--truth", truth.to_str().unwrap(), "--bootstrap", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    let joined = dir.path().join("joined.csv");
    let out = naevus(&["ensemble", csv.to_str().unwrap(), csv.to_str().unwrap(), "--out", joined.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(naevus_run::Predictions::read(&joined).unwrap().len(), 3);
}

/// Issue 29.9: names that are not UTF-8 are named and skipped, never collapsed into one id.
#[cfg(unix)]
#[test]
fn predict_skips_names_that_are_not_utf8_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(fixture_image("ISIC_0000000"), images.join("plain.jpg")).unwrap();
    for (byte, source) in [(0xff, "ISIC_0000002"), (0xfe, "ISIC_0000004")] {
        let name = [b'x', byte, b'.', b'j', b'p', b'g'];
        std::fs::copy(fixture_image(source), images.join(std::ffi::OsStr::from_bytes(&name))).unwrap();
    }
    let csv = dir.path().join("p.csv");
    let out = predict(run, &[&images], csv.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    let found = rows(&std::fs::read_to_string(&csv).unwrap());
    assert_eq!(found.keys().collect::<Vec<_>>(), ["plain"]);
    for escaped in ["x\\xFF.jpg", "x\\xFE.jpg"] {
        assert!(text(&out).contains(escaped) && text(&out).contains("not UTF-8"), "{escaped} is named: {}", text(&out));
    }
    assert!(text(&out).contains("2 file(s) skipped"), "{}", text(&out));
}

/// Issue 29.9: `--out -` is standard output; a symbolic link keeps pointing at its target,
/// which gets the CSV; a FIFO gets the CSV and stays a FIFO; so does /dev/stdout.
#[cfg(unix)]
#[test]
fn predict_out_writes_through_stdout_links_and_fifos() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    let image = fixture_image("ISIC_0000000");

    let out = predict(run, &[&image], "-");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(rows(&stdout).len(), 1, "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to standard output"), "{}", text(&out));
    assert!(!dir.path().join("-").exists() && !Path::new("-").exists());

    let target = dir.path().join("real/scores.csv");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("scores.csv");
    std::os::unix::fs::symlink("real/scores.csv", &link).unwrap();
    let out = predict(run, &[&image], link.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), stdout);

    let fifo = dir.path().join("scores.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (sender, received) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let _ = sender.send(std::fs::read_to_string(&reader_path).map_err(|e| e.to_string()));
    });
    let out = predict(run, &[&image], fifo.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced by a file");
    let read = received.recv_timeout(Duration::from_secs(10)).expect("the FIFO's reader got the CSV within 10 s");
    assert_eq!(read.unwrap(), stdout);

    // The case: /dev/stdout is a link to the process's standard output (a pipe here).
    let out = predict(run, &[&image], "/dev/stdout");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&stdout), "{}", text(&out));
    assert!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type().is_symlink());
}

/// `ensemble --out -` writes the CSV alone on standard output.
#[test]
fn ensemble_out_dash_is_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&a, "image_name,target\nx,0.25\ny,0.75\n").unwrap();
    std::fs::write(&b, "image_name,target\nx,0.75\ny,0.25\n").unwrap();
    let out = naevus(&["ensemble", a.to_str().unwrap(), b.to_str().unwrap(), "--out", "-"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "image_name,target\nx,0.5\ny,0.5\n");
}

/// The names in `dir` that start with `prefix`, sorted.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// Issue 29.10: two exports into one --out at once: one wins, the other fails clearly, and
/// the folder holds one run's folds only.
#[test]
fn concurrent_exports_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    for round in 0..3 {
        let model = dir.path().join(format!("model-{round}"));
        let spawn = |fold: &str| {
            Command::new(env!("CARGO_BIN_EXE_naevus"))
                .args(["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap(), "--folds", fold])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (first, second) = (spawn("fold-0"), spawn("fold-1"));
        let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
        let winners = outputs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "round {round}: {}\n{}", text(&outputs[0]), text(&outputs[1]));
        let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
        assert!(text(loser).contains("another naevus process") || text(loser).contains("not empty"), "{}", text(loser));
        let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("run.json")).unwrap()).unwrap();
        let folds: Vec<String> = info["folds"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
        assert_eq!(names_starting(&model, "fold-"), folds, "round {round}: the folder mixes two exports");
        assert!(names_starting(dir.path(), &format!(".model-{round}.")).iter().all(|n| n.ends_with(".lock")), "nothing half-written beside");
    }
}

/// Issue 29.10: an export that fails half-way leaves nothing at --out (nor beside it), and
/// the retry succeeds; what a killed export left is removed.
#[test]
fn a_failed_export_leaves_nothing_and_the_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = tiny_run(dir.path());
    let best = run.join("fold-1/best.bpk");
    let intact = std::fs::read(&best).unwrap();
    let mut damaged = intact.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x5a;
    std::fs::write(&best, &damaged).unwrap();

    let model = dir.path().join("model");
    let export = || naevus(&["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap()]);
    let out = export();
    assert!(!out.status.success() && text(&out).contains("fold-1/best.bpk"), "{}", text(&out));
    assert!(!model.exists(), "a failed export left {}", model.display());
    assert_eq!(names_starting(dir.path(), ".model."), [".model.lock"]);

    std::fs::write(&best, &intact).unwrap();
    std::fs::create_dir_all(dir.path().join(".model.4194999.partial/fold-0")).unwrap();
    let out = export();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(".model.4194999.partial"), "the leftover is named: {}", text(&out));
    assert_eq!(names_starting(&model, "fold-"), ["fold-0", "fold-1"]);
    assert_eq!(names_starting(dir.path(), ".model."), [".model.lock"]);
}

/// Issue 29.14: `export --folds fold-0,fold-0` is refused, not counted as two folds.
#[test]
fn export_refuses_a_fold_named_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    let model = dir.path().join("model");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap(), "--folds", "fold-0,fold-0"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--folds names fold-0 twice"), "{}", text(&out));
    assert!(!model.exists());
}

/// Issue 29.10: a combine that fails half-way (a damaged image in the external cache) leaves
/// nothing at --out, and the retry succeeds once the cache is repaired.
#[test]
fn a_failed_combine_leaves_nothing_and_the_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = &tiny_run(dir.path());
    // External images under ids of their own.
    let folders = dir.path().join("folders");
    for (class, source, id) in [("benign", "ISIC_0000000", "EXT_1"), ("malignant", "ISIC_0000002", "EXT_2"), ("benign", "ISIC_0000004", "EXT_3")] {
        std::fs::create_dir_all(folders.join(class)).unwrap();
        std::fs::copy(fixture_image(source), folders.join(class).join(format!("{id}.jpg"))).unwrap();
    }
    let external = dir.path().join("external");
    let out = naevus(&["prepare", "--source", "folders", "--images", folders.to_str().unwrap(), "--size", "32", "--out", external.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let images = external.join("images.u8");
    let intact = std::fs::read(&images).unwrap();
    let mut damaged = intact.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x5a;
    std::fs::write(&images, &damaged).unwrap();

    let combined = dir.path().join("combined");
    let combine = || naevus(&["combine", cache.to_str().unwrap(), "--external", external.to_str().unwrap(), "--out", combined.to_str().unwrap()]);
    let out = combine();
    assert!(!out.status.success() && text(&out).contains("damaged"), "{}", text(&out));
    assert!(!combined.exists(), "a failed combine left {}", combined.display());
    assert_eq!(names_starting(dir.path(), ".combined."), [".combined.lock"]);

    std::fs::write(&images, &intact).unwrap();
    let out = combine();
    assert!(out.status.success() && text(&out).contains("combined 11 images (8 primary, 3 external)"), "{}", text(&out));
}

/// Issue 29.12: a CSV of image paths reads its age, sex and site cells by the one metadata
/// rule; a cell that does not parse stops the job naming the line and the column.
#[test]
fn predict_reads_a_csv_of_paths_by_the_metadata_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = &tiny_run(dir.path());
    std::fs::copy(fixture_image("ISIC_0000000"), dir.path().join("a.jpg")).unwrap();
    let list = dir.path().join("list.csv");
    for (row, column) in [("a.jpg,1e308,male,torso", "age"), ("a.jpg,40,M,torso", "sex"), ("a.jpg,40,female,moon", "site")] {
        std::fs::write(&list, format!("path,age,sex,site\n{row}\n")).unwrap();
        let out = predict(run, &[&list], dir.path().join("p.csv").to_str().unwrap());
        assert!(!out.status.success() && text(&out).contains(&format!("list.csv line 2, column {column}:")), "{row}: {}", text(&out));
    }
    std::fs::write(&list, "path,age,sex,site\na.jpg,NA,Female,back\n").unwrap();
    let csv = dir.path().join("p.csv");
    let out = predict(run, &[&list], csv.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&csv).unwrap().lines().nth(1).unwrap().starts_with("a,"), "{}", std::fs::read_to_string(&csv).unwrap());
}
