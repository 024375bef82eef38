//! `naevus ensemble`: combine several prediction CSVs into one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use naevus_data::error::excerpt;
use naevus_report::Mode;

/// Combine prediction CSVs (image_name,target) into one, joined on image_name.
///
/// Every file must hold exactly the same image ids, each once. `mean` averages the scores,
/// `weighted` takes their weighted mean (--weights required), `rank` converts each file's
/// scores to normalised ranks in [0, 1] (ties share their average rank) and averages those
/// (weighted when --weights is given): use it when the models' scores are on different
/// scales. The output follows the first file's row order.
#[derive(clap::Args)]
pub struct Args {
    /// Prediction CSVs with columns image_name,target (two or more).
    #[arg(required = true, num_args = 2..)]
    files: Vec<PathBuf>,
    /// mean, rank or weighted.
    #[arg(long, default_value = "mean")]
    mode: String,
    /// Comma-separated weights, one per file (normalised to sum 1), e.g. 0.7,0.3; each a
    /// finite number above 0, at most 1.7976931348623157e308 (the largest f64).
    #[arg(long)]
    weights: Option<String>,
    /// Where to write the combined image_name,target CSV (`-`: standard output).
    #[arg(long)]
    out: PathBuf,
}

fn parse_weights(text: &str) -> Result<Vec<f64>> {
    let mut weights = Vec::new();
    for (i, part) in text.split(',').enumerate() {
        let part = part.trim();
        let w: f64 = part.parse().with_context(|| format!("--weights: item {} (\"{}\") is not a number", i + 1, excerpt(part)))?;
        weights.push(w);
    }
    Ok(weights)
}

pub fn run(args: Args) -> Result<()> {
    let mode: Mode = args.mode.parse()?;
    let weights = args.weights.as_deref().map(parse_weights).transpose()?;
    if args.files.len() < 2 {
        bail!("give at least two prediction files to combine");
    }
    let mut files = Vec::with_capacity(args.files.len());
    for path in &args.files {
        files.push(naevus_report::read_predictions(path)?);
    }
    let (ids, scores) = naevus_report::combine(&files, mode, weights.as_deref())?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    naevus_report::write_predictions(&args.out, &ids, &scores)?;
    let line = format!("combined {} files ({} images, mode {}) into {}", files.len(), ids.len(), args.mode, args.out.display());
    // With `--out -` standard output carries the CSV alone.
    if args.out.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
