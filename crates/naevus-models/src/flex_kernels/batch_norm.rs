//! Batch normalisation in training, with the activation after it (a clamp: ReLU, ReLU6 or
//! none): the batch statistics, the normalisation and its gradients as direct loops over each
//! channel's planes. Fusing the activation saves its own passes over the map, forward and
//! backward (for EfficientNet-Lite0, ReLU6 as relu + clamp_max cost two passes forward and
//! four backward on a third of a gigabyte of activations per step); the backward pass
//! recomputes the pre-activation value from x to know where the gradient passes.

use rayon::prelude::*;

use super::{Planes, sum_pairs};

/// The activation as a clamp to [lower, upper] (infinite bounds: none).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clamp {
    pub lower: f32,
    pub upper: f32,
}

impl Clamp {
    fn apply(self, z: f32) -> f32 {
        z.max(self.lower).min(self.upper)
    }

    fn is_identity(self) -> bool {
        self.lower == f32::NEG_INFINITY && self.upper == f32::INFINITY
    }

    /// The gradient through the clamp at pre-activation `z`: `g` strictly inside the bounds
    /// (and for NaN, which stays NaN), zero where the clamp held the value.
    fn gradient(self, g: f32, z: f32) -> f32 {
        if z <= self.lower || z >= self.upper { 0.0 } else { g }
    }
}

/// Batch statistics as the normalisation uses them.
pub(super) struct Statistics {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Statistics {
    pub(super) fn new(mean: &[f32], variance: &[f32], epsilon: f64) -> Self {
        let inv_std = variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
        Self { mean: mean.to_vec(), inv_std }
    }
}

/// y = clamp((x - mean) / sqrt(var + eps) * gamma + beta), with the batch's mean and biased
/// variance.
pub(super) fn batch_norm_forward(planes: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64, clamp: Clamp) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let size = planes.size();
    let count = (planes.batch * size) as f64;
    let plane = |index: usize| &x[index * size..(index + 1) * size];
    let mean: Vec<f32> = planes.per_channel(|index| sum_pairs(plane(index), plane(index), |v, _| v)).into_iter().map(|total| (total / count) as f32).collect();
    // Two passes (mean, then squared deviations) for the variance's accuracy.
    let squares = planes.per_channel(|index| {
        let m = mean[index % planes.channels];
        sum_pairs(plane(index), plane(index), |v, _| (v - m) * (v - m))
    });
    let variance: Vec<f32> = squares.into_iter().map(|total| (total / count) as f32).collect();
    let statistics = Statistics::new(&mean, &variance, epsilon);
    let mut output = vec![0.0f32; x.len()];
    output.par_chunks_mut(size).enumerate().for_each(|(index, out)| {
        let c = index % planes.channels;
        let scale = gamma[c] * statistics.inv_std[c];
        let shift = beta[c] - statistics.mean[c] * scale;
        for (o, &v) in out.iter_mut().zip(plane(index)) {
            *o = clamp.apply(v * scale + shift);
        }
    });
    (output, mean, variance)
}

/// Gradients of the clamped batch normalisation for x, gamma and beta, with x_hat the
/// normalised input, g' the output gradient through the clamp and n the values per channel:
/// d beta = sum g', d gamma = sum g' * x_hat, d x = gamma / std * (g' - d beta / n - x_hat * d gamma / n).
pub(super) fn batch_norm_backward(planes: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], statistics: &Statistics, grad: &[f32], clamp: Clamp) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let size = planes.size();
    let count = (planes.batch * size) as f64;
    let plane = |index: usize| index * size..(index + 1) * size;
    // Channel c's constants, read once per plane so that the loops over its values vectorise.
    let channel = |index: usize| ChannelBackward::new(index % planes.channels, gamma, beta, statistics, clamp);
    let beta_grad: Vec<f32> = planes
        .per_channel(|index| {
            let ch = channel(index);
            sum_pairs(&grad[plane(index)], &x[plane(index)], |g, v| ch.through(g, ch.normalise(v)))
        })
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let gamma_grad: Vec<f32> = planes
        .per_channel(|index| {
            let ch = channel(index);
            sum_pairs(&grad[plane(index)], &x[plane(index)], |g, v| {
                let x_hat = ch.normalise(v);
                ch.through(g, x_hat) * x_hat
            })
        })
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let mut x_grad = vec![0.0f32; x.len()];
    x_grad.par_chunks_mut(size).enumerate().for_each(|(index, dx)| {
        let ch = channel(index);
        let c = index % planes.channels;
        let scale = gamma[c] * statistics.inv_std[c];
        let mean_grad = (beta_grad[c] as f64 / count) as f32;
        let mean_projection = (gamma_grad[c] as f64 / count) as f32;
        for ((d, &g), &v) in dx.iter_mut().zip(&grad[plane(index)]).zip(&x[plane(index)]) {
            let x_hat = ch.normalise(v);
            *d = scale * (ch.through(g, x_hat) - mean_grad - x_hat * mean_projection);
        }
    });
    (x_grad, gamma_grad, beta_grad)
}

/// One channel's batch-norm constants in the backward pass.
#[derive(Clone, Copy)]
struct ChannelBackward {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
    clamp: Clamp,
}

impl ChannelBackward {
    fn new(c: usize, gamma: &[f32], beta: &[f32], statistics: &Statistics, clamp: Clamp) -> Self {
        Self { mean: statistics.mean[c], inv_std: statistics.inv_std[c], gamma: gamma[c], beta: beta[c], clamp }
    }

    fn normalise(self, v: f32) -> f32 {
        (v - self.mean) * self.inv_std
    }

    /// The gradient through the clamp at this x_hat (without a clamp, `g`: a loop-invariant
    /// branch, which the compiler takes out of the loops).
    fn through(self, g: f32, x_hat: f32) -> f32 {
        if self.clamp.is_identity() { g } else { self.clamp.gradient(g, x_hat * self.gamma + self.beta) }
    }
}

/// Inference: y = clamp(x * scale[c] + shift[c]), batch norm with its running statistics
/// folded into a scale and a shift per channel, and the activation, in one pass.
pub(super) fn scale_shift_clamp(planes: &Planes, x: &[f32], scale: &[f32], shift: &[f32], clamp: Clamp) -> Vec<f32> {
    let size = planes.size();
    let mut output = vec![0.0f32; x.len()];
    output.par_chunks_mut(size).zip(x.par_chunks(size)).enumerate().for_each(|(index, (out, x))| {
        let c = index % planes.channels;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = clamp.apply(v * scale[c] + shift[c]);
        }
    });
    output
}
