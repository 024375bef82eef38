//! `naevus augment`: a picture of what an augmentation preset does to a cache's images.

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use naevus_data::{AugmentOps, AugmentPlan, AugmentPreset, Cache, ColourConstancy, ColourConstancyKind, SHADES_OF_GRAY_P, augment_preview};
use naevus_run::recipe::MODEL_INPUT_SIDES;

use crate::bounded::whole;
use naevus_run::write_atomic;

/// Most rows of a grid (--images, or the number of --items).
const MAX_ROWS: usize = 64;
/// Most augmented versions of each image (--per-image).
const MAX_PER_IMAGE: usize = 32;
/// Most pixels of the grid: 64 rows of 33 tiles at 2048 px would be 27 GB of RGB.
const MAX_GRID_PIXELS: u64 = 100_000_000;

/// Draw a grid of augmented images, to look at before training: each row one cached image,
/// then (with --colour-constancy) the same image colour-corrected as a recipe's
/// `colour_constancy` would, then --per-image versions of it augmented by the preset (with
/// --ops changes, as a recipe's `augment` and `augment_ops`). The images are spread evenly
/// over the cache; the draws are the loader's, seeded by --seed.
#[derive(clap::Args)]
pub struct Args {
    /// The prepared cache to draw from.
    #[arg(long, required_unless_present = "list")]
    data: Option<PathBuf>,
    /// light, seed-004, seed-002 or none.
    #[arg(long, default_value = "light")]
    preset: AugmentPreset,
    /// Changes to single operations, as the recipe's augment_ops ("cutout:p=0.5;hair").
    #[arg(long, default_value = "")]
    ops: AugmentOps,
    /// Rows: how many cached images, spread evenly over the cache, 1 to 64.
    #[arg(long, default_value_t = 6, value_parser = whole(1, MAX_ROWS))]
    images: usize,
    /// Which cached images instead (0-based cache indices, comma-separated, at most 64).
    #[arg(long, value_delimiter = ',')]
    items: Option<Vec<usize>>,
    /// Augmented versions of each, 0 to 32.
    #[arg(long, default_value_t = 5, value_parser = whole(0, MAX_PER_IMAGE))]
    per_image: usize,
    /// Colour constancy before augmentation, as the recipe key: none, shades-of-gray or
    /// gray-world; the corrected image gets its own column.
    #[arg(long, default_value = "none")]
    colour_constancy: ColourConstancyKind,
    /// Minkowski norm p of Shades of Gray, 1 to 20.
    #[arg(long, default_value_t = 6.0)]
    shades_of_gray_p: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of each tile in pixels, the model's input size, 16 to 2048 (default: the cache's).
    #[arg(long, value_parser = whole(*MODEL_INPUT_SIDES.start(), *MODEL_INPUT_SIDES.end()))]
    size: Option<u32>,
    /// The PNG to write.
    #[arg(long, required_unless_present = "list")]
    out: Option<PathBuf>,
    /// Print every operation with its parameters, defaults and ranges, and stop.
    #[arg(long)]
    list: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.list {
        print!("{}", AugmentPlan::describe_ops());
        return Ok(());
    }
    let (Some(data), Some(out)) = (&args.data, &args.out) else { bail!("--data and --out are needed") };
    let plan = AugmentPlan::of_recipe(args.preset, &args.ops).map_err(anyhow::Error::msg)?.unwrap_or_default();
    if !SHADES_OF_GRAY_P.contains(&args.shades_of_gray_p) {
        bail!("--shades-of-gray-p must lie between 1 and 20, got {}", args.shades_of_gray_p);
    }
    let colour = ColourConstancy::of_recipe(args.colour_constancy, args.shades_of_gray_p);
    let cache = Cache::open(data).with_context(|| format!("opening cache {}", data.display()))?;
    if cache.is_empty() || args.items.as_ref().is_some_and(Vec::is_empty) {
        bail!("nothing to draw: the cache has {} images and --images is {}", cache.len(), args.images);
    }
    if let Some(items) = &args.items
        && items.len() > MAX_ROWS
    {
        bail!("--items lists {} images; a grid has at most {MAX_ROWS} rows", items.len());
    }
    let size = args.size.unwrap_or(cache.size());
    if !MODEL_INPUT_SIDES.contains(&size) {
        bail!("--size must lie between {} and {} pixels, got {size} (the cache's size; give --size)", MODEL_INPUT_SIDES.start(), MODEL_INPUT_SIDES.end());
    }
    let items: Vec<usize> = match &args.items {
        Some(items) => {
            if let Some(&bad) = items.iter().find(|&&i| i >= cache.len()) {
                bail!("--items: the cache has {} images (0 to {}), not {bad}", cache.len(), cache.len() - 1);
            }
            items.clone()
        }
        None => {
            let rows = args.images.min(cache.len());
            (0..rows).map(|i| i * cache.len() / rows).collect()
        }
    };
    let rows = items.len();
    // Tiles only (the gaps are a few pixels): enough to refuse a grid that cannot be held.
    let columns = args.per_image as u64 + if colour == ColourConstancy::None { 1 } else { 2 };
    let pixels = rows as u64 * columns * u64::from(size).pow(2);
    if pixels > MAX_GRID_PIXELS {
        bail!(
            "the grid would hold {rows} x {columns} tiles of {size} px, {} megapixels, over the {} a preview may have; lower --size, --images or --per-image",
            pixels / 1_000_000,
            MAX_GRID_PIXELS / 1_000_000
        );
    }
    let grid = augment_preview(&cache, &plan, colour, &items, args.per_image, size, args.seed)?;
    let mut png = Vec::new();
    grid.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).context("encoding the grid as PNG")?;
    write_atomic(out, &png)?;
    let corrected = if colour == ColourConstancy::None { String::new() } else { format!(" corrected by {},", colour.describe()) };
    let ops = if args.ops.is_empty() { String::new() } else { format!(" with {}", args.ops) };
    println!("wrote {} ({} x {} px: {rows} images, each{corrected} then {} augmented by {}{ops})", out.display(), grid.width(), grid.height(), args.per_image, args.preset);
    Ok(())
}
