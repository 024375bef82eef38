//! ONNX export: a network as an ONNX model (opset 17) that ONNX Runtime, TensorRT or Triton
//! can run without naevus. Its input is `image`, float32 [batch, 3, size, size] RGB values
//! 0-255 (the batch axis dynamic), and for a network with a metadata branch `metadata`,
//! float32 [batch, features]; the colour constancy (when the run has one) and the
//! normalisation are the graph's first nodes, batch norms are folded into the convolutions
//! and linear layers before them, and its output is `logits` [batch, outputs]. burn has no
//! ONNX writer, so this is naevus's own over the schema in [`proto`]. Each model file's
//! `to_onnx` walks its forward pass.

mod graph;
pub mod proto;

pub(crate) use graph::Graph;
use prost::Message;
use naevus_data::ColourConstancy;
use proto::{DOUBLE, Dimension, DimensionValue, FLOAT, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto};

use crate::network::Network;

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 (ONNX 1.10+).
pub const IR_VERSION: i64 = 8;

/// What the exported model expects of its input, and how it prepares it.
#[derive(Debug, Clone)]
pub struct OnnxInput {
    /// Side of the square input, in pixels.
    pub image_size: u32,
    /// The normalisation the network trained with, on [0, 1] values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The colour correction the run applies to its input-size images before normalising.
    pub colour_constancy: ColourConstancy,
    /// The names of the metadata features, in column order; empty for an image-only network.
    pub metadata: Vec<String>,
}

/// The graph's inputs: `image`, and `metadata` when the network takes it.
struct Inputs {
    image: String,
    metadata: Option<String>,
}

fn tensor_value(name: &str, dims: Vec<DimensionValue>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim: dims.into_iter().map(|d| Dimension { value: Some(d) }).collect() }),
            }),
        }),
    }
}

/// The graph's inputs, the image colour-corrected and normalised: (x / 255 - mean) / std = x
/// * scale + shift, per channel.
fn prepared_inputs(graph: &mut Graph, network: &Network, input: &OnnxInput) -> Result<Inputs, String> {
    if network.metadata_features() != input.metadata.len() {
        return Err(format!("the network takes {} metadata features, but {} are named", network.metadata_features(), input.metadata.len()));
    }
    let image = colour_corrected(graph, "image", input.colour_constancy);
    let scale: Vec<f32> = input.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
    let shift: Vec<f32> = input.mean.iter().zip(&input.std).map(|(m, s)| -m / s).collect();
    let scale = graph.constant("normalise_scale", &[1, 3, 1, 1], &scale);
    let shift = graph.constant("normalise_shift", &[1, 3, 1, 1], &shift);
    let scaled = graph.node("Mul", &[&image, &scale], vec![]);
    let image = graph.node("Add", &[&scaled, &shift], vec![]);
    Ok(Inputs { image, metadata: (!input.metadata.is_empty()).then(|| "metadata".to_string()) })
}

/// `naevus_data::ColourConstancy::apply` as nodes over RGB values 0-255 [batch, 3, h, w]: each
/// channel's Minkowski p-mean e_c of v / 255 (in f64, as naevus computes it), the gain
/// |e| / (e_c sqrt 3) (1 where e_c is 0), and the values times their gain, rounded and
/// clamped to 0-255.
fn colour_corrected(graph: &mut Graph, image: &str, colour: ColourConstancy) -> String {
    let Some(p) = colour.norm() else { return image.to_string() };
    let p = f64::from(p);
    let values = graph.node("Cast", &[image], vec![graph::int("to", i64::from(DOUBLE))]);
    let full = graph.constant_f64("full_scale", &[], &[255.0]);
    let unit = graph.node("Div", &[&values, &full], vec![]);
    let exponent = graph.constant_f64("p", &[], &[p]);
    let powered = graph.node("Pow", &[&unit, &exponent], vec![]);
    let mean = graph.node("ReduceMean", &[&powered], vec![graph::ints("axes", &[2, 3]), graph::int("keepdims", 1)]);
    let root = graph.constant_f64("inverse_p", &[], &[1.0 / p]);
    let estimate = graph.node("Pow", &[&mean, &root], vec![]);
    let squares = graph.node("Mul", &[&estimate, &estimate], vec![]);
    let sum = graph.reduce_sum(&squares, &[1]);
    let length = graph.node("Sqrt", &[&sum], vec![]);
    let sqrt3 = graph.constant_f64("sqrt3", &[], &[3f64.sqrt()]);
    let denominator = graph.node("Mul", &[&estimate, &sqrt3], vec![]);
    let ratio = graph.node("Div", &[&length, &denominator], vec![]);
    let zero = graph.constant_f64("zero", &[], &[0.0]);
    let lit = graph.node("Greater", &[&estimate, &zero], vec![]);
    let one = graph.constant_f64("one", &[], &[1.0]);
    let gain = graph.node("Where", &[&lit, &ratio, &one], vec![]);
    let gain = graph.node("Cast", &[&gain], vec![graph::int("to", i64::from(FLOAT))]);
    let scaled = graph.node("Mul", &[image, &gain], vec![]);
    let rounded = graph.node("Round", &[&scaled], vec![]);
    let (low, high) = (graph.constant("zero", &[], &[0.0]), graph.constant("full_scale", &[], &[255.0]));
    graph.node("Clip", &[&rounded, &low, &high], vec![])
}

