//! `naevus export`: a model to take away: one folder with everything needed to use a trained
//! run's model (or an ensemble of runs as one model) and nothing else, and its model card.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naevus_engine::TrainedRun;
use naevus_engine::checkpoint::{pytorch_safetensors, safetensors_keys, timm_safetensors};
use naevus_models::onnx::{FoldMean, OnnxInput};
use naevus_report::ModelCard;
use naevus_report::model_card::MemberRun;
use naevus_run::ensemble::MEMBERS_FOLDER;
use naevus_run::{Checkpoint, Combination, DomainGuard, EnsembleDefinition, EnsembleMember, RunDir, RunInfo, write_atomic};

use crate::run_args::WeightsArgs;
use crate::staged;

/// The weights of each fold for other frameworks.
const SAFETENSORS: &str = "model.safetensors";
/// Each fold, and the whole model, as an ONNX graph (`--onnx`).
const ONNX: &str = "model.onnx";
/// The weights of each fold under timm's names (`--timm`).
const TIMM_SAFETENSORS: &str = "timm.safetensors";

/// The files for other frameworks a bundle holds besides model.safetensors.
#[derive(Debug, Clone, Copy)]
struct Formats {
    onnx: bool,
    timm: bool,
}

/// Export a trained run, or several as one ensemble, as a self-contained model folder with its
/// model card.
///
/// For one run, OUT gets run.json and config.toml (with only the chosen folds), calibration.json
/// when the run has one, each chosen fold's checkpoint as fold-K/best.bpk (checked against its
/// checksum on the way) and its out-of-domain guard, fold-K/model.safetensors in PyTorch's
/// conventions with WEIGHTS.md listing every tensor's key and shape (with --onnx and --timm,
/// also fold-K/model.onnx and fold-K/timm.safetensors); MODEL_CARD.md and
/// model_card.json: intended use, training data, out-of-fold figures with bootstrap intervals,
/// subgroup figures, the thresholds for 90% and 95% sensitivity, known limits and the recipe.
///
/// With --run given several times (or --ensemble FILE), OUT gets ensemble.json (the
/// combination, the weights and each member's SHA-256), each member exported as above into
/// members/NAME, and the ensemble's own card: its out-of-fold figures and operating points
/// when the members were trained on the same folds (same data and seed), else why it has none.
/// predict, explain and serve take OUT as one model. The cards need each run's oof.csv and its
/// training cache.
#[derive(clap::Args)]
pub struct Args {
    /// Run directory (from `naevus train`) to export; give it several times to export an
    /// ensemble of those runs as one model.
    #[arg(long = "run", required_unless_present = "ensemble", conflicts_with = "ensemble")]
    runs: Vec<PathBuf>,
    /// A saved ensemble definition to export as one model: JSON with `combination`
    /// (mean-probability or mean-logit) and `members`, each with `name`, `run` (relative to
    /// the file, or absolute) and `weight`.
    #[arg(long)]
    ensemble: Option<PathBuf>,
    /// How an ensemble of --run's combines its members' probabilities (each on its own
    /// scale): mean-probability, or mean-logit (the sigmoid of the mean logit).
    #[arg(long, default_value = "mean-probability")]
    combination: Combination,
    /// The members' weights for an ensemble of --run's, comma-separated, one per --run
    /// (default: equal); each a finite number above 0, normalised to sum 1.
    #[arg(long, value_delimiter = ',')]
    weights: Vec<f64>,
    #[command(flatten)]
    model: WeightsArgs,
    /// The folder to write (must not exist yet, or be empty). It is written beside, under a
    /// temporary name, and appears only when complete.
    #[arg(long)]
    out: PathBuf,
    /// Folds to export, comma-separated, each once (default: all of the run's; one run only).
    #[arg(long, value_delimiter = ',')]
    folds: Vec<String>,
    /// Also write each fold as fold-K/model.onnx (opset 17): input `image`, float32 [batch,
    /// 3, size, size] RGB values 0-255 with the normalisation inside the graph, batch norms
    /// folded, output `logits`; and the whole model as OUT/model.onnx, its outputs the folds'
    /// mean `probabilities` and the `melanoma` probability on the run's one scale (what
    /// `naevus predict` writes). An ensemble's members each get theirs. Every registry model
    /// is expressed; the run's colour constancy is in the graph, and a metadata model has a
    /// second input, `metadata` [batch, features] (its columns named in the graph's doc string
    /// and WEIGHTS.md).
    #[arg(long)]
    onnx: bool,
    /// Also write each fold's weights as fold-K/timm.safetensors, under the names of the
    /// same network in timm (PyTorch Image Models), for `timm.create_model(NAME,
    /// pretrained=False, num_classes=N)` and `load_state_dict(strict=True)`; the file's
    /// metadata and WEIGHTS.md give NAME and N. resnet18/34/50, efficientnet-lite0/1/2
    /// (timm's tf_efficientnet_lite*) and mobilenet-v2 (mobilenetv2_100) have one; the others
    /// (and networks with a metadata branch) are refused before anything is written.
    #[arg(long)]
    timm: bool,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoint = args.model.checkpoint;
    if checkpoint == Checkpoint::Final {
        bail!("export takes the best, best_primary or best_ema checkpoint; the final one is part of a training state");
    }
    let device = args.model.device.device.as_deref().unwrap_or("flex");
    let formats = Formats { onnx: args.onnx, timm: args.timm };
    let definition = match (&args.ensemble, args.runs.as_slice()) {
        (Some(path), _) => Some(EnsembleDefinition::read(path)?),
        (None, [_, _, ..]) => Some(definition_of_runs(&args)?),
        (None, _) => None,
    };
    let Some(definition) = definition else {
        if !args.weights.is_empty() {
            bail!("--weights weighs the members of an ensemble; give --run several times");
        }
        return export_one(&args.runs[0], &args.folds, checkpoint, device, formats, &args.out);
    };
    if !args.folds.is_empty() {
        bail!("--folds chooses folds of one run; an ensemble's members are exported with all of theirs");
    }
    staged::refuse_unless_empty(&args.out)?;
    let weights = definition.weights();
    let mut member_cards = Vec::with_capacity(definition.members.len());
    for member in &definition.members {
        let info = RunDir::new(&member.run).read_info().with_context(|| format!("member {} of the ensemble", member.name))?;
        member_cards.push(member_card(&member.run, &info.folds, checkpoint)?);
    }
    let member_runs: Vec<MemberRun> = definition
        .members
        .iter()
        .zip(&weights)
        .zip(&member_cards)
        .map(|((member, &weight), card)| MemberRun { name: &member.name, run: &member.run, weight, card })
        .collect();
    let card = ModelCard::of_ensemble(&member_runs, definition.combination).context("writing the ensemble's model card")?;
    staged::write_folder(&args.out, |folder| {
        let mut bundled = definition.clone();
        for ((member, bundled), member_card) in definition.members.iter().zip(&mut bundled.members).zip(&member_cards) {
            let relative = Path::new(MEMBERS_FOLDER).join(&member.name);
            let destination = folder.join(&relative);
            std::fs::create_dir_all(&destination).with_context(|| format!("creating {}", destination.display()))?;
            let info = RunDir::new(&member.run).read_info()?;
            let exported = write_run(&member.run, &info.folds, checkpoint, device, formats, &destination, member_card)?;
            bundled.run = relative;
            bundled.model_sha256 = Some(RunDir::new(&destination).model_sha256(&exported, Checkpoint::Best)?);
        }
        bundled.write(folder)?;
        card.write(folder)?;
        Ok(())
    })?;
    let figure = match card.ensemble.as_ref().and_then(|e| e.no_ensemble_figure.as_ref()) {
        None => format!("out-of-fold AUC of the ensemble {}", describe_auc(&card)),
        Some(why) => format!("no out-of-fold figure of the ensemble: {why}"),
    };
    println!(
        "exported an ensemble of {} ({}, {} checkpoint) to {}; {figure}; model card: {}",
        definition.members.len(),
        definition.members.iter().zip(&weights).map(|(m, w)| format!("{} {w:.2}", m.name)).collect::<Vec<_>>().join(", "),
        checkpoint.name(),
        args.out.display(),
        args.out.join(naevus_report::model_card::MODEL_CARD_MD).display()
    );
    Ok(())
}

