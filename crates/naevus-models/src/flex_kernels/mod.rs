//! Own kernels for the flex (CPU) backend, plugged in through burn's backend extension.
//!
//! - Dense convolutions (dense.rs): forward, input gradient and weight gradient as large
//!   matrix products written in place. flex's own forward copies the input to NHWC and
//!   allocates per tile, and burn's generic weight gradient becomes one thin product per input
//!   channel that re-reads the whole output gradient each time.
//! - Depthwise convolution's gradients (depthwise.rs): burn computes the weight gradient with
//!   one convolution per channel on sliced copies, and the input gradient with a generic
//!   grouped transposed convolution. The depthwise forward pass stays flex's own.
//! - Batch normalisation and the activation after it (batch_norm.rs): burn's default computes
//!   the batch statistics and their gradients on transposed copies, with a dozen separate
//!   passes, and each activation is passes of its own.
//! For prediction (no gradients recorded) a batch norm after a dense convolution is folded into
//! it (`conv_bn`), and one after a depthwise convolution is a single scale-shift-clamp pass.
//! The depthwise gradients and the training batch norm run only when gradients are recorded.
//! Every other backend uses burn's modules unchanged.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, ExtensionType, Flex, backend_extension};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;
use std::borrow::Cow;

use crate::activation::Activation;

mod batch_norm;
mod dense;
mod depthwise;
mod layer_map;
mod matmul;

use dense::DenseConv;
pub use layer_map::{LayerShape, Operands, Pass, SquareGemm, record_layers};
use layer_map::record;

#[backend_extension(Flex, Autodiff)]
pub trait FlexKernels: Backend {
    /// Dense convolution: groups 1, dilation 1, weight [channels_out, channels_in, kh, kw], no bias.
    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// Inference only (no gradient is recorded): clamp(conv(x, weight) + bias[c], lower, upper)
    /// for a dense convolution, the bias and clamp applied as each image's output is written.
    fn dense_conv2d_bias_clamp(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, options: ConvOptions<2>, lower: f64, upper: f64) -> FloatTensor<Self>;

    /// Depthwise convolution: weight [channels, 1, kh, kw], `options.groups` == channels, no bias.
    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// Batch normalisation of x [batch, channels, h, w] with its own batch statistics, then
    /// clamped to [lower, upper] (the activation; infinite bounds for none).
    fn batch_norm_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64, lower: f64, upper: f64) -> BatchNormTrained<Self>;

    /// Inference only (no gradient is recorded): clamp(x * scale[c] + shift[c], lower, upper)
    /// for x [batch, channels, h, w]: a batch norm with its running statistics and the
    /// activation after it, in one pass.
    fn scale_shift_clamp(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, lower: f64, upper: f64) -> FloatTensor<Self>;
}

/// Normalised output and the batch statistics (mean, biased variance; [channels] each).
#[derive(ExtensionType)]
pub struct BatchNormTrained<B: Backend> {
    pub output: FloatTensor<B>,
    pub mean: FloatTensor<B>,
    pub variance: FloatTensor<B>,
}

impl FlexKernels for Flex {
    fn dense_conv2d_bias_clamp(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, options: ConvOptions<2>, lower: f64, upper: f64) -> FlexTensor {
        let shape = dense_shape(&x, &weight, &options);
        let bias = contiguous_f32(&bias);
        let epilogue = dense::Epilogue { bias: &bias, lower: lower as f32, upper: upper as f32 };
        let output = dense::forward(&shape, &contiguous_f32(&x), &contiguous_f32(&weight), Some(&epilogue));
        flex_tensor(output, shape.output_shape().to_vec())
    }

    fn dense_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let shape = dense_shape(&x, &weight, &options);
        let output = dense::forward(&shape, &contiguous_f32(&x), &contiguous_f32(&weight), None);
        flex_tensor(output, shape.output_shape().to_vec())
    }

    fn depthwise_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        Flex::conv2d(x, weight, None, options)
    }

    fn batch_norm_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64, lower: f64, upper: f64) -> BatchNormTrained<Self> {
        let planes = Planes::of(&x);
        let clamp = batch_norm::Clamp { lower: lower as f32, upper: upper as f32 };
        let (output, mean, variance) = batch_norm::batch_norm_forward(&planes, &contiguous_f32(&x), &contiguous_f32(&gamma), &contiguous_f32(&beta), epsilon, clamp);
        BatchNormTrained {
            output: flex_tensor(output, planes.shape()),
            mean: flex_tensor(mean, vec![planes.channels]),
            variance: flex_tensor(variance, vec![planes.channels]),
        }
    }

    fn scale_shift_clamp(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, lower: f64, upper: f64) -> FlexTensor {
        let planes = Planes::of(&x);
        let clamp = batch_norm::Clamp { lower: lower as f32, upper: upper as f32 };
        let output = batch_norm::scale_shift_clamp(&planes, &contiguous_f32(&x), &contiguous_f32(&scale), &contiguous_f32(&shift), clamp);
        flex_tensor(output, planes.shape())
    }
}

