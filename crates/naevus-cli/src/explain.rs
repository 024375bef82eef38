//! `naevus explain`: where a trained model looks, as overlays, grey maps and a grid, and
//! with lesion masks how well those maps find the lesion.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naevus_data::DecodeLimits;
use naevus_engine::{LoadedModel, ModelInput, TrainedRun};
use naevus_engine::explain::{Explanation, Method};
use naevus_run::predictions::{ScoredRows, write_scored};
use naevus_run::write_atomic;
use naevus_report::saliency::{Tile, grid_png, map_png, overlay, rgb_png};

use crate::run_args::RunArgs;

/// Images per row of the grid.
const GRID_IMAGES_PER_ROW: usize = 4;

/// Show which regions raised a trained model's score most: Grad-CAM, Grad-CAM++ or its
/// learned attention maps.
///
/// Each IMAGE is read from its own file exactly as `predict --images` and the service read it
/// (center-cropped and resized as prepare stores it, then to the run's input size, then
/// colour-corrected and normalised as in training), so it scores the same. For every image
/// and map, OUT gets NAME_METHOD_LAYER.png (the map in the JET colour map over the image, blue
/// low to red high) and NAME_METHOD_LAYER_map.png (the map in grey, 0 to 1 as black to white),
/// grid_METHOD.png shows all of them captioned with the fold ensemble's melanoma probability
/// (the prediction path's, also in OUT/scores.csv) and the map's layer and grid, and images
/// outside the model's domain are marked. Maps are min-max normalised per image, so red is
/// each image's strongest region, not a strength. The default layer is the deepest with at
/// least 6 cells a side at the run's input size; maps of 7 cells a side or fewer are drawn as
/// cells, since they cannot tell finer places apart. Grad-CAM shows positive evidence for melanoma only, so
/// on an image the model calls benign its map is often empty (all black); Grad-CAM++ or an
/// earlier --layer usually still shows something. An image that cannot be read is named and
/// skipped.
///
/// With --masks DIR, each map is scored against the image's lesion mask
/// (DIR/NAME_segmentation.png as ISIC names them, or DIR/NAME.png): the Jaccard index of the
/// map binarised at 0.5, and the pointing game (is the map's maximum on the lesion).
/// Scores are printed and written to OUT/mask_scores_METHOD.csv.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Image files (JPEG or PNG) to explain.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// attention (models with learned attention), gradcam or gradcam++.
    #[arg(long, default_value = "gradcam")]
    method: Method,
    /// Layer to explain: for Grad-CAM a layer of the model (default: the registry's, the
    /// last stage; an unknown name lists the valid ones), for attention one attention map
    /// (default: all of them).
    #[arg(long)]
    layer: Option<String>,
    /// Which fold's model (default: the run's first fold).
    #[arg(long)]
    fold: Option<String>,
    /// For an ensemble bundle: which member's maps (default: its first member). The scores
    /// shown are the whole ensemble's either way.
    #[arg(long)]
    member: Option<String>,
    /// Folder of binary lesion masks to score the maps against.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Folder to write the pictures (and mask scores) into.
    #[arg(long)]
    out: PathBuf,
}

/// For a run with a metadata branch, says that image files are explained without metadata.
pub fn note_unknown_metadata(run: &TrainedRun) {
    if run.info.metadata.is_some() {
        eprintln!("note: this model also takes patient metadata; the images are explained as of a patient whose metadata is unknown");
    }
}

/// An image as the model sees it.
struct InputImage {
    /// Unique among the images explained: the file stem, numbered when stems repeat.
    name: String,
    /// The file stem, for finding its mask.
    id: String,
    /// The image as every member of the model takes it.
    input: ModelInput,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoint = args.run.weights.checkpoint;
    let model = args.run.load()?;
    let (explained, member) = match &args.member {
        Some(name) => model.member(name)?,
        None => (0, model.first()),
    };
    let run = &member.run;
    let fold = match &args.fold {
        Some(fold) => run.fold_name(fold)?,
        None => run.first_fold()?,
    };
    // Check the layer before any work, so that a typo costs nothing.
    if let (Some(layer), Method::GradCam | Method::GradCamPlusPlus) = (&args.layer, args.method) {
        run.spec.layer(layer)?;
    }
    let fold_index = run.info.folds.iter().position(|f| f == fold).context("the fold is the run's")?;
    let network = &member.folds[fold_index];
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let side = run.input.image_size;
    let (images, unreadable) = read_images(&model, &args.images)?;
    if images.is_empty() {
        bail!("none of the {} images could be read", args.images.len());
    }
    note_unknown_metadata(run);
    let pixels: Vec<&[u8]> = images.iter().map(|image| image.input.pixels[explained].as_slice()).collect();
    let explanations = run.explain(network, &pixels, args.method, args.layer.as_deref())?;
    // The numbers shown are the prediction path's: the whole model on its one scale, as
    // `predict --images` and the service give them (the maps are `fold`'s of `member`).
    let inputs: Vec<ModelInput> = images.iter().map(|image| image.input.clone()).collect();
    let scores = model.score(&inputs, 1)?;
    let domain = scores.domain.clone();

