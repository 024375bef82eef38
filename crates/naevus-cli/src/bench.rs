//! `naevus bench`: the speed table of README.md. Throughput of a training step (forward,
//! backward, Adam) and of inference per model and backend, with the process's peak memory
//! for each row; the data path (decode + crop + resize of large JPEGs, augment + batch from
//! the cache); single-image latency from file to probability. bench/pytorch_reference.sh runs
//! the same workloads in PyTorch on the same machine and prints the ratios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use naevus_data::{AugmentPlan, AugmentPreset, Batch, Cache, LoaderConfig, Normalize, batches, load_rgb, load_square, to_chw_f32};
use naevus_engine::TrainConfig;
use naevus_engine::device::{Precision, select_device};
use naevus_engine::loss::{LossKind, Target};
use naevus_engine::step::{StepOutcome, Trainer};
use naevus_run::recipe::{Kebab, MAX_BATCH_SIZE, MODEL_INPUT_SIDES};
use naevus_run::write_atomic;
use rayon::prelude::*;
use serde::Serialize;

use crate::bounded::whole;

mod layers;

/// Measure naevus's speed and print one table (and write it as JSON with --out).
#[derive(clap::Args)]
pub struct Args {
    /// Models to time.
    #[arg(long, value_delimiter = ',', default_value = "resnet18,efficientnet-lite0,attn-vgg16-bn")]
    models: Vec<String>,
    /// Backends to time them on (what was compiled in).
    #[arg(long, value_delimiter = ',', default_value = "flex")]
    devices: Vec<String>,
    /// Input sizes, each 16 to 2048; the first is the main one, the others show scaling.
    #[arg(long, value_delimiter = ',', default_value = "224", value_parser = whole(*MODEL_INPUT_SIDES.start() as usize, *MODEL_INPUT_SIDES.end() as usize))]
    sizes: Vec<usize>,
    /// Images per training step, 2 to 1024.
    #[arg(long, default_value_t = 16, value_parser = whole(2, MAX_BATCH_SIZE))]
    train_batch: usize,
    /// Images per inference batch, 1 to 1024.
    #[arg(long, default_value_t = 32, value_parser = whole(1, MAX_BATCH_SIZE))]
    infer_batch: usize,
    /// Floating-point type of the model rows: f32, f16 or bf16 (where the backend has it).
    #[arg(long, default_value = "f32")]
    precision: Kebab<Precision>,
    /// Timed steps per row, 1 to 10000.
    #[arg(long, default_value_t = 3, value_parser = whole(1usize, 10_000))]
    steps: usize,
    /// Untimed steps before them, 0 to 10000 (a GPU backend compiles and tunes its kernels in
    /// the first).
    #[arg(long, default_value_t = 1, value_parser = whole(0usize, 10_000))]
    warmup: usize,
    /// Folder of JPEGs: re-encoded at 1024 and 2048 px for the decode + crop + resize rows,
    /// and used for single-image latency.
    #[arg(long)]
    images: Option<PathBuf>,
    /// How many of those images, 1 to 10000.
    #[arg(long, default_value_t = 64, value_parser = whole(1usize, 10_000))]
    image_count: usize,
    /// A prepared cache for the augment + batch rows (light and seed-004 presets).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Write the rows as JSON here (bench/pytorch_reference.sh compares against it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Instead of the rows: the layer map. Every distinct layer shape of the models at the
    /// first size and the training batch, forward, input gradient and weight gradient timed
    /// alone through flex's kernels, beside the f32 GEMM peak (--out gets it as JSON).
    #[arg(long)]
    layers: bool,
}

/// One line of the table.
#[derive(Debug, Serialize)]
struct Row {
    /// e.g. "train resnet18 224px batch 16".
    workload: String,
    device: String,
    images_per_second: f64,
    /// Peak memory of this row, MiB: on a GPU what the device's allocator reserved, else the
    /// process's peak resident memory (Linux; None elsewhere).
    peak_mib: Option<f64>,
    /// Latency rows: median and 95th percentile in milliseconds.
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    /// Training rows: seconds of the first warm-up step (kernel compilation and tuning on a
    /// GPU), apart from the steady rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_step_seconds: Option<f64>,
}