/// The model file's bytes of `graph`, with the `image` input (and `metadata`, when the
/// network takes it) and `outputs` ([batch, width]).
fn model_bytes(graph: Graph, input: &OnnxInput, outputs: &[(&str, usize)], name: &str, doc: String) -> Vec<u8> {
    let side = i64::from(input.image_size);
    let batch = || DimensionValue::DimParam("batch".into());
    let mut inputs = vec![tensor_value("image", vec![batch(), DimensionValue::DimValue(3), DimensionValue::DimValue(side), DimensionValue::DimValue(side)])];
    if !input.metadata.is_empty() {
        inputs.push(tensor_value("metadata", vec![batch(), DimensionValue::DimValue(input.metadata.len() as i64)]));
    }
    let doc = match input.metadata.is_empty() {
        true => doc,
        false => format!("{doc}; metadata columns: {}", input.metadata.join(", ")),
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "naevus".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(GraphProto {
            node: graph.nodes,
            name: name.into(),
            initializer: graph.initializers,
            input: inputs,
            output: outputs.iter().map(|(output, width)| tensor_value(output, vec![batch(), DimensionValue::DimValue(*width as i64)])).collect(),
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
    };
    model.encode_to_vec()
}

/// `network` (in inference mode) as the bytes of an .onnx file with one output, `logits`
/// [batch, outputs], or why it cannot be expressed.
pub fn to_onnx(network: &Network, input: &OnnxInput, outputs: usize, name: &str) -> Result<Vec<u8>, String> {
    let mut graph = Graph::default();
    let inputs = prepared_inputs(&mut graph, network, input)?;
    let logits = network.to_onnx(&mut graph, &inputs.image, input.image_size as usize, inputs.metadata.as_deref())?;
    graph.rename_output(&logits, "logits");
    Ok(model_bytes(graph, input, &[("logits", outputs)], name, format!("{name}: RGB values 0-255 in, logits out")))
}

/// How a model's folds become its one probability, as naevus gives it.
#[derive(Debug, Clone, Copy)]
pub struct FoldMean {
    /// Which output is melanoma's (0 for a single logit).
    pub melanoma_column: usize,
    /// The calibration's temperature and the clamp of probabilities before their logit is
    /// taken, when the model has one.
    pub temperature: Option<(f64, f64)>,
}

/// A multi-fold model's `networks` as one graph: each fold's probabilities (sigmoid of a single
/// logit, softmax of several) averaged into `probabilities` [batch, outputs], and the melanoma
/// probability on the model's one scale (temperature-scaled when it has a calibration) as
/// `melanoma` [batch, 1]: the numbers `naevus predict` writes.
pub fn to_onnx_folds(networks: &[Network], input: &OnnxInput, outputs: usize, mean: &FoldMean, name: &str) -> Result<Vec<u8>, String> {
    let mut graph = Graph::default();
    let first = networks.first().ok_or("a model without folds")?;
    let inputs = prepared_inputs(&mut graph, first, input)?;
    let mut folds = Vec::with_capacity(networks.len());
    for network in networks {
        let logits = network.to_onnx(&mut graph, &inputs.image, input.image_size as usize, inputs.metadata.as_deref())?;
        folds.push(if outputs == 1 { graph.node("Sigmoid", &[&logits], vec![]) } else { graph.node("Softmax", &[&logits], vec![graph::int("axis", 1)]) });
    }
    let fold_refs: Vec<&str> = folds.iter().map(String::as_str).collect();
    let probabilities = graph.node("Mean", &fold_refs, vec![]);
    // The melanoma column as a [batch, 1] product with a one-hot column.
    let one_hot: Vec<f32> = (0..outputs).map(|c| if c == mean.melanoma_column { 1.0 } else { 0.0 }).collect();
    let pick = graph.constant("melanoma_column", &[outputs, 1], &one_hot);
    let mut melanoma = graph.node("MatMul", &[&probabilities, &pick], vec![]);
    if let Some((temperature, eps)) = mean.temperature {
        // sigmoid(logit(clamp(p)) / T), as the calibration applies it.
        let (low, high) = (graph.constant("clamp_low", &[], &[eps as f32]), graph.constant("clamp_high", &[], &[(1.0 - eps) as f32]));
        let p = graph.node("Clip", &[&melanoma, &low, &high], vec![]);
        let one = graph.constant("one", &[], &[1.0]);
        let q = graph.node("Sub", &[&one, &p], vec![]);
        let ratio = graph.node("Div", &[&p, &q], vec![]);
        let logit = graph.node("Log", &[&ratio], vec![]);
        let t = graph.constant("temperature", &[], &[temperature as f32]);
        let scaled = graph.node("Div", &[&logit, &t], vec![]);
        melanoma = graph.node("Sigmoid", &[&scaled], vec![]);
    }
    graph.rename_output(&probabilities, "probabilities");
    graph.rename_output(&melanoma, "melanoma");
    let doc = format!("{name}: RGB values 0-255 in; the mean of {} folds' probabilities and the melanoma probability out", networks.len());
    Ok(model_bytes(graph, input, &[("probabilities", outputs), ("melanoma", 1)], name, doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeadOptions;
    use burn::prelude::*;

    #[test]
    fn a_small_cnn_becomes_a_graph_that_reads_back() {
        let device = Device::flex();
        let spec = crate::spec("small-cnn").unwrap();
        let network = spec.build_with(HeadOptions { num_outputs: 1, metadata_features: 0, dropout_samples: 1 }, &device).valid();
        let input = OnnxInput { image_size: 32, mean: [0.5; 3], std: [0.25; 3], colour_constancy: ColourConstancy::None, metadata: Vec::new() };
        let bytes = to_onnx(&network, &input, 1, "small-cnn").unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        // Normalisation, three conv-ReLU-pool blocks (BN folded), GAP, hidden FC and ReLU, the FC.
        assert_eq!(ops.iter().filter(|op| **op == "Conv").count(), 3);
        assert!(!ops.contains(&"BatchNormalization"));
        assert_eq!(ops.first(), Some(&"Mul"));
        assert_eq!(graph.node.last().unwrap().output, vec!["logits".to_string()]);
        assert_eq!(model.opset_import[0].version, OPSET);
    }

    #[test]
    fn a_metadata_branch_is_a_second_input_whose_columns_are_named() {
        let device = Device::flex();
        let options = HeadOptions { num_outputs: 1, metadata_features: 2, dropout_samples: 1 };
        let network = crate::spec("small-cnn").unwrap().build_with(options, &device).valid();
        let mut input = OnnxInput { image_size: 32, mean: [0.5; 3], std: [0.25; 3], colour_constancy: ColourConstancy::None, metadata: Vec::new() };
        assert!(to_onnx(&network, &input, 1, "m").unwrap_err().contains("takes 2 metadata features, but 0 are named"));
        input.metadata = vec!["sex".into(), "age_over_90".into()];
        let model = ModelProto::decode(to_onnx(&network, &input, 1, "m").unwrap().as_slice()).unwrap();
        let inputs: Vec<String> = model.graph.unwrap().input.into_iter().map(|i| i.name).collect();
        assert_eq!(inputs, ["image", "metadata"]);
        assert!(model.doc_string.ends_with("metadata columns: sex, age_over_90"), "{}", model.doc_string);
    }
}