    let method = args.method.name();
    let mut tiles = Vec::new();
    for (n, (image, explanation)) in images.iter().zip(&explanations).enumerate() {
        let outside = domain.as_ref().is_some_and(|d| !d[n].within);
        for map in &explanation.maps {
            let stem = format!("{}_{method}_{}", image.name, map.layer);
            let pixels = overlay(&image.input.pixels[explained], &map.values, side)?;
            write_atomic(&args.out.join(format!("{stem}.png")), &rgb_png(&pixels, side)?)?;
            write_atomic(&args.out.join(format!("{stem}_map.png")), &map_png(&map.values, side)?)?;
            let probability = scores.melanoma[n];
            let (rows, columns) = map.grid;
            let caption = if outside {
                [format!("{} · OUT OF DOMAIN", image.name), format!("({probability:.3}, untrusted) · {} {rows}x{columns}", map.layer)]
            } else {
                [image.name.clone(), format!("melanoma {probability:.3} · {} {rows}x{columns}", map.layer)]
            };
            tiles.push(Tile { pixels, side, caption });
        }
    }
    let names: Vec<String> = images.iter().map(|image| image.name.clone()).collect();
    let scores_csv = args.out.join("scores.csv");
    let member_names: Vec<String> = model.members.iter().map(|m| m.name.clone()).collect();
    write_scored(&scores_csv, &ScoredRows {
        ids: &names,
        target: &scores.melanoma,
        uncalibrated: model.calibrated().then_some(scores.melanoma_uncalibrated.as_slice()),
        domain: scores.domain.as_deref(),
        paths: None,
        members: model.is_ensemble().then_some((member_names.as_slice(), scores.members.as_slice())),
    })?;
    let maps_per_image = explanations.first().map_or(1, |e| e.maps.len()).max(1);
    let grid = args.out.join(format!("grid_{method}.png"));
    write_atomic(&grid, &grid_png(&tiles, maps_per_image * GRID_IMAGES_PER_ROW)?)?;

    let layers: Vec<String> =
        explanations.first().map_or(Vec::new(), |e| e.maps.iter().map(|m| format!("{} ({}x{} grid)", m.layer, m.grid.0, m.grid.1)).collect());
    println!(
        "explained {} image(s) with {method} at {} of {}{} ({fold}, {} checkpoint) into {}; overview: {}; the probabilities of {} ({}) in {}\n\
         colours are relative to each image: red marks its strongest region, even where the score is low",
        images.len(),
        layers.join(", "),
        run.info.model,
        if model.is_ensemble() { format!(", member {}", member.name) } else { String::new() },
        checkpoint.name(),
        args.out.display(),
        grid.display(),
        model.describe(),
        model.scale(),
        scores_csv.display()
    );
    let maps = explanations.iter().flat_map(|e| &e.maps);
    let empty = maps.clone().filter(|map| map.values.iter().all(|&v| v == 0.0)).count();
    if empty > 0 {
        println!(
            "{empty} of {} map(s) are empty: no positive evidence for melanoma at that layer (common where the \
             model says benign; gradcam++ or an earlier --layer may show more)",
            maps.count()
        );
    }
    match &domain {
        Some(domain) => {
            let outside: Vec<&str> = images.iter().zip(domain).filter(|(_, d)| !d.within).map(|(image, _)| image.name.as_str()).collect();
            if !outside.is_empty() {
                println!(
                    "{} of {} image(s) lie outside the model's domain (unlike the images it trained on; their scores and maps mean little): {}",
                    outside.len(),
                    images.len(),
                    outside.join(", ")
                );
            }
        }
        None => println!("the model has no out-of-domain guard for its {} weights, so no image was checked against one", checkpoint.name()),
    }
    if unreadable > 0 {
        println!("{unreadable} image(s) could not be read and were skipped (named above)");
    }
    if let Some(masks) = &args.masks {
        score_against_masks(run, masks, &images, &explanations, &args.out.join(format!("mask_scores_{method}.csv")))?;
    }
    Ok(())
}

