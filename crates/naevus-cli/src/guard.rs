//! `naevus guard`: fit a run's out-of-domain guards again, at another percentile or for a
//! run trained before guards existed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use naevus_data::{Cache, DecodeLimits};
use naevus_engine::TrainedRun;
use naevus_engine::guard::check_guards;
use naevus_run::{Checkpoint, GUARD_PERCENTILES, RunDir};

/// Fit the out-of-domain guard of every fold of a trained run.
///
/// Each fold's best weights compute the features of the images the fold trained on (at most
/// 4,000, evenly spaced) and of its validation images; the guard keeps their class means and
/// shared covariance, and the threshold is a percentile of the training images' own
/// distances. `predict`, `explain`, `serve` and `export` use it. Training fits it already.
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`).
    #[arg(long)]
    run: PathBuf,
    /// The cache the run trained on (default: the one run.json names).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Percentile of the training images' distances beyond which an image is outside the
    /// domain, 50 to 100 (default: the recipe's guard_percentile, 99).
    #[arg(long)]
    percentile: Option<f64>,
    /// A folder of folders of images that are not dermoscopy, one folder per kind (text,
    /// flat, ruler, ...; scripts/make_out_of_domain_images.py makes them): measures how the
    /// guards tell each kind from the run's validation images, for the model card
    /// (RUN/guard_check.json).
    #[arg(long)]
    check: Option<PathBuf>,
    /// With --check: measure the guards the run has instead of fitting them again.
    #[arg(long, requires = "check")]
    check_only: bool,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(p) = args.percentile.filter(|p| !GUARD_PERCENTILES.contains(p)) {
        anyhow::bail!("--percentile must lie between 50 and 100, got {p}");
    }
    let dir = RunDir::new(&args.run);
    let info = dir.read_info()?;
    let data = args.data.unwrap_or_else(|| dir.resolve_cache(&info));
    let cache = Arc::new(Cache::open(&data).with_context(|| format!("opening cache {}", data.display()))?);
    if !args.check_only {
        for (fold, guard) in naevus_engine::train::refit_guards(cache.clone(), &args.run, args.percentile)? {
            println!("{fold}: {}", guard.summary());
        }
    }
    if let Some(folder) = &args.check {
        let run = TrainedRun::open(&args.run, None)?;
        let kinds = read_kinds(&run, folder)?;
        let check = check_guards(&run, &cache, Checkpoint::Best, &kinds)?;
        println!(
            "validation images: {:.1}% of {} outside the domain (guards at the {}th percentile)",
            100.0 * check.validation_flagged,
            check.validation_images,
            check.percentile
        );
        println!("{:<16} {:>6} {:>9} {:>16}", "kind", "images", "outside", "detection AUROC");
        for kind in &check.kinds {
            println!("{:<16} {:>6} {:>8.1}% {:>16.3}", kind.kind, kind.images, 100.0 * kind.flagged, kind.auroc);
        }
        check.write(&args.run)?;
        println!("saved in {}", args.run.join(naevus_run::guard::GUARD_CHECK_FILE).display());
    }
    Ok(())
}

/// Each subfolder of `folder` as a kind: its name and its images as the model takes them.
fn read_kinds(run: &TrainedRun, folder: &Path) -> Result<Vec<(String, Vec<Vec<u8>>)>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    let mut kinds = Vec::new();
    for kind_folder in folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&kind_folder)
            .with_context(|| format!("reading {}", kind_folder.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x))))
            .collect();
        files.sort();
        let mut images = Vec::new();
        for image in run.load_images(&files, &DecodeLimits::default())? {
            match image {
                Ok(pixels) => images.push(pixels),
                Err(reason) => eprintln!("skipping {reason}"),
            }
        }
        if !images.is_empty() {
            kinds.push((kind_folder.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()), images));
        }
    }
    anyhow::ensure!(!kinds.is_empty(), "{} holds no folders of JPEG or PNG images", folder.display());
    Ok(kinds)
}
