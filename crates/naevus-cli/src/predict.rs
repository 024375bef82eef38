//! `naevus predict`: melanoma probabilities for a prepared cache, Kaggle submission format.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::error::excerpt;
use naevus_data::metadata::{parse_age, parse_sex, parse_site};
use naevus_data::{Cache, DecodeLimits, Metadata, Record, Split};
use naevus_engine::{LoadedModel, ModelInput, ModelScores, TrainedRun};
use naevus_engine::predict::MAX_TTA;
use naevus_run::predictions::ScoredRows;
use naevus_run::shard::{Shard, ShardRecord};

use crate::bounded::whole;
use crate::run_args::RunArgs;

/// Predict melanoma probabilities with a trained run or an exported model.
///
/// Every fold's checkpoint predicts each image and the probabilities are averaged (a fold
/// ensemble); --tta N also averages N dihedral views (flips, rotations, transposes) of each
/// image. An ensemble bundle's members each score the image at their own input size and their
/// probabilities are combined as the bundle says. Writes `image_name,target` rows, the
/// SIIM-ISIC submission format, target on the model's one scale (calibrated when it has a
/// calibration, then `target_uncalibrated`), with `domain_distance` and `in_domain` when the
/// model has an out-of-domain guard, `member_NAME` and `member_spread` for an ensemble
/// (--images adds a `path` column). With --oof, each training image is scored by the fold that held it out
/// instead, and the out-of-fold AUC is printed: the honest way to measure what TTA adds.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Prepared cache of the images to score (default with --oof: the run's training cache).
    #[arg(long, conflicts_with = "images")]
    data: Option<PathBuf>,
    /// Image files to score directly, without `naevus prepare`: files (JPEG or PNG), folders
    /// of them (sub-folders included), or CSVs with a `path` column (relative to the CSV) and,
    /// for metadata models, optional `age`, `sex` and `site` columns. Each is decoded, cropped
    /// and resized exactly as prepare and the loader do; one that cannot be read, or whose
    /// path is not UTF-8, is named and skipped. Each row's image_name is the file's path
    /// relative to what was given, '/'-separated, without its extension (a lone file: its
    /// name; several inputs: the path as given), and its `path` column the file read.
    #[arg(long, num_args = 1.., conflicts_with = "oof")]
    images: Vec<PathBuf>,
    /// Largest image accepted from --images, in pixels (width x height), 1 to 1000000000.
    #[arg(long, default_value_t = DecodeLimits::DEFAULT_MAX_PIXELS, value_parser = whole(1, DecodeLimits::HIGHEST_MAX_PIXELS))]
    max_pixels: u64,
    /// CSV to write (`-`: standard output). A device, FIFO or symbolic link is written
    /// through, not replaced.
    #[arg(long)]
    out: PathBuf,
    /// Test-time augmentation: number of dihedral views averaged, 1 (none) to 8.
    #[arg(long, default_value_t = 1)]
    tta: usize,
    /// Write the probabilities uncalibrated (an ensemble: its members' uncalibrated ones,
    /// combined). By default `target` is on the model's one scale: calibrated by the temperature in calibration.json when the run has one
    /// (the scale of the model card's thresholds, explain and the service; the ranking, hence
    /// AUC, is the same), followed by a `target_uncalibrated` column.
    #[arg(long)]
    uncalibrated: bool,
    /// Re-score the run's out-of-fold images, each with the fold that did not train on it.
    #[arg(long)]
    oof: bool,
    /// Score only the images of this split of the cache: train, val or test.
    #[arg(long)]
    split: Option<Split>,
    /// Score only this process's share of the images, for a job spread over machines: K/N
    /// takes every N-th image from the K-th (0-based) of the job's list (the cache's order,
    /// or the files as found); env/N takes K from JOB_COMPLETION_INDEX (a Kubernetes Indexed
    /// Job) or SLURM_ARRAY_TASK_ID (a Slurm array run with --array=0-(N-1)). OUT.shard.json
    /// beside the CSV records the share; `naevus merge` joins the shards' CSVs and checks
    /// that every image was scored exactly once.
    #[arg(long, conflicts_with = "oof")]
    shard: Option<String>,
    /// Print the closing summary as JSON, for scripts (on standard output; on standard error
    /// when `--out -` carries the CSV): with --oof the fields of metrics.json, otherwise
    /// what was written (images, skipped, outside the domain, model, scale).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !(1..=MAX_TTA).contains(&args.tta) {
        bail!("--tta must be between 1 and {MAX_TTA}, got {}", args.tta);
    }
    if args.oof {
        return predict_out_of_fold(&args);
    }
    let shard = args.shard.as_deref().map(|text| Shard::parse(text, |name| std::env::var(name).ok())).transpose()?;
    if shard.is_some() && args.out == Path::new("-") {
        bail!("--shard writes OUT.shard.json beside its CSV for `naevus merge`: give --out a file, not standard output");
    }
    let model = args.run.load()?;
    if !args.images.is_empty() {
        return predict_files(&model, &args, shard);
    }
    let data = args.data.clone().context("--data is required (the prepared cache of the images to score)")?;
    let cache = Arc::new(Cache::open(&data).with_context(|| format!("opening cache {}", data.display()))?);

    let split = args.split;
    let items: Vec<usize> = (0..cache.len()).filter(|&i| split.is_none() || cache.records()[i].split == split).collect();
    if items.is_empty() {
        bail!("no images to score in {} (split {})", data.display(), split.map_or("any".to_string(), |s| s.to_string()));
    }
    let all_ids: Vec<String> = items.iter().map(|&i| cache.records()[i].id.clone()).collect();
    let (positions, record) = share(shard, &all_ids);
    let items: Vec<usize> = positions.into_iter().map(|p| items[p]).collect();
    for warning in model.metadata_warnings(items.iter().map(|&i| &cache.records()[i])) {
        eprintln!("{warning}");
    }
    warn_without_guard(&model);
    let scores = model.score_cache(&cache, &items, args.tta)?;
    let ids: Vec<String> = items.iter().map(|&i| cache.records()[i].id.clone()).collect();
    let (target, uncalibrated) = on_scale(&model, &scores, args.uncalibrated);
    let names = member_names(&model);
    let members = names.as_deref().map(|names| (names, scores.members.as_slice()));
    let rows = ScoredRows { ids: &ids, target, uncalibrated, domain: scores.domain.as_deref(), paths: None, members };
    naevus_run::predictions::write_scored(&args.out, &rows)?;
    if let Some(record) = record {
        ShardRecord { scored: ids.len(), ..record }.write(&args.out)?;
    }
    let outside = scores.domain.as_deref().map_or(String::new(), outside_the_domain);
    let line = format!(
        "wrote {} predictions ({}, tta {}, {}) to {}{outside}",
        items.len(),
        model.describe(),
        args.tta,
        scale(&model, args.uncalibrated),
        destination(&args.out)
    );
    let written = written_summary(&args, &model, ids.len(), 0, scores.domain.as_deref());
    summary(&args, line, written);
    Ok(())
}