/// Reads each image as `predict --images` does (the run's one input path); an unreadable one
/// is named on stderr and left out. Returns the images read and the number left out.
fn read_images(model: &LoadedModel, paths: &[PathBuf]) -> Result<(Vec<InputImage>, usize)> {
    let mut images = Vec::with_capacity(paths.len());
    let mut names = HashSet::new();
    let mut unreadable = 0;
    for (path, read) in paths.iter().zip(model.load_images(paths, &DecodeLimits::default())?) {
        let pixels = match read {
            Ok(pixels) => pixels,
            Err(reason) => {
                // The reason names the file.
                eprintln!("skipping {reason}");
                unreadable += 1;
                continue;
            }
        };
        let id = path.file_stem().map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
        let mut name = id.clone();
        let mut copy = 1;
        while !names.insert(name.clone()) {
            copy += 1;
            name = format!("{id}-{copy}");
        }
        // Image files come without metadata: a patient whose metadata is unknown.
        images.push(InputImage { name, id, input: ModelInput { pixels, metadata: model.metadata_of(None) } });
    }
    Ok((images, unreadable))
}

/// The lesion mask of image `id` in `dir`, cropped and resized as the image was (the same
/// input path); None when there is none.
fn find_mask(run: &TrainedRun, dir: &Path, id: &str) -> Result<Option<Vec<bool>>> {
    let candidates = [dir.join(format!("{id}_segmentation.png")), dir.join(format!("{id}.png"))];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Ok(None);
    };
    let mut read = run.load_images(std::slice::from_ref(path), &DecodeLimits::default())?;
    let pixels = read.pop().context("no mask read")?.map_err(anyhow::Error::msg).with_context(|| format!("reading mask {}", path.display()))?;
    // Resampling blurs the mask's edge; half grey splits it back into lesion and skin.
    Ok(Some(pixels.chunks_exact(3).map(|rgb| rgb[0] >= 128).collect()))
}

/// Jaccard index and pointing game of every map against its image's mask: printed per image
/// and on average per layer, and written to `csv_path`.
fn score_against_masks(run: &TrainedRun, dir: &Path, images: &[InputImage], explanations: &[Explanation], csv_path: &Path) -> Result<()> {
    let mut rows = csv::Writer::from_writer(Vec::new());
    rows.write_record(["image", "layer", "jaccard", "pointing_hit"])?;
    // Per layer: (sum of Jaccard indices, hits, maps scored), in first-seen order.
    let mut totals: Vec<(String, f64, usize, usize)> = Vec::new();
    for (image, explanation) in images.iter().zip(explanations) {
        let Some(mask) = find_mask(run, dir, &image.id)? else {
            eprintln!("no mask for {} in {} ({}_segmentation.png or {}.png); not scored", image.name, dir.display(), image.id, image.id);
            continue;
        };
        for map in &explanation.maps {
            let scored = naevus_metrics::map_jaccard(&map.values, &mask)
                .and_then(|jaccard| Ok((jaccard, naevus_metrics::pointing_game_hit(&map.values, &mask)?)));
            let (jaccard, hit) = match scored {
                Ok(scores) => scores,
                Err(error) => {
                    eprintln!("mask of {}: {error}; not scored", image.name);
                    continue;
                }
            };
            println!("{} {}: Jaccard {jaccard:.3}, pointing game {}", image.name, map.layer, if hit { "hit" } else { "miss" });
            rows.write_record([image.name.as_str(), &map.layer, &format!("{jaccard:.6}"), &u8::from(hit).to_string()])?;
            let index = match totals.iter().position(|t| t.0 == map.layer) {
                Some(index) => index,
                None => {
                    totals.push((map.layer.clone(), 0.0, 0, 0));
                    totals.len() - 1
                }
            };
            let total = &mut totals[index];
            total.1 += jaccard;
            total.2 += usize::from(hit);
            total.3 += 1;
        }
    }
    if totals.is_empty() {
        bail!("no image had a usable mask in {}", dir.display());
    }
    for (layer, jaccard_sum, hits, count) in &totals {
        println!(
            "{layer}: mean Jaccard {:.3} over {count} image(s); pointing game {hits}/{count} = {:.3}",
            jaccard_sum / *count as f64,
            *hits as f64 / *count as f64
        );
    }
    write_atomic(csv_path, &rows.into_inner().context("writing the mask scores")?)?;
    println!("mask scores: {}", csv_path.display());
    Ok(())
}
