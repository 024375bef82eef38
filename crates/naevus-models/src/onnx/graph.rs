//! An ONNX graph built layer by layer, as the model files' `to_onnx` methods walk their
//! forward pass: each call adds the nodes of one layer and returns the name of its output.
//! Batch norms are folded into the convolution before them, so an inference runtime sees
//! one convolution per conv-BN pair.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;

use super::proto::{ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS, AttributeProto, FLOAT, NodeProto, TensorProto};
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

pub(super) fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.iter().map(|&v| v as i64).collect(), r#type: ATTRIBUTE_INTS, ..Default::default() }
}

pub(super) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: ATTRIBUTE_INT, ..Default::default() }
}

pub(super) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: ATTRIBUTE_FLOAT, ..Default::default() }
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
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{prefix}: {dims:?} against {} values", values.len());
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
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
        let dims = linear.weight.val().dims();
        let w = self.constant("linear_weight", &dims, &param(&linear.weight)?);
        let bias = linear.bias.as_ref().map(param).transpose()?.unwrap_or_else(|| vec![0.0; dims[1]]);
        let b = self.constant("linear_bias", &[dims[1]], &bias);
        Ok(self.node("Gemm", &[x, &w, &b], vec![float("alpha", 1.0), float("beta", 1.0)]))
    }
}
