//! `naevus crop`: attention-guided cropping (seed 002). A trained model's maps choose a square
//! around the lesion in every image of a cache; the images are cut again from their original
//! full-resolution files into a new cache, and the boxes are saved next to it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::cache::CACHE_SIDES;
use naevus_data::{Cache, CropSettings, PrepareOptions, SourceData, attention_box, image_at_size};
use naevus_engine::TrainedRun;
use naevus_engine::explain::Method;
use naevus_run::recipe::MODEL_INPUT_SIDES;
use naevus_run::{Checkpoint, write_atomic};

use crate::bounded::whole;
use crate::run_args::DeviceArg;

/// Re-crop every image of a cache around where a model looks, from the original files.
///
/// Each cached image is explained by the run's model (its learned attention for ChipNet and
/// the attention models, else --method); the map becomes the smallest square holding --mass of
/// its attention plus a --margin; a map whose box would cover more than --max-area of the image
/// is diffuse and the image is kept whole, as is one whose box with its margin would cover the
/// whole image. OUT is a new cache (same records, splits and
/// groups) and OUT/crop_boxes.csv lists each box as fractions of the image's centre square.
#[derive(clap::Args)]
pub struct Args {
    /// Run whose model chooses the crops (seed 002: a chipnet run).
    #[arg(long)]
    run: PathBuf,
    /// Cache of the images to crop.
    #[arg(long)]
    data: PathBuf,
    /// The new cache.
    #[arg(long)]
    out: PathBuf,
    /// Side of the new cache's images, 16 to 8192 (default: the input cache's).
    #[arg(long, value_parser = whole(*MODEL_INPUT_SIDES.start(), *CACHE_SIDES.end()))]
    size: Option<u32>,
    /// attention (default for models that have it) or gradcam / gradcam++.
    #[arg(long)]
    method: Option<Method>,
    /// Which fold's model crops every image, or `held-out`: each image by the model of the
    /// fold that held it out (the run's oof.csv), so that no crop is chosen by a model trained
    /// on that image. Default: held-out when the run's folds held out every image of the
    /// cache (cross-validation on the same data), else the first fold.
    #[arg(long)]
    fold: Option<String>,
    #[arg(long, default_value_t = CropSettings::default().mass)]
    mass: f64,
    #[arg(long, default_value_t = CropSettings::default().margin)]
    margin: f64,
    #[arg(long, default_value_t = CropSettings::default().max_area)]
    max_area: f64,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: Args) -> Result<()> {
    if !(0.0 < args.mass && args.mass <= 1.0) || args.margin < 0.0 || !(0.0 < args.max_area && args.max_area <= 1.0) {
        bail!("--mass and --max-area must lie in (0, 1] and --margin must not be negative");
    }
    let settings = CropSettings { mass: args.mass, margin: args.margin, max_area: args.max_area };
    let run = TrainedRun::open(&args.run, args.device.device.as_deref())?;
    let method = args.method.unwrap_or(if run.spec.attention_layers().is_empty() { Method::GradCamPlusPlus } else { Method::Attention });
    let cache = Arc::new(Cache::open(&args.data).with_context(|| format!("opening cache {}", args.data.display()))?);
    let groups = crop_groups(&args, &run, &cache)?;
    crate::explain::note_unknown_metadata(&run);
    let side = run.input.image_size;

    // Per cache item: its box (None: kept whole) and the fold whose model chose it.
    let mut chosen: Vec<Option<(Option<naevus_data::CropBox>, &str)>> = vec![None; cache.len()];
    let mut done = 0;
    for (fold, items) in &groups {
        let network = run.fold_model(fold, Checkpoint::Best)?;
        for chunk in items.chunks(64) {
            let pixels = chunk.iter().map(|&i| image_at_size(&cache, i, side)).collect::<Result<Vec<Vec<u8>>, _>>()?;
            let views: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
            let explanations = run.explain(&network, &views, method, None)?;
            for (&i, explanation) in chunk.iter().zip(&explanations) {
                // The deepest map: ChipNet has one; the attention VGG's pool-4 map is its coarser one.
                let map = explanation.maps.last().context("the model gave no map")?;
                chosen[i] = Some((attention_box(&map.values, map.height, map.width, &settings), fold.as_str()));
            }
            done += chunk.len();
            eprint!("\rchose {done} of {} crops", cache.len());
        }
    }
    eprintln!();

    let mut records = cache.records().to_vec();
    let mut lines = csv::Writer::from_writer(Vec::new());
    lines.write_record(["image_name", "left", "top", "side", "whole_image", "fold"])?;
    let mut kept_whole = 0;
    for (record, choice) in records.iter_mut().zip(&chosen) {
        let (region, fold) = choice.context("an image of the cache was not explained")?;
        record.crop = region;
        kept_whole += usize::from(region.is_none());
        let shown = region.unwrap_or(naevus_data::CropBox { left: 0.0, top: 0.0, side: 1.0 });
        let numbers = [shown.left, shown.top, shown.side].map(|v| format!("{v:.4}"));
        lines.write_record([record.id.as_str(), &numbers[0], &numbers[1], &numbers[2], &region.is_none().to_string(), fold])?;
    }

    let size = args.size.unwrap_or(cache.size());
    let summary = naevus_data::prepare(SourceData { records, rejects: Vec::new() }, &args.out, &PrepareOptions { size, threads: None, progress: true, ..PrepareOptions::default() })?;
    write_atomic(&args.out.join("crop_boxes.csv"), &lines.into_inner().context("writing crop_boxes.csv")?)?;
    println!(
        "cropped {} images from their original files into {} ({} kept whole: diffuse maps or boxes as large as the image; {} rejected); boxes in {}",
        summary.prepared,
        args.out.display(),
        kept_whole,
        summary.rejected,
        args.out.join("crop_boxes.csv").display()
    );
    Ok(())
}

/// The fold models that crop and the cache items each crops (see `Args::fold`).
fn crop_groups(args: &Args, run: &TrainedRun, cache: &Cache) -> Result<Vec<(String, Vec<usize>)>> {
    let info = &run.info;
    let everything = || (0..cache.len()).collect::<Vec<_>>();
    let held_out = || -> Result<Vec<(String, Vec<usize>)>> {
        let groups = run.held_out_items(cache)?;
        let covered: usize = groups.iter().map(|(_, items)| items.len()).sum();
        if covered != cache.len() {
            bail!("the run's folds held out {covered} of the cache's {} images", cache.len());
        }
        Ok(groups)
    };
    match args.fold.as_deref() {
        Some("held-out") => held_out(),
        Some(fold) => {
            info.check_fold(fold).map_err(anyhow::Error::msg)?;
            Ok(vec![(fold.to_string(), everything())])
        }
        None => match held_out() {
            Ok(groups) => {
                eprintln!("each image cropped by the model of the fold that held it out");
                Ok(groups)
            }
            Err(reason) => {
                let first = info.folds.first().context("the run has no folds")?;
                eprintln!("every image cropped by {first}'s model ({reason:#})");
                Ok(vec![(first.clone(), everything())])
            }
        },
    }
}
