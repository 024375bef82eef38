//! The model being served: a [`LoadedModel`] (one run's fold ensemble, or an ensemble of
//! runs) with its calibration, its model card and the operating point its decisions are made at.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_engine::{LoadedModel, ModelInput};
use naevus_engine::explain::Method;
use naevus_report::ModelCard;
use naevus_report::saliency::{overlay, rgb_png};
use naevus_run::{Calibration, Checkpoint, DomainCheck};
use serde::Serialize;

/// Where the yes/no decision is made: the threshold that reached a sensitivity on the
/// out-of-fold predictions (from the model card), or a threshold given outright.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OperatingPointChoice {
    /// 90 or 95 (percent).
    Sensitivity(u8),
    /// On the served probability (calibrated when the model has a calibration).
    Threshold(f64),
}

impl FromStr for OperatingPointChoice {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "sensitivity-90" | "90" => Ok(Self::Sensitivity(90)),
            "sensitivity-95" | "95" => Ok(Self::Sensitivity(95)),
            other => match other.strip_prefix("threshold-").and_then(|t| t.parse::<f64>().ok()) {
                Some(t) if (0.0..=1.0).contains(&t) => Ok(Self::Threshold(t)),
                _ => bail!("unknown operating point \"{other}\"; choose sensitivity-90, sensitivity-95 or threshold-T with T in [0, 1]"),
            },
        }
    }
}

/// The operating point decisions are made at.
#[derive(Debug, Clone, Serialize)]
pub struct OperatingPoint {
    /// "sensitivity 90%", or "threshold 0.3 (set when the service started)".
    pub name: String,
    /// Positive when the served probability is at or above it (on the same scale: calibrated
    /// when the model is).
    pub threshold: f64,
    /// What it reached on the out-of-fold predictions, when it comes from the model card,
    /// with bootstrap 95% intervals.
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub sensitivity_ci95: Option<(f64, f64)>,
    pub specificity_ci95: Option<(f64, f64)>,
    /// Whether it rests on too few melanomas to judge (see the model card).
    pub too_few: bool,
}

/// What GET /v1/model answers.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDescription {
    pub name: String,
    /// The naevus serving it.
    pub naevus_version: String,
    /// The naevus that trained it.
    pub trained_with: String,
    pub folds: Vec<String>,
    pub checkpoint: String,
    pub image_size: u32,
    /// Metadata fields the model reads (empty: image only).
    pub metadata_fields: Vec<String>,
    /// Anatomical sites the model knows (others count as unknown).
    pub sites: Vec<String>,
    /// Every site a request may name (the readers' one vocabulary), whether or not the model
    /// reads it: the page offers them all, so a result records the site given.
    pub site_vocabulary: Vec<String>,
    /// [`naevus_run::RunDir::model_sha256`]: which model answered, for a result's record.
    pub bundle_sha256: String,
    /// Class names of a multi-class model's outputs (None: one melanoma output).
    pub classes: Option<Vec<String>>,
    pub calibrated: bool,
    /// An ensemble's members (None: one run); `name`, `folds` and `image_size` above are
    /// then the first member's.
    pub members: Option<Vec<MemberDescription>>,
    pub operating_point: Option<OperatingPoint>,
    pub card: Option<ModelCard>,
}

/// One image's probabilities.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Melanoma probability as served: calibrated when the model has a calibration (for an
    /// ensemble, its members' combined).
    pub melanoma: f64,
    /// Every output's probability, uncalibrated (one per class for a multi-class model).
    pub outputs: Vec<f64>,
    /// Each member's melanoma probability on its own scale (an ensemble's; one for a run).
    pub members: Vec<f64>,
    /// What the out-of-domain guard says (None: the model has no guard).
    pub domain: Option<DomainCheck>,
}

/// An explanation as pictures.
#[derive(Debug, Clone)]
pub struct Explained {
    pub method: Method,
    pub layer: String,
    /// The map's own cells (rows, columns): what it can tell apart.
    pub grid: (usize, usize),
    /// The map in JET over the model's input, and the input itself, as PNG bytes.
    pub overlay_png: Vec<u8>,
    pub input_png: Vec<u8>,
}

