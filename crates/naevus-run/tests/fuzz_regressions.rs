//! Every input of `tests/fixtures/fuzz/<target>/` (the fuzz targets' seeds, and every input a
//! fuzzer found a fault with, minimised) through the very harness its target in `fuzz/` runs
//! (fuzz/src/lib.rs, included below, with its 1 GiB cap on single allocations): each must
//! return, Ok or Err, without a panic. See fuzz/README.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use naevus_data::SourceKind;
use naevus_run::{Checkpoint, RunDir};

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)] // scratch() and csv_dir() serve the fuzzers' single process only
mod harness;

/// Runs `harness` on every file of `tests/fixtures/fuzz/<target>/` in a fresh directory each,
/// and fails naming every file it panicked on.
fn each_input(target: &str, harness: impl Fn(&Path, &[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fuzz").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    let mut panicked = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read fuzz input");
        let scratch = tempfile::tempdir().expect("temp dir");
        if catch_unwind(AssertUnwindSafe(|| harness(scratch.path(), &data))).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(panicked.is_empty(), "{target}: panicked on {panicked:#?}");
}

fn csv_inputs(target: &str, kind: SourceKind) {
    each_input(target, |dir, data| {
        harness::make_images(dir);
        harness::csv_source(kind, dir, data);
    });
}

#[test]
fn csv_isic2017_inputs_return() {
    csv_inputs("csv_isic2017", SourceKind::Isic2017);
}

#[test]
fn csv_isic2020_inputs_return() {
    csv_inputs("csv_isic2020", SourceKind::Isic2020);
}

#[test]
fn csv_ham10000_inputs_return() {
    csv_inputs("csv_ham10000", SourceKind::Ham10000);
}

#[test]
fn csv_isic2019_inputs_return() {
    csv_inputs("csv_isic2019", SourceKind::Isic2019);
}

#[test]
fn predictions_csv_inputs_return() {
    each_input("predictions_csv", harness::predictions_csv);
}

#[test]
fn image_decode_inputs_return() {
    each_input("image_decode", harness::image_decode);
}

#[test]
fn cache_open_inputs_return() {
    each_input("cache_open", harness::cache_open);
}

#[test]
fn checkpoint_inputs_return() {
    each_input("checkpoint", harness::checkpoint);
}

/// The seeds are what they claim: the sealed training state reads back whole.
#[test]
fn checkpoint_seed_is_a_training_state() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fuzz/checkpoint/seed-training-sealed.bin");
    let data = std::fs::read(seed).expect("seed");
    let dir = tempfile::tempdir().expect("temp dir");
    let fold = RunDir::new(dir.path()).fold("fold-0");
    std::fs::create_dir_all(&fold.path).expect("fold dir");
    std::fs::write(fold.checkpoint(Checkpoint::Final), harness::checkpoint_bytes(&data)).expect("write");
    let state = fold.read_training_state().expect("a valid training state").expect("present");
    assert_eq!((state.state.epochs_done, state.weights.as_slice()), (3, &b"burnpack weights"[..]));
}

#[test]
fn truth_csv_inputs_return() {
    each_input("truth_csv", harness::truth_csv);
}

#[test]
fn run_json_inputs_return() {
    each_input("run_json", harness::run_json);
}

/// The run.json seed is a run this naevus reads.
#[test]
fn run_json_seed_reads() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fuzz/run_json/seed-metadata-run.json");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(seed, dir.path().join("run.json")).expect("copy");
    let info = RunDir::new(dir.path()).read_info().expect("the seed is a valid run.json");
    assert_eq!(info.metadata_features(), 4 + 3);
}

/// The cache seeds are what they claim: a cache whose images pass their checksums, and the
/// same with one checksum wrong, which only that image's read refuses.
#[test]
fn cache_open_seeds_read_and_a_wrong_checksum_is_refused() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fuzz/cache_open");
    for (seed, refused) in [("seed-isic2017-size4.txt", vec![]), ("seed-isic2017-size4-damaged.txt", vec![1])] {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = std::fs::read(seeds.join(seed)).expect("seed");
        harness::cache_open(dir.path(), &data);
        let cache = naevus_data::Cache::open(&dir.path().join("cache")).expect("the seed is a finished cache");
        let failed: Vec<usize> = (0..cache.len()).filter(|&i| cache.image(i).is_err()).collect();
        assert_eq!(failed, refused, "{seed}");
    }
}
