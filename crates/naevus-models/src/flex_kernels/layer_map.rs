//! The layers a model runs, recorded during one forward pass, and this module's flex kernels
//! run one pass at a time on random operands of the same sizes: what `naevus bench --layers`
//! times.

use std::cell::RefCell;

use burn::backend::Flex;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;

use super::matmul::{Parallelism, View, multiply};
use super::{DenseConv, Planes, batch_norm, dense, depthwise, flex_tensor};

/// One layer's sizes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LayerShape {
    /// A convolution: input [batch, channels, h, w], weight [out, in / groups, kh, kw].
    Conv { input: [usize; 4], weight: [usize; 4], stride: [usize; 2], padding: [(usize, usize); 2], groups: usize },
    /// Batch normalisation in training of an input [batch, channels, h, w].
    BatchNorm { input: [usize; 4] },
}

/// One pass of a layer in a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    /// The gradient for the layer's input (for batch norm: its whole backward pass).
    InputGradient,
    WeightGradient,
}

impl LayerShape {
    /// e.g. "conv 3x3/2 64->128 at 56x56", "depthwise 5x5/1 480 at 14x14", "batch norm 64 at 56x56".
    pub fn describe(&self) -> String {
        match self {
            LayerShape::Conv { input, weight, stride, groups, .. } if *groups > 1 => {
                format!("depthwise {}x{}/{} {} at {}x{}", weight[2], weight[3], stride[0], input[1], input[2], input[3])
            }
            LayerShape::Conv { input, weight, stride, .. } => {
                format!("conv {}x{}/{} {}->{} at {}x{}", weight[2], weight[3], stride[0], input[1], weight[0], input[2], input[3])
            }
            LayerShape::BatchNorm { input } => format!("batch norm {} at {}x{}", input[1], input[2], input[3]),
        }
    }

    /// Floating-point operations of one pass: two per multiply-add of the forward, which each
    /// gradient of a convolution repeats; none counted for batch norm (memory-bound).
    pub fn flops(&self) -> f64 {
        match self {
            LayerShape::Conv { input, weight, .. } => {
                let out = self.conv_options().map_or([0, 0], |o| output_size(input, weight, &o));
                2.0 * (weight[1] * weight[2] * weight[3]) as f64 * (input[0] * weight[0] * out[0] * out[1]) as f64
            }
            LayerShape::BatchNorm { .. } => 0.0,
        }
    }

    /// Whether `pass` exists for this layer (batch norm's parameters' gradients come with its
    /// input gradient).
    pub fn has(&self, pass: Pass) -> bool {
        !matches!((self, pass), (LayerShape::BatchNorm { .. }, Pass::WeightGradient))
    }

    fn conv_options(&self) -> Option<ConvOptions<2>> {
        match self {
            LayerShape::Conv { stride, padding, groups, .. } => Some(ConvOptions::new_with_padding(*stride, *padding, [1, 1], *groups)),
            LayerShape::BatchNorm { .. } => None,
        }
    }

    /// Random operands of these sizes, ready for [`Operands::run`].
    pub fn operands(&self) -> Operands {
        let random = |len: usize, seed: u64| -> Vec<f32> {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        };
        let count = |shape: &[usize]| shape.iter().product::<usize>();
        match self {
            LayerShape::Conv { input, weight, .. } => {
                let options = self.conv_options().expect("a convolution");
                let [oh, ow] = output_size(input, weight, &options);
                let output = [input[0], weight[0], oh, ow];
                Operands {
                    shape: self.clone(),
                    x: random(count(input), 1),
                    weight: random(count(weight), 2),
                    grad: random(count(&output), 3),
                    output,
                    options: Some(options),
                    statistics: None,
                }
            }
            LayerShape::BatchNorm { input } => {
                let x = random(count(input), 1);
                let gamma = vec![1.0; input[1]];
                let planes = Planes { batch: input[0], channels: input[1], height: input[2], width: input[3] };
                let (_, mean, variance) = batch_norm::batch_norm_forward(&planes, &x, &gamma, &vec![0.0; input[1]], BN_EPSILON, NO_CLAMP);
                Operands {
                    shape: self.clone(),
                    x,
                    weight: gamma,
                    grad: random(count(input), 3),
                    output: *input,
                    options: None,
                    statistics: Some(batch_norm::Statistics::new(&mean, &variance, BN_EPSILON)),
                }
            }
        }
    }
}

fn output_size(input: &[usize; 4], weight: &[usize; 4], options: &ConvOptions<2>) -> [usize; 2] {
    let size = |axis: usize| {
        let (before, after) = options.padding[axis];
        (input[2 + axis] + before + after).checked_sub(weight[2 + axis]).map_or(0, |span| span / options.stride[axis] + 1)
    };
    [size(0), size(1)]
}

