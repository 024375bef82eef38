//! The model card of a trained run (MODEL_CARD.md and model_card.json in an exported model):
//! what the model is for and not for, what it was trained on, how well it did on images it
//! did not train on (with bootstrap intervals and by subgroup), its operating thresholds, its
//! known limits and its recipe.

use std::collections::HashSet;
use std::path::Path;

use naevus_data::{Cache, Metadata};
use naevus_run::{Calibration, Predictions, RunDir, RunInfo, TrainConfig};
use naevus_run::write_atomic;
use serde::{Deserialize, Serialize};

use crate::evaluation::{Estimate, evaluate_scores};
use crate::report::subgroup_tables;
use crate::ReportError;

mod ensemble;
mod guard;
pub use ensemble::{EnsembleCard, MemberRun, MemberSummary};
use ensemble::ensemble_markdown;
pub use guard::DomainGuardCard;
use guard::{guard_card, guard_markdown};

/// What the model is for, in the card's words.
pub const INTENDED_USE: &str = "Research and clinical decision support on dermoscopic images of single skin lesions: a \
    second opinion on how likely a lesion is to be melanoma, to help decide which lesions a dermatologist looks at first \
    or refers for excision. It is not a diagnosis and must not replace a clinician's examination or histopathology.";

/// What it must not be used for.
pub const NOT_FOR: [&str; 3] = [
    "clinical (non-dermoscopic) photographs, smartphone close-ups without a dermoscope, or total-body photography crops",
    "ruling melanoma out on its own: a low score does not make a lesion safe",
    "populations the training data does not represent (see known limits)",
];

/// The model card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub model: String,
    pub naevus_version: String,
    pub intended_use: String,
    pub not_for: Vec<String>,
    pub training_data: TrainingData,
    pub validation: Validation,
    /// Thresholds on the (uncalibrated) melanoma probability: positive when score >= threshold.
    pub operating_points: Vec<OperatingPoint>,
    /// Temperature scaling applied by predict, explain and the service.
    pub calibration: Option<Calibration>,
    pub subgroups: Vec<Subgroups>,
    pub known_limits: Vec<String>,
    /// The out-of-domain guard, when every fold has one for the card's weights.
    #[serde(default)]
    pub domain_guard: Option<DomainGuardCard>,
    /// Folds whose networks are averaged, and the checkpoint of each.
    pub folds: Vec<String>,
    pub checkpoint: String,
    pub input: Input,
    pub recipe: TrainConfig,
    /// An ensemble bundle's members (None: one run; `folds`, `input` and `recipe` above are
    /// then the first member's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleCard>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingData {
    /// Images the model trained on: with cross-validation every labelled image (each fold
    /// trains on all but its own), with a train/val split those outside the validation set.
    pub images: usize,
    pub melanomas: usize,
    /// Patients (or lesions, where the dataset names no patients).
    pub groups: usize,
    /// Images per source dataset (primary and external).
    pub sources: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// "out-of-fold" (each image scored by the fold that did not train on it) or "validation".
    pub kind: String,
    pub images: usize,
    pub melanomas: usize,
    pub auc: Estimate,
    pub pauc_above_tpr_80: Estimate,
    pub average_precision: Estimate,
    pub note: String,
    /// The AUC on each source's images apart, when they come from several.
    #[serde(default)]
    pub by_source: Vec<SourceValidation>,
}

