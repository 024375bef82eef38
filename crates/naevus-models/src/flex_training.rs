//! Own gradient kernels for training on the flex (CPU) backend.
//!
//! Two layers took most of an EfficientNet-Lite0 training step on flex (bench/NOTES.md):
//! - depthwise convolution: burn computes the weight gradient of a grouped convolution with
//!   one convolution per group (for a depthwise layer, one per channel, each on sliced copies
//!   of the input and the output gradient) and the input gradient with a generic grouped
//!   transposed convolution;
//! - batch normalisation in training: burn's default computes the batch statistics and their
//!   gradients on transposed copies ([channels, batch * pixels]), with a dozen separate passes.
//! Here both are direct loops over each channel's planes: the same arithmetic, no copies.
//! The depthwise forward pass stays flex's own. Every other backend, and inference on flex,
//! use burn's modules unchanged.

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

#[backend_extension(Flex, Autodiff)]
pub trait FlexTrainingBackend: Backend {
    /// Depthwise convolution: weight [channels, 1, kh, kw], `options.groups` == channels, no bias.
    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// Batch normalisation of x [batch, channels, h, w] with its own batch statistics.
    fn batch_norm_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> BatchNormTrained<Self>;
}

/// Normalised output and the batch statistics (mean, biased variance; [channels] each).
#[derive(ExtensionType)]
pub struct BatchNormTrained<B: Backend> {
    pub output: FloatTensor<B>,
    pub mean: FloatTensor<B>,
    pub variance: FloatTensor<B>,
}

impl FlexTrainingBackend for Flex {
    fn depthwise_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        Flex::conv2d(x, weight, None, options)
    }

    fn batch_norm_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> BatchNormTrained<Self> {
        let planes = Planes::of(&x);
        let (output, mean, variance) = batch_norm_forward(&planes, &contiguous_f32(&x), &contiguous_f32(&gamma), &contiguous_f32(&beta), epsilon);
        BatchNormTrained {
            output: flex_tensor(output, planes.shape()),
            mean: flex_tensor(mean, vec![planes.channels]),
            variance: flex_tensor(variance, vec![planes.channels]),
        }
    }
}

impl<C: CheckpointStrategy> FlexTrainingBackend for Autodiff<Flex, C> {
    fn depthwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match DepthwiseBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let output = Flex::conv2d(x.into_primitive(), weight.into_primitive(), None, options.clone());
                prep.finish((x_state, weight_state, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv2d(x.into_primitive(), weight.into_primitive(), None, options)),
        }
    }

    fn batch_norm_train(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> BatchNormTrained<Self> {
        // The statistics leave untracked: they only feed the running averages.
        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let result = <Flex as FlexTrainingBackend>::batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                let state = (x_state, gamma_state, result.mean.clone(), result.variance.clone(), epsilon);
                BatchNormTrained {
                    output: prep.finish(state, result.output),
                    mean: FloatTensor::<Self>::new(result.mean),
                    variance: FloatTensor::<Self>::new(result.variance),
                }
            }
            OpsKind::UnTracked(prep) => {
                let result = <Flex as FlexTrainingBackend>::batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                BatchNormTrained {
                    output: prep.finish(result.output),
                    mean: FloatTensor::<Self>::new(result.mean),
                    variance: FloatTensor::<Self>::new(result.variance),
                }
            }
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (NodeId, NodeId, FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state);
        let planes = Planes::of(&x);
        let statistics = Statistics::new(&contiguous_f32(&mean), &contiguous_f32(&variance), epsilon);
        let (x_grad, gamma_grad, beta_grad) =
            batch_norm_backward(&planes, &contiguous_f32(&x), &contiguous_f32(&gamma), &statistics, &contiguous_f32(&grad));
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

#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 2> for DepthwiseBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        let shapes = Shapes::new(&x, &weight, &grad, &options);
        let x = contiguous_f32(&x);
        let weight = contiguous_f32(&weight);
        let grad = contiguous_f32(&grad);
        if let Some(node) = node_x {
            let values = input_gradient(&shapes, &grad, &weight);
            grads.register::<Flex>(node.id, flex_tensor(values, shapes.input.shape()));
        }
        if let Some(node) = node_weight {
            let values = weight_gradient(&shapes, &grad, &x);
            grads.register::<Flex>(node.id, flex_tensor(values, vec![shapes.input.channels, 1, shapes.kernel_h, shapes.kernel_w]));
        }
    }
}