impl<C: CheckpointStrategy> FlexKernels for Autodiff<Flex, C> {
    fn dense_conv2d_bias_clamp(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, options: ConvOptions<2>, lower: f64, upper: f64) -> FloatTensor<Self> {
        let output = <Flex as FlexKernels>::dense_conv2d_bias_clamp(x.into_primitive(), weight.into_primitive(), bias.into_primitive(), options, lower, upper);
        FloatTensor::<Self>::new(output)
    }

    fn dense_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        tracked_conv::<C>(ConvKind::Dense, x, weight, options)
    }

    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        tracked_conv::<C>(ConvKind::Depthwise, x, weight, options)
    }

    fn batch_norm_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64, lower: f64, upper: f64) -> BatchNormTrained<Self> {
        // The statistics leave untracked: they only feed the running averages.
        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let result = <Flex as FlexKernels>::batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon, lower, upper);
                let statistics = (result.mean.clone(), result.variance.clone(), epsilon);
                let state = (x_state, gamma_state, beta_state, statistics, (lower, upper));
                BatchNormTrained {
                    output: prep.finish(state, result.output),
                    mean: FloatTensor::<Self>::new(result.mean),
                    variance: FloatTensor::<Self>::new(result.variance),
                }
            }
            OpsKind::UnTracked(prep) => {
                let result = <Flex as FlexKernels>::batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon, lower, upper);
                BatchNormTrained {
                    output: prep.finish(result.output),
                    mean: FloatTensor::<Self>::new(result.mean),
                    variance: FloatTensor::<Self>::new(result.variance),
                }
            }
        }
    }

    fn scale_shift_clamp(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, lower: f64, upper: f64) -> FloatTensor<Self> {
        let output = <Flex as FlexKernels>::scale_shift_clamp(x.into_primitive(), scale.into_primitive(), shift.into_primitive(), lower, upper);
        FloatTensor::<Self>::new(output)
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// x, gamma, beta; the batch mean, variance and epsilon; the clamp's bounds.
    type State = (NodeId, NodeId, NodeId, (FlexTensor, FlexTensor, f64), (f64, f64));

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, beta_state, (mean, variance, epsilon), (lower, upper)) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FlexTensor>(beta_state);
        let planes = Planes::of(&x);
        let statistics = batch_norm::Statistics::new(&contiguous_f32(&mean), &contiguous_f32(&variance), epsilon);
        let clamp = batch_norm::Clamp { lower: lower as f32, upper: upper as f32 };
        let (x_grad, gamma_grad, beta_grad) = batch_norm::batch_norm_backward(
            &planes,
            &contiguous_f32(&x),
            &contiguous_f32(&gamma),
            &contiguous_f32(&beta),
            &statistics,
            &contiguous_f32(&grad),
            clamp,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(x_grad, planes.shape()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(gamma_grad, vec![planes.channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(beta_grad, vec![planes.channels]));
        }
    }
}

/// Which of this module's convolutions a tracked convolution is.
#[derive(Debug, Clone, Copy)]
enum ConvKind {
    /// Forward and both gradients through dense.rs.
    Dense,
    /// flex's own forward; both gradients through depthwise.rs.
    Depthwise,
}

impl ConvKind {
    fn forward(self, x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        match self {
            ConvKind::Dense => <Flex as FlexKernels>::dense_conv2d(x, weight, options),
            ConvKind::Depthwise => Flex::conv2d(x, weight, None, options),
        }
    }
}

/// A convolution recorded for the backward pass: its input and weight are kept.
fn tracked_conv<C: CheckpointStrategy>(kind: ConvKind, x: FloatTensor<Autodiff<Flex, C>>, weight: FloatTensor<Autodiff<Flex, C>>, options: ConvOptions<2>) -> FloatTensor<Autodiff<Flex, C>> {
    match ConvBackward(kind).prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let weight_state = prep.checkpoint(&weight);
            let output = kind.forward(x.into_primitive(), weight.into_primitive(), options.clone());
            prep.finish((x_state, weight_state, options), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(kind.forward(x.into_primitive(), weight.into_primitive(), options)),
    }
}

