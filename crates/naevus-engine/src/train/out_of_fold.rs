//! The run's pooled out-of-fold predictions and their figures, written once every fold is
//! trained: pooled, per source, and per diagnosis class.

use anyhow::Result;
use naevus_data::ClassScheme;
use naevus_metrics::{SubgroupMetrics, roc_auc};
use naevus_run::{Calibration, RunDir, write_atomic};
use serde::{Deserialize, Serialize};

use super::{FoldReport, RunSetup, ids_of, melanoma_of};


/// Multi-class figures of pooled validation predictions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub classes: Vec<String>,
    pub images: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    /// One-vs-rest macro AUC over the classes present among the validation images (a
    /// nine-class model on three-diagnosis data is scored on those three).
    pub macro_auc: Option<f64>,
}

impl ClassMetrics {
    pub(super) fn of(scheme: ClassScheme, probs: &[Vec<f64>], labels: &[usize]) -> Option<Self> {
        if scheme == ClassScheme::Binary || labels.is_empty() {
            return None;
        }
        let predicted: Vec<usize> = probs.iter().map(|row| argmax(row)).collect();
        let correct = predicted.iter().zip(labels).filter(|(p, t)| p == t).count();
        Some(Self {
            classes: scheme.class_names().iter().map(|c| c.to_string()).collect(),
            images: labels.len(),
            accuracy: correct as f64 / labels.len() as f64,
            balanced_accuracy: naevus_metrics::balanced_accuracy(&predicted, labels).ok()?,
            macro_auc: macro_auc_of_present_classes(probs, labels),
        })
    }
}

fn macro_auc_of_present_classes(probs: &[Vec<f64>], labels: &[usize]) -> Option<f64> {
    let mut present = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    let columns: Vec<Vec<f64>> = probs.iter().map(|row| present.iter().map(|&c| row[c]).collect()).collect();
    let labels: Vec<usize> = labels.iter().filter_map(|l| present.iter().position(|c| c == l)).collect();
    naevus_metrics::macro_auc_ovr(&columns, &labels).ok()
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}


/// The figures of a run's pooled out-of-fold predictions.
pub(super) struct OutOfFold {
    pub auc: Option<f64>,
    /// Each source's AUC with its interval, when the predictions hold more than one source.
    pub by_source: Vec<SubgroupMetrics>,
    pub class_metrics: Option<ClassMetrics>,
}

/// Pools every fold's best validation predictions into `oof.csv` and `metrics.json` (with each
/// source's AUC when there are several), and for diagnosis classes `oof_classes.csv` and
/// `class_metrics.json`.
pub(super) fn write_oof(dir: &RunDir, run: &RunSetup, folds: &[FoldReport]) -> Result<OutOfFold> {
    let (cache, info, classes) = (&run.cache, &run.info, &run.classes);
    let (mut items, mut outputs, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for fold in folds {
        items.extend_from_slice(&fold.val_items);
        outputs.extend_from_slice(&fold.val_probabilities);
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
    }
    let column = run.input().target.melanoma_column();
    let probs: Vec<f64> = outputs.iter().map(|row| row[column]).collect();
    let ids = ids_of(cache, &items);
    let labels: Vec<u8> = items.iter().map(|&i| melanoma_of(cache, i)).collect();
    let sources: Vec<String> = items.iter().map(|&i| run.sources.name_of(i).to_string()).collect();
    naevus_run::write_out_of_fold(&dir.oof_csv(), &ids, &probs, &labels, &names, &sources)?;
    let class_metrics = if info.classes == ClassScheme::Binary {
        None
    } else {
        let truth: Vec<usize> = items.iter().map(|&i| classes[i].unwrap_or(0) as usize).collect();
        naevus_run::write_class_predictions(&dir.oof_classes_csv(), info.classes, &ids, &outputs, &truth, &names)?;
        let metrics = ClassMetrics::of(info.classes, &outputs, &truth);
        if let Some(m) = &metrics {
            write_atomic(&dir.class_metrics_json(), serde_json::to_string_pretty(m)?.as_bytes())?;
        }
        metrics
    };
    let groups: Vec<&str> = items.iter().map(|&i| cache.records()[i].group.as_str()).collect();
    let keys: Vec<Option<String>> = sources.into_iter().map(Some).collect();
    let by_source = naevus_metrics::per_source_aucs(&probs, &labels, &keys, Some(&groups), 1000, 0)?;
    // The same table as `naevus evaluate` gives, in its one metrics.json shape.
    let auc = match naevus_report::evaluate_scores(&probs, &labels, Some(&groups), 0.5, 1000, 0) {
        Ok(mut report) => {
            report.by_source = by_source.clone();
            naevus_report::write_metrics_json(&dir.metrics_json(), &report)?;
            Calibration::fit(&probs, &labels, "oof.csv")?.write(dir.path())?;
            Some(report.binary.auc)
        }
        Err(e) => {
            eprintln!("note: no validation metrics: {e}");
            None
        }
    };
    Ok(OutOfFold { auc, by_source, class_metrics })
}

/// Pools every fold's best validation predictions of the weight average into oof_ema.csv
/// (recipes with `ema_decay`), and returns their AUC.
pub(super) fn write_ema_oof(dir: &RunDir, run: &RunSetup, folds: &[FoldReport]) -> Result<Option<f64>> {
    let Some(outputs) = folds.iter().map(|fold| fold.ema_val_probabilities.as_ref()).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let column = run.input().target.melanoma_column();
    let (mut ids, mut probs, mut labels, mut names, mut sources) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (fold, outputs) in folds.iter().zip(outputs) {
        ids.extend(ids_of(&run.cache, &fold.val_items));
        probs.extend(outputs.iter().map(|row| row[column]));
        labels.extend(fold.val_items.iter().map(|&i| melanoma_of(&run.cache, i)));
        names.extend(std::iter::repeat_n(fold.name.clone(), fold.val_items.len()));
        sources.extend(fold.val_items.iter().map(|&i| run.sources.name_of(i).to_string()));
    }
    naevus_run::write_out_of_fold(&dir.oof_ema_csv(), &ids, &probs, &labels, &names, &sources)?;
    Ok(roc_auc(&probs, &labels).ok())
}
