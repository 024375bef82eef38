//! `naevus export`: a model to take away: one folder with everything needed to use a trained
//! run's model and nothing else, and its model card.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use naevus_engine::TrainedRun;
use naevus_engine::checkpoint::{pytorch_safetensors, safetensors_keys};
use naevus_report::ModelCard;
use naevus_run::{Checkpoint, DomainGuard, RunDir, write_atomic};

use crate::staged;
use crate::run_args::RunArgs;

/// The weights of each fold for other frameworks.
const SAFETENSORS: &str = "model.safetensors";

/// Export a trained run as a self-contained model folder with its model card.
///
/// OUT gets run.json and config.toml (with only the chosen folds), calibration.json when the
/// run has one, each chosen fold's checkpoint as fold-K/best.bpk (checked against its
/// checksum on the way) and as fold-K/model.safetensors in PyTorch's conventions, with
/// WEIGHTS.md listing every tensor's key and shape; MODEL_CARD.md and model_card.json: intended use, training data,
/// out-of-fold figures with bootstrap intervals, subgroup figures, the thresholds for 90% and
/// 95% sensitivity, known limits and the recipe. `predict` and `explain` take OUT as --run.
/// The card needs the run's oof.csv and its training cache.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// The folder to write (must not exist yet, or be empty). It is written beside, under a
    /// temporary name, and appears only when complete.
    #[arg(long)]
    out: PathBuf,
    /// Folds to export, comma-separated, each once (default: all of the run's).
    #[arg(long, value_delimiter = ',')]
    folds: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoint = args.run.checkpoint;
    let run_path = &args.run.run;
    if checkpoint == Checkpoint::Final {
        bail!("export takes the best, best_primary or best_ema checkpoint; the final one is part of a training state");
    }
    let run = RunDir::new(run_path);
    let mut info = run.read_info()?;
    let folds = if args.folds.is_empty() { info.folds.clone() } else { args.folds.clone() };
    for fold in &folds {
        info.check_fold(fold).map_err(|e| anyhow::anyhow!("{}: {e}", run_path.display()))?;
    }
    if let Some(twice) = folds.iter().enumerate().find_map(|(i, f)| folds[..i].contains(f).then_some(f)) {
        bail!("--folds names {twice} twice; name each fold once");
    }
    staged::refuse_unless_empty(&args.out)?;
    let card = ModelCard::of_run(run_path, &folds, checkpoint.name()).with_context(|| format!("writing the model card of {}", run_path.display()))?;

    let trained = TrainedRun::open(run_path, Some(args.run.device.device.as_deref().unwrap_or("flex")))?;
    info.folds = folds.clone();
    // Written beside --out and renamed into place when complete: a failure leaves nothing there.
    staged::write_folder(&args.out, |folder| {
        let bundle = RunDir::new(folder);
        let mut keys = Vec::new();
        for fold in &folds {
            // Read (checksum verified) and written again sealed: a damaged file is never exported.
            let weights = run.fold(fold).read_weights(checkpoint)?;
            bundle.fold(fold).write_weights(Checkpoint::Best, &weights)?;
            // The guard goes with the weights it measures, which the bundle calls best.
            if let Some(mut guard) = DomainGuard::read(&run.fold(fold))?.filter(|g| g.checkpoint == checkpoint.name()) {
                guard.checkpoint = Checkpoint::Best.name().into();
                guard.write(&bundle.fold(fold))?;
            } else {
                eprintln!("warning: {fold} has no out-of-domain guard for its {} weights; the bundle will score any image (`naevus guard` fits one)", checkpoint.name());
            }
            // The same weights for PyTorch and other frameworks.
            let safetensors = pytorch_safetensors(&trained.fold_model(fold, checkpoint)?)?;
            keys = safetensors_keys(&safetensors)?;
            write_atomic(&bundle.fold(fold).path.join(SAFETENSORS), &safetensors)?;
        }
        write_atomic(&folder.join("WEIGHTS.md"), weights_readme(&info.model, &folds, &keys).as_bytes())?;
        bundle.write_info(&info)?;
        bundle.write_recipe(&run.read_recipe()?)?;
        if let Ok(calibration) = naevus_run::Calibration::read(run_path) {
            calibration.write(folder)?;
        }
        card.write(folder)?;
        Ok(())
    })?;
    let auc = &card.validation.auc;
    println!(
        "exported {} ({} fold(s), {} checkpoint) to {}; {} AUC {:.3}{}; model card: {}",
        info.model,
        folds.len(),
        checkpoint.name(),
        args.out.display(),
        card.validation.kind,
        auc.value,
        auc.ci95.map_or(String::new(), |(lo, hi)| format!(" (95% CI {lo:.3} to {hi:.3})")),
        args.out.join(naevus_report::model_card::MODEL_CARD_MD).display()
    );
    Ok(())
}

/// WEIGHTS.md: how to load fold-K/model.safetensors outside naevus, and every key.
fn weights_readme(model: &str, folds: &[String], keys: &[(String, String, Vec<usize>)]) -> String {
    let mut text = format!(
        "# Weights of {model}\n\nEach of {} holds `model.safetensors`: the network's tensors in PyTorch's conventions \
         (convolution weights [out, in, kh, kw], linear weights [out, in], BatchNorm `weight`, `bias`, `running_mean`, \
         `running_var`), keys named by naevus's module paths below. The model averages the folds' melanoma \
         probabilities (sigmoid of a single logit, or the melanoma class's softmax share). Inputs: RGB, centre-cropped \
         square, scaled to [0, 1] and normalised with the mean and std of run.json, NCHW.\n\n\
         ```python\nfrom safetensors.torch import load_file\nstate = load_file(\"{}/model.safetensors\")\n\
         # map these keys onto your module's state_dict() names, then model.load_state_dict(mapped)\n```\n\n\
         | key | dtype | shape |\n| --- | --- | --- |\n",
        folds.join(", "),
        folds.first().map_or("fold-0", String::as_str)
    );
    for (key, dtype, shape) in keys {
        text += &format!("| `{key}` | {dtype} | {shape:?} |\n");
    }
    text
}
