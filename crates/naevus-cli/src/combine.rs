//! `naevus combine`: a primary cache plus external caches as one training cache.

use std::path::PathBuf;

use anyhow::{Context, Result};
use naevus_data::Cache;

use crate::staged;

/// Join prepared caches of one image size into a new cache, marking the images of every
/// --external cache as external data.
///
/// External images train in every fold and are never validated on, unless the recipe sets
/// external_in_validation; then validation reports AUC on all images and on primary ones,
/// and each fold keeps a best_primary checkpoint (seed 004 adds the ISIC 2019 images to
/// the 2020 ones this way).
#[derive(clap::Args)]
pub struct Args {
    /// The primary cache: its images are what validation is about.
    primary: PathBuf,
    /// A cache of external images (repeatable).
    #[arg(long, required = true)]
    external: Vec<PathBuf>,
    /// The new cache directory (must not exist or be empty). It is written beside, under a
    /// temporary name, and appears only when complete.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let open = |dir: &PathBuf| Cache::open(dir).with_context(|| format!("opening cache {}", dir.display()));
    let primary = open(&args.primary)?;
    let external = args.external.iter().map(open).collect::<Result<Vec<_>>>()?;
    staged::refuse_unless_empty(&args.out)?;
    // Written beside --out and renamed into place when complete: a failure leaves nothing there.
    let images = staged::write_folder(&args.out, |folder| Ok(naevus_data::combine(&primary, &external, folder)?))?;
    let extra: usize = external.iter().map(Cache::len).sum();
    println!("combined {images} images ({} primary, {extra} external) into {}", primary.len(), args.out.display());
    Ok(())
}
