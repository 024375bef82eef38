//! `naevus prepare`: read a dataset, decode and resize every image once into a cache.

use std::path::PathBuf;

use anyhow::Result;
use naevus_data::cache::CACHE_SIDES;
use naevus_data::sources::is_kept_note;
use naevus_data::{PrepareOptions, SourceKind, SourceSpec};
use naevus_run::recipe::MODEL_INPUT_SIDES;

use crate::bounded::whole;

/// Decode a dataset once into a compact cache of fixed-size RGB images.
///
/// Reads the labels (CSV or class folders), decodes each JPEG/PNG (EXIF orientation,
/// grayscale/CMYK/16-bit/alpha to RGB), center-crops it to a square and resizes it to
/// --size. Runs on all cores, and an interrupted run resumes where it stopped. Every image
/// is stored with a checksum that each read checks; run again on the same --out, prepare
/// decodes again the images whose bytes were damaged. Unreadable images and bad CSV rows
/// are skipped and listed in OUT/rejects.csv; so is a metadata cell that does not parse (an
/// age of "abc"), its image kept with that field unknown.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset format: isic2020 (SIIM-ISIC 2020 train.csv), isic2017 (part 3 labels),
    /// ham10000 (HAM10000 metadata), isic2019 (ground truth + --metadata-csv), isic2018 (Task 3
    /// ground truth + --metadata-csv in HAM10000's columns), folders (one folder per class).
    #[arg(long)]
    source: SourceKind,
    /// The label CSV (not used by `folders`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Folder of images (for `folders`: the folder holding one sub-folder per class).
    #[arg(long)]
    images: PathBuf,
    /// ISIC 2019 or 2018 metadata CSV (age, sex, site, lesion id): ISIC 2019's columns or
    /// HAM10000's (image_id, lesion_id, age, sex, localization).
    #[arg(long)]
    metadata_csv: Option<PathBuf>,
    /// Side of the square cached images in pixels, 16 to 8192 (a model's input is at least
    /// 16).
    #[arg(long, default_value_t = 256, value_parser = whole(*MODEL_INPUT_SIDES.start(), *CACHE_SIDES.end()))]
    size: u32,
    /// Cache directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = whole(1usize, 1024))]
    threads: Option<usize>,
    /// Largest image accepted, in pixels (width x height), 1 to 1000000000, checked before
    /// decoding: a larger or decompression-bomb file is a rejected row.
    #[arg(long, default_value_t = naevus_data::DecodeLimits::DEFAULT_MAX_PIXELS, value_parser = whole(1, naevus_data::DecodeLimits::HIGHEST_MAX_PIXELS))]
    max_pixels: u64,
    /// The source every image is recorded under (default: the format's name, e.g.
    /// ham10000): name each clinic or device apart, even when two share a format, so that
    /// training can balance and validate them apart and reports break figures down by it.
    /// Letters, digits, '-', '_' and '.', at most 64.
    #[arg(long, value_parser = source_name)]
    source_name: Option<String>,
}

fn source_name(text: &str) -> Result<String, String> {
    if naevus_run::source_options::is_source_name(text) {
        Ok(text.to_string())
    } else {
        Err("a source name has 1 to 64 letters, digits, '-', '_' or '.'".into())
    }
}

pub fn run(args: Args) -> Result<()> {
    let spec = SourceSpec { kind: args.source, csv: args.csv, images: args.images, metadata_csv: args.metadata_csv };
    let limits = naevus_data::DecodeLimits { max_pixels: args.max_pixels };
    prepare(&spec, args.source_name.as_deref(), &args.out, &PrepareOptions { size: args.size, threads: args.threads, progress: true, limits })
}

/// Reads `spec` and prepares it into `out` (every record under `source_name` when given),
/// printing the summary line.
pub fn prepare(spec: &SourceSpec, source_name: Option<&str>, out: &std::path::Path, options: &PrepareOptions) -> Result<()> {
    let mut data = naevus_data::read_source(spec)?;
    if let Some(name) = source_name {
        for record in &mut data.records {
            record.source = name.to_string();
        }
    }
    // rejects.csv also lists cells left unknown on images that were kept: counted apart.
    let kept = data.rejects.iter().filter(|r| is_kept_note(r)).count();
    let summary = naevus_data::prepare(data, out, options)?;
    if summary.redone_damaged > 0 {
        eprintln!(
            "note: {} finished images no longer matched their checksums in {}: decoded again",
            summary.redone_damaged,
            out.join("images.u8").display()
        );
    }
    let kept_note = if kept > 0 { format!(", {kept} metadata value(s) unreadable, their images kept with the field unknown") } else { String::new() };
    println!(
        "prepared {} images ({} already done), {} rejected{kept_note} (see {})",
        summary.prepared,
        summary.already_done,
        summary.rejected.saturating_sub(kept),
        summary.rejects_csv.display()
    );
    Ok(())
}