/// The validation figures of one source's images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceValidation {
    pub source: String,
    pub images: usize,
    pub melanomas: usize,
    /// None when its images hold one class only.
    pub auc: Option<Estimate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub name: String,
    /// On the uncalibrated probability (`predict --uncalibrated`).
    pub threshold: Option<f64>,
    /// On the calibrated probability that predict, explain and the service give, when the
    /// model has a calibration.
    #[serde(default)]
    pub threshold_calibrated: Option<f64>,
    pub sensitivity: f64,
    pub specificity: f64,
    /// Bootstrap 95% intervals of both rates at this threshold (patients resampled).
    #[serde(default)]
    pub sensitivity_ci95: Option<(f64, f64)>,
    #[serde(default)]
    pub specificity_ci95: Option<(f64, f64)>,
    /// Too few melanomas lie beyond it to judge it by
    /// ([`naevus_metrics::operating_point_too_few`]).
    #[serde(default)]
    pub too_few: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subgroups {
    pub attribute: String,
    pub rows: Vec<SubgroupRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubgroupRow {
    /// The subgroup ("unknown" for images without the attribute).
    pub key: String,
    pub images: usize,
    pub melanomas: usize,
    pub auc: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub metadata_features: Vec<String>,
    /// The colour correction applied to every image first ("none" for older cards).
    #[serde(default)]
    pub colour_constancy: naevus_data::ColourConstancy,
}

/// The card's files in an exported model.
pub const MODEL_CARD_JSON: &str = "model_card.json";
pub const MODEL_CARD_MD: &str = "MODEL_CARD.md";

impl ModelCard {
    /// The card of the exported model in `dir` (its model_card.json), or None when it has none.
    pub fn read(dir: &Path) -> Result<Option<Self>, ReportError> {
        let path = dir.join(MODEL_CARD_JSON);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ReportError::Io { path, source }),
        };
        let card: Self = serde_json::from_str(&text).map_err(|e| {
            ReportError::Invalid(format!("{}: not a naevus model card (line {}, column {}): {}", path.display(), e.line(), e.column(), naevus_data::error::excerpt(&e.to_string())))
        })?;
        card.check().map_err(|problem| ReportError::Invalid(format!("{}: {problem}; the card is damaged (export the model again)", path.display())))?;
        Ok(Some(card))
    }

    /// Whether the numbers the service decides with are usable: a threshold outside [0, 1]
    /// would call every image negative (or positive) without a word.
    fn check(&self) -> Result<(), String> {
        let unit = |value: f64| (0.0..=1.0).contains(&value);
        for (i, point) in self.operating_points.iter().enumerate() {
            if let Some(threshold) = point.threshold
                && !unit(threshold)
            {
                return Err(format!("operating_points[{i}] ({}): threshold {threshold} is not a probability between 0 and 1", naevus_data::error::excerpt(&point.name)));
            }
            if !unit(point.sensitivity) || !unit(point.specificity) {
                return Err(format!("operating_points[{i}]: sensitivity and specificity must lie between 0 and 1"));
            }
        }
        if let Some(calibration) = &self.calibration {
            let (low, high) = naevus_metrics::TEMPERATURE_RANGE;
            if !(low..=high).contains(&calibration.temperature) {
                return Err(format!("calibration.temperature: {} is outside {low}..={high}", calibration.temperature));
            }
        }
        Ok(())
    }

    /// Writes model_card.json and MODEL_CARD.md into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| ReportError::Invalid(format!("model card: {e}")))?;
        // write_atomic's errors name the file.
        write_atomic(&dir.join(MODEL_CARD_JSON), json.as_bytes()).map_err(|e| ReportError::Invalid(e.to_string()))?;
        write_atomic(&dir.join(MODEL_CARD_MD), self.to_markdown().as_bytes()).map_err(|e| ReportError::Invalid(e.to_string()))
    }

    /// The card of the run in `dir` for `folds` with `checkpoint`, from its oof.csv and its
    /// training cache (which must still be where run.json says).
    pub fn of_run(dir: &Path, folds: &[String], checkpoint: &str) -> Result<Self, ReportError> {
        let run = RunDir::new(dir);
        let info = run.read_info()?;
        let recipe = run.read_recipe()?;
        let cache_path = run.resolve_cache(&info);
        let cache = Cache::open(&cache_path).map_err(|e| ReportError::Cache { path: cache_path.clone(), message: e.to_string() })?;
        let oof = Predictions::read(&run.oof_csv())?;
        let labels = oof.labels.clone().ok_or_else(|| ReportError::Invalid(format!("{} has no label column", oof.path.display())))?;

        let cross_validated = info.folds.len() > 1;
        let kind = if cross_validated { "out-of-fold" } else { "validation" };
        let calibration = Calibration::read(dir).ok();
        let figures = figures(kind, &oof.ids, &oof.scores, &labels, oof.sources.as_deref(), &cache, calibration.as_ref())?;
        let validated: HashSet<&str> = oof.ids.iter().map(String::as_str).collect();
        let trained: Vec<&naevus_data::Record> =
            cache.records().iter().filter(|r| r.melanoma.is_some() && (cross_validated || !validated.contains(r.id.as_str()))).collect();
        let mut sources: Vec<(String, usize)> = Vec::new();
        for record in &trained {
            match sources.iter_mut().find(|(name, _)| *name == record.source) {
                Some((_, count)) => *count += 1,
                None => sources.push((record.source.clone(), 1)),
            }
        }
        let domain_guard = guard_card(&run, folds, checkpoint)?;
        let known_limits = known_limits(&info, &sources);
        Ok(Self {
            model: info.model.clone(),
            naevus_version: env!("CARGO_PKG_VERSION").into(),
            intended_use: INTENDED_USE.into(),
            not_for: NOT_FOR.iter().map(|s| s.to_string()).collect(),
            training_data: TrainingData {
                images: trained.len(),
                melanomas: trained.iter().filter(|r| r.melanoma == Some(true)).count(),
                groups: trained.iter().map(|r| r.group.as_str()).collect::<HashSet<_>>().len(),
                sources,
            },
            validation: figures.validation,
            operating_points: figures.operating_points,
            calibration,
            subgroups: figures.subgroups,
            known_limits,
            domain_guard,
            folds: folds.to_vec(),
            checkpoint: checkpoint.into(),
            input: Input {
                image_size: info.image_size,
                mean: info.mean,
                std: info.std,
                metadata_features: info.metadata.as_ref().map(|m| m.feature_names()).unwrap_or_default(),
                colour_constancy: info.colour_constancy,
            },
            recipe,
            ensemble: None,
        })
    }

    /// The card as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = format!("# Model card: {} (naevus {})\n\n", self.model, self.naevus_version);
        md += "**This is a research tool, not a diagnosis.**\n\n## Intended use\n\n";
        md += &format!("{}\n\nNot for:\n\n", self.intended_use);
        for item in &self.not_for {
            md += &format!("- {item}\n");
        }
        md += &ensemble_markdown(self.ensemble.as_ref());
        let t = &self.training_data;
        let of_first = self.ensemble.as_ref().and_then(|e| e.members.first()).map_or(String::new(), |m| format!(" (member {})", m.name));
        md += &format!("\n## Training data{of_first}\n\n{} images trained on, {} melanomas, {} patients or lesions.\n\n", t.images, t.melanomas, t.groups);
        for (source, count) in &t.sources {
            md += &format!("- {source}: {count} images\n");
        }
        let v = &self.validation;
        let estimate = |e: &Estimate, digits: usize| match e.ci95 {
            Some((lo, hi)) => format!("{:.digits$} (95% CI {lo:.digits$} to {hi:.digits$})", e.value),
            None => format!("{:.digits$}", e.value),
        };
        md += &format!("\n## Validation ({}, {} images, {} melanomas)\n\n", v.kind, v.images, v.melanomas);
        md += &format!("- ROC AUC: {}\n", estimate(&v.auc, 3));
        md += &format!("- partial AUC above 80% sensitivity (ISIC 2024, 0 to 0.2): {}\n", estimate(&v.pauc_above_tpr_80, 3));
        md += &format!("- average precision: {}\n\n{}. Intervals: bootstrap over patients or lesions.\n", estimate(&v.average_precision, 3), v.note);
        if !v.by_source.is_empty() {
            md += "\n### By source\n\nEach source's images scored apart: the pooled figure leans towards the largest source, and a model \
                   is only as good as its worst one.\n\n| source | images | melanomas | ROC AUC |\n| --- | ---: | ---: | ---: |\n";
            for row in &v.by_source {
                let auc = row.auc.as_ref().map_or("- (one class)".to_string(), |auc| estimate(auc, 3));
                md += &format!("| {} | {} | {} | {auc} |\n", row.source, row.images, row.melanomas);
            }
        }
        let number = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.4}"));
        let rate = |value: f64, ci: Option<(f64, f64)>| match ci {
            Some((lo, hi)) => format!("{value:.3} ({lo:.2}-{hi:.2})"),
            None => format!("{value:.3}"),
        };
        md += "\n## Operating points\n\n| point | threshold | uncalibrated threshold | sensitivity (95% CI) | specificity (95% CI) |\n\
               | --- | ---: | ---: | ---: | ---: |\n";
        for p in &self.operating_points {
            let threshold = if self.calibration.is_some() { p.threshold_calibrated } else { p.threshold };
            let name = if p.too_few { format!("{} (too few melanomas to judge)", p.name) } else { p.name.clone() };
            md += &format!(
                "| {name} | {} | {} | {} | {} |\n",
                number(threshold),
                number(p.threshold),
                rate(p.sensitivity, p.sensitivity_ci95),
                rate(p.specificity, p.specificity_ci95)
            );
        }
        md += &format!(
            "\nIntervals: bootstrap over patients at the threshold as chosen. A point at sensitivity t is judged only when at least \
             {} melanomas lie below it ((1 - t) x melanomas): with fewer its threshold rests on a handful of images and another set \
             would move it far.\n",
            naevus_metrics::MIN_POSITIVES_BEYOND_OPERATING_POINT
        );
        match &self.calibration {
            Some(c) => {
                md += &format!(
                    "\nThresholds are on the calibrated probability that `predict`, `explain` and the service give; the uncalibrated \
                     ones are for `predict --uncalibrated` (the same images lie above either). Calibration: temperature {:.3} fitted on \
                     {} ({} images with {} melanomas, a prevalence of {:.1}%): a probability is calibrated to that prevalence, and where \
                     melanoma is rarer or commoner the same image's chance differs.\n",
                    c.temperature,
                    c.fitted_on,
                    c.images,
                    v.melanomas,
                    100.0 * v.melanomas as f64 / v.images.max(1) as f64
                );
            }
            None if self.ensemble.is_some() => md += "\nThresholds and probabilities are the ensemble's: its members' combined (see Ensemble).\n",
            None => md += "\nThe model has no calibration: thresholds and probabilities are the fold ensemble's as they are.\n",
        }
        md += "\n## Subgroups\n";
        for table in &self.subgroups {
            md += &format!("\n### By {}\n\n| {} | images | melanomas | AUC |\n| --- | ---: | ---: | ---: |\n", table.attribute, table.attribute);
            for row in &table.rows {
                let auc = match row.auc {
                    Some(a) if row.melanomas < naevus_metrics::MIN_SUBGROUP_POSITIVES => format!("{a:.3}: too few melanomas to judge (under {})", naevus_metrics::MIN_SUBGROUP_POSITIVES),
                    Some(a) => format!("{a:.3}"),
                    None => "-".to_string(),
                };
                md += &format!("| {} | {} | {} | {auc} |\n", row.key, row.images, row.melanomas);
            }
        }
        md += &guard_markdown(self.domain_guard.as_ref());
        md += "\n## Known limits\n\n";
        for limit in &self.known_limits {
            md += &format!("- {limit}\n");
        }
        md += &format!(
            "\n## Model\n\n{} at {} px (colour constancy: {}), folds {} ({} checkpoint), averaged.{}\n\n## Recipe\n\n```toml\n{}```\n",
            self.model,
            self.input.image_size,
            self.input.colour_constancy.describe(),
            self.folds.join(", "),
            self.checkpoint,
            if self.input.metadata_features.is_empty() { String::new() } else { format!(" Metadata features: {}.", self.input.metadata_features.join(", ")) },
            toml::to_string_pretty(&self.recipe).unwrap_or_default()
        );
        md
    }
}