/// `conv.forward(x)` for a depthwise `Conv2d` without bias; on flex with autodiff, through the
/// gradient kernels of this module (in f32; other types take the plain path).
pub(crate) fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(options) = own_kernel_options(conv, &x) else {
        return conv.forward(x);
    };
    let output = <Dispatch as FlexTrainingBackend>::depthwise_conv2d(x.into_dispatch(), conv.weight.val().into_dispatch(), options);
    Tensor::from_dispatch(output)
}

/// The convolution's options when this module's kernels apply to `conv` on `x`.
fn own_kernel_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    let [_, channels, _, _] = x.dims();
    let is_depthwise = conv.groups == channels && conv.weight.dims() == [channels, 1, conv.kernel_size[0], conv.kernel_size[1]];
    let applies = is_depthwise
        && conv.bias.is_none()
        && conv.dilation == [1, 1]
        && trains_on_flex(x);
    // ((top, bottom), (left, right)); burn's own `Same` computation is private to burn-nn.
    let padding = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        PaddingConfig2d::Same => return None,
    };
    applies.then(|| ConvOptions::new_with_padding(conv.stride, [padding.0, padding.1], [1, 1], channels))
}

/// `bn.forward(x)`; in training on flex, through this module's kernels, updating the running
/// statistics as burn's `BatchNorm` does.
pub(crate) fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !(bn.training.is_enabled() && trains_on_flex(&x)) {
        return bn.forward(x);
    }
    let trained = <Dispatch as FlexTrainingBackend>::batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
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

