//! `prepare`: every record decoded, cropped and resized once into a cache, resumably.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{CACHE_SIDES, FORMAT_VERSION, INDEX, IMAGES, IndexLine, MANIFEST, Manifest, PROGRESS, REJECTS, identity, read_manifest, rejects_to_csv, slot_checksum, slot_len};
use crate::atomic::{is_stale_temporary, remove_stale_temporaries, write_atomic};
use crate::error::DataError;
use crate::image_io::{DecodeLimits, load_square_limited};
use crate::records::{Record, Reject};
use crate::sources::SourceData;

/// Settings for [`prepare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// Side of the stored square images in pixels.
    pub size: u32,
    /// Worker threads; None = all cores.
    pub threads: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Bounds on each decode; an image over them is a reject.
    #[serde(default)]
    pub limits: DecodeLimits,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions { size: 256, threads: None, progress: false, limits: DecodeLimits::default() }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareSummary {
    /// Accepted images now in the cache (including those finished by an earlier run).
    pub prepared: usize,
    /// How many of `prepared` an earlier, interrupted run had already finished.
    pub already_done: usize,
    /// How many of `prepared` an earlier run had finished but whose bytes in images.u8 no
    /// longer matched their checksum: decoded again.
    pub redone_damaged: usize,
    /// Reader rejects plus images that failed to decode.
    pub rejected: usize,
    /// Path of rejects.csv.
    pub rejects_csv: PathBuf,
}

impl std::fmt::Display for PrepareSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "prepared {} images, {} rejected (see {})", self.prepared, self.rejected, self.rejects_csv.display())
    }
}

/// What became of one slot.
#[derive(Debug, Clone, PartialEq)]
enum SlotOutcome {
    /// Its pixels are written; the CRC-32 of the slot's bytes.
    Pixels { crc32: u32 },
    /// The image was rejected for this reason; the slot is zeroed.
    Rejected(String),
}

/// One line of progress.log: a slot with either its checksum or its reject reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProgressLine {
    slot: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reject: Option<String>,
}

impl ProgressLine {
    fn new(slot: usize, outcome: &SlotOutcome) -> Self {
        match outcome {
            SlotOutcome::Pixels { crc32 } => ProgressLine { slot, crc32: Some(*crc32), reject: None },
            SlotOutcome::Rejected(reason) => ProgressLine { slot, crc32: None, reject: Some(reason.clone()) },
        }
    }

    /// None for a line with neither a checksum nor a reason: that slot is simply redone.
    fn outcome(self) -> Option<SlotOutcome> {
        match (self.crc32, self.reject) {
            (_, Some(reason)) => Some(SlotOutcome::Rejected(reason)),
            (Some(crc32), None) => Some(SlotOutcome::Pixels { crc32 }),
            (None, None) => None,
        }
    }
}

