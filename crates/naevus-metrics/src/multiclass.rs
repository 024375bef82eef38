//! Multi-class metrics: balanced accuracy and one-vs-rest macro ROC AUC.

use crate::{MetricsError, roc_auc};

/// Balanced accuracy (scikit-learn's `balanced_accuracy_score`, not adjusted):
/// the mean over the classes present in `true_classes` of the recall
/// `correct_c / count_c`. Predicted classes absent from `true_classes` only
/// lower the recall of the true class they were predicted for.
///
/// Errors: [`MetricsError::LengthMismatch`] (`scores` = predictions),
/// [`MetricsError::Empty`].
pub fn balanced_accuracy(
    pred_classes: &[usize],
    true_classes: &[usize],
) -> Result<f64, MetricsError> {
    if pred_classes.len() != true_classes.len() {
        return Err(MetricsError::LengthMismatch {
            scores: pred_classes.len(),
            labels: true_classes.len(),
        });
    }
    if true_classes.is_empty() {
        return Err(MetricsError::Empty);
    }
    let k = true_classes.iter().copied().max().unwrap_or(0) + 1;
    let mut count = vec![0usize; k];
    let mut correct = vec![0usize; k];
    for (&p, &t) in pred_classes.iter().zip(true_classes) {
        count[t] += 1;
        if p == t {
            correct[t] += 1;
        }
    }
    let recalls: Vec<f64> = count
        .iter()
        .zip(&correct)
        .filter(|&(&c, _)| c > 0)
        .map(|(&c, &r)| r as f64 / c as f64)
        .collect();
    Ok(recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// One-vs-rest macro ROC AUC over a row-major `n × n_classes` score matrix
/// (`probs[i * n_classes + c]` is the score of sample `i` for class `c`):
/// the unweighted mean over classes `c` of [`roc_auc`]`(column c, label == c)`,
/// as scikit-learn's `roc_auc_score(multi_class="ovr", average="macro")`.
/// Rows need not sum to 1 (scikit-learn requires it; the result is the same
/// when they do).
///
/// Errors: [`MetricsError::InvalidParameter`] (`n_classes < 2`),
/// [`MetricsError::RaggedRows`] (length not a multiple of `n_classes`),
/// [`MetricsError::LengthMismatch`] (rows vs labels), [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`] (`index` is the row), [`MetricsError::InvalidClass`],
/// [`MetricsError::MissingClass`] (every class needs a true sample).
pub fn macro_auc_ovr_flat(
    probs: &[f64],
    n_classes: usize,
    labels: &[usize],
) -> Result<f64, MetricsError> {
    if n_classes < 2 {
        return Err(MetricsError::InvalidParameter {
            name: "n_classes",
            value: n_classes as f64,
            expected: "at least 2 classes",
        });
    }
    if !probs.len().is_multiple_of(n_classes) {
        return Err(MetricsError::RaggedRows {
            row: probs.len() / n_classes,
            len: probs.len() % n_classes,
            expected: n_classes,
        });
    }
    let rows = probs.len() / n_classes;
    if rows != labels.len() {
        return Err(MetricsError::LengthMismatch {
            scores: rows,
            labels: labels.len(),
        });
    }
    if rows == 0 {
        return Err(MetricsError::Empty);
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        return Err(MetricsError::NonFinite {
            index: i / n_classes,
        });
    }
    if let Some(index) = labels.iter().position(|&l| l >= n_classes) {
        return Err(MetricsError::InvalidClass {
            index,
            class: labels[index],
            n_classes,
        });
    }
    let mut present = vec![false; n_classes];
    labels.iter().for_each(|&l| present[l] = true);
    if let Some(class) = present.iter().position(|&p| !p) {
        return Err(MetricsError::MissingClass { class });
    }
    let mut total = 0.0;
    for c in 0..n_classes {
        let col: Vec<f64> = (0..rows).map(|i| probs[i * n_classes + c]).collect();
        let bin: Vec<u8> = labels.iter().map(|&l| u8::from(l == c)).collect();
        total += roc_auc(&col, &bin)?;
    }
    Ok(total / n_classes as f64)
}

/// [`macro_auc_ovr_flat`] on one row (`Vec`) of class scores per sample;
/// `n_classes` is the row length. Errors as there, plus
/// [`MetricsError::RaggedRows`] when rows differ in length.
pub fn macro_auc_ovr(probs: &[Vec<f64>], labels: &[usize]) -> Result<f64, MetricsError> {
    let Some(first) = probs.first() else {
        return if labels.is_empty() {
            Err(MetricsError::Empty)
        } else {
            Err(MetricsError::LengthMismatch {
                scores: 0,
                labels: labels.len(),
            })
        };
    };
    let k = first.len();
    if let Some(row) = probs.iter().position(|r| r.len() != k) {
        return Err(MetricsError::RaggedRows {
            row,
            len: probs[row].len(),
            expected: k,
        });
    }
    let flat: Vec<f64> = probs.iter().flatten().copied().collect();
    macro_auc_ovr_flat(&flat, k, labels)
}