/// One member of an ensemble, as GET /v1/model describes it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberDescription {
    pub name: String,
    pub model: String,
    pub image_size: u32,
    pub folds: usize,
    pub weight: f64,
    pub calibrated: bool,
}

/// A model loaded for serving.
pub struct ServedModel {
    pub model: Arc<LoadedModel>,
    operating_point: Option<OperatingPoint>,
    card: Option<ModelCard>,
    bundle_sha256: String,
}

impl ServedModel {
    /// Opens the run or exported model (one run or an ensemble) in `dir` and loads every
    /// fold's `checkpoint`.
    pub fn load(dir: &Path, checkpoint: Checkpoint, device: Option<&str>, choice: &OperatingPointChoice) -> Result<Self> {
        let model = LoadedModel::open(dir, device, checkpoint)?;
        if let Some(member) = model.members.iter().find(|m| m.run.info.cache_size.is_none()) {
            bail!("{} does not record its cache's image size (trained by an older naevus); retrain it to serve it", member.run.path().display());
        }
        if !model.has_guard() {
            eprintln!("warning: {} has no out-of-domain guard for its {} weights: every image will be scored as if it were dermoscopy; `naevus guard` fits one", dir.display(), checkpoint.name());
        }
        let card = match ModelCard::read(dir)? {
            Some(card) => Some(card),
            None if model.is_ensemble() => {
                eprintln!("warning: the ensemble {} has no model card; `naevus export` makes one", dir.display());
                None
            }
            None => match ModelCard::of_run(dir, &model.first().run.info.folds, checkpoint.name()) {
                Ok(card) => Some(card),
                Err(e) => {
                    eprintln!("warning: no model card for {} ({e:#}); `naevus export` makes a model with one", dir.display());
                    None
                }
            },
        };
        // An ensemble's card gives its thresholds on its own (combined) scale already.
        let calibration = if model.is_ensemble() { None } else { model.first().run.calibration.as_ref() };
        let operating_point = operating_point(choice, card.as_ref(), calibration)?;
        let bundle_sha256 = if model.is_ensemble() {
            naevus_run::ensemble::bundle_sha256(dir)?
        } else {
            model.first().model_sha256.clone()
        };
        let served = Self { model: Arc::new(model), operating_point, card, bundle_sha256 };
        served.answers().with_context(|| format!("{} cannot answer: scoring a plain gray image failed", dir.display()))?;
        Ok(served)
    }

    /// Scores one plain gray image, so that a model that cannot answer (weights gone bad, an
    /// input the network cannot take) is refused when the service starts, not on every request.
    fn answers(&self) -> Result<()> {
        let pixels = self.model.members.iter().map(|m| vec![128u8; (m.run.input.image_size as usize).pow(2) * 3]).collect();
        let input = ModelInput { pixels, metadata: self.model.metadata_of(None) };
        let scores = self.score(&[input])?;
        match scores.first() {
            Some(scores) if scores.melanoma.is_finite() && scores.outputs.iter().all(|p| p.is_finite()) => Ok(()),
            Some(scores) => bail!("its probability is not a finite number ({}): the weights are damaged", scores.melanoma),
            None => bail!("it gave no probability"),
        }
    }

    pub fn describe(&self) -> ModelDescription {
        let model = &self.model;
        let first = &model.first().run;
        let info = &first.info;
        let encoder = info.metadata.as_ref();
        let members = model.is_ensemble().then(|| {
            model
                .members
                .iter()
                .map(|m| MemberDescription {
                    name: m.name.clone(),
                    model: m.run.info.model.clone(),
                    image_size: m.run.input.image_size,
                    folds: m.folds.len(),
                    weight: m.weight,
                    calibrated: m.run.calibration.is_some(),
                })
                .collect()
        });
        ModelDescription {
            name: if model.is_ensemble() { format!("ensemble of {} ({})", model.members.len(), model.combination.name()) } else { info.model.clone() },
            naevus_version: env!("CARGO_PKG_VERSION").into(),
            trained_with: info.naevus_version.clone(),
            folds: info.folds.clone(),
            checkpoint: model.checkpoint.name().into(),
            image_size: first.input.image_size,
            metadata_fields: encoder.map(|e| e.fields.iter().map(|f| f.name().to_string()).collect()).unwrap_or_default(),
            sites: encoder.map(|e| e.sites.clone()).unwrap_or_default(),
            site_vocabulary: naevus_data::metadata::SITES.iter().map(|s| s.to_string()).collect(),
            bundle_sha256: self.bundle_sha256.clone(),
            classes: (info.num_outputs > 1).then(|| info.classes.class_names().iter().map(|c| c.to_string()).collect()),
            calibrated: model.calibrated(),
            members,
            operating_point: self.operating_point.clone(),
            card: self.card.clone(),
        }
    }