/// Decodes, crops and resizes every record into `out`, resuming an interrupted run with
/// the same inputs and size. Bad images become rejects; only I/O problems with `out` and
/// a mismatched existing cache are errors.
pub fn prepare(data: SourceData, out: &Path, opts: &PrepareOptions) -> Result<PrepareSummary, DataError> {
    if !CACHE_SIDES.contains(&opts.size) {
        return Err(DataError::InvalidArgument(format!("image size must be {}..={} pixels, got {}", CACHE_SIDES.start(), CACHE_SIDES.end(), opts.size)));
    }
    fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        size: opts.size,
        slots: data.records.len(),
        fingerprint: identity(opts.size, &data.records)?,
    };
    check_or_write_manifest(out, &manifest, &data.records)?;
    // The directory is this job's now (its manifest matches): what killed runs left goes.
    remove_stale_temporaries(out);

    let slot_bytes = slot_len(opts.size);
    let images_path = out.join(IMAGES);
    let mut images = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&images_path)
        .map_err(|e| DataError::io(&images_path, e))?;
    let expected_len = (slot_bytes * manifest.slots) as u64;
    let current_len = images.metadata().map_err(|e| DataError::io(&images_path, e))?.len();
    if current_len != expected_len {
        images.set_len(expected_len).map_err(|e| DataError::io(&images_path, e))?;
    }

    // Finished slots from an earlier run, less those whose bytes were damaged since; the log
    // is rewritten clean so a torn last line (process killed mid-write) cannot glue onto the
    // next entry.
    let mut done = read_progress(out, manifest.slots)?;
    let redone_damaged = forget_damaged_slots(&mut images, &images_path, slot_bytes, &mut done)?;
    let already_done = done.values().filter(|o| matches!(o, SlotOutcome::Pixels { .. })).count();
    rewrite_progress(out, &done)?;
    let progress_path = out.join(PROGRESS);
    let mut progress_log = OpenOptions::new()
        .append(true)
        .open(&progress_path)
        .map_err(|e| DataError::io(&progress_path, e))?;

    let pending: Vec<usize> = (0..manifest.slots).filter(|s| !done.contains_key(s)).collect();
    let bar = if opts.progress {
        let bar = ProgressBar::new(pending.len() as u64);
        let style = ProgressStyle::with_template("preparing {bar:40} {pos}/{len} [{elapsed_precise}] {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = opts.threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool
        .build()
        .map_err(|e| DataError::InvalidArgument(format!("cannot start {:?} worker threads: {e}", opts.threads)))?;

    // Workers decode in parallel; this thread alone writes, so each slot's pixels are on disk
    // before its progress line is appended.
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Vec<u8>, String>)>(64);
    let cancel = AtomicBool::new(false);
    let records = &data.records;
    let (size, limits) = (opts.size, opts.limits);
    let write_result: Result<(), DataError> = std::thread::scope(|scope| {
        let cancel = &cancel;
        let pending = &pending;
        scope.spawn(move || {
            pool.install(|| {
                pending.par_iter().for_each_with(tx, |tx, &slot| {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let result = process_image(&records[slot], size, &limits);
                    let _ = tx.send((slot, result));
                });
            });
        });
        for (slot, result) in rx {
            // A rejected slot is zeroed so images.u8 is byte-identical however the run went.
            let (pixels, outcome) = match result {
                Ok(pixels) => {
                    let crc32 = slot_checksum(&pixels);
                    (pixels, SlotOutcome::Pixels { crc32 })
                }
                Err(reason) => (vec![0u8; slot_bytes], SlotOutcome::Rejected(reason)),
            };
            let offset = (slot * slot_bytes) as u64;
            let written = images
                .seek(SeekFrom::Start(offset))
                .and_then(|_| images.write_all(&pixels))
                .map_err(|e| DataError::io(&images_path, e));
            if let Err(e) = written {
                cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
            let line = ProgressLine::new(slot, &outcome);
            if let Err(e) = append_progress(&mut progress_log, &line, &progress_path) {
                cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
            done.insert(slot, outcome);
            bar.inc(1);
        }
        Ok(())
    });
    bar.finish_and_clear();
    write_result?;
    images.flush().map_err(|e| DataError::io(&images_path, e))?;

    // Final index and rejects, each written atomically.
    let mut index = Vec::new();
    let mut rejects = data.rejects.clone();
    for (slot, record) in data.records.iter().enumerate() {
        match done.get(&slot) {
            Some(SlotOutcome::Pixels { crc32 }) => {
                let line = IndexLine { slot, crc32: *crc32, record: record.clone() };
                serde_json::to_writer(&mut index, &line).map_err(|e| DataError::Cache {
                    dir: out.to_path_buf(),
                    reason: format!("cannot serialise index entry: {e}"),
                })?;
                index.push(b'\n');
            }
            Some(SlotOutcome::Rejected(reason)) => rejects.push(Reject {
                row: record.row,
                path: record.image_path.display().to_string(),
                reason: reason.clone(),
            }),
            // Every slot was either done before or processed above.
            None => {
                return Err(DataError::Cache {
                    dir: out.to_path_buf(),
                    reason: format!("slot {slot} ({}) was not processed", record.image_path.display()),
                });
            }
        }
    }
    // In file order, so rejects.csv reads top to bottom like the label CSV.
    rejects.sort_by_key(|r| r.row.unwrap_or(usize::MAX));
    let rejects_csv = out.join(REJECTS);
    write_atomic(&rejects_csv, &rejects_to_csv(&rejects, &rejects_csv)?)?;
    write_atomic(&out.join(INDEX), &index)?;

    let prepared = done.values().filter(|o| matches!(o, SlotOutcome::Pixels { .. })).count();
    Ok(PrepareSummary { prepared, already_done, redone_damaged, rejected: rejects.len(), rejects_csv })
}

/// Drops from `done` every written slot whose bytes in images.u8 no longer match their
/// checksum, so that it is decoded again; returns how many. One read of the finished slots,
/// in file order.
fn forget_damaged_slots(
    images: &mut File,
    images_path: &Path,
    slot_bytes: usize,
    done: &mut BTreeMap<usize, SlotOutcome>,
) -> Result<usize, DataError> {
    let mut buffer = vec![0u8; slot_bytes];
    let mut damaged = Vec::new();
    for (&slot, outcome) in done.iter() {
        let SlotOutcome::Pixels { crc32 } = outcome else { continue };
        images
            .seek(SeekFrom::Start((slot * slot_bytes) as u64))
            .and_then(|_| images.read_exact(&mut buffer))
            .map_err(|e| DataError::io(images_path, e))?;
        if slot_checksum(&buffer) != *crc32 {
            damaged.push(slot);
        }
    }
    for slot in &damaged {
        done.remove(slot);
    }
    Ok(damaged.len())
}


/// Decode + crop + resize; panics inside a decoder are caught so one bad file cannot
/// take the whole run down.
fn process_image(record: &Record, size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, String> {
    let run = || -> Result<Vec<u8>, String> {
        load_square_limited(&record.image_path, record.crop.as_ref(), size, limits).map_err(|e| match e {
            DataError::Image { reason, .. } => reason,
            // Caches prepared by older versions hold paths relative to where prepare ran.
            DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound && record.image_path.is_relative() => format!(
                "{}: {source}; the path is relative to the directory an older naevus prepared the cache in: run from there, or prepare the cache again",
                record.image_path.display()
            ),
            other => other.to_string(),
        })
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(_) => Err("the image decoder crashed on this file".into()),
    }
}


/// The FNV-1a hash of the records' JSON that cache.json held before caches had an
/// [`identity`]: prepare resumes a cache an older naevus began.
fn legacy_fingerprint(records: &[Record]) -> Result<String, DataError> {
    let json = serde_json::to_vec(records).map_err(|e| DataError::InvalidArgument(format!("cannot serialise records: {e}")))?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("{hash:016x}"))
}

/// Writes cache.json into an empty directory, or checks that an existing one matches.
fn check_or_write_manifest(out: &Path, manifest: &Manifest, records: &[Record]) -> Result<(), DataError> {
    let path = out.join(MANIFEST);
    if path.exists() {
        let existing = read_manifest(out)?;
        let same_job = existing.fingerprint == manifest.fingerprint || existing.fingerprint == legacy_fingerprint(records)?;
        if !same_job || (existing.size, existing.slots) != (manifest.size, manifest.slots) {
            return Err(DataError::Cache {
                dir: out.to_path_buf(),
                reason: format!(
                    "it already holds a cache of {} records at {} px (fingerprint {}), but this run has {} records at {} px \
                     (fingerprint {}); use an empty directory or delete this one",
                    existing.slots, existing.size, existing.fingerprint, manifest.slots, manifest.size, manifest.fingerprint
                ),
            });
        }
        return Ok(());
    }
    // Temporary files of a run killed while writing cache.json do not make it someone else's.
    let mut entries = fs::read_dir(out).map_err(|e| DataError::io(out, e))?;
    if entries.any(|entry| entry.map_or(true, |e| !is_stale_temporary(&e.file_name().to_string_lossy()))) {
        return Err(DataError::Cache {
            dir: out.to_path_buf(),
            reason: format!("the directory is not empty and has no {MANIFEST}; refusing to write a cache into it"),
        });
    }
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| DataError::Cache { dir: out.to_path_buf(), reason: e.to_string() })?;
    write_atomic(&path, &json)
}


/// What became of each slot an earlier run finished. Unparseable lines are ignored: they can
/// only come from a write cut short, and that slot is simply redone.
fn read_progress(out: &Path, slots: usize) -> Result<BTreeMap<usize, SlotOutcome>, DataError> {
    let path = out.join(PROGRESS);
    let mut done = BTreeMap::new();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(DataError::io(&path, e)),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| DataError::io(&path, e))?;
        if let Ok(entry) = serde_json::from_slice::<ProgressLine>(&line)
            && entry.slot < slots
        {
            let slot = entry.slot;
            if let Some(outcome) = entry.outcome() {
                done.insert(slot, outcome);
            }
        }
    }
    Ok(done)
}

fn rewrite_progress(out: &Path, done: &BTreeMap<usize, SlotOutcome>) -> Result<(), DataError> {
    let mut buf = Vec::new();
    for (&slot, outcome) in done {
        progress_bytes(&mut buf, &ProgressLine::new(slot, outcome), &out.join(PROGRESS))?;
    }
    write_atomic(&out.join(PROGRESS), &buf)
}

fn progress_bytes(buf: &mut Vec<u8>, line: &ProgressLine, path: &Path) -> Result<(), DataError> {
    serde_json::to_writer(&mut *buf, line)
        .map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
    buf.push(b'\n');
    Ok(())
}

/// One write call per line keeps each entry whole in practice.
fn append_progress(file: &mut File, line: &ProgressLine, path: &Path) -> Result<(), DataError> {
    let mut buf = Vec::new();
    progress_bytes(&mut buf, line, path)?;
    file.write_all(&buf).map_err(|e| DataError::io(path, e))
}
