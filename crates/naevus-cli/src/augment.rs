//! `naevus augment`: a picture of what an augmentation preset does to a cache's images.

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use naevus_data::{AugmentOps, AugmentPlan, AugmentPreset, Cache, augment_preview};
use naevus_run::write_atomic;

/// Draw a grid of augmented images, to look at before training: each row one cached image,
/// as the model sees it, then --per-image versions augmented by the preset (with --ops
/// changes, as a recipe's `augment` and `augment_ops`). The images are spread evenly over the
/// cache; the draws are the loader's, seeded by --seed.
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
    /// Rows: how many cached images, spread evenly over the cache.
    #[arg(long, default_value_t = 6)]
    images: usize,
    /// Which cached images instead (0-based cache indices, comma-separated).
    #[arg(long, value_delimiter = ',')]
    items: Option<Vec<usize>>,
    /// Augmented versions of each.
    #[arg(long, default_value_t = 5)]
    per_image: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of each tile in pixels, the model's input size (default: the cache's).
    #[arg(long)]
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
    let cache = Cache::open(data).with_context(|| format!("opening cache {}", data.display()))?;
    if cache.is_empty() || (args.images == 0 && args.items.is_none()) || args.items.as_ref().is_some_and(Vec::is_empty) {
        bail!("nothing to draw: the cache has {} images and --images is {}", cache.len(), args.images);
    }
    let size = args.size.unwrap_or(cache.size());
    if !(8..=2048).contains(&size) {
        bail!("--size must lie between 8 and 2048 pixels, got {size}");
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
    let grid = augment_preview(&cache, &plan, &items, args.per_image, size, args.seed)?;
    let mut png = Vec::new();
    grid.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).context("encoding the grid as PNG")?;
    write_atomic(out, &png)?;
    println!("wrote {} ({} x {} px: {rows} images, each then {} augmented by {}{})", out.display(), grid.width(), grid.height(), args.per_image, args.preset, if args.ops.is_empty() { String::new() } else { format!(" with {}", args.ops) });
    Ok(())
}