#[derive(Debug)]
struct ConvBackward(ConvKind);

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        let (x_shape, weight_shape) = (x.layout().shape().to_vec(), weight.layout().shape().to_vec());
        let (x_grad, weight_grad) = match self.0 {
            ConvKind::Dense => {
                let shape = dense_shape(&x, &weight, &options);
                let grad = contiguous_f32(&grad);
                let x_grad = node_x.is_some().then(|| dense::input_gradient(&shape, &grad, &contiguous_f32(&weight)));
                (x_grad, node_weight.is_some().then(|| dense::weight_gradient(&shape, &grad, &contiguous_f32(&x))))
            }
            ConvKind::Depthwise => {
                let shapes = depthwise::Shapes::new(&x, &weight, &grad, &options);
                let grad = contiguous_f32(&grad);
                let x_grad = node_x.is_some().then(|| depthwise::input_gradient(&shapes, &grad, &contiguous_f32(&weight)));
                (x_grad, node_weight.is_some().then(|| depthwise::weight_gradient(&shapes, &grad, &contiguous_f32(&x))))
            }
        };
        if let (Some(node), Some(values)) = (node_x, x_grad) {
            grads.register::<Flex>(node.id, flex_tensor(values, x_shape));
        }
        if let (Some(node), Some(values)) = (node_weight, weight_grad) {
            grads.register::<Flex>(node.id, flex_tensor(values, weight_shape));
        }
    }
}

fn dense_shape(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> DenseConv {
    let dims = |t: &FlexTensor| -> [usize; 4] { t.layout().shape().to_vec().try_into().expect("a 4-d tensor") };
    DenseConv::new(dims(x), dims(weight), options.stride, options.padding)
}

/// `conv.forward(x)` for a dense `Conv2d` (groups 1); on flex in f32 through this module's
/// forward kernel, and its gradient kernels when gradients are recorded; the bias is added
/// after.
pub(crate) fn conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let options = kernel_options(conv, &x);
    record_conv(conv, &x, &options);
    let Some(options) = options.filter(|_| conv.groups == 1 && on_flex_f32(&x)) else {
        return conv.forward(x);
    };
    let output = <Dispatch as FlexKernels>::dense_conv2d(x.into_dispatch(), conv.weight.val().into_dispatch(), options);
    let output = Tensor::<4>::from_dispatch(output);
    match &conv.bias {
        Some(bias) => output + bias.val().reshape([1, -1, 1, 1]),
        None => output,
    }
}

/// `activation(bn(conv(x)))` for a dense convolution. For inference on flex (f32, no
/// gradients, so batch norm uses its running statistics) one kernel: the batch norm folded
/// into the convolution's weight and bias (w * s, (b - mean) * s + beta with
/// s = gamma / sqrt(var + eps)), the bias and activation applied as each image's output is
/// written. Otherwise, and in training, the three layers one after the other.
pub(crate) fn conv_bn(conv: &Conv2d, bn: &BatchNorm, activation: Activation, x: Tensor<4>) -> Tensor<4> {
    let options = kernel_options(conv, &x).filter(|_| conv.groups == 1 && on_flex_f32(&x) && !x.device().is_autodiff());
    let Some(options) = options else {
        return batch_norm(bn, activation, self::conv(conv, x));
    };
    record_conv(conv, &x, &Some(options.clone()));
    record(|| LayerShape::BatchNorm { input: DenseConv::new(x.dims(), conv.weight.dims(), options.stride, options.padding).output_shape() });
    let (weight, bias) = folded(conv, bn);
    let (lower, upper) = activation.bounds();
    let output = <Dispatch as FlexKernels>::dense_conv2d_bias_clamp(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), options, lower, upper);
    Tensor::from_dispatch(output)
}

/// The convolution's weight and bias with the batch norm (running statistics) folded in.
fn folded(conv: &Conv2d, bn: &BatchNorm) -> (Tensor<4>, Tensor<1>) {
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let weight = conv.weight.val() * scale.clone().reshape([-1, 1, 1, 1]);
    let shift = match &conv.bias {
        Some(bias) => bias.val() - bn.running_mean.value(),
        None => -bn.running_mean.value(),
    };
    (weight, shift * scale + bn.beta.val())
}

/// `conv.forward(x)` for a depthwise `Conv2d` without bias; on flex with autodiff, through the
/// gradient kernels of this module (in f32; other types take the plain path).
pub(crate) fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, _, _] = x.dims();
    let is_depthwise = conv.groups == channels && conv.weight.dims() == [channels, 1, conv.kernel_size[0], conv.kernel_size[1]];
    let options = kernel_options(conv, &x);
    record_conv(conv, &x, &options);
    let Some(options) = options.filter(|_| is_depthwise && conv.bias.is_none() && trains_on_flex(&x)) else {
        return conv.forward(x);
    };
    let output = <Dispatch as FlexKernels>::depthwise_conv2d(x.into_dispatch(), conv.weight.val().into_dispatch(), options);
    Tensor::from_dispatch(output)
}

fn record_conv(conv: &Conv2d, x: &Tensor<4>, options: &Option<ConvOptions<2>>) {
    if let Some(options) = options {
        record(|| LayerShape::Conv { input: x.dims(), weight: conv.weight.dims(), stride: options.stride, padding: options.padding, groups: options.groups });
    }
}