/// The ensemble of the --run's: members named by their folders (numbered when two share a name).
fn definition_of_runs(args: &Args) -> Result<EnsembleDefinition> {
    if !args.weights.is_empty() && args.weights.len() != args.runs.len() {
        bail!("{} weights for {} runs: give one weight per --run", args.weights.len(), args.runs.len());
    }
    let mut members: Vec<EnsembleMember> = Vec::with_capacity(args.runs.len());
    for (i, run) in args.runs.iter().enumerate() {
        let folder = run.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
        let cleaned: String = folder.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(48).collect();
        let base = if cleaned.is_empty() { format!("member-{}", i + 1) } else { cleaned };
        let mut name = base.clone();
        let mut copy = 1;
        while members.iter().any(|m| m.name == name) {
            copy += 1;
            name = format!("{base}-{copy}");
        }
        members.push(EnsembleMember { name, run: run.clone(), weight: args.weights.get(i).copied().unwrap_or(1.0), model_sha256: None });
    }
    let definition = EnsembleDefinition { combination: args.combination, members };
    // The checks a definition file gets (weights above 0, names), before any work.
    definition.check().map_err(|problem| anyhow::anyhow!("--run/--weights: {problem}"))?;
    Ok(definition)
}

/// Exports one run (see [`Args`]).
fn export_one(run_path: &Path, folds: &[String], checkpoint: Checkpoint, device: &str, formats: Formats, out: &Path) -> Result<()> {
    let info = RunDir::new(run_path).read_info()?;
    let folds = if folds.is_empty() { info.folds.clone() } else { folds.to_vec() };
    for fold in &folds {
        info.check_fold(fold).map_err(|e| anyhow::anyhow!("{}: {e}", run_path.display()))?;
    }
    if let Some(twice) = folds.iter().enumerate().find_map(|(i, f)| folds[..i].contains(f).then_some(f)) {
        bail!("--folds names {twice} twice; name each fold once");
    }
    staged::refuse_unless_empty(out)?;
    let card = member_card(run_path, &folds, checkpoint)?;
    // Written beside --out and renamed into place when complete: a failure leaves nothing there.
    staged::write_folder(out, |folder| write_run(run_path, &folds, checkpoint, device, formats, folder, &card))?;
    println!(
        "exported {} ({} fold(s), {} checkpoint) to {}; {} AUC {}; model card: {}",
        info.model,
        folds.len(),
        checkpoint.name(),
        out.display(),
        card.validation.kind,
        describe_auc(&card),
        out.join(naevus_report::model_card::MODEL_CARD_MD).display()
    );
    Ok(())
}