pub fn run(args: Args) -> Result<()> {
    let threads = rayon::current_num_threads();
    eprintln!("naevus bench: {threads} threads, {} warm-up and {} timed steps per row", args.warmup, args.steps);
    let timing = Timing { warmup: args.warmup, steps: args.steps };
    if args.layers {
        let map = layers::run(&args.models, args.sizes[0], args.train_batch, timing)?;
        if let Some(out) = &args.out {
            write_atomic(out, serde_json::to_string_pretty(&map)?.as_bytes())?;
        }
        return Ok(());
    }
    let mut table = Table { rows: Vec::new(), out: args.out.clone() };
    if let Some(images) = &args.images {
        for row in data_path_rows(images, args.image_count)? {
            table.add(row)?;
        }
    }
    if let Some(cache) = &args.cache {
        for preset in [AugmentPreset::Light, AugmentPreset::Seed004] {
            table.add(loader_row(cache, args.sizes[0] as u32, args.train_batch, preset)?)?;
        }
    }
    for device_name in &args.devices {
        let device = select_device(device_name, args.precision.0)?;
        // The device column names the type when it is not f32, e.g. "vulkan f16".
        let label = match args.precision.0 {
            Precision::F32 => device_name.clone(),
            other => format!("{device_name} {}", other.name()),
        };
        for name in &args.models {
            let spec = naevus_models::spec(name)?;
            for &size in &args.sizes {
                table.add(train_row(spec, &device, &label, size, args.train_batch, timing)?)?;
                table.add(inference_row(spec, &device, &label, size, args.infer_batch, timing)?)?;
            }
            if let Some(images) = &args.images {
                table.add(latency_row(spec, &device, &label, images, args.sizes[0] as u32)?)?;
            }
        }
    }
    println!();
    println!("| workload | device | images/s | peak MiB | p50 ms | p95 ms | first step s |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for row in &table.rows {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} |",
            row.workload,
            row.device,
            row.images_per_second,
            opt(row.peak_mib, 0),
            opt(row.p50_ms, 1),
            opt(row.p95_ms, 1),
            opt(row.first_step_seconds, 2)
        );
    }
    Ok(())
}

/// The rows measured so far. Each is printed and, with --out, saved as it comes: a bench stopped
/// by a timeout (a GPU backend can spend minutes compiling kernels for one row) keeps the rest.
struct Table {
    rows: Vec<Row>,
    out: Option<PathBuf>,
}

impl Table {
    fn add(&mut self, row: Row) -> Result<()> {
        eprintln!("  {:<48} {:<7} {:>8.1} images/s", row.workload, row.device, row.images_per_second);
        self.rows.push(row);
        match &self.out {
            Some(out) => Ok(write_atomic(out, serde_json::to_string_pretty(&self.rows)?.as_bytes())?),
            None => Ok(()),
        }
    }
}

/// Untimed and timed steps of a model row.
#[derive(Clone, Copy)]
struct Timing {
    warmup: usize,
    steps: usize,
}

