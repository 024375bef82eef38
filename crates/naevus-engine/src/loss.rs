//! Losses: BCE with logits and focal loss for melanoma or not, softmax cross-entropy over
//! two or more classes; and how a run's logits become a melanoma probability.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use naevus_data::ClassScheme;

pub use naevus_run::LossKind;

/// Mean loss of `logits` [batch, outputs] against `labels`: 0/1 for one logit, class
/// indices for cross-entropy.
pub fn loss(kind: LossKind, logits: Tensor<2>, labels: &[u8], alpha: f64, gamma: f64) -> Tensor<1> {
    let device = logits.device();
    let batch = labels.len();
    match kind {
        LossKind::Bce | LossKind::Focal => {
            let y = Tensor::<2>::from_data(
                TensorData::new(labels.iter().map(|&l| l as f32).collect::<Vec<_>>(), [batch, 1]),
                &device,
            );
            // Stable form: max(x, 0) - x*y + log(1 + exp(-|x|)).
            let bce = logits.clone().clamp_min(0.0) - logits.clone() * y.clone()
                + logits.clone().abs().neg().exp().add_scalar(1.0).log();
            if kind == LossKind::Bce {
                return bce.mean();
            }
            let p = sigmoid(logits);
            let p_true = p.clone() * y.clone() + (p.neg().add_scalar(1.0)) * (y.clone().neg().add_scalar(1.0));
            let alpha_t = y.clone().mul_scalar(alpha) + y.neg().add_scalar(1.0).mul_scalar(1.0 - alpha);
            let modulator = p_true.neg().add_scalar(1.0).clamp_min(0.0).powf_scalar(gamma);
            (alpha_t * modulator * bce).mean()
        }
        LossKind::CrossEntropy => {
            let classes = logits.dims()[1];
            let mut one_hot = vec![0f32; batch * classes];
            for (i, &l) in labels.iter().enumerate() {
                one_hot[i * classes + l as usize] = 1.0;
            }
            let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [batch, classes]), &device);
            (one_hot * log_softmax(logits, 1)).sum_dim(1).neg().mean()
        }
    }
}

/// What a run's logits stand for: the loss it trains with and the classes it tells apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub loss: LossKind,
    pub classes: ClassScheme,
}

impl Target {
    /// Melanoma or not.
    pub fn binary(loss: LossKind) -> Self {
        Self { loss, classes: ClassScheme::Binary }
    }

    /// What the logits of a trained run stand for.
    pub fn of_run(info: &naevus_run::RunInfo) -> Self {
        Self { loss: info.loss, classes: info.classes }
    }

    /// Number of logits the model must produce.
    pub fn num_outputs(self) -> usize {
        naevus_run::recipe::num_outputs(self.loss, self.classes)
    }

    /// Rejects losses that cannot train the scheme: diagnosis classes need cross-entropy.
    pub fn check(self) -> Result<(), String> {
        if self.classes != ClassScheme::Binary && self.loss != LossKind::CrossEntropy {
            return Err(format!("the {:?} class scheme trains with loss = \"cross-entropy\", not {:?}", self.classes, self.loss));
        }
        Ok(())
    }

    /// Probabilities per image [batch, outputs]: sigmoid of a single logit, softmax otherwise.
    pub fn output_probabilities(self, logits: Tensor<2>) -> Tensor<2> {
        match self.loss {
            LossKind::Bce | LossKind::Focal => sigmoid(logits),
            LossKind::CrossEntropy => softmax(logits, 1),
        }
    }

    /// The column of [`output_probabilities`](Self::output_probabilities) that is the
    /// melanoma score.
    pub fn melanoma_column(self) -> usize {
        match self.loss {
            LossKind::Bce | LossKind::Focal => 0,
            LossKind::CrossEntropy => self.classes.melanoma_class(),
        }
    }

