//! Every input of `tests/fixtures/fuzz/<target>/` (the fuzz targets' seeds, and every input a
//! fuzzer found a fault with, minimised) through the call its target in `fuzz/` makes: each
//! must return, Ok or Err, without a panic or an allocation over 1 GiB. The harnesses here
//! are those of `fuzz/src/lib.rs`; keep the two in step. See fuzz/README.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use naevus_data::{CropBox, DecodeLimits, SourceKind, SourceSpec};
use naevus_run::{Checkpoint, Predictions, RunDir};
use sha2::{Digest, Sha256};

/// As in the fuzz targets: one allocation over this aborts (a hostile file must not make a
/// reader ask for unbounded memory).
const MALLOC_LIMIT: usize = 1 << 30;

struct CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn check(size: usize) {
    if size > MALLOC_LIMIT {
        eprintln!("allocation of {size} bytes, over the {MALLOC_LIMIT}-byte limit of the fuzz targets");
        std::process::abort();
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

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

/// `data` split at the first `marker`.
fn split<'a>(data: &'a [u8], marker: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    match data.windows(marker.len()).position(|w| w == marker) {
        Some(at) => (&data[..at], Some(&data[at + marker.len()..])),
        None => (data, None),
    }
}

// ---------------------------------------------------------------------------
// CSV readers (naevus_fuzz::csv_source)
// ---------------------------------------------------------------------------

const IMAGE_NAMES: &[&str] = &[
    "ISIC_0000000.jpg",
    "ISIC_0000002.jpg",
    "ISIC_0000004.jpeg",
    "ISIC_0000013.png",
    "ISIC_0000080.JPG",
    "ISIC_0001769.jpg",
    "ISIC_0012090.jpg",
    "ISIC_0012103.PNG",
];

fn make_images(root: &Path) -> PathBuf {
    let images = root.join("images");
    std::fs::create_dir_all(images.join("folder.jpg")).expect("images folder");
    for name in IMAGE_NAMES {
        std::fs::write(images.join(name), b"not decoded by the readers").expect("image file");
    }
    std::fs::write(root.join("outside.jpg"), b"outside").expect("outside file");
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("outside.jpg"), images.join("escape.jpg")).expect("symlink");
    images
}

fn csv_source(kind: SourceKind, dir: &Path, data: &[u8]) {
    let images = make_images(dir);
    let (labels, metadata) = if kind == SourceKind::Isic2019 { split(data, b"\n#metadata#\n") } else { (data, None) };
    let csv = dir.join("labels.csv");
    std::fs::write(&csv, labels).expect("write labels.csv");
    let metadata_csv = metadata.map(|m| {
        let path = dir.join("metadata.csv");
        std::fs::write(&path, m).expect("write metadata.csv");
        path
    });
    let spec = SourceSpec { kind, csv: Some(csv), images: images.clone(), metadata_csv };
    if let Ok(source) = naevus_data::read_source(&spec) {
        let root = std::fs::canonicalize(&images).expect("images folder");
        for record in &source.records {
            assert!(record.image_path.starts_with(&root), "{} is outside {}", record.image_path.display(), root.display());
        }
    }
}

#[test]
fn csv_isic2017_inputs_return() {
    each_input("csv_isic2017", |dir, data| csv_source(SourceKind::Isic2017, dir, data));
}

#[test]
fn csv_isic2020_inputs_return() {
    each_input("csv_isic2020", |dir, data| csv_source(SourceKind::Isic2020, dir, data));
}

#[test]
fn csv_ham10000_inputs_return() {
    each_input("csv_ham10000", |dir, data| csv_source(SourceKind::Ham10000, dir, data));
}

#[test]
fn csv_isic2019_inputs_return() {
    each_input("csv_isic2019", |dir, data| csv_source(SourceKind::Isic2019, dir, data));
}

// ---------------------------------------------------------------------------
// The predictions CSV (naevus_fuzz::predictions_csv)
// ---------------------------------------------------------------------------

#[test]
fn predictions_csv_inputs_return() {
    each_input("predictions_csv", |dir, data| {
        let path = dir.join("predictions.csv");
        std::fs::write(&path, data).expect("write predictions.csv");
        if let Ok(p) = Predictions::read(&path) {
            assert!(!p.ids.is_empty() && p.ids.len() == p.scores.len());
            assert!(p.scores.iter().all(|s| (0.0..=1.0).contains(s)));
            let unique: std::collections::HashSet<&String> = p.ids.iter().collect();
            assert_eq!(unique.len(), p.ids.len(), "duplicate ids accepted");
        }
    });
}

// ---------------------------------------------------------------------------
// Image decoding within limits (naevus_fuzz::image_decode)
// ---------------------------------------------------------------------------

const IMAGE_LIMITS: DecodeLimits = DecodeLimits { max_pixels: 1 << 22 };

