//! An exponential moving average of a network's weights (timm's ModelEma): a second copy of
//! the network, moved a little towards the trained one after every optimiser step. Many
//! SIIM-ISIC solutions validate and submit the average, which is smoother than the weights
//! of any single step.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use naevus_models::Network;

/// The weight average of a network in training.
#[derive(Clone)]
pub struct WeightAverage {
    /// The averaged network, in inference mode (no autodiff).
    pub model: Network,
    decay: f64,
}

impl WeightAverage {
    /// An average that starts at `trained`'s weights.
    pub fn new(trained: &Network, decay: f64) -> Self {
        Self { model: trained.valid(), decay }
    }

    /// An average with the weights of `model` (e.g. loaded from a training state).
    pub fn with_model(model: Network, decay: f64) -> Self {
        Self { model, decay }
    }

    /// The decay of the update after `step` optimiser steps: the recipe's, or less while few
    /// steps have been taken, min(decay, (1 + t) / (10 + t)) (TensorFlow's
    /// ExponentialMovingAverage with num_updates), so the average soon forgets the
    /// untrained start.
    pub fn decay_at(&self, step: usize) -> f64 {
        let t = step as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves every weight and BatchNorm statistic of the average towards `trained`'s:
    /// average = d * average + (1 - d) * trained, with d the decay at `step`.
    pub fn update(&mut self, trained: &Network, step: usize) -> Result<()> {
        let mut collect = Collect(Vec::new());
        // valid() first: it settles the BatchNorm statistics of the last forward pass, which
        // the training network holds apart until then.
        trained.valid().visit(&mut collect);
        let decay = self.decay_at(step);
        let mut blend = Blend { trained: collect.0.into_iter(), decay, mismatch: None };
        self.model = self.model.clone().map(&mut blend);
        if let Some(problem) = blend.mismatch {
            bail!("the weight average no longer fits the network it averages: {problem}");
        }
        if blend.trained.next().is_some() {
            bail!("the weight average no longer fits the network it averages: the network has more tensors");
        }
        Ok(())
    }
}

/// Every float tensor of a network (weights and running statistics) in visiting order,
/// flattened.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let elements = tensor.shape().num_elements();
        self.0.push(tensor.reshape([elements]));
    }
}

/// Blends each tensor of the average with the trained network's tensor at the same place.
struct Blend {
    trained: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
    mismatch: Option<String>,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(trained) = self.trained.next() else {
            self.mismatch.get_or_insert_with(|| "the network has fewer tensors".into());
            return param;
        };
        let decay = self.decay;
        let mismatch = &mut self.mismatch;
        param.map(|average| {
            let shape = average.shape();
            if trained.shape().num_elements() != shape.num_elements() {
                mismatch.get_or_insert_with(|| format!("a tensor of shape {shape:?} meets one of {:?}", trained.shape()));
                return average;
            }
            average.mul_scalar(decay).add(trained.reshape(shape).mul_scalar(1.0 - decay))
        })
    }
}