/// `predict --oof`: each of one run's out-of-fold images scored again by the fold that held
/// it out, with `--tta` views.
fn predict_out_of_fold(args: &Args) -> Result<()> {
    if naevus_run::EnsembleDefinition::is_ensemble(&args.run.run) {
        bail!("--oof re-scores one run's out-of-fold images, each with its own fold; an ensemble's out-of-fold figure is in its model card");
    }
    let run = TrainedRun::open(&args.run.run, args.run.weights.device.device.as_deref())?;
    let data = args.data.clone().unwrap_or_else(|| run.info.cache.clone());
    let cache = Arc::new(Cache::open(&data).with_context(|| format!("opening cache {}", data.display()))?);
    for warning in run.info.metadata_warnings(cache.records()) {
        eprintln!("{warning}");
    }
    let (items, mut probs, folds) = run.predict_out_of_fold(args.run.weights.checkpoint, &cache, args.tta)?;
    if !args.uncalibrated {
        run.calibrate(&mut probs);
    }
    let ids: Vec<String> = items.iter().map(|&i| cache.records()[i].id.clone()).collect();
    let labels: Vec<u8> = items.iter().map(|&i| cache.records()[i].melanoma.map_or(0, u8::from)).collect();
    let sources: Vec<String> = items.iter().map(|&i| cache.records()[i].source.clone()).collect();
    naevus_run::write_out_of_fold(&args.out, &ids, &probs, &labels, &folds, &sources)?;
    let auc = naevus_metrics::roc_auc(&probs, &labels)?;
    let mut line = format!("wrote {} out-of-fold predictions (tta {}) to {}; out-of-fold AUC {auc:.4}", items.len(), args.tta, destination(&args.out));
    let keys: Vec<Option<String>> = sources.into_iter().map(Some).collect();
    let groups: Vec<&str> = items.iter().map(|&i| cache.records()[i].group.as_str()).collect();
    let by_source = naevus_metrics::per_source_aucs(&probs, &labels, &keys, Some(&groups), 1000, 0)?;
    for source in &by_source {
        line += &format!("\n  {}", source.describe());
    }
    // The fields of metrics.json, as `naevus evaluate --json` prints them.
    let document = if args.json {
        let mut report = naevus_report::evaluate_scores(&probs, &labels, Some(&groups), 0.5, 1000, 0)?;
        report.by_source = by_source;
        naevus_report::metrics_document(&report)
    } else {
        serde_json::Value::Null
    };
    summary(args, line, document);
    Ok(())
}

