//! The card of an ensemble bundle: its members, how they are combined, and the ensemble's own
//! out-of-fold figures where the members were validated on the same folds.

use std::collections::HashMap;
use std::path::Path;

use naevus_data::Cache;
use naevus_run::{Calibration, Combination, Predictions, RunDir};
use serde::{Deserialize, Serialize};

use super::{ModelCard, SourceValidation, figures};
use crate::ReportError;
use crate::evaluation::Estimate;

/// What the card says of an ensemble.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleCard {
    /// mean-probability or mean-logit, of the members' probabilities on their own scales.
    pub combination: String,
    pub members: Vec<MemberSummary>,
    /// Why the card has no out-of-fold figure of the ensemble itself (None: it has one).
    pub no_ensemble_figure: Option<String>,
}

/// One member as the ensemble's card lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberSummary {
    pub name: String,
    pub model: String,
    pub image_size: u32,
    pub folds: usize,
    /// Its share of the combination (the weights sum to 1).
    pub weight: f64,
    /// Its own out-of-fold AUC, and by source.
    pub auc: Estimate,
    pub by_source: Vec<SourceValidation>,
}

/// One member as [`ModelCard::of_ensemble`] takes it: the run it was exported from.
pub struct MemberRun<'a> {
    pub name: &'a str,
    pub run: &'a Path,
    /// Normalised: the weights sum to 1.
    pub weight: f64,
    /// The member's own card.
    pub card: &'a ModelCard,
}

impl ModelCard {
    /// The card of an ensemble of `members` combined by `combination`. Where every member's
    /// oof.csv scores the same images with the same folds (runs of one dataset and seed), the
    /// figures are the ensemble's own: each member's out-of-fold probabilities on its one
    /// scale, combined as the bundle combines them, so the thresholds are on the scale the
    /// ensemble answers on. Otherwise the card says why not, gives no operating points, and
    /// shows the first member's figures, named as such.
    pub fn of_ensemble(members: &[MemberRun], combination: Combination) -> Result<Self, ReportError> {
        let first = members.first().ok_or_else(|| ReportError::Invalid("an ensemble needs members".into()))?;
        let oofs = members.iter().map(|m| Predictions::read(&RunDir::new(m.run).oof_csv())).collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = members.iter().map(|m| m.name).collect();
        let mut card = first.card.clone();
        card.model = format!("ensemble of {} by {}: {}", members.len(), combination.name(), names.join(", "));
        card.calibration = None;
        // Each member's guard is in its own card; an image is within when every member says so.
        card.domain_guard = None;
        let why_not = not_shared(&oofs, &names);
        match &why_not {
            None => {
                let combined = combined_scores(members, &oofs, combination)?;
                let run = RunDir::new(first.run);
                let cache_path = run.resolve_cache(&run.read_info()?);
                let cache = Cache::open(&cache_path).map_err(|e| ReportError::Cache { path: cache_path.clone(), message: e.to_string() })?;
                let oof = &oofs[0];
                let labels = oof.labels.as_deref().ok_or_else(|| ReportError::Invalid(format!("{} has no label column", oof.path.display())))?;
                let figures = figures("out-of-fold (ensemble)", &oof.ids, &combined, labels, oof.sources.as_deref(), &cache, None)?;
                card.validation = figures.validation;
                card.operating_points = figures.operating_points;
                card.subgroups = figures.subgroups;
            }
            Some(why) => {
                card.validation.note = format!("these are member {}'s figures alone: the ensemble has none of its own, because {why}", first.name);
                card.operating_points.clear();
                card.subgroups.clear();
            }
        }
        card.ensemble = Some(EnsembleCard {
            combination: combination.name().into(),
            members: members
                .iter()
                .map(|m| MemberSummary {
                    name: m.name.into(),
                    model: m.card.model.clone(),
                    image_size: m.card.input.image_size,
                    folds: m.card.folds.len(),
                    weight: m.weight,
                    auc: m.card.validation.auc,
                    by_source: m.card.validation.by_source.clone(),
                })
                .collect(),
            no_ensemble_figure: why_not,
        });
        Ok(card)
    }
}