/// f32 tensors on flex that record gradients: where this module's kernels run.
fn trains_on_flex(x: &Tensor<4>) -> bool {
    let device = x.device();
    device.is_autodiff() && device == Device::flex() && x.dtype() == DType::F32
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

/// Batch statistics as the normalisation uses them.
struct Statistics {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Statistics {
    fn new(mean: &[f32], variance: &[f32], epsilon: f64) -> Self {
        let inv_std = variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
        Self { mean: mean.to_vec(), inv_std }
    }
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, with the batch's mean and biased variance.
fn batch_norm_forward(planes: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
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
fn batch_norm_backward(planes: &Planes, x: &[f32], gamma: &[f32], statistics: &Statistics, grad: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
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

/// Sizes of one depthwise convolution, input [batch, channels, height, width] to output
/// [batch, channels, out_h, out_w].
struct Shapes {
    input: Planes,
    kernel_h: usize,
    kernel_w: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    pad_top: usize,
    pad_left: usize,
    /// Per kernel column `j`: the output columns `ow` whose input column
    /// `ow * stride + j - pad_left` lies inside the image; none when the column sees only
    /// padding (maps smaller than the kernel). Computed once, not per row in the kernels.
    valid_columns: Vec<Option<std::ops::Range<usize>>>,
}

impl Shapes {
    fn new(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> Self {
        let w_dims = weight.layout().shape().clone();
        let g_dims = grad.layout().shape().clone();
        let [pad_top, pad_left] = options.padding_begin();
        let input = Planes::of(x);
        let (kernel_w, out_w) = (w_dims[3], g_dims[3]);
        let valid_columns = (0..kernel_w)
            .map(|j| Some(valid_range(out_w, options.stride[1], j, pad_left, input.width)).filter(|columns| !columns.is_empty()))
            .collect();
        Self {
            input,
            kernel_h: w_dims[2],
            kernel_w,
            out_h: g_dims[2],
            out_w,
            stride: options.stride,
            pad_top,
            pad_left,
            valid_columns,
        }
    }

    /// Input row of output row `oh` and kernel row `i`, if inside the image.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.stride[0] + i).checked_sub(self.pad_top).filter(|&row| row < self.input.height)
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

/// d loss / d x: each output gradient spread back over the inputs its kernel window read.
fn input_gradient(s: &Shapes, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let plane = s.input.size();
    let out_plane = s.out_h * s.out_w;
    let kernel = s.kernel_h * s.kernel_w;
    let mut dx = vec![0.0f32; s.input.batch * s.input.channels * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(index, dx)| {
        let channel = index % s.input.channels;
        let g = &grad[index * out_plane..(index + 1) * out_plane];
        let w = &weight[channel * kernel..(channel + 1) * kernel];
        for oh in 0..s.out_h {
            let g_row = &g[oh * s.out_w..(oh + 1) * s.out_w];
            for i in 0..s.kernel_h {
                let Some(row) = s.input_row(oh, i) else { continue };
                let dx_row = &mut dx[row * s.input.width..(row + 1) * s.input.width];
                for j in 0..s.kernel_w {
                    let Some(columns) = s.valid_columns[j].clone() else { continue };
                    let wv = w[i * s.kernel_w + j];
                    if s.stride[1] == 1 {
                        let start = columns.start + j - s.pad_left;
                        let dst = &mut dx_row[start..start + columns.len()];
                        for (d, &gv) in dst.iter_mut().zip(&g_row[columns]) {
                            *d += wv * gv;
                        }
                    } else {
                        for ow in columns {
                            dx_row[ow * s.stride[1] + j - s.pad_left] += wv * g_row[ow];
                        }
                    }
                }
            }
        }
    });
    dx
}

/// d loss / d weight: for each channel and kernel tap, the sum over the batch and the output
/// positions of output gradient times the input the tap read.
fn weight_gradient(s: &Shapes, grad: &[f32], x: &[f32]) -> Vec<f32> {
    let plane = s.input.size();
    let out_plane = s.out_h * s.out_w;
    let kernel = s.kernel_h * s.kernel_w;
    let mut dw = vec![0.0f32; s.input.channels * kernel];
    dw.par_chunks_mut(kernel).enumerate().for_each(|(channel, dw)| {
        let mut totals = vec![0.0f64; kernel];
        for b in 0..s.input.batch {
            let index = b * s.input.channels + channel;
            let g = &grad[index * out_plane..(index + 1) * out_plane];
            let xp = &x[index * plane..(index + 1) * plane];
            for oh in 0..s.out_h {
                let g_row = &g[oh * s.out_w..(oh + 1) * s.out_w];
                for i in 0..s.kernel_h {
                    let Some(row) = s.input_row(oh, i) else { continue };
                    let x_row = &xp[row * s.input.width..(row + 1) * s.input.width];
                    for j in 0..s.kernel_w {
                        let Some(columns) = s.valid_columns[j].clone() else { continue };
                        totals[i * s.kernel_w + j] += if s.stride[1] == 1 {
                            let start = columns.start + j - s.pad_left;
                            sum_pairs(&g_row[columns.clone()], &x_row[start..start + columns.len()], |g, x| g * x)
                        } else {
                            columns.map(|ow| (g_row[ow] * x_row[ow * s.stride[1] + j - s.pad_left]) as f64).sum()
                        };
                    }
                }
            }
        }
        for (d, t) in dw.iter_mut().zip(totals) {
            *d = t as f32;
        }
    });
    dw
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
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// The same output and the same input and weight gradients as burn's grouped convolution.
    fn check(channels: usize, kernel: usize, stride: usize, padding: PaddingConfig2d, size: [usize; 2]) {
        let device = Device::flex().autodiff();
        device.seed(7);
        let x = Tensor::<4>::random([3, channels, size[0], size[1]], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(channels)
            .with_padding(padding)
            .with_bias(false)
            .init(&device);
        assert!(own_kernel_options(&conv, &x).is_some(), "the test must run this module's kernels");
        let reference = conv.forward(x.clone());
        let ours = depthwise(&conv, x.clone());
        ours.to_data().assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-5));

        // A loss whose output gradient differs at every position.
        let weights = Tensor::<4>::random(reference.dims(), Distribution::Normal(0.0, 1.0), &device);
        let grads_reference = (reference * weights.clone()).sum().backward();
        let grads_ours = (ours * weights).sum().backward();
        let close = Tolerance::absolute(1e-4);
        x.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&grads_reference).unwrap().to_data(), close);
        let weight = conv.weight.val();
        weight.grad(&grads_ours).unwrap().to_data().assert_approx_eq::<f32>(&weight.grad(&grads_reference).unwrap().to_data(), close);
    }

    #[test]
    fn depthwise_matches_burns_grouped_convolution_and_its_gradients() {
        // EfficientNet-Lite's TensorFlow SAME padding: symmetric at stride 1, one less at the
        // top/left at stride 2.
        check(4, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [9, 11]);
        check(5, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [8, 8]);
        check(4, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), [10, 12]);
        check(3, 5, 2, PaddingConfig2d::Explicit(1, 1, 2, 2), [12, 10]);
        // MobileNet-V2: padding 1 at stride 2; and no padding at all.
        check(6, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [9, 9]);
        check(2, 3, 1, PaddingConfig2d::Valid, [7, 6]);
        // Maps smaller than the kernel (ChipNet's chips at small inputs): some kernel columns
        // see only padding.
        check(3, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), [1, 1]);
        check(2, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [2, 2]);
        check(2, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), [1, 1]);
        check(2, 5, 2, PaddingConfig2d::Explicit(1, 1, 2, 2), [2, 2]);
    }

    #[test]
    fn batch_norm_matches_burns_in_output_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        device.seed(11);
        // An offset mean and a spread, as activations have; momentum and epsilon not burn's defaults.
        let x = (Tensor::<4>::random([4, 5, 6, 7], Distribution::Normal(0.0, 1.0), &device) * 3.0 + 2.0).require_grad();
        let config = BatchNormConfig::new(5).with_epsilon(1e-3).with_momentum(0.01);
        let ours = config.init(&device);
        let reference = config.init(&device);
        let gamma = Tensor::<1>::random([5], Distribution::Normal(1.0, 0.3), &device);
        let beta = Tensor::<1>::random([5], Distribution::Normal(0.0, 0.3), &device);
        let (ours, reference) = [ours, reference].map(|bn| BatchNorm { gamma: Param::from_tensor(gamma.clone()), beta: Param::from_tensor(beta.clone()), ..bn }).into();
        assert!(trains_on_flex(&x), "the test must run this module's kernels");

        let expected = reference.forward(x.clone());
        let got = batch_norm(&ours, x.clone());
        got.to_data().assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-4));
        let close = Tolerance::absolute(1e-5);
        ours.running_mean.value().to_data().assert_approx_eq::<f32>(&reference.running_mean.value().to_data(), close);
        ours.running_var.value().to_data().assert_approx_eq::<f32>(&reference.running_var.value().to_data(), close);

        let weights = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
        let grads_expected = (expected * weights.clone()).sum().backward();
        let grads_got = (got * weights).sum().backward();
        let close = Tolerance::absolute(1e-4);
        x.grad(&grads_got).unwrap().to_data().assert_approx_eq::<f32>(&x.grad(&grads_expected).unwrap().to_data(), close);
        for (param_ours, param_reference) in [(&ours.gamma, &reference.gamma), (&ours.beta, &reference.beta)] {
            let (got, expected) = (param_ours.val().grad(&grads_got).unwrap(), param_reference.val().grad(&grads_expected).unwrap());
            got.to_data().assert_approx_eq::<f32>(&expected.to_data(), close);
        }
    }

    #[test]
    fn valid_range_keeps_input_columns_inside_the_image() {
        for (out_len, stride, offset, pad, len) in [(5, 1, 0, 1, 5), (5, 1, 2, 1, 5), (6, 2, 0, 0, 12), (6, 2, 2, 1, 12), (3, 2, 4, 2, 6), (1, 1, 0, 1, 1), (1, 1, 2, 1, 1), (1, 2, 4, 1, 2), (1, 1, 0, 2, 1)] {
            let range = valid_range(out_len, stride, offset, pad, len);
            for o in 0..out_len {
                let inside = (o * stride + offset).checked_sub(pad).is_some_and(|column| column < len);
                assert_eq!(range.contains(&o), inside, "o {o} in {range:?} for {out_len} {stride} {offset} {pad} {len}");
            }
        }
    }
}
