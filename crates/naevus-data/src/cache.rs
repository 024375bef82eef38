//! The prepared cache: every image decoded, center-cropped and resized once, stored as raw
//! RGB pixels in one memory-mapped file so training reads are free.
//!
//! Layout of the cache directory:
//! - `cache.json`: format version, side in pixels, number of slots and the [`identity`] of
//!   the record list (written first, so a resumed run can check it is the same job).
//! - `images.u8`: one fixed-size slot of `size*size*3` bytes per input record, preallocated.
//! - `progress.log`: JSON lines `{"slot":N,"crc32":C}` or `{"slot":N,"reject":"reason"}`,
//!   appended only after the slot's pixels are written, so a killed run resumes where it
//!   stopped. C is the CRC-32 of the slot's bytes.
//! - `index.jsonl`: written last (temp file + rename): one `{"slot":N,"crc32":C,"record":{..}}`
//!   per accepted record. Its presence marks a finished cache.
//! - `rejects.csv`: columns row,path,reason: reader rejects plus images that failed to decode.
//!
//! Every read of a slot checks its bytes against their CRC-32 ([`Cache::image`]), so a damaged
//! images.u8 gives an error naming the image, never wrong pixels; prepare run again on the
//! same directory checks every finished slot and decodes the damaged ones again.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{DataError, excerpt};
use crate::records::{Record, Reject};

mod prepare;

pub use prepare::{PrepareOptions, PrepareSummary, prepare};

/// Bumped whenever the on-disk layout changes (2: a CRC-32 of every slot).
pub const FORMAT_VERSION: u32 = 2;
const MANIFEST: &str = "cache.json";
const IMAGES: &str = "images.u8";
const PROGRESS: &str = "progress.log";
const INDEX: &str = "index.jsonl";
const REJECTS: &str = "rejects.csv";

/// cache.json
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    size: u32,
    slots: usize,
    /// [`identity`] of the input records, to refuse resuming a different job.
    fingerprint: String,
}

/// One line of index.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexLine {
    slot: usize,
    /// CRC-32 of the slot's bytes.
    crc32: u32,
    record: Record,
}

/// The checksum of one slot's bytes, stored when the slot is written and checked whenever it
/// is read. CRC-32 catches any damage to a few bytes and costs little next to decoding.
fn slot_checksum(pixels: &[u8]) -> u32 {
    crc32fast::hash(pixels)
}

/// Sides of a cache's square images, in pixels, that prepare writes and a cache may hold:
/// 8192 px images take 200 MB each.
pub const CACHE_SIDES: std::ops::RangeInclusive<u32> = 1..=8192;

/// Bytes in one slot.
fn slot_len(size: u32) -> usize {
    size as usize * size as usize * 3
}

/// What a cache of `records` at `size` px holds, as 16 hex digits of a SHA-256: cache.json
/// keeps the identity of the records prepare was given (to refuse resuming another job),
/// a run the identity of the records it trained on ([`Cache::identity`]; a run resumed on
/// other images would mix two datasets in one model).
pub fn identity(size: u32, records: &[Record]) -> Result<String, DataError> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(records).map_err(|e| DataError::InvalidArgument(format!("cannot serialise records: {e}")))?;
    let mut hasher = Sha256::new();
    hasher.update(size.to_le_bytes());
    hasher.update(json);
    Ok(hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn read_manifest(dir: &Path) -> Result<Manifest, DataError> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DataError::Cache {
        dir: dir.to_path_buf(),
        reason: format!("{MANIFEST} is not a valid cache manifest: {e}"),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(DataError::Cache {
            dir: dir.to_path_buf(),
            reason: format!(
                "it was prepared in cache format {}, this naevus reads format {FORMAT_VERSION} (which checksums every image): \
                 delete the directory and run `naevus prepare` again",
                manifest.format_version
            ),
        });
    }
    Ok(manifest)
}