    /// Melanoma probability per image.
    pub fn melanoma_probability(self, logits: Tensor<2>) -> Tensor<1> {
        let batch = logits.dims()[0];
        let column = self.melanoma_column();
        self.output_probabilities(logits).slice([0..batch, column..column + 1]).reshape([batch])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(values: &[f32], classes: usize) -> Tensor<2> {
        let device = Device::flex();
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len() / classes, classes]), &device)
    }

    fn value(t: Tensor<1>) -> f64 {
        f64::from(t.into_scalar::<f32>())
    }

    fn bce(x: f64, y: f64) -> f64 {
        let p = 1.0 / (1.0 + (-x).exp());
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    }

    #[test]
    fn bce_matches_the_formula_and_is_stable_for_large_logits() {
        let got = value(loss(LossKind::Bce, logits(&[2.0, -1.0, 0.0], 1), &[1, 0, 1], 0.25, 2.0));
        let want = (bce(2.0, 1.0) + bce(-1.0, 0.0) + bce(0.0, 1.0)) / 3.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // A confidently wrong logit of 100 costs 100, not infinity.
        let got = value(loss(LossKind::Bce, logits(&[100.0], 1), &[0], 0.25, 2.0));
        assert!((got - 100.0).abs() < 1e-3, "{got}");
    }

    #[test]
    fn focal_loss_down_weights_easy_examples() {
        // Hand-computed: alpha_t * (1 - p_t)^gamma * bce.
        let (alpha, gamma) = (0.25, 2.0);
        let p = 1.0 / (1.0 + (-2.0f64).exp());
        let want_pos = alpha * (1.0 - p).powi(2) * bce(2.0, 1.0);
        let want_neg = (1.0 - alpha) * p.powi(2) * bce(2.0, 0.0);
        let got = value(loss(LossKind::Focal, logits(&[2.0, 2.0], 1), &[1, 0], alpha, gamma));
        assert!((got - (want_pos + want_neg) / 2.0).abs() < 1e-6);
        // With gamma 0 and alpha 0.5 focal is half the BCE.
        let f = value(loss(LossKind::Focal, logits(&[0.7, -0.3], 1), &[1, 0], 0.5, 0.0));
        let b = value(loss(LossKind::Bce, logits(&[0.7, -0.3], 1), &[1, 0], 0.5, 0.0));
        assert!((f - b / 2.0).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_matches_log_softmax() {
        let got = value(loss(LossKind::CrossEntropy, logits(&[1.0, 3.0, 0.5, -0.5], 2), &[1, 0], 0.25, 2.0));
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        let want = ((lse(1.0, 3.0) - 3.0) + (lse(0.5, -0.5) - 0.5)) / 2.0;
        assert!((got - want).abs() < 1e-6);
    }

    #[test]
    fn probabilities_come_from_the_right_output() {
        let p = Target::binary(LossKind::Bce).melanoma_probability(logits(&[0.0, 2.0], 1)).into_data().try_to_vec::<f32>().unwrap();
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] as f64 - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-6);
        let p = Target::binary(LossKind::CrossEntropy)
            .melanoma_probability(logits(&[0.0, 0.0, 0.0, 1.0], 2))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((p[0] - 0.5).abs() < 1e-6);
        assert!((p[1] as f64 - 1f64.exp() / (1.0 + 1f64.exp())).abs() < 1e-6);
        // Nine classes: melanoma is class 0, and its softmax share is the score.
        let nine = Target { loss: LossKind::CrossEntropy, classes: ClassScheme::Nine };
        assert_eq!(nine.num_outputs(), 9);
        let mut values = vec![0.0; 9];
        values[0] = 2.0f32.ln();
        let p = nine.melanoma_probability(logits(&values, 9)).into_data().try_to_vec::<f32>().unwrap();
        assert!((p[0] - 0.2).abs() < 1e-6, "2 / (2 + 8) = 0.2, got {}", p[0]);
        assert!(Target { loss: LossKind::Focal, classes: ClassScheme::Ham7 }.check().is_err());
    }
}