/// Resets the peak-memory reading so the next [`peak_mib`] covers only what ran in between:
/// the process's peak-RSS counter (Linux: writing 5 to clear_refs), and the pages a GPU
/// allocator holds for reuse.
fn reset_peak(device: &Device) {
    device.memory_cleanup();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak memory since the last [`reset_peak`], MiB. A GPU allocator keeps the pages it took
/// for reuse, so what it holds reserved after the steps is their peak (PyTorch's twin is
/// `torch.cuda.max_memory_reserved`).
fn peak_mib(device: &Device) -> Option<f64> {
    if let Some(usage) = device.memory_pool_usage() {
        return Some(usage.bytes_reserved as f64 / (1024.0 * 1024.0));
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn random_images(batch: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::random([batch, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), device)
}

/// The training step of `naevus train` ([`Trainer::step`]: forward, loss, backward, AdamW with
/// the schedule's learning rates for head and backbone), on a batch of synthetic images
/// handed over as the loader hands them. The first warm-up step is reported apart: on a GPU
/// it compiles and tunes kernels.
fn train_row(spec: &naevus_models::ModelSpec, device: &Device, device_name: &str, size: usize, batch: usize, timing: Timing) -> Result<Row> {
    let train_device = device.clone().autodiff();
    reset_peak(device);
    let recipe = TrainConfig { model: spec.name.to_string(), batch_size: batch, ..TrainConfig::default() };
    let mut trainer = Trainer::new(&recipe, spec.build(1, &train_device), timing.warmup + timing.steps, &train_device);
    let images = synthetic_batch(batch, size);
    let labels: Vec<u8> = (0..batch).map(|i| (i % 2) as u8).collect();
    let mut first_step = None;
    for _ in 0..timing.warmup {
        let started = Instant::now();
        trainer.step(images.clone(), &labels, None)?;
        first_step.get_or_insert(started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    for _ in 0..timing.steps {
        if trainer.step(images.clone(), &labels, None)? == StepOutcome::NotFinite {
            bail!("the training step of {} gave a non-finite loss", spec.name);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_mib(device);
    drop(trainer);
    Ok(Row {
        workload: format!("train {} {size}px batch {batch}", spec.name),
        device: device_name.into(),
        images_per_second: (timing.steps * batch) as f64 / seconds,
        peak_mib: peak,
        p50_ms: None,
        p95_ms: None,
        first_step_seconds: first_step,
    })
}

/// A loader batch of `batch` normalised synthetic images (a fixed pattern in [-1, 1]).
fn synthetic_batch(batch: usize, size: usize) -> Batch {
    let values = batch * 3 * size * size;
    let images = (0..values).map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0).collect();
    Batch { images, batch, size: size as u32, items: (0..batch).collect() }
}

fn inference_row(spec: &naevus_models::ModelSpec, device: &Device, device_name: &str, size: usize, batch: usize, timing: Timing) -> Result<Row> {
    reset_peak(device);
    let model = spec.build(1, device);
    let images = random_images(batch, size, device);
    let run = || {
        let probs = Target::binary(LossKind::Bce).melanoma_probability(model.forward(images.clone()).logits);
        let _: Vec<f32> = probs.into_data().try_to_vec().unwrap_or_default();
    };
    for _ in 0..timing.warmup {
        run();
    }
    let started = Instant::now();
    for _ in 0..timing.steps {
        run();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Row {
        workload: format!("infer {} {size}px batch {batch}", spec.name),
        device: device_name.into(),
        images_per_second: (timing.steps * batch) as f64 / seconds,
        peak_mib: peak_mib(device),
        p50_ms: None,
        p95_ms: None,
        first_step_seconds: None,
    })
}

/// JPEGs of `folder`, up to `count`.
fn jpegs(folder: &Path, count: usize) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")))
        .collect();
    files.sort();
    files.truncate(count);
    if files.is_empty() {
        bail!("no JPEG files in {}", folder.display());
    }
    Ok(files)
}

/// `count` JPEGs of `folder` re-encoded at `side` x 3/4 `side` px (real ISIC originals are
/// 1024 to 6000 px), in TMPDIR/naevus-bench-SIDE, made once.
fn reencoded(folder: &Path, count: usize, side: u32) -> Result<Vec<PathBuf>> {
    let dir = std::env::temp_dir().join(format!("naevus-bench-{side}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    jpegs(folder, count)?
        .par_iter()
        .map(|source| -> Result<PathBuf> {
            let target = dir.join(source.file_name().unwrap_or_default());
            if !target.exists() {
                let image = load_rgb(source)?;
                let large = image::imageops::resize(&image, side, side * 3 / 4, image::imageops::FilterType::Triangle);
                large.save_with_format(&target, image::ImageFormat::Jpeg).with_context(|| format!("writing {}", target.display()))?;
            }
            Ok(target)
        })
        .collect()
}

/// Decode + center crop + resize to 256 px of large JPEGs, on one thread and on all.
fn data_path_rows(folder: &Path, count: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for side in [1024u32, 2048] {
        let files = reencoded(folder, count, side)?;
        let work = |path: &PathBuf| -> Result<usize> { Ok(load_square(path, None, 256)?.len()) };
        // A one-thread pool, so that the JPEG decoder's own parallelism stays on one thread too.
        let one_thread_pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let started = Instant::now();
        one_thread_pool.install(|| files.iter().try_for_each(|file| work(file).map(drop)))?;
        let one_thread = files.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        files.par_iter().map(work).collect::<Result<Vec<_>>>()?;
        let all_threads = files.len() as f64 / started.elapsed().as_secs_f64();
        for (threads, rate) in [("1 thread", one_thread), ("all threads", all_threads)] {
            rows.push(Row {
                workload: format!("decode+crop+resize {side}x{} JPEG -> 256px, {threads}", side * 3 / 4),
                device: "cpu".into(),
                images_per_second: rate,
                peak_mib: None,
                p50_ms: None,
                p95_ms: None,
                first_step_seconds: None,
            });
        }
    }
    Ok(rows)
}

/// Augment (with `preset`) + normalise + batch from the prepared cache, as training reads it,
/// on rayon's threads.
fn loader_row(cache_dir: &Path, size: u32, batch: usize, preset: AugmentPreset) -> Result<Row> {
    let cache = Arc::new(Cache::open(cache_dir).with_context(|| format!("opening cache {}", cache_dir.display()))?);
    let items: Vec<usize> = (0..cache.len()).collect();
    let config = LoaderConfig {
        batch_size: batch,
        augment: Some(AugmentPlan::preset(preset)),
        colour: naevus_data::ColourConstancy::None,
        normalize: Normalize { mean: [0.5; 3], std: [0.25; 3] },
        seed: 0,
        prefetch: 2,
        output_size: (size != cache.size()).then_some(size),
        dihedral: 0,
    };
    let started = Instant::now();
    let count = batches(cache.clone(), items, config).map(|b| b.map(|b| b.batch)).sum::<Result<usize, _>>()?;
    let row = Row {
        workload: format!("augment {preset}+batch from cache ({}px -> {size}px), {} threads", cache.size(), rayon::current_num_threads()),
        device: "cpu".into(),
        images_per_second: count as f64 / started.elapsed().as_secs_f64(),
        peak_mib: None,
        p50_ms: None,
        p95_ms: None,
        first_step_seconds: None,
    };
    Ok(row)
}

/// File to probability for one 1024 px JPEG at a time: decode, crop, resize, normalise, forward.
fn latency_row(spec: &naevus_models::ModelSpec, device: &Device, device_name: &str, folder: &Path, size: u32) -> Result<Row> {
    let model = spec.build(1, device);
    let normalize = Normalize { mean: spec.mean, std: spec.std };
    let files = reencoded(folder, 21, 1024)?;
    let mut millis = Vec::new();
    for file in &files {
        let started = Instant::now();
        let pixels = load_square(file, None, size)?;
        let mut chw = Vec::new();
        to_chw_f32(&pixels, size, &normalize, &mut chw);
        let input = Tensor::<4>::from_data(TensorData::new(chw, [1, 3, size as usize, size as usize]), device);
        let _: Vec<f32> = Target::binary(LossKind::Bce).melanoma_probability(model.forward(input).logits).into_data().try_to_vec().unwrap_or_default();
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    millis.remove(0); // the first call pays one-off setup
    millis.sort_by(f64::total_cmp);
    let quantile = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
    Ok(Row {
        workload: format!("latency 1024px JPEG -> probability {} {size}px", spec.name),
        device: device_name.into(),
        images_per_second: 1000.0 / quantile(0.5),
        peak_mib: None,
        p50_ms: Some(quantile(0.5)),
        p95_ms: Some(quantile(0.95)),
        first_step_seconds: None,
    })
}