/// The card of one run's `folds`.
fn member_card(run_path: &Path, folds: &[String], checkpoint: Checkpoint) -> Result<ModelCard> {
    ModelCard::of_run(run_path, folds, checkpoint.name()).with_context(|| format!("writing the model card of {}", run_path.display()))
}

/// "0.812 (95% CI 0.790 to 0.834)".
fn describe_auc(card: &ModelCard) -> String {
    let auc = &card.validation.auc;
    format!("{:.3}{}", auc.value, auc.ci95.map_or(String::new(), |(lo, hi)| format!(" (95% CI {lo:.3} to {hi:.3})")))
}

/// Writes the run in `run_path` with its `folds` into the empty `folder` (see [`Args`]) and
/// returns the run.json written.
fn write_run(run_path: &Path, folds: &[String], checkpoint: Checkpoint, device: &str, formats: Formats, folder: &Path, card: &ModelCard) -> Result<RunInfo> {
    let run = RunDir::new(run_path);
    let mut info = run.read_info()?;
    let timm_model = match (formats.timm, naevus_models::spec(&info.model)?.timm) {
        (false, _) => None,
        (true, Some(name)) => Some(name),
        (true, None) => bail!("{}: timm has no model with the same network as {}; export without --timm", run_path.display(), info.model),
    };
    let trained = TrainedRun::open(run_path, Some(device))?;
    let onnx_input = OnnxInput {
        image_size: info.image_size,
        mean: info.mean,
        std: info.std,
        colour_constancy: info.colour_constancy,
        metadata: info.metadata.as_ref().map(|encoder| encoder.feature_names()).unwrap_or_default(),
    };
    info.folds = folds.to_vec();
    let bundle = RunDir::new(folder);
    let mut keys = Vec::new();
    let mut networks = Vec::new();
    for fold in folds {
        // Read (checksum verified) and written again sealed: a damaged file is never exported.
        let weights = run.fold(fold).read_weights(checkpoint)?;
        bundle.fold(fold).write_weights(Checkpoint::Best, &weights)?;
        // The guard goes with the weights it measures, which the bundle calls best.
        if let Some(mut guard) = DomainGuard::read(&run.fold(fold))?.filter(|g| g.checkpoint == checkpoint.name()) {
            guard.checkpoint = Checkpoint::Best.name().into();
            guard.write(&bundle.fold(fold))?;
        } else {
            eprintln!("warning: {} {fold} has no out-of-domain guard for its {} weights; the bundle will score any image (`naevus guard` fits one)", run_path.display(), checkpoint.name());
        }
        // The same weights for PyTorch and other frameworks, and as an ONNX graph.
        let network = trained.fold_model(fold, checkpoint)?;
        if formats.onnx {
            let graph = naevus_models::onnx::to_onnx(&network, &onnx_input, info.num_outputs, &info.model)
                .map_err(|why| anyhow::anyhow!("{}: {} cannot be written as ONNX: {why}", run_path.display(), info.model))?;
            write_atomic(&bundle.fold(fold).path.join(ONNX), &graph)?;
        }
        let safetensors = pytorch_safetensors(&network)?;
        keys = safetensors_keys(&safetensors)?;
        write_atomic(&bundle.fold(fold).path.join(SAFETENSORS), &safetensors)?;
        if let Some(name) = timm_model {
            let weights = timm_safetensors(&network, name, info.num_outputs).with_context(|| format!("{}: writing {fold} with timm's names", run_path.display()))?;
            write_atomic(&bundle.fold(fold).path.join(TIMM_SAFETENSORS), &weights)?;
        }
        networks.push(network);
    }
    if formats.onnx {
        // The whole model as one graph: the folds' mean, on the run's one scale.
        let calibration = naevus_run::Calibration::read(run_path).ok();
        let fold_mean = FoldMean {
            melanoma_column: trained.input.target.melanoma_column(),
            temperature: calibration.map(|c| (c.temperature, naevus_metrics::TEMPERATURE_EPS)),
        };
        let graph = naevus_models::onnx::to_onnx_folds(&networks, &onnx_input, info.num_outputs, &fold_mean, &info.model).map_err(anyhow::Error::msg)?;
        write_atomic(&folder.join(ONNX), &graph)?;
    }
    write_atomic(&folder.join("WEIGHTS.md"), weights_readme(&info, folds, &keys, timm_model).as_bytes())?;
    bundle.write_info(&info)?;
    bundle.write_recipe(&run.read_recipe()?)?;
    if let Ok(calibration) = naevus_run::Calibration::read(run_path) {
        calibration.write(folder)?;
    }
    card.write(folder)?;
    Ok(info)
}