fn rejects_to_csv(rejects: &[Reject], path: &Path) -> Result<Vec<u8>, DataError> {
    let to_err = |e: csv::Error| DataError::io(path, std::io::Error::other(e.to_string()));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["row", "path", "reason"]).map_err(to_err)?;
    for r in rejects {
        let row = r.row.map(|n| n.to_string()).unwrap_or_default();
        writer.write_record([row.as_str(), r.path.as_str(), r.reason.as_str()]).map_err(to_err)?;
    }
    writer.into_inner().map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))
}

/// A finished prepared cache, opened read-only and memory-mapped.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    size: u32,
    records: Vec<Record>,
    /// Slot in images.u8 of each accepted record.
    slots: Vec<usize>,
    /// CRC-32 of each accepted record's slot, as prepare wrote it.
    checksums: Vec<u32>,
    /// None when the cache has no slots (an empty file cannot be mapped).
    pixels: Option<Mmap>,
}

impl Cache {
    /// Opens a cache written by [`prepare`]; fails if prepare has not finished.
    pub fn open(dir: &Path) -> Result<Cache, DataError> {
        let manifest = read_manifest(dir)?;
        let index_path = dir.join(INDEX);
        let index_file = File::open(&index_path).map_err(|e| DataError::Cache {
            dir: dir.to_path_buf(),
            reason: format!("cannot open {INDEX} ({e}); prepare has not finished: run it again to resume"),
        })?;
        let mut records = Vec::new();
        let mut slots = Vec::new();
        let mut checksums = Vec::new();
        for (i, line) in BufReader::new(index_file).lines().enumerate() {
            let line = line.map_err(|e| DataError::io(&index_path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: IndexLine = serde_json::from_str(&line).map_err(|e| DataError::Cache {
                dir: dir.to_path_buf(),
                reason: format!("{INDEX} line {}: expected {{\"slot\":N,\"crc32\":C,\"record\":{{..}}}}: {e}", i + 1),
            })?;
            if entry.slot >= manifest.slots {
                return Err(DataError::Cache {
                    dir: dir.to_path_buf(),
                    reason: format!("{INDEX} line {}: slot {} is beyond the {} slots", i + 1, entry.slot, manifest.slots),
                });
            }
            slots.push(entry.slot);
            checksums.push(entry.crc32);
            records.push(entry.record);
        }

        if !CACHE_SIDES.contains(&manifest.size) {
            return Err(DataError::Cache {
                dir: dir.to_path_buf(),
                reason: format!("{MANIFEST} gives {} px images, outside {}..={} px; prepare it again", manifest.size, CACHE_SIDES.start(), CACHE_SIDES.end()),
            });
        }
        let images_path = dir.join(IMAGES);
        let file = File::open(&images_path).map_err(|e| DataError::io(&images_path, e))?;
        // Checked: a damaged or hostile cache.json may claim more bytes than any file holds.
        let expected = u64::try_from(manifest.slots)
            .ok()
            .and_then(|slots| u64::from(manifest.size).pow(2).checked_mul(3)?.checked_mul(slots))
            .ok_or_else(|| DataError::Cache {
                dir: dir.to_path_buf(),
                reason: format!(
                    "{MANIFEST} claims {} slots of {} px images, more bytes than a file can hold; prepare it again",
                    manifest.slots, manifest.size
                ),
            })?;
        let actual = file.metadata().map_err(|e| DataError::io(&images_path, e))?.len();
        if actual != expected {
            return Err(DataError::Cache {
                dir: dir.to_path_buf(),
                reason: format!("{IMAGES} holds {actual} bytes, expected {expected}; prepare it again"),
            });
        }
        let pixels = if expected == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only; a prepared cache is never written again, and
            // we checked its length. Changing the file while a trainer maps it is unsupported.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&images_path, e))?)
        };
        Ok(Cache { dir: dir.to_path_buf(), size: manifest.size, records, slots, checksums, pixels })
    }

    /// Side of the stored square images in pixels.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of accepted records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the cache holds no images.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The [`identity`] of the accepted records and the image size.
    pub fn identity(&self) -> Result<String, DataError> {
        identity(self.size, &self.records)
    }

    /// The accepted records, in input order; index i matches `image(i)`.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// HWC RGB u8 pixels of record `i` (size*size*3 bytes), checked against the checksum
    /// prepare stored for them: every reader of the cache's pixels goes through here, so
    /// damaged bytes are an error naming the image, never an image. Panics if `i >= len()`,
    /// like slice indexing.
    pub fn image(&self, i: usize) -> Result<&[u8], DataError> {
        let bytes = slot_len(self.size);
        let slot = self.slots[i];
        let pixels = match &self.pixels {
            Some(map) => &map[slot * bytes..(slot + 1) * bytes],
            None => &[],
        };
        if slot_checksum(pixels) != self.checksums[i] {
            return Err(DataError::Cache {
                dir: self.dir.clone(),
                reason: format!(
                    "{IMAGES} is damaged: the pixels of image {} (slot {slot}) do not match their checksum. Run the same \
                     `naevus prepare` again (same inputs, same --out): it checks every image and decodes the damaged ones \
                     again (a cache made by `naevus combine`: combine it again into an empty directory)",
                    excerpt(&self.records[i].id)
                ),
            });
        }
        Ok(pixels)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Joins prepared caches of one image size into a new cache at `out`: the records of
/// `primary` as they are, then those of every `external` cache marked `is_external` (extra
/// training data from other sources, as seed 004 adds ISIC 2019 to 2020). Image ids must be
/// unique across all of them. Returns the number of images written.
pub fn combine(primary: &Cache, external: &[Cache], out: &Path) -> Result<usize, DataError> {
    let caches: Vec<&Cache> = std::iter::once(primary).chain(external).collect();
    if let Some(other) = caches.iter().find(|c| c.size != primary.size) {
        return Err(DataError::InvalidArgument(format!(
            "{} holds {} px images but {} holds {} px ones; prepare them at one size",
            other.dir.display(),
            other.size,
            primary.dir.display(),
            primary.size
        )));
    }
    let mut seen: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
    let mut records = Vec::new();
    for (n, cache) in caches.iter().enumerate() {
        for record in &cache.records {
            if let Some(first) = seen.insert(record.id.as_str(), cache.dir.as_path()) {
                return Err(DataError::InvalidArgument(format!(
                    "image {} is in both {} and {}: an image must not be both training and validation data",
                    record.id,
                    first.display(),
                    cache.dir.display()
                )));
            }
            records.push(Record { is_external: record.is_external || n > 0, ..record.clone() });
        }
    }
    fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    if fs::read_dir(out).map_err(|e| DataError::io(out, e))?.next().is_some() {
        return Err(DataError::Cache { dir: out.to_path_buf(), reason: "the directory is not empty; combine writes a new cache".into() });
    }
    let manifest = Manifest { format_version: FORMAT_VERSION, size: primary.size, slots: records.len(), fingerprint: identity(primary.size, &records)? };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| DataError::Cache { dir: out.to_path_buf(), reason: e.to_string() })?;
    write_atomic(&out.join(MANIFEST), &json)?;

    // Pixels first, the index last: the index marks the cache finished.
    let images_path = out.join(IMAGES);
    let mut images = std::io::BufWriter::new(File::create(&images_path).map_err(|e| DataError::io(&images_path, e))?);
    let mut checksums = Vec::with_capacity(records.len());
    for cache in &caches {
        for i in 0..cache.len() {
            images.write_all(cache.image(i)?).map_err(|e| DataError::io(&images_path, e))?;
            checksums.push(cache.checksums[i]);
        }
    }
    let file = images.into_inner().map_err(|e| DataError::io(&images_path, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(&images_path, e))?;
    let rejects_csv = out.join(REJECTS);
    write_atomic(&rejects_csv, &rejects_to_csv(&[], &rejects_csv)?)?;
    let mut index = Vec::new();
    for (slot, (record, crc32)) in records.into_iter().zip(checksums).enumerate() {
        serde_json::to_writer(&mut index, &IndexLine { slot, crc32, record }).map_err(|e| DataError::Cache { dir: out.to_path_buf(), reason: e.to_string() })?;
        index.push(b'\n');
    }
    write_atomic(&out.join(INDEX), &index)?;
    Ok(manifest.slots)
}
