//! An ONNX graph built layer by layer, as the model files' `to_onnx` methods walk their
//! forward pass: each call adds the nodes of one layer and returns the name of its output.
//! Batch norms are folded into the convolution before them, so an inference runtime sees
//! one convolution per conv-BN pair.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;

use super::proto::{ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS, ATTRIBUTE_STRING, AttributeProto, DOUBLE, FLOAT, INT64, NodeProto, TensorProto};
use crate::activation::Activation;

/// The nodes and weights of a graph being built.
#[derive(Default)]
pub(crate) struct Graph {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) initializers: Vec<TensorProto>,
    next: usize,
}

/// A tensor's values as f32, row-major (an error naming the layer when they cannot be read).
fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, String> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("reading a weight tensor: {e:?}"))
}

fn param<const D: usize>(param: &Param<Tensor<D>>) -> Result<Vec<f32>, String> {
    values(param.val())
}

pub(crate) fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.iter().map(|&v| v as i64).collect(), r#type: ATTRIBUTE_INTS, ..Default::default() }
}

pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: ATTRIBUTE_INT, ..Default::default() }
}

pub(super) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: ATTRIBUTE_FLOAT, ..Default::default() }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto { name: name.into(), s: value.as_bytes().to_vec(), r#type: ATTRIBUTE_STRING, ..Default::default() }
}

/// ONNX's `pads` (top, left, bottom, right) of a burn padding.
fn pads(padding: &PaddingConfig2d) -> Result<[usize; 4], String> {
    match padding {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([*top, *left, *bottom, *right]),
        other => Err(format!("padding {other:?} has no fixed ONNX pads")),
    }
}