/// WEIGHTS.md: how to load fold-K/model.safetensors (and timm.safetensors, when written)
/// outside naevus, and every key.
fn weights_readme(info: &RunInfo, folds: &[String], keys: &[(String, String, Vec<usize>)], timm_model: Option<&str>) -> String {
    let first = folds.first().map_or("fold-0", String::as_str);
    let colour = match info.colour_constancy {
        naevus_data::ColourConstancy::None => String::new(),
        correction => format!(" Before that, each image is colour-corrected ({}) as `naevus_data::ColourConstancy` does.", correction.describe()),
    };
    let mut text = format!(
        "# Weights of {model}\n\nEach of {} holds `model.safetensors`: the network's tensors in PyTorch's conventions \
         (convolution weights [out, in, kh, kw], linear weights [out, in], BatchNorm `weight`, `bias`, `running_mean`, \
         `running_var`), keys named by naevus's module paths below. The model averages the folds' melanoma \
         probabilities (sigmoid of a single logit, or the melanoma class's softmax share). Inputs: RGB, centre-cropped \
         square, scaled to [0, 1] and normalised with the mean and std of run.json, NCHW.{colour}\n\n\
         ```python\nfrom safetensors.torch import load_file\nstate = load_file(\"{first}/model.safetensors\")\n\
         # map these keys onto your module's state_dict() names, then model.load_state_dict(mapped)\n```\n\n",
        folds.join(", "),
        model = info.model,
    );
    if let Some(name) = timm_model {
        text += &format!(
            "Each fold also has `timm.safetensors`: the same tensors under the names timm (PyTorch Image Models) gives \
             the same network, `{name}` with {outputs} output(s); the file's metadata says both (`timm_model`, \
             `num_classes`). Its logits are naevus's (checked to 1e-4 by naevus's CI):\n\n\
             ```python\nimport timm\nfrom safetensors.torch import load_file\n\
             model = timm.create_model(\"{name}\", pretrained=False, num_classes={outputs})\n\
             model.load_state_dict(load_file(\"{first}/timm.safetensors\"), strict=True)\n\
             model.eval()  # input: normalised as above, [batch, 3, {side}, {side}]\n```\n\n",
            outputs = info.num_outputs,
            side = info.image_size,
        );
    }
    if let Some(encoder) = &info.metadata {
        text += &format!(
            "The network also takes {} metadata features per image, in this order: {}. Their encoding: sex 1 (male), \
             0 (female) or -1 (unknown); age_over_90 the age / 90 (0 unknown); log1p_images_of_patient ln(1 + the \
             patient's image count); log_file_bytes ln(the file's size in bytes) (0 unknown); site_* one-hot, an \
             unknown or unlisted site in site_unknown. The ONNX graphs take them as the `metadata` input.\n\n",
            encoder.num_features(),
            encoder.feature_names().join(", ")
        );
    }
    text += "Exported with `--onnx`, each fold also has `model.onnx` (opset 17), which needs no key map: input `image`, \
         float32 [batch, 3, side, side] RGB values 0-255 (the normalisation is inside), output `logits`:\n\n\
         ```python\nimport onnxruntime\nsession = onnxruntime.InferenceSession(\"fold-0/model.onnx\")\n\
         (logits,) = session.run([\"logits\"], {\"image\": rgb_nchw_float32})\n```\n\n\
         | key | dtype | shape |\n| --- | --- | --- |\n";
    for (key, dtype, shape) in keys {
        text += &format!("| `{key}` | {dtype} | {shape:?} |\n");
    }
    text
}
