//! Shared pieces of the fuzz targets: a cap on single allocations, a scratch directory per
//! fuzzing process, and the harness of each target (a function from the fuzzer's bytes to one
//! call of a naevus reader). Every harness asserts only what must hold for any input: the
//! reader returns (Ok or Err) and what it returns is sound. A panic, an abort, an allocation
//! over the cap, or libFuzzer's rss/time limits are the faults the fuzzer reports.
//!
//! `crates/naevus-run/tests/fuzz_regressions.rs` includes this file and runs these harnesses
//! on every file of `tests/fixtures/fuzz/<target>/` (seeds and minimised crashes) in the
//! ordinary test suite, so it needs only naevus-data, naevus-run, sha2 and serde_json.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use naevus_data::{DecodeLimits, SourceKind, SourceSpec};

/// Largest single allocation allowed: libFuzzer's `-malloc_limit_mb` needs a sanitizer's
/// malloc hooks, which a `--sanitizer none` build has not, so the cap is ours.
pub const MALLOC_LIMIT: usize = 1 << 30;

/// The system allocator, aborting (a crash libFuzzer records with its input) on any single
/// allocation over [`MALLOC_LIMIT`].
pub struct CappedAlloc;

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
        // Formatting a number to stderr needs no allocation.
        eprintln!("==naevus-fuzz== allocation of {size} bytes, over the {MALLOC_LIMIT}-byte limit");
        std::process::abort();
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// A directory of this process's own, made once (left behind at exit: it is small).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("naevus-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

/// `data` split at the first `marker`: (before, Some(after)), or (data, None).
pub fn split<'a>(data: &'a [u8], marker: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    match data.windows(marker.len()).position(|w| w == marker) {
        Some(at) => (&data[..at], Some(&data[at + marker.len()..])),
        None => (data, None),
    }
}

// ---------------------------------------------------------------------------
// CSV readers
// ---------------------------------------------------------------------------

/// Image files the seed CSVs name (their content is never read by the readers), a link that
/// leads out of the folder and a directory with an image's name. The ISIC 2017 ids are CC0
/// images'; the HAM10000 and ISIC 2020 seeds name invented SYNTH_ ids, so that no committed
/// row looks like those datasets' own.
pub const IMAGE_NAMES: &[&str] = &[
    "ISIC_0000000.jpg",
    "ISIC_0000002.jpg",
    "ISIC_0000004.jpeg",
    "ISIC_0000013.png",
    "ISIC_0000080.JPG",
    "ISIC_0001769.jpg",
    "ISIC_0012090.jpg",
    "ISIC_0012103.PNG",
    "SYNTH_0000.jpg",
    "SYNTH_0002.jpg",
    "SYNTH_0004.jpeg",
    "SYNTH_0013.png",
    "SYNTH_0080.JPG",
    "SYNTH_1769.jpg",
    "SYNTH_1090.jpg",
    "SYNTH_1103.PNG",
];

/// `root/images` with [`IMAGE_NAMES`], `escape.jpg` (a link to `root/outside.jpg`) and
/// `folder.jpg/` (a directory); returns the images folder.
pub fn make_images(root: &Path) -> PathBuf {
    let images = root.join("images");
    std::fs::create_dir_all(images.join("folder.jpg")).expect("images folder");
    for name in IMAGE_NAMES {
        std::fs::write(images.join(name), b"not decoded by the readers").expect("image file");
    }
    std::fs::write(root.join("outside.jpg"), b"outside").expect("outside file");
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(root.join("outside.jpg"), images.join("escape.jpg"));
    }
    images
}

/// The scratch directory with its images folder made (once), for the CSV targets.
pub fn csv_dir() -> &'static Path {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        make_images(scratch());
    });
    scratch()
}

/// Where an ISIC 2019 input's metadata CSV begins: what precedes it is the ground truth.
pub const METADATA_MARKER: &[u8] = b"\n#metadata#\n";

