//! The model card's out-of-domain guard: what every fold's guard and the run's check of
//! made-up images say, and how the card puts it.

use naevus_run::{DomainGuard, GuardCheck, KindCheck, RunDir};
use serde::{Deserialize, Serialize};

use crate::ReportError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainGuardCard {
    /// The percentile of held-out training images' distances each threshold is.
    pub percentile: f64,
    /// Every fold's validation images, and the share of them its guard flagged.
    pub validation_images: usize,
    pub validation_flagged: Option<f64>,
    /// Made-up images that are not dermoscopy, by kind (`naevus guard --check`).
    #[serde(default)]
    pub checks: Vec<KindCheck>,
}

/// The guards of `folds` for `checkpoint` summed up, with the run's check of made-up
/// images; None unless every fold has a guard.
pub(super) fn guard_card(run: &RunDir, folds: &[String], checkpoint: &str) -> Result<Option<DomainGuardCard>, ReportError> {
    let mut guards = Vec::new();
    for fold in folds {
        match DomainGuard::read(&run.fold(fold))? {
            Some(guard) if guard.checkpoint == checkpoint => guards.push(guard),
            _ => return Ok(None),
        }
    }
    let Some(first) = guards.first() else { return Ok(None) };
    let validation_images: usize = guards.iter().map(|g| g.validation_images).sum();
    let flagged: f64 = guards.iter().map(|g| g.validation_flagged.unwrap_or(0.0) * g.validation_images as f64).sum();
    let checks = GuardCheck::read(run.path())?.filter(|c| c.percentile == first.percentile).map(|c| c.kinds).unwrap_or_default();
    Ok(Some(DomainGuardCard {
        percentile: first.percentile,
        validation_images,
        validation_flagged: (validation_images > 0).then(|| flagged / validation_images as f64),
        checks,
    }))
}

/// The card's section on the out-of-domain guard.
pub(super) fn guard_markdown(guard: Option<&DomainGuardCard>) -> String {
    let Some(guard) = guard else {
        return "\n## Out-of-domain guard\n\nNone: this model scores any image as if it were a dermoscopic image of a skin lesion \
                (fit one with `naevus guard`).\n"
            .into();
    };
    let mut md = format!(
        "\n## Out-of-domain guard\n\nBefore an image is scored, its distance from the training images is measured twice: in the \
         network's own features and in 15 image statistics (colour, greyness, texture, structure, shares of paper-white and black), \
         each against a shrunk Gaussian of the training images. Farther than the {}th percentile of held-out training images' \
         distances in either, the image is outside the model's domain: `predict` writes in_domain = false, the service withholds its \
         decision and the page says so.\n\n",
        guard.percentile
    );
    if let Some(share) = guard.validation_flagged {
        md += &format!(
            "Validation images flagged: {:.1}% of {} (a {}th percentile puts about {:.0}% of images like the training images outside).\n",
            100.0 * share,
            guard.validation_images,
            guard.percentile,
            100.0 - guard.percentile
        );
    }
    if !guard.checks.is_empty() {
        md += "\nMade-up images that are not dermoscopy (`naevus guard --check`), each kind against the validation images:\n\n\
               | kind | images | flagged | detection AUROC |\n| --- | ---: | ---: | ---: |\n";
        for kind in &guard.checks {
            md += &format!("| {} | {} | {:.0}% | {:.3} |\n", kind.kind, kind.images, 100.0 * kind.flagged, kind.auroc);
        }
        md += "\nA kind the guard flags rarely passes for dermoscopy: the model's scores of such images are not to be trusted.\n";
    }
    md
}