#[test]
fn image_decode_inputs_return() {
    each_input("image_decode", |dir, data| {
        let Some((&choice, image)) = data.split_first() else { return };
        if let Ok(img) = naevus_data::decode_rgb_limited(image, &IMAGE_LIMITS) {
            let pixels = u64::from(img.width()) * u64::from(img.height());
            assert!(pixels > 0 && pixels <= IMAGE_LIMITS.max_pixels, "{} x {} decoded", img.width(), img.height());
        }
        let path = dir.join("image");
        std::fs::write(&path, image).expect("write image");
        let size = [1, 7, 32, 64][usize::from(choice & 3)];
        let regions = [
            None,
            Some(CropBox { left: 0.25, top: 0.1, side: 0.5 }),
            Some(CropBox { left: -0.5, top: 0.9, side: 2.0 }),
            Some(CropBox { left: 1e300, top: -1e300, side: 1e-300 }),
        ];
        let region = regions[usize::from(choice >> 2 & 3)];
        if let Ok(pixels) = naevus_data::load_square_limited(&path, region.as_ref(), size, &IMAGE_LIMITS) {
            assert_eq!(pixels.len(), size as usize * size as usize * 3);
        }
    });
}

// ---------------------------------------------------------------------------
// The prepared cache (naevus_fuzz::cache_open)
// ---------------------------------------------------------------------------

#[test]
fn cache_open_inputs_return() {
    const MAX_IMAGES_LEN: u64 = 1 << 28;
    each_input("cache_open", |dir, data| {
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache).expect("cache dir");
        let (manifest, index) = split(data, b"\n#index#\n");
        std::fs::write(cache.join("cache.json"), manifest).expect("write cache.json");
        if let Some(index) = index {
            std::fs::write(cache.join("index.jsonl"), index).expect("write index.jsonl");
        }
        let wanted = serde_json::from_slice::<serde_json::Value>(manifest).ok().and_then(|m| {
            let (size, slots) = (m.get("size")?.as_u64()?, m.get("slots")?.as_u64()?);
            size.checked_mul(size)?.checked_mul(3)?.checked_mul(slots).filter(|&n| n <= MAX_IMAGES_LEN)
        });
        let len = wanted.unwrap_or_else(|| {
            let mut tail = [0u8; 8];
            for (t, b) in tail.iter_mut().zip(&data[data.len().saturating_sub(8)..]) {
                *t = *b;
            }
            u64::from_le_bytes(tail) % MAX_IMAGES_LEN
        });
        std::fs::File::create(cache.join("images.u8")).and_then(|f| f.set_len(len)).expect("images.u8");
        if let Ok(opened) = naevus_data::Cache::open(&cache) {
            let side = opened.size() as usize;
            for i in 0..opened.len() {
                assert_eq!(opened.image(i).len(), side * side * 3, "image {i}");
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Checkpoints and training states (naevus_fuzz::checkpoint)
// ---------------------------------------------------------------------------

fn checkpoint_bytes(data: &[u8]) -> Vec<u8> {
    const HEADER: usize = 7 + 8 + 4 + 8 + 32;
    let Some((&mode, rest)) = data.split_first() else { return Vec::new() };
    match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let mut bytes = rest.to_vec();
            if bytes.len() >= HEADER {
                let sum = Sha256::digest(&bytes[HEADER..]);
                bytes[27..HEADER].copy_from_slice(&sum);
            }
            bytes
        }
        _ => naevus_run::sealed::seal("training", rest),
    }
}

#[test]
fn checkpoint_inputs_return() {
    each_input("checkpoint", |dir, data| {
        let bytes = checkpoint_bytes(data);
        let path = dir.join("fold-0").join("last.bpk");
        for kind in ["weights", "training", "optim"] {
            let _ = naevus_run::sealed::unseal(&path, kind, &bytes);
        }
        let run = RunDir::new(dir.join("run"));
        let fold = run.fold("fold-0");
        std::fs::create_dir_all(&fold.path).expect("fold dir");
        std::fs::write(fold.checkpoint(Checkpoint::Final), &bytes).expect("write last.bpk");
        std::fs::write(fold.checkpoint(Checkpoint::Best), &bytes).expect("write best.bpk");
        let _ = fold.read_training_state();
        let _ = fold.read_state();
        let _ = fold.read_weights(Checkpoint::Final);
        let _ = fold.read_weights(Checkpoint::Best);
    });
}

/// The seeds are what they claim: the sealed training state reads back whole.
#[test]
fn checkpoint_seed_is_a_training_state() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fuzz/checkpoint/seed-training-sealed.bin");
    let data = std::fs::read(seed).expect("seed");
    let dir = tempfile::tempdir().expect("temp dir");
    let fold = RunDir::new(dir.path()).fold("fold-0");
    std::fs::create_dir_all(&fold.path).expect("fold dir");
    std::fs::write(fold.checkpoint(Checkpoint::Final), checkpoint_bytes(&data)).expect("write");
    let state = fold.read_training_state().expect("a valid training state").expect("present");
    assert_eq!((state.state.epochs_done, state.weights.as_slice()), (3, &b"burnpack weights"[..]));
}

// ---------------------------------------------------------------------------
// run.json (naevus_fuzz::run_json)
// ---------------------------------------------------------------------------

#[test]
fn run_json_inputs_return() {
    each_input("run_json", |dir, data| {
        let run = RunDir::new(dir.join("run"));
        std::fs::create_dir_all(run.path()).expect("run dir");
        std::fs::write(run.info_path(), data).expect("write run.json");
        if let Ok(info) = run.read_info() {
            let _ = info.metadata_features();
            if let Some(encoder) = &info.metadata {
                let _ = (encoder.feature_names(), encoder.field_ranges(), encoder.encode_unknown());
            }
            let _ = info.metadata_warnings(&[naevus_data::Record::default()]);
            let _ = run.resolve_cache(&info);
            let _ = info.classes.class_names();
        }
    });
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
