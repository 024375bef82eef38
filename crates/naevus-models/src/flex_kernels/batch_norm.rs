//! Batch normalisation in training: the batch statistics, the normalisation and its gradients
//! as direct loops over each channel's planes.

use rayon::prelude::*;

use super::{Planes, sum_pairs};

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

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, with the batch's mean and biased variance.
pub(super) fn batch_norm_forward(planes: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
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
            *o = v * scale + shift;
        }
    });
    (output, mean, variance)
}

/// Gradients of the batch normalisation for x, gamma and beta, with x_hat the normalised input
/// and n the values per channel: d beta = sum g, d gamma = sum g * x_hat,
/// d x = gamma / std * (g - d beta / n - x_hat * d gamma / n).
pub(super) fn batch_norm_backward(planes: &Planes, x: &[f32], gamma: &[f32], statistics: &Statistics, grad: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let size = planes.size();
    let count = (planes.batch * size) as f64;
    let plane = |index: usize| index * size..(index + 1) * size;
    let beta_grad: Vec<f32> = planes.per_channel(|index| sum_pairs(&grad[plane(index)], &grad[plane(index)], |g, _| g)).into_iter().map(|v| v as f32).collect();
    let gamma_grad: Vec<f32> = planes
        .per_channel(|index| {
            let c = index % planes.channels;
            let (mean, inv_std) = (statistics.mean[c], statistics.inv_std[c]);
            sum_pairs(&grad[plane(index)], &x[plane(index)], |g, v| g * (v - mean) * inv_std)
        })
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let mut x_grad = vec![0.0f32; x.len()];
    x_grad.par_chunks_mut(size).enumerate().for_each(|(index, dx)| {
        let c = index % planes.channels;
        let (mean, inv_std) = (statistics.mean[c], statistics.inv_std[c]);
        let scale = gamma[c] * inv_std;
        let mean_grad = (beta_grad[c] as f64 / count) as f32;
        let mean_projection = (gamma_grad[c] as f64 / count) as f32;
        for ((d, &g), &v) in dx.iter_mut().zip(&grad[plane(index)]).zip(&x[plane(index)]) {
            let x_hat = (v - mean) * inv_std;
            *d = scale * (g - mean_grad - x_hat * mean_projection);
        }
    });
    (x_grad, gamma_grad, beta_grad)
}