impl Graph {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}", self.next)
    }

    /// A weight of the graph.
    pub(crate) fn constant(&mut self, prefix: &str, dims: &[usize], values: &[f32]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(prefix, dims, values.len(), FLOAT, raw)
    }

    /// An integer constant (axes, shapes).
    pub(crate) fn constant_i64(&mut self, prefix: &str, dims: &[usize], values: &[i64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(prefix, dims, values.len(), INT64, raw)
    }

    /// A double-precision constant (colour constancy's estimate, computed in f64 as naevus does).
    pub(crate) fn constant_f64(&mut self, prefix: &str, dims: &[usize], values: &[f64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(prefix, dims, values.len(), DOUBLE, raw)
    }

    fn initializer(&mut self, prefix: &str, dims: &[usize], count: usize, data_type: i32, raw_data: Vec<u8>) -> String {
        assert_eq!(dims.iter().product::<usize>(), count, "{prefix}: {dims:?} against {count} values");
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto { dims: dims.iter().map(|&d| d as i64).collect(), data_type, name: name.clone(), raw_data });
        name
    }

    /// One node of `op` over `inputs`; returns its output's name.
    pub(crate) fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op.into(),
            attribute,
        });
        output
    }

    /// `activation` of `x`.
    pub(crate) fn activation(&mut self, x: &str, activation: Activation) -> String {
        match activation {
            Activation::Identity => x.to_string(),
            Activation::Relu => self.node("Relu", &[x], vec![]),
            Activation::Relu6 => {
                let (low, high) = (self.constant("zero", &[], &[0.0]), self.constant("six", &[], &[6.0]));
                self.node("Clip", &[x, &low, &high], vec![])
            }
        }
    }

    /// A convolution, with the batch norm after it folded in, then `activation`.
    pub(crate) fn conv_bn(&mut self, x: &str, conv: &Conv2d, bn: Option<&BatchNorm>, activation: Activation) -> Result<String, String> {
        let dims = conv.weight.val().dims();
        let mut weight = param(&conv.weight)?;
        let mut bias = conv.bias.as_ref().map(param).transpose()?.unwrap_or_else(|| vec![0.0; dims[0]]);
        if let Some(bn) = bn {
            let (gamma, beta) = (param(&bn.gamma)?, param(&bn.beta)?);
            let (mean, var) = (values(bn.running_mean.value())?, values(bn.running_var.value())?);
            let per_output = weight.len() / dims[0];
            for o in 0..dims[0] {
                let scale = gamma[o] / (var[o] + bn.epsilon as f32).sqrt();
                weight[o * per_output..(o + 1) * per_output].iter_mut().for_each(|w| *w *= scale);
                bias[o] = (bias[o] - mean[o]) * scale + beta[o];
            }
        }
        let w = self.constant("conv_weight", &dims, &weight);
        let b = self.constant("conv_bias", &[dims[0]], &bias);
        let attributes = vec![
            ints("kernel_shape", &conv.kernel_size),
            ints("strides", &conv.stride),
            ints("dilations", &conv.dilation),
            int("group", conv.groups as i64),
            ints("pads", &pads(&conv.padding)?),
        ];
        let y = self.node("Conv", &[x, &w, &b], attributes);
        Ok(self.activation(&y, activation))
    }

    /// Gives the node that writes `from` the output name `to` (a graph output's name).
    pub(crate) fn rename_output(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            for output in &mut node.output {
                if output == from {
                    *output = to.to_string();
                }
            }
            for input in &mut node.input {
                if input == from {
                    *input = to.to_string();
                }
            }
        }
    }

    pub(crate) fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    pub(crate) fn max_pool(&mut self, x: &str, pool: &MaxPool2d) -> Result<String, String> {
        let attributes = vec![
            ints("kernel_shape", &pool.kernel_size),
            ints("strides", &pool.stride),
            ints("dilations", &pool.dilation),
            ints("pads", &pads(&pool.padding)?),
            int("ceil_mode", i64::from(pool.ceil_mode)),
        ];
        Ok(self.node("MaxPool", &[x], attributes))
    }

    /// [batch, channels, h, w] -> [batch, channels]: the mean over the positions.
    pub(crate) fn global_average_pool(&mut self, x: &str) -> String {
        let pooled = self.node("GlobalAveragePool", &[x], vec![]);
        self.node("Flatten", &[&pooled], vec![int("axis", 1)])
    }

    /// x W + b, burn's Linear (weight [in, out]).
    pub(crate) fn linear(&mut self, x: &str, linear: &Linear) -> Result<String, String> {
        self.linear_bn(x, linear, None)
    }

    /// A linear layer with the batch norm after it (over its outputs) folded in.
    pub(crate) fn linear_bn(&mut self, x: &str, linear: &Linear, bn: Option<&BatchNorm>) -> Result<String, String> {
        let dims = linear.weight.val().dims();
        let mut weight = param(&linear.weight)?;
        let mut bias = linear.bias.as_ref().map(param).transpose()?.unwrap_or_else(|| vec![0.0; dims[1]]);
        if let Some(bn) = bn {
            let (gamma, beta) = (param(&bn.gamma)?, param(&bn.beta)?);
            let (mean, var) = (values(bn.running_mean.value())?, values(bn.running_var.value())?);
            for o in 0..dims[1] {
                let scale = gamma[o] / (var[o] + bn.epsilon as f32).sqrt();
                (0..dims[0]).for_each(|i| weight[i * dims[1] + o] *= scale);
                bias[o] = (bias[o] - mean[o]) * scale + beta[o];
            }
        }
        let w = self.constant("linear_weight", &dims, &weight);
        let b = self.constant("linear_bias", &[dims[1]], &bias);
        Ok(self.node("Gemm", &[x, &w, &b], vec![float("alpha", 1.0), float("beta", 1.0)]))
    }

    /// `inputs` joined along `axis`.
    pub(crate) fn concat(&mut self, inputs: &[&str], axis: i64) -> String {
        self.node("Concat", inputs, vec![int("axis", axis)])
    }

    /// Dimensions `start..end` of `x`'s shape, as an int64 tensor.
    pub(crate) fn shape(&mut self, x: &str, start: i64, end: i64) -> String {
        self.node("Shape", &[x], vec![int("start", start), int("end", end)])
    }

    /// `x` reshaped to `dims` (0: that dimension of `x`, -1: whatever is left).
    pub(crate) fn reshape(&mut self, x: &str, dims: &[i64]) -> String {
        let shape = self.constant_i64("shape", &[dims.len()], dims);
        self.node("Reshape", &[x, &shape], vec![])
    }

    /// `x` reshaped to the dimensions `parts` (int64 tensors, such as [`shape`](Self::shape)'s) give in turn.
    pub(crate) fn reshape_to(&mut self, x: &str, parts: &[&str]) -> String {
        let shape = self.concat(parts, 0);
        self.node("Reshape", &[x, &shape], vec![])
    }

    pub(crate) fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        self.node("Transpose", &[x], vec![ints("perm", perm)])
    }

    /// x * sigmoid(x).
    pub(crate) fn swish(&mut self, x: &str) -> String {
        let gate = self.node("Sigmoid", &[x], vec![]);
        self.node("Mul", &[x, &gate], vec![])
    }

    /// The sum of `x` over `axes`, kept as axes of size 1.
    pub(crate) fn reduce_sum(&mut self, x: &str, axes: &[i64]) -> String {
        let axes = self.constant_i64("axes", &[axes.len()], axes);
        self.node("ReduceSum", &[x, &axes], vec![int("keepdims", 1)])
    }

    /// Scores [batch, 1, h, w] -> their softmax over the h x w positions, the same shape.
    pub(crate) fn spatial_softmax(&mut self, scores: &str) -> String {
        let flat = self.node("Flatten", &[scores], vec![int("axis", 1)]);
        let softmax = self.node("Softmax", &[&flat], vec![int("axis", 1)]);
        let shape = self.node("Shape", &[scores], vec![]);
        self.node("Reshape", &[&softmax, &shape], vec![])
    }

    /// Maps [batch, c, h, w] weighted by `attention` [batch, 1, h, w] -> [batch, c]: the sum
    /// over the positions, or the mean with `mean`.
    pub(crate) fn attention_pool(&mut self, maps: &str, attention: &str, mean: bool) -> String {
        let weighted = self.node("Mul", &[maps, attention], vec![]);
        let pooled = if mean { self.node("ReduceMean", &[&weighted], vec![ints("axes", &[2, 3]), int("keepdims", 1)]) } else { self.reduce_sum(&weighted, &[2, 3]) };
        self.node("Flatten", &[&pooled], vec![int("axis", 1)])
    }

    /// `x` [batch, c, h, w] resized bilinearly to the h x w of `like` (half-pixel centres,
    /// edges clamped: PyTorch's align_corners=False, as `attention::bilinear_resize`).
    pub(crate) fn resize_like(&mut self, x: &str, like: &str) -> String {
        let leading = self.node("Shape", &[x], vec![int("end", 2)]);
        let spatial = self.node("Shape", &[like], vec![int("start", 2)]);
        let sizes = self.node("Concat", &[&leading, &spatial], vec![int("axis", 0)]);
        let attributes = vec![string("mode", "linear"), string("coordinate_transformation_mode", "half_pixel")];
        self.node("Resize", &[x, "", "", &sizes], attributes)
    }
}