/// Why the members' out-of-fold predictions cannot be combined into the ensemble's (None:
/// they can): each must score the same images, with the same label and held out by the same
/// fold, or a combined row would mix a member's honest score with another's trained-on one.
fn not_shared(oofs: &[Predictions], names: &[&str]) -> Option<String> {
    let first = &oofs[0];
    let (Some(folds), Some(labels)) = (&first.folds, &first.labels) else {
        return Some(format!("member {}'s oof.csv has no fold or label column", names[0]));
    };
    let rows: HashMap<&str, (&str, u8)> = first.ids.iter().zip(folds.iter().zip(labels)).map(|(id, (f, l))| (id.as_str(), (f.as_str(), *l))).collect();
    for (oof, name) in oofs.iter().zip(names).skip(1) {
        let (Some(folds), Some(labels)) = (&oof.folds, &oof.labels) else {
            return Some(format!("member {name}'s oof.csv has no fold or label column"));
        };
        if oof.ids.len() != first.ids.len() {
            return Some(format!("members {} and {name} were validated on different images ({} and {})", names[0], first.ids.len(), oof.ids.len()));
        }
        for ((id, fold), label) in oof.ids.iter().zip(folds).zip(labels) {
            match rows.get(id.as_str()) {
                None => return Some(format!("member {name} validated image {id}, which member {} did not", names[0])),
                Some((f, _)) if f != fold => {
                    return Some(format!("image {id} was held out by {f} of member {} but by {fold} of member {name}: the members were not trained on the same folds (train them with the same data and seed)", names[0]));
                }
                Some((_, l)) if l != label => return Some(format!("image {id} has label {l} in member {}'s oof.csv and {label} in member {name}'s", names[0])),
                Some(_) => {}
            }
        }
    }
    None
}

/// The ensemble's out-of-fold probability of each image of the first member's oof.csv.
fn combined_scores(members: &[MemberRun], oofs: &[Predictions], combination: Combination) -> Result<Vec<f64>, ReportError> {
    let weights: Vec<f64> = members.iter().map(|m| m.weight).collect();
    let mut by_member = Vec::with_capacity(members.len());
    for (member, oof) in members.iter().zip(oofs) {
        let mut scores = oof.scores.clone();
        // Each member's probabilities on its one scale, as the bundle combines them.
        if RunDir::new(member.run).calibration_json().exists() {
            Calibration::read(member.run)?.apply(&mut scores);
        }
        let row: HashMap<&str, f64> = oof.ids.iter().map(String::as_str).zip(scores).collect();
        by_member.push(row);
    }
    Ok(oofs[0].ids.iter().map(|id| combination.combine(&by_member.iter().map(|row| row[id.as_str()]).collect::<Vec<_>>(), &weights)).collect())
}

/// The card's ensemble section in Markdown (empty for one run).
pub(super) fn ensemble_markdown(ensemble: Option<&EnsembleCard>) -> String {
    let Some(ensemble) = ensemble else { return String::new() };
    let mut md = format!(
        "\n## Ensemble\n\n{} members, each scoring the image at its own input size with its own folds; their probabilities, each \
         on its own scale (calibrated where it has a calibration), are combined by {} with these weights. Each member's own card \
         is in `members/NAME/MODEL_CARD.md`, its out-of-domain guard included; an image is within the ensemble's domain only when \
         every member says so.\n\n| member | model | input | folds | weight | its out-of-fold AUC |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
        ensemble.members.len(),
        ensemble.combination
    );
    for m in &ensemble.members {
        let auc = match m.auc.ci95 {
            Some((lo, hi)) => format!("{:.3} ({lo:.3}-{hi:.3})", m.auc.value),
            None => format!("{:.3}", m.auc.value),
        };
        md += &format!("| {} | {} | {} px | {} | {:.2} | {auc} |\n", m.name, m.model, m.image_size, m.folds, m.weight);
    }
    md += &match &ensemble.no_ensemble_figure {
        None => "\nThe validation figures and operating points below are the ensemble's own, out of fold: the members were trained on \
                 the same folds, so each image's combined score comes from models that did not train on it.\n"
            .to_string(),
        Some(why) => format!("\nThe ensemble has no out-of-fold figure and no operating points of its own: {why}.\n"),
    };
    md
}