/// The convolution's options for this module's kernels: explicit padding, no dilation, and a
/// non-empty output.
fn kernel_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    // ((top, bottom), (left, right)); burn's own `Same` computation is private to burn-nn.
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => return None,
    };
    let [_, _, height, width] = x.dims();
    let [kh, kw] = conv.kernel_size;
    let non_empty = height + padding[0].0 + padding[0].1 >= kh && width + padding[1].0 + padding[1].1 >= kw;
    (conv.dilation == [1, 1] && non_empty).then(|| ConvOptions::new_with_padding(conv.stride, padding, [1, 1], conv.groups))
}

/// `activation(bn.forward(x))`. On flex in f32, one kernel: in training, the batch
/// statistics, the normalisation and the activation (and their gradients), updating the
/// running statistics as burn's `BatchNorm` does; without gradients, the running statistics
/// folded into a scale and shift per channel, and the activation, in one pass.
pub(crate) fn batch_norm(bn: &BatchNorm, activation: Activation, x: Tensor<4>) -> Tensor<4> {
    record(|| LayerShape::BatchNorm { input: x.dims() });
    let (lower, upper) = activation.bounds();
    if on_flex_f32(&x) && !x.device().is_autodiff() {
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
        let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let output = <Dispatch as FlexKernels>::scale_shift_clamp(x.into_dispatch(), scale.into_dispatch(), shift.into_dispatch(), lower, upper);
        return Tensor::from_dispatch(output);
    }
    if !(bn.training.is_enabled() && trains_on_flex(&x)) {
        return activation.apply(bn.forward(x));
    }
    let trained = <Dispatch as FlexKernels>::batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        lower,
        upper,
    );
    let mean = Tensor::<1>::from_dispatch(trained.mean).detach();
    let variance = Tensor::<1>::from_dispatch(trained.variance).detach();
    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().mul_scalar(1.0 - momentum).add(mean.mul_scalar(momentum));
    let running_var = bn.running_var.value_sync().mul_scalar(1.0 - momentum).add(variance.mul_scalar(momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(trained.output)
}

/// f32 tensors on flex (recording gradients or not): where the dense forward kernel runs.
fn on_flex_f32(x: &Tensor<4>) -> bool {
    x.device() == Device::flex() && x.dtype() == DType::F32
}

/// f32 tensors on flex that record gradients: where the gradient kernels run.
fn trains_on_flex(x: &Tensor<4>) -> bool {
    x.device().is_autodiff() && on_flex_f32(x)
}

/// A [batch, channels, h, w] tensor as batch * channels planes of h * w values.
struct Planes {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl Planes {
    fn of(x: &FlexTensor) -> Self {
        let dims = x.layout().shape().clone();
        Self { batch: dims[0], channels: dims[1], height: dims[2], width: dims[3] }
    }

    fn shape(&self) -> Vec<usize> {
        vec![self.batch, self.channels, self.height, self.width]
    }

    fn size(&self) -> usize {
        self.height * self.width
    }

    /// Per channel, the sum over every plane of that channel of `f(index, plane)`.
    fn per_channel(&self, f: impl Fn(usize) -> f64 + Sync) -> Vec<f64> {
        (0..self.channels).into_par_iter().map(|c| (0..self.batch).map(|b| f(b * self.channels + c)).sum()).collect()
    }
}

/// The `o` in 0..out_len with 0 <= o * stride + offset - pad < len.
fn valid_range(out_len: usize, stride: usize, offset: usize, pad: usize, len: usize) -> std::ops::Range<usize> {
    let first = pad.saturating_sub(offset).div_ceil(stride).min(out_len);
    // o * stride + offset - pad <= len - 1  <=>  o <= (len - 1 + pad - offset) / stride
    let last_exclusive = match (len + pad).checked_sub(offset + 1) {
        Some(limit) => (limit / stride + 1).min(out_len),
        None => 0,
    };
    first..last_exclusive.max(first)
}

/// The sum of f(a[i], b[i]) over i, in f64 over f32 partial sums of eight lanes: the lanes
/// vectorise, and the f64 total keeps a whole plane (or batch) of terms accurate.
fn sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    a.chunks(4096)
        .zip(b.chunks(4096))
        .map(|(a, b)| {
            let mut lanes = [0.0f32; 8];
            let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
            let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(&p, &q)| f(p, q)).sum();
            for (ca, cb) in a_chunks.zip(b_chunks) {
                for k in 0..8 {
                    lanes[k] += f(ca[k], cb[k]);
                }
            }
            (lanes.iter().sum::<f32>() + tail) as f64
        })
        .sum()
}

/// The tensor's values in row-major order: borrowed when already so laid out.
fn contiguous_f32(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(tensor.to_contiguous().as_slice::<f32>().expect("an f32 tensor").to_vec()),
    }
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
#[cfg(test)]
mod tests;