/// One image named on the command line, with the metadata its CSV row gives.
struct ImageFile {
    /// Its row's id: its path relative to what was given (see [`image_files`]).
    id: String,
    /// Where it is read from, for the `path` column.
    path: PathBuf,
    metadata: Metadata,
}

/// `predict --images`: scores image files with the model and writes the same CSV,
/// with a `path` column.
fn predict_files(model: &LoadedModel, args: &Args, shard: Option<Shard>) -> Result<()> {
    let (files, unnamed) = image_files(&args.images)?;
    if files.is_empty() {
        bail!("no JPEG or PNG files among {}", args.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let all_ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    let (positions, record) = share(shard, &all_ids);
    let files: Vec<&ImageFile> = positions.into_iter().map(|p| &files[p]).collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let decoded = model.load_images(&paths, &DecodeLimits { max_pixels: args.max_pixels })?;
    let (mut kept, mut pixels, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    for (file, image) in files.iter().zip(decoded) {
        match image {
            Ok(image) => {
                kept.push(*file);
                pixels.push(image);
            }
            Err(reason) => {
                eprintln!("skipping {reason}");
                unreadable.push(file.id.clone());
            }
        }
    }
    // A shard writes its CSV and record even when none of its images could be read (or it
    // had none), so that the merge can account for it.
    if kept.is_empty() && record.is_none() {
        bail!("none of the {} images could be read", files.len());
    }
    let records: Vec<Record> = kept.iter().map(|f| Record { id: f.id.clone(), metadata: f.metadata.clone(), ..Record::default() }).collect();
    for warning in model.metadata_warnings(records.iter()) {
        eprintln!("{warning}");
    }
    warn_without_guard(model);
    let inputs: Vec<ModelInput> =
        pixels.into_iter().zip(&records).map(|(pixels, record)| ModelInput { pixels, metadata: model.metadata_of(Some(record)) }).collect();
    let scores = model.score(&inputs, args.tta)?;
    let (target, uncalibrated) = on_scale(model, &scores, args.uncalibrated);
    let ids: Vec<String> = kept.iter().map(|f| f.id.clone()).collect();
    // image_files kept only files whose paths are UTF-8.
    let shown: Vec<String> = kept.iter().map(|f| f.path.to_string_lossy().into_owned()).collect();
    let names = member_names(model);
    let members = names.as_deref().map(|names| (names, scores.members.as_slice()));
    let rows = ScoredRows { ids: &ids, target, uncalibrated, domain: scores.domain.as_deref(), paths: Some(&shown), members };
    naevus_run::predictions::write_scored(&args.out, &rows)?;
    if let Some(record) = record {
        ShardRecord { scored: ids.len(), unreadable, ..record }.write(&args.out)?;
    }
    let skipped = files.len() - ids.len() + unnamed;
    let written = written_summary(args, model, ids.len(), skipped, scores.domain.as_deref());
    summary(
        args,
        format!(
            "wrote {} predictions ({}, {}; {} file(s) skipped) to {}{}",
            ids.len(),
            model.describe(),
            scale(model, args.uncalibrated),
            skipped,
            destination(&args.out),
            scores.domain.as_deref().map_or(String::new(), outside_the_domain)
        ),
        written,
    );
    Ok(())
}

/// The `target` column (the model's one scale, or uncalibrated with `--uncalibrated`) and
/// `target_uncalibrated` beside it when the two differ.
fn on_scale<'a>(model: &LoadedModel, scores: &'a ModelScores, keep_uncalibrated: bool) -> (&'a [f64], Option<&'a [f64]>) {
    if keep_uncalibrated {
        (&scores.melanoma_uncalibrated, None)
    } else if model.calibrated() {
        (&scores.melanoma, Some(&scores.melanoma_uncalibrated))
    } else {
        (&scores.melanoma, None)
    }
}

/// The positions of `ids` (the whole job's images) that are this shard's (all of them without
/// --shard), and its record so far.
fn share(shard: Option<Shard>, ids: &[String]) -> (Vec<usize>, Option<ShardRecord>) {
    let Some(shard) = shard else { return ((0..ids.len()).collect(), None) };
    let positions: Vec<usize> = (0..ids.len()).filter(|&p| shard.keeps(p)).collect();
    let record = ShardRecord {
        shard: shard.index,
        shards: shard.count,
        inputs_sha256: naevus_run::shard::inputs_sha256(ids),
        images_in_all: ids.len(),
        assigned: positions.len(),
        scored: 0,
        unreadable: Vec::new(),
    };
    eprintln!("shard {} of {}: {} of the job's {} images", shard.index, shard.count, positions.len(), ids.len());
    (positions, Some(record))
}

/// An ensemble's member names, for its member columns (None: one run).
fn member_names(model: &LoadedModel) -> Option<Vec<String>> {
    model.is_ensemble().then(|| model.members.iter().map(|m| m.name.clone()).collect())
}

/// The scale `target` is on, for the closing line.
fn scale(model: &LoadedModel, uncalibrated: bool) -> String {
    if uncalibrated { "uncalibrated as asked".into() } else { model.scale() }
}

/// Warns that the predictions come without a domain check when the model has no guards.
fn warn_without_guard(model: &LoadedModel) {
    if !model.has_guard() {
        eprintln!(
            "warning: {} has no out-of-domain guard for its {} weights, so the CSV has no in_domain column; `naevus guard` fits one",
            model.path().display(),
            model.checkpoint.name()
        );
    }
}

/// The closing line's count of images outside the model's domain.
fn outside_the_domain(domain: &[naevus_run::DomainCheck]) -> String {
    let outside = domain.iter().filter(|d| !d.within).count();
    format!("; {outside} of {} outside the model's domain (in_domain = false: their scores mean little)", domain.len())
}

/// Prints the closing line, or with --json `json`: on stderr when standard output carries
/// the CSV (`--out -`).
fn summary(args: &Args, line: String, json: serde_json::Value) {
    let text = if args.json { serde_json::to_string_pretty(&json).unwrap_or_default() } else { line };
    if args.out == Path::new("-") {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// What `--json` says of predictions written (the closing line's facts).
fn written_summary(args: &Args, model: &LoadedModel, images: usize, skipped: usize, domain: Option<&[naevus_run::DomainCheck]>) -> serde_json::Value {
    serde_json::json!({
        "out": destination(&args.out),
        "images": images,
        "skipped": skipped,
        "outside_domain": domain.map(|d| d.iter().filter(|c| !c.within).count()),
        "model": model.describe(),
        "scale": scale(model, args.uncalibrated),
        "tta": args.tta,
        "shard": args.shard,
    })
}

/// How the closing line names --out.
fn destination(out: &Path) -> String {
    if out == Path::new("-") { "standard output".to_string() } else { out.display().to_string() }
}

/// The image files named by `inputs` (files, folders searched recursively, CSVs of paths), each
/// with an id that is its path relative to what was given, '/'-separated and without its
/// extension (so that ISIC_0000001.jpg is the ISIC_0000001 of the label CSVs): inside a folder,
/// relative to the folder; in a CSV, the path as the CSV writes it; a file given alone, its
/// name. With several inputs each id is the file's path as given (the folder, or the CSV's
/// folder, joined with the rest), so two files never share an id; one file named twice, or two
/// that differ only in their extension, are refused. A path that is not UTF-8 cannot be written into the CSV: its
/// file is named and skipped (the second value counts them).
fn image_files(inputs: &[PathBuf]) -> Result<(Vec<ImageFile>, usize)> {
    let several = inputs.len() > 1;
    // (the path the id is made of, the file's path, its metadata)
    let mut found: Vec<(PathBuf, PathBuf, Metadata)> = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut paths = Vec::new();
            images_in(input, &mut paths)?;
            paths.sort();
            for path in paths {
                let inside = path.strip_prefix(input).unwrap_or(&path).to_path_buf();
                found.push((if several { path.clone() } else { inside }, path, Metadata::default()));
            }
        } else if input.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            for (cell, path, metadata) in csv_of_paths(input)? {
                found.push((if several { path.clone() } else { PathBuf::from(cell) }, path, metadata));
            }
        } else {
            let alone = input.file_name().map_or_else(|| input.clone(), PathBuf::from);
            found.push((if several { input.clone() } else { alone }, input.clone(), Metadata::default()));
        }
    }
    let mut first_of: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    let (mut files, mut unnamed) = (Vec::with_capacity(found.len()), 0);
    for (id_path, path, metadata) in found {
        let Some(id) = slash_separated(&id_path.with_extension("")).filter(|_| path.to_str().is_some()) else {
            eprintln!("skipping {path:?}: its path is not UTF-8, so no CSV row can name it; rename it");
            unnamed += 1;
            continue;
        };
        if let Some(first) = first_of.insert(id.clone(), path.clone()) {
            let (first, path) = (first.to_string_lossy(), path.to_string_lossy());
            bail!("{} and {} both have the id \"{}\": name each file once among --images", excerpt(&first), excerpt(&path), excerpt(&id));
        }
        files.push(ImageFile { id, path, metadata });
    }
    Ok((files, unnamed))
}

/// Appends the JPEG and PNG files under `dir` to `out`, sub-folders included (a link to a
/// folder is not followed, so a cycle of links cannot loop).
fn images_in(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let is_image = |p: &Path| p.extension().is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)));
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            images_in(&path, out)?;
        } else if path.is_file() && is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` with '/' between its parts (and no "." parts), or None when a part is not UTF-8.
fn slash_separated(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::RootDir => parts.push(""),
            other => parts.push(other.as_os_str().to_str()?),
        }
    }
    Some(parts.join("/"))
}

/// The rows of a CSV of image paths (column `path`, relative to the CSV's folder): each path as
/// written, joined to the CSV's folder, with its optional age, sex and site.
fn csv_of_paths(csv_path: &Path) -> Result<Vec<(String, PathBuf, Metadata)>> {
    let mut reader = csv::Reader::from_reader(naevus_data::csv_limits::open_bounded(csv_path)?);
    let headers = reader.headers().with_context(|| format!("{} line 1", csv_path.display()))?.clone();
    let find = |names: &[&str]| naevus_run::predictions::find_column(&headers, names);
    let path_col = find(&["path", "file"]).with_context(|| format!("{} line 1: no column named path or file", csv_path.display()))?;
    let (age_col, sex_col, site_col) = (find(&["age", "age_approx", "age_approximate"]), find(&["sex"]), find(&["site", "anatom_site_general_challenge"]));
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: malformed row", csv_path.display()))?;
        let line = row.position().map_or(0, |p| p.line());
        if n >= naevus_data::csv_limits::MAX_CSV_ROWS {
            return Err(naevus_data::csv_limits::too_many_rows(csv_path, line).into());
        }
        let cell = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("");
        let path = Some(cell(Some(path_col)).trim()).filter(|p| !p.is_empty()).with_context(|| format!("{} line {line}: empty path", csv_path.display()))?;
        // The rule prepare reads metadata cells with; here a bad cell stops the job, naming it.
        let column = |c: Option<usize>| c.and_then(|c| headers.get(c)).unwrap_or("");
        let bad = |c: Option<usize>, reason: String| anyhow::anyhow!("{} line {line}, column {}: {reason}", csv_path.display(), excerpt(column(c)));
        let metadata = Metadata {
            age: parse_age(cell(age_col)).map_err(|reason| bad(age_col, reason))?,
            sex: parse_sex(cell(sex_col)).map_err(|reason| bad(sex_col, reason))?,
            site: parse_site(cell(site_col)).map_err(|reason| bad(site_col, reason))?,
        };
        rows.push((path.to_string(), base.join(path), metadata));
    }
    Ok(rows)
}
