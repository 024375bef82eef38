//! ONNX export: a network as an ONNX model (opset 17) that ONNX Runtime, TensorRT or Triton
//! can run without naevus. Its input is `image`, float32 [batch, 3, size, size] RGB values
//! 0-255 (the batch axis dynamic); the normalisation is the graph's first two nodes, batch
//! norms are folded into their convolutions, and its output is `logits` [batch, outputs].
//! burn has no ONNX writer, so this is naevus's own over the schema in [`proto`]. Each model
//! file's `to_onnx` walks its forward pass; what a file does not express (attention and chip
//! heads, metadata branches, greyscale input) is refused with the reason.

mod graph;
pub mod proto;

pub(crate) use graph::Graph;
use prost::Message;
use proto::{Dimension, DimensionValue, FLOAT, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto};

use crate::network::Network;

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 (ONNX 1.10+).
pub const IR_VERSION: i64 = 8;

/// What the exported model expects of its input.
#[derive(Debug, Clone, Copy)]
pub struct OnnxInput {
    /// Side of the square input, in pixels.
    pub image_size: u32,
    /// The normalisation the network trained with, on [0, 1] values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
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

/// The graph's input and its normalisation: (x / 255 - mean) / std = x * scale + shift, per
/// channel. Returns the normalised tensor's name.
fn normalised_input(graph: &mut Graph, input: &OnnxInput) -> String {
    let scale: Vec<f32> = input.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
    let shift: Vec<f32> = input.mean.iter().zip(&input.std).map(|(m, s)| -m / s).collect();
    let scale = graph.constant("normalise_scale", &[1, 3, 1, 1], &scale);
    let shift = graph.constant("normalise_shift", &[1, 3, 1, 1], &shift);
    let scaled = graph.node("Mul", &["image", &scale], vec![]);
    graph.node("Add", &[&scaled, &shift], vec![])
}

/// The model file's bytes of `graph`, with the `image` input and `outputs` ([batch, width]).
fn model_bytes(graph: Graph, input: &OnnxInput, outputs: &[(&str, usize)], name: &str, doc: String) -> Vec<u8> {
    let side = i64::from(input.image_size);
    let batch = || DimensionValue::DimParam("batch".into());
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "naevus".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(GraphProto {
            node: graph.nodes,
            name: name.into(),
            initializer: graph.initializers,
            input: vec![tensor_value("image", vec![batch(), DimensionValue::DimValue(3), DimensionValue::DimValue(side), DimensionValue::DimValue(side)])],
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
    let normalised = normalised_input(&mut graph, input);
    let logits = network.to_onnx(&mut graph, &normalised)?;
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
    let normalised = normalised_input(&mut graph, input);
    let mut folds = Vec::with_capacity(networks.len());
    for network in networks {
        let logits = network.to_onnx(&mut graph, &normalised)?;
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
        let input = OnnxInput { image_size: 32, mean: [0.5; 3], std: [0.25; 3] };
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
    fn heads_it_cannot_express_are_refused_by_name() {
        let device = Device::flex();
        let options = HeadOptions { num_outputs: 1, metadata_features: 2, dropout_samples: 1 };
        let network = crate::spec("small-cnn").unwrap().build_with(options, &device).valid();
        let input = OnnxInput { image_size: 32, mean: [0.5; 3], std: [0.25; 3] };
        assert!(to_onnx(&network, &input, 1, "m").unwrap_err().contains("metadata branch"));
    }

    /// Writes, for each architecture ONNX can express, model.onnx, a fixed input and
    /// naevus's logits of it into NAEVUS_ONNX_CHECK_DIR, for a check with ONNX Runtime.
    #[test]
    #[ignore = "writes files for scripts/onnx_check.py; run with NAEVUS_ONNX_CHECK_DIR set"]
    fn write_onnx_check_files() {
        let Some(dir) = std::env::var_os("NAEVUS_ONNX_CHECK_DIR") else { return };
        let dir = std::path::PathBuf::from(dir);
        let device = Device::flex();
        let (side, batch) = (64usize, 2usize);
        let pixels: Vec<f32> = (0..batch * 3 * side * side).map(|i| ((i * 37) % 256) as f32).collect();
        for name in ["small-cnn", "resnet18", "resnet50", "efficientnet-lite0", "efficientnet-lite2", "mobilenet-v2"] {
            let network = crate::spec(name).unwrap().build_with(HeadOptions { num_outputs: 1, metadata_features: 0, dropout_samples: 1 }, &device).valid();
            let input = OnnxInput { image_size: side as u32, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
            let images = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [batch, 3, side, side]), &device);
            let mean = Tensor::<1>::from_floats(input.mean, &device).reshape([1, 3, 1, 1]);
            let std = Tensor::<1>::from_floats(input.std, &device).reshape([1, 3, 1, 1]);
            let logits = network.forward((images / 255.0 - mean) / std).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("model.onnx"), to_onnx(&network, &input, 1, name).unwrap()).unwrap();
            std::fs::write(dir.join(name).join("input.f32"), pixels.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
            std::fs::write(dir.join(name).join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
        }
    }
}