/// The card's figures of one set of out-of-fold (or validation) scores: AUC and the rest with
/// intervals, by source, the operating points (their thresholds on the scores' scale and, with
/// a calibration, on the calibrated one) and the subgroups of the patients in `cache`.
pub(crate) fn figures(
    kind: &str,
    ids: &[String],
    scores: &[f64],
    labels: &[u8],
    sources: Option<&[String]>,
    cache: &Cache,
    calibration: Option<&Calibration>,
) -> Result<Figures, ReportError> {
    let by_id: std::collections::HashMap<&str, &naevus_data::Record> = cache.records().iter().map(|r| (r.id.as_str(), r)).collect();
    let metadata: Vec<Option<&Metadata>> = ids.iter().map(|id| by_id.get(id.as_str()).map(|r| &r.metadata)).collect();
    let groups: Vec<&str> = ids.iter().map(|id| by_id.get(id.as_str()).map_or(id.as_str(), |r| r.group.as_str())).collect();
    let report = evaluate_scores(scores, labels, Some(&groups), 0.5, 1000, 0)?;
    let oof_sources: Vec<Option<String>> = match sources {
        Some(sources) => sources.iter().map(|s| Some(s.clone())).collect(),
        None => ids.iter().map(|id| by_id.get(id.as_str()).map(|r| r.source.clone())).collect(),
    };
    let by_source = naevus_metrics::per_source_aucs(scores, labels, &oof_sources, Some(&groups), 1000, 0)
        .map_err(crate::ReportError::metrics("AUC by source"))?
        .into_iter()
        .map(|r| SourceValidation {
            source: r.key.unwrap_or_else(|| "unknown".into()),
            images: r.n,
            melanomas: r.positives,
            auc: r.auc.map(|value| Estimate { value, ci95: r.auc_ci95.filter(|(a, b)| a.is_finite() && b.is_finite()) }),
        })
        .collect();
    let subgroups = subgroup_tables(scores, labels, &metadata)?
        .into_iter()
        .map(|table| Subgroups {
            attribute: table.attribute,
            rows: table
                .rows
                .into_iter()
                .map(|r| SubgroupRow { key: r.key.unwrap_or_else(|| "unknown".into()), images: r.n, melanomas: r.positives, auc: r.auc })
                .collect(),
        })
        .collect();
    let operating_points = [("sensitivity 90%", &report.specificity_at_sensitivity_90), ("sensitivity 95%", &report.specificity_at_sensitivity_95)]
        .into_iter()
        .map(|(name, p)| {
            let [sensitivity_ci95, specificity_ci95] = naevus_metrics::rates_at_threshold_ci(scores, labels, p.threshold, Some(&groups), 1000, 0)
                .map_err(crate::ReportError::metrics("operating point intervals"))?;
            Ok(OperatingPoint {
                name: name.into(),
                threshold: p.threshold,
                // Temperature scaling keeps the order of scores: the same images lie above.
                threshold_calibrated: p.threshold.zip(calibration).map(|(t, c)| naevus_metrics::apply_temperature(t, c.temperature)),
                sensitivity: p.sensitivity,
                specificity: p.specificity,
                sensitivity_ci95,
                specificity_ci95,
                too_few: naevus_metrics::operating_point_too_few(report.binary.positives, p.target),
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;

    Ok(Figures {
        validation: Validation {
            kind: kind.into(),
            images: report.binary.n,
            melanomas: report.binary.positives,
            auc: Estimate { value: report.binary.auc, ci95: Some(report.binary.auc_ci95).filter(|(a, b)| a.is_finite() && b.is_finite()) },
            pauc_above_tpr_80: report.pauc_above_tpr_80,
            average_precision: report.average_precision,
            note: format!(
                "{kind} figures on the training data's own distribution; the epoch was chosen on the same images, so they \
                 overstate what the model does on new data, from other clinics, devices and populations"
            ),
            by_source,
        },
        operating_points,
        subgroups,
    })
}

/// What [`figures`] gives.
pub(crate) struct Figures {
    pub validation: Validation,
    pub operating_points: Vec<OperatingPoint>,
    pub subgroups: Vec<Subgroups>,
}

/// What the card says the model cannot be trusted with.
fn known_limits(info: &RunInfo, trained_sources: &[(String, usize)]) -> Vec<String> {
    let names: Vec<&str> = trained_sources.iter().map(|(name, _)| name.as_str()).collect();
    let mut limits = vec![
        format!(
            "Sources: trained on images from {}; images from other sources (other dermoscopes, clinics, populations) may score \
             differently, better or worse, than the figures above, which come from these sources alone.",
            if names.is_empty() { "its training cache".to_string() } else { names.join(", ") }
        ),
        "Skin types: the ISIC archive images come mostly from fair-skinned patients (Fitzpatrick I-III) in Europe, the \
         Americas and Australia; darker skin types are nearly absent, and performance on them is unknown."
            .to_string(),
        "Devices and clinics: trained on dermoscopes and sites of the ISIC archive; other devices, lighting, magnification \
         or image processing can change the scores."
            .to_string(),
        "Lesions: trained on the diagnoses in its data; rare melanoma subtypes (amelanotic, acral, mucosal, nail) are \
         under-represented."
            .to_string(),
        format!("Input: images are centre-cropped to a square and resized to {} px; a lesion off-centre or cut by the crop is scored poorly.", info.image_size),
    ];
    if info.metadata.is_some() {
        limits.push(
            "This model also reads patient metadata; images scored without it (or with fields missing more often than in \
             training) get less sound scores, and prediction warns about it."
                .to_string(),
        );
    }
    limits
}