/// A layer's operands: input, weight (batch norm: gamma), output gradient.
pub struct Operands {
    shape: LayerShape,
    x: Vec<f32>,
    weight: Vec<f32>,
    grad: Vec<f32>,
    output: [usize; 4],
    options: Option<ConvOptions<2>>,
    /// Batch norm's batch statistics, for its backward pass.
    statistics: Option<batch_norm::Statistics>,
}

const BN_EPSILON: f64 = 1e-5;
const NO_CLAMP: batch_norm::Clamp = batch_norm::Clamp { lower: f32::NEG_INFINITY, upper: f32::INFINITY };

impl Operands {
    /// Runs `pass` once with the kernel a training step on flex uses for it, returning its
    /// result's length (so the work is not optimised away).
    pub fn run(&self, pass: Pass) -> usize {
        match (&self.shape, &self.options) {
            (LayerShape::Conv { input, weight, groups: 1, .. }, Some(options)) => {
                let s = DenseConv::new(*input, *weight, options.stride, options.padding);
                match pass {
                    Pass::Forward => dense::forward(&s, &self.x, &self.weight, None).len(),
                    Pass::InputGradient => dense::input_gradient(&s, &self.grad, &self.weight).len(),
                    Pass::WeightGradient => dense::weight_gradient(&s, &self.grad, &self.x).len(),
                }
            }
            (LayerShape::Conv { input, weight, .. }, Some(options)) => {
                let x = flex_tensor(self.x.clone(), input.to_vec());
                let w = flex_tensor(self.weight.clone(), weight.to_vec());
                let g = flex_tensor(self.grad.clone(), self.output.to_vec());
                let s = depthwise::Shapes::new(&x, &w, &g, options);
                match pass {
                    // flex's own depthwise forward, as training runs it.
                    Pass::Forward => Flex::conv2d(x, w, None, options.clone()).layout().num_elements(),
                    Pass::InputGradient => depthwise::input_gradient(&s, &self.grad, &self.weight).len(),
                    Pass::WeightGradient => depthwise::weight_gradient(&s, &self.grad, &self.x).len(),
                }
            }
            (LayerShape::BatchNorm { input }, _) => {
                let planes = Planes { batch: input[0], channels: input[1], height: input[2], width: input[3] };
                match (pass, &self.statistics) {
                    (Pass::Forward, _) => batch_norm::batch_norm_forward(&planes, &self.x, &self.weight, &vec![0.0; input[1]], BN_EPSILON, NO_CLAMP).0.len(),
                    (_, Some(statistics)) => batch_norm::batch_norm_backward(&planes, &self.x, &self.weight, &vec![0.0; input[1]], statistics, &self.grad, NO_CLAMP).0.len(),
                    (_, None) => unreachable!("batch norm operands carry their statistics"),
                }
            }
            (LayerShape::Conv { .. }, None) => unreachable!("a convolution has options"),
        }
    }
}

thread_local! {
    static RECORDED: RefCell<Option<Vec<LayerShape>>> = const { RefCell::new(None) };
}

/// Runs `f` (a model's forward pass on flex) and returns what it returned with the layers it
/// ran through this module, in order.
pub fn record_layers<R>(f: impl FnOnce() -> R) -> (R, Vec<LayerShape>) {
    RECORDED.with(|cell| *cell.borrow_mut() = Some(Vec::new()));
    let result = f();
    let layers = RECORDED.with(|cell| cell.borrow_mut().take()).unwrap_or_default();
    (result, layers)
}

/// Notes a layer while [`record_layers`] runs on this thread.
pub(super) fn record(shape: impl FnOnce() -> LayerShape) {
    RECORDED.with(|cell| {
        if let Some(layers) = cell.borrow_mut().as_mut() {
            layers.push(shape());
        }
    });
}

/// A square f32 matrix product through the kernels' GEMM on every thread: the machine's
/// practical peak, against which the layers' GFLOP/s are read.
pub struct SquareGemm {
    side: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    out: Vec<f32>,
}

impl SquareGemm {
    pub fn new(side: usize) -> Self {
        let values = |offset: f32| (0..side * side).map(|i| (i as f32 * 0.618_034 + offset).fract() - 0.5).collect();
        Self { side, a: values(0.1), b: values(0.7), out: vec![0.0; side * side] }
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.side as f64).powi(3)
    }

    pub fn run(&mut self) {
        let (a, b) = (View::row_major(&self.a, self.side, self.side), View::row_major(&self.b, self.side, self.side));
        multiply(&mut self.out, self.side, a, b, false, Parallelism::Rayon(0));
    }
}