/// Reads `data` as a `kind` label CSV (for ISIC 2019, with a metadata CSV after
/// [`METADATA_MARKER`]) from `dir`, whose `images` folder [`make_images`] made, and checks
/// that every accepted record's image lies inside the images folder.
pub fn csv_source(kind: SourceKind, dir: &Path, data: &[u8]) {
    let images = dir.join("images");
    let (labels, metadata) = if kind == SourceKind::Isic2019 { split(data, METADATA_MARKER) } else { (data, None) };
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

// ---------------------------------------------------------------------------
// The predictions CSV
// ---------------------------------------------------------------------------

/// `Predictions::read` of `data` written to `dir/predictions.csv`.
pub fn truth_csv(dir: &Path, data: &[u8]) {
    let path = dir.join("truth.csv");
    std::fs::write(&path, data).expect("write truth.csv");
    if let Ok(truth) = naevus_run::Truth::read(&path) {
        // Every id read back has one label, 0 or 1.
        let text = String::from_utf8_lossy(data);
        for id in text.lines().skip(1).filter_map(|line| line.split(',').next()).map(str::trim).filter(|id| !id.is_empty()) {
            if let Some((label, _group)) = truth.get(id) {
                assert!(label <= 1);
            }
        }
    }
}

pub fn predictions_csv(dir: &Path, data: &[u8]) {
    let path = dir.join("predictions.csv");
    std::fs::write(&path, data).expect("write predictions.csv");
    if let Ok(p) = naevus_run::Predictions::read(&path) {
        assert!(!p.ids.is_empty() && p.ids.len() == p.scores.len());
        assert!(p.scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(p.labels.as_ref().is_none_or(|l| l.len() == p.ids.len()));
        assert!(p.folds.as_ref().is_none_or(|f| f.len() == p.ids.len()));
        let unique: std::collections::HashSet<&String> = p.ids.iter().collect();
        assert_eq!(unique.len(), p.ids.len(), "duplicate ids accepted");
    }
}

// ---------------------------------------------------------------------------
// Image decoding within limits
// ---------------------------------------------------------------------------

/// The limits the image target decodes within: 4 megapixels, so that an input claiming a
/// huge image must be refused before its pixels are allocated (the cap above is far over
/// what 4 megapixels need), while every decode stays quick.
pub const IMAGE_LIMITS: DecodeLimits = DecodeLimits { max_pixels: 1 << 22 };

/// Decodes `data` from memory (`decode_rgb_limited`), then from a file as prepare does
/// (`load_square_limited`, which may decode a JPEG at reduced scale), to a side and crop
/// region taken from its first byte.
pub fn image_decode(dir: &Path, data: &[u8]) {
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
        Some(naevus_data::CropBox { left: 0.25, top: 0.1, side: 0.5 }),
        Some(naevus_data::CropBox { left: -0.5, top: 0.9, side: 2.0 }),
        Some(naevus_data::CropBox { left: 1e300, top: -1e300, side: 1e-300 }),
    ];
    let region = regions[usize::from(choice >> 2 & 3)];
    if let Ok(pixels) = naevus_data::load_square_limited(&path, region.as_ref(), size, &IMAGE_LIMITS) {
        assert_eq!(pixels.len(), size as usize * size as usize * 3);
    }
}

// ---------------------------------------------------------------------------
// The prepared cache
// ---------------------------------------------------------------------------

/// Between cache.json and index.jsonl in a cache input.
pub const INDEX_MARKER: &[u8] = b"\n#index#\n";

/// Largest images.u8 the cache target makes (sparse: no bytes are written).
const MAX_IMAGES_LEN: u64 = 1 << 28;

/// Opens a cache whose `cache.json` and `index.jsonl` are `data` split at [`INDEX_MARKER`]
/// (no marker: no index). images.u8 is a sparse file as long as the manifest's size and slots
/// ask for when that is small, else as long as the last eight bytes of `data` say, modulo
/// 256 MiB. Every image of an opened cache is read.
pub fn cache_open(dir: &Path, data: &[u8]) {
    let cache = dir.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(&cache).expect("cache dir");
    let (manifest, index) = split(data, INDEX_MARKER);
    std::fs::write(cache.join("cache.json"), manifest).expect("write cache.json");
    if let Some(index) = index {
        std::fs::write(cache.join("index.jsonl"), index).expect("write index.jsonl");
    }
    let wanted = serde_json::from_slice::<serde_json::Value>(manifest).ok().and_then(|m| {
        let (size, slots) = (m.get("size")?.as_u64()?, m.get("slots")?.as_u64()?);
        size.checked_mul(size)?.checked_mul(3)?.checked_mul(slots).filter(|&n| n <= MAX_IMAGES_LEN)
    });
    let len = wanted.unwrap_or_else(|| {
        let tail: [u8; 8] = data[data.len().saturating_sub(8)..].iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().unwrap_or_default();
        u64::from_le_bytes(tail) % MAX_IMAGES_LEN
    });
    let images = std::fs::File::create(cache.join("images.u8")).expect("images.u8");
    images.set_len(len).expect("images.u8 length");
    drop(images);
    if let Ok(opened) = naevus_data::Cache::open(&cache) {
        let side = opened.size() as usize;
        assert_eq!(opened.records().len(), opened.len());
        for i in 0..opened.len() {
            // Damaged pixels are an error; pixels that pass their checksum are a whole slot.
            if let Ok(pixels) = opened.image(i) {
                assert_eq!(pixels.len(), side * side * 3, "image {i}");
                std::hint::black_box(pixels.first());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checkpoints and training states
// ---------------------------------------------------------------------------

/// Sealed-file kinds naevus writes.
pub const SEALED_KINDS: [&str; 3] = ["weights", "training", "optim"];

/// The file `data` stands for, by its first byte: the rest as it is (the header must be
/// right by chance), the rest with its checksum recomputed (header fields fuzzed, checksum
/// right), or the rest sealed as a training state (the payload fuzzed).
pub fn checkpoint_bytes(data: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
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

/// `unseal` of [`checkpoint_bytes`] as every kind, then the same bytes as a fold's last.bpk
/// (`read_training_state`) and best.bpk (`read_weights`).
pub fn checkpoint(dir: &Path, data: &[u8]) {
    let bytes = checkpoint_bytes(data);
    let path = dir.join("fold-0").join("last.bpk");
    for kind in SEALED_KINDS {
        if let Ok(payload) = naevus_run::sealed::unseal(&path, kind, &bytes) {
            assert!(payload.len() <= bytes.len());
        }
    }
    let run = naevus_run::RunDir::new(dir.join("run"));
    let fold = run.fold("fold-0");
    std::fs::create_dir_all(&fold.path).expect("fold dir");
    std::fs::write(fold.checkpoint(naevus_run::Checkpoint::Final), &bytes).expect("write last.bpk");
    std::fs::write(fold.checkpoint(naevus_run::Checkpoint::Best), &bytes).expect("write best.bpk");
    let _ = fold.read_training_state();
    let _ = fold.read_state();
    let _ = fold.read_weights(naevus_run::Checkpoint::Final);
    let _ = fold.read_weights(naevus_run::Checkpoint::Best);
}

// ---------------------------------------------------------------------------
// run.json
// ---------------------------------------------------------------------------

/// `RunDir::read_info` of `data` as run.json, then what every job asks of the info.
pub fn run_json(dir: &Path, data: &[u8]) {
    let run = naevus_run::RunDir::new(dir.join("run"));
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
}