    /// The probabilities of images, each as every member takes it.
    pub fn score(&self, inputs: &[ModelInput]) -> Result<Vec<Scores>> {
        let scores = self.model.score(inputs, 1)?;
        let domain = scores.domain.map_or_else(|| vec![None; inputs.len()], |checks| checks.into_iter().map(Some).collect());
        Ok(scores
            .outputs
            .into_iter()
            .zip(scores.melanoma)
            .zip(scores.members)
            .zip(domain)
            .map(|(((outputs, melanoma), members), domain)| Scores { melanoma, outputs, members, domain })
            .collect())
    }

    /// Whether the model can tell images outside its domain.
    pub fn has_guard(&self) -> bool {
        self.model.has_guard()
    }

    /// The regions of one image that raised the score of the first member's first fold most,
    /// as an overlay.
    pub fn explain(&self, input: &ModelInput, method: Method) -> Result<Explained> {
        let member = self.model.first();
        let network = member.folds.first().context("the model has no folds")?;
        let image = &input.pixels[0];
        let explanation = member.run.explain_with_metadata(network, &[image], input.metadata[0].as_deref(), method, None)?;
        let map = explanation.first().and_then(|e| e.maps.first()).context("the explanation has no map")?;
        let side = member.run.input.image_size;
        Ok(Explained {
            method,
            layer: map.layer.clone(),
            grid: map.grid,
            overlay_png: rgb_png(&overlay(image, &map.values, side)?, side)?,
            input_png: rgb_png(image, side)?,
        })
    }
}

/// The operating point chosen, on the served probability's scale. The card's thresholds are
/// on the uncalibrated out-of-fold probabilities; temperature scaling keeps the order of
/// scores, so the calibrated threshold decides every image the same way.
fn operating_point(choice: &OperatingPointChoice, card: Option<&ModelCard>, calibration: Option<&Calibration>) -> Result<Option<OperatingPoint>> {
    match *choice {
        OperatingPointChoice::Threshold(threshold) => Ok(Some(OperatingPoint {
            name: format!("threshold {threshold} (set when the service started)"),
            threshold,
            sensitivity: None,
            specificity: None,
            sensitivity_ci95: None,
            specificity_ci95: None,
            too_few: false,
        })),
        OperatingPointChoice::Sensitivity(percent) => {
            let Some(card) = card else { return Ok(None) };
            if let Some(why) = card.ensemble.as_ref().and_then(|e| e.no_ensemble_figure.as_ref()) {
                eprintln!("warning: the ensemble has no operating points of its own ({why}); decisions are left out unless --operating-point threshold-T is given");
                return Ok(None);
            }
            let name = format!("sensitivity {percent}%");
            let point = card.operating_points.iter().find(|p| p.name == name).with_context(|| format!("the model card has no \"{name}\" operating point"))?;
            let Some(raw) = point.threshold else {
                eprintln!("warning: the model card gives no threshold for {name} (too few melanomas); decisions are left out");
                return Ok(None);
            };
            let mut threshold = [raw];
            if let Some(calibration) = calibration {
                calibration.apply(&mut threshold);
            }
            if point.too_few {
                eprintln!(
                    "warning: the {name} operating point rests on too few melanomas to judge ({} in validation, too few of them below \
                     its threshold): its sensitivity {:.2} and specificity {:.2} may be far off on other images",
                    card.validation.melanomas,
                    point.sensitivity,
                    point.specificity
                );
            }
            Ok(Some(OperatingPoint {
                name,
                threshold: threshold[0],
                sensitivity: Some(point.sensitivity),
                specificity: Some(point.specificity),
                sensitivity_ci95: point.sensitivity_ci95,
                specificity_ci95: point.specificity_ci95,
                too_few: point.too_few,
            }))
        }
    }
}

