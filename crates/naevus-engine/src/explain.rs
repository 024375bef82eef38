//! Where the network looks: Grad-CAM, Grad-CAM++ and the learned attention maps, as one
//! map per image at the input's resolution with values in [0, 1].
//!
//! Grad-CAM (Selvaraju et al. 2017) weights each channel of a layer's feature map A by the
//! spatial mean of the melanoma logit's gradient there and keeps the positive part of the
//! weighted sum. Grad-CAM++ (Chattopadhay et al. 2018) weights each position's positive
//! gradient by alpha = g^2 / (2 g^2 + sum(A) g^3), the closed form its authors derive for
//! the exponential of the score of a piecewise-linear network, so that several separate
//! regions can all show.
//!
//! The gradient is read by cutting the network at the layer (see `naevus_models::layers`):
//! the network runs in inference mode without autodiff up to the layer, the layer's output
//! becomes a fresh gradient-recording leaf, and only the layers above it are differentiated.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::relu;
use naevus_metrics::min_max_normalise;
use naevus_models::attention::bilinear_resize;
use naevus_models::{Layer, ModelSpec, Network};

use crate::input::InputSpec;
use crate::loss::Target;

/// How a map is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The model's own learned attention maps (models with attention only).
    Attention,
    GradCam,
    GradCamPlusPlus,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Attention => "attention",
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "attention" => Ok(Method::Attention),
            "gradcam" | "grad-cam" => Ok(Method::GradCam),
            "gradcam++" | "grad-cam++" => Ok(Method::GradCamPlusPlus),
            other => bail!("unknown explanation method \"{other}\"; choose attention, gradcam or gradcam++"),
        }
    }
}

/// One map of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SaliencyMap {
    /// The layer it was read at (for attention: the layer the attention weights).
    pub layer: String,
    pub height: usize,
    pub width: usize,
    /// The map's own cells (rows, columns) before it was resized to the input: what it can
    /// tell apart. Grids of [`COARSE_GRID`] cells a side or fewer are resized as blocks, so
    /// their cells stay visible instead of blurring into a blob.
    pub grid: (usize, usize),
    /// Row-major, min-max normalised to [0, 1]; all zeros when the raw map was constant.
    pub values: Vec<f32>,
}

/// What the network says about one image and where it looked.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Melanoma probability of the image.
    pub probability: f32,
    /// One map per layer explained: one for Grad-CAM, one per attention block for attention.
    pub maps: Vec<SaliencyMap>,
}

/// Maps with at most this many cells a side are drawn as cells (see [`SaliencyMap::grid`]).
pub const COARSE_GRID: usize = 7;

/// `map` [batch, 1, h, w] resized to [batch, 1, height, width], each output pixel taking the
/// cell it falls in.
fn nearest_resize(map: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let [batch, channels, rows, columns] = map.dims();
    let row_index: Vec<i64> = (0..height).map(|y| (y * rows / height) as i64).collect();
    let column_index: Vec<i64> = (0..width).map(|x| (x * columns / width) as i64).collect();
    let device = map.device();
    let rows_picked = map.select(2, Tensor::<1, Int>::from_data(TensorData::new(row_index, [height]), &device));
    let picked = rows_picked.select(3, Tensor::<1, Int>::from_data(TensorData::new(column_index, [width]), &device));
    debug_assert_eq!(picked.dims(), [batch, channels, height, width]);
    picked
}

/// Images explained per forward pass by [`explain_images`].
const BATCH: usize = 8;

/// Explains square RGB images (HWC u8 at the input's side, as
/// [`crate::TrainedRun::load_images`] gives them), made inputs as `input` says, in batches on
/// `device`; see [`explain`].
pub fn explain_images(
    network: &Network,
    spec: &ModelSpec,
    input: &InputSpec,
    metadata: Option<&[f32]>,
    images: &[&[u8]],
    device: &Device,
    method: Method,
    layer: Option<&str>,
) -> Result<Vec<Explanation>> {
    let mut explanations = Vec::with_capacity(images.len());
    for chunk in images.chunks(BATCH) {
        let batch = input.images_tensor(chunk, 0, device);
        explanations.extend(explain(network, spec, input.target, metadata, batch, method, layer)?);
    }
    Ok(explanations)
}

/// Explains each of `images` (normalised, [batch, 3, h, w], on the network's device) with
/// `method`, at `layer` when given, else at the model's default: its `explain_layer` for
/// Grad-CAM, every attention map for attention. `target` is the run's, which fixes the
/// melanoma logit; `metadata` is the one row of metadata features every image is explained
/// with, for networks with a metadata branch.
pub fn explain(
    network: &Network,
    spec: &ModelSpec,
    target: Target,
    metadata: Option<&[f32]>,
    images: Tensor<4>,
    method: Method,
    layer: Option<&str>,
) -> Result<Vec<Explanation>> {
    // BatchNorm and dropout in inference mode, parameters and images without autodiff: the
    // cut alone brings autodiff in.
    let network = network.valid();
    let images = images.without_autodiff();
    let [batch, _, height, width] = images.dims();
    let metadata = metadata.map(|row| {
        let values: Vec<f32> = (0..batch).flat_map(|_| row.iter().copied()).collect();
        Tensor::<2>::from_data(TensorData::new(values, [batch, row.len()]), &images.device())
    });
    let (probabilities, raw_maps) = match method {
        Method::GradCam | Method::GradCamPlusPlus => {
            let name = layer.unwrap_or(spec.explain_layer_at(height as u32));
            let cut_at = spec.layer(name)?;
            let (probabilities, map) = class_activation_map(&network, images, metadata, cut_at, target, method)?;
            (probabilities, vec![(name.to_string(), map)])
        }
        Method::Attention => attention_maps(&network, spec, images, metadata, target, layer)?,
    };

    let probabilities = probabilities.into_data().try_to_vec_as::<f32>().map_err(|e| anyhow!("reading probabilities: {e:?}"))?;
    let mut explanations: Vec<Explanation> =
        probabilities.into_iter().map(|probability| Explanation { probability, maps: Vec::new() }).collect();
    for (name, map) in raw_maps {
        let [_, _, rows, columns] = map.dims();
        let resized = if rows.max(columns) <= COARSE_GRID { nearest_resize(map, height, width) } else { bilinear_resize(map, height, width) };
        let pixels = resized.into_data().try_to_vec_as::<f32>().map_err(|e| anyhow!("reading the {name} maps: {e:?}"))?;
        for (explanation, image_pixels) in explanations.iter_mut().zip(pixels.chunks_exact(height * width)) {
            let mut values = image_pixels.to_vec();
            min_max_normalise(&mut values);
            explanation.maps.push(SaliencyMap { layer: name.clone(), height, width, grid: (rows, columns), values });
        }
    }
    Ok(explanations)
}

/// The model's own attention maps, all or the one over `layer`: (probabilities [batch],
/// (layer name, map [batch, 1, h, w]) per attention block).
fn attention_maps(
    network: &Network,
    spec: &ModelSpec,
    images: Tensor<4>,
    metadata: Option<Tensor<2>>,
    target: Target,
    layer: Option<&str>,
) -> Result<(Tensor<1>, Vec<(String, Tensor<4>)>)> {
    let names = spec.attention_layers();
    if names.is_empty() {
        let with_attention: Vec<&str> =
            naevus_models::MODELS.iter().filter(|m| !m.attention_layers().is_empty()).map(|m| m.name).collect();
        bail!(
            "{} has no learned attention; models with attention maps: {}. Use --method gradcam or gradcam++",
            spec.name,
            with_attention.join(", ")
        );
    }
    if let Some(wanted) = layer
        && !names.contains(&wanted)
    {
        bail!("{} has attention maps over {}, not over \"{wanted}\"", spec.name, names.join(", "));
    }
    let output = network.forward_with_metadata(images, metadata);
    let maps = names
        .into_iter()
        .zip(output.attention)
        .filter(|(name, _)| layer.is_none_or(|wanted| wanted == *name))
        .map(|(name, map)| (name.to_string(), map))
        .collect();
    Ok((target.melanoma_probability(output.logits), maps))
}

/// Grad-CAM or Grad-CAM++ at `layer`: (probabilities [batch], raw maps [batch, 1, h, w] at
/// the layer's resolution).
fn class_activation_map(
    network: &Network,
    images: Tensor<4>,
    metadata: Option<Tensor<2>>,
    layer: Layer,
    target: Target,
    method: Method,
) -> Result<(Tensor<1>, Tensor<4>)> {
    let LayerGradient { activations, gradient, probabilities } = layer_gradient(network, images, metadata, layer, target)?;
    let weights = if method == Method::GradCamPlusPlus {
        grad_cam_plus_plus_weights(activations.clone(), gradient)
    } else {
        grad_cam_weights(gradient)
    };
    // Positive evidence only: ReLU of the weighted channel sum.
    let map = relu((activations * weights).sum_dim(1));
    Ok((probabilities, map))
}

/// A layer's output and the melanoma logit's gradient there, [batch, channels, h, w] each,
/// with the melanoma probabilities [batch].
struct LayerGradient {
    activations: Tensor<4>,
    gradient: Tensor<4>,
    probabilities: Tensor<1>,
}

/// Runs the network cut at `layer` and back-propagates the melanoma logit to the cut.
fn layer_gradient(network: &Network, images: Tensor<4>, metadata: Option<Tensor<2>>, layer: Layer, target: Target) -> Result<LayerGradient> {
    let leaf: RefCell<Option<Tensor<4>>> = RefCell::new(None);
    let cut = |seen: Layer, map: Tensor<4>| {
        if seen != layer {
            return map;
        }
        // Same values, no history: the layers below take no part in the backward pass, and
        // backward() keeps this tensor's gradient.
        let cut_map = map.detach().autodiff().require_grad();
        *leaf.borrow_mut() = Some(cut_map.clone());
        cut_map
    };
    let output = network.forward_hooked(images, metadata, &cut);
    let activations = leaf.take().with_context(|| format!("the forward pass never reached layer {layer:?}"))?;

    let logits = output.logits;
    let [batch, _] = logits.dims();
    // The melanoma class's own logit (pre-softmax, as Grad-CAM prescribes).
    let melanoma = target.melanoma_column();
    // Images do not interact in inference mode, so one backward pass of the summed logits
    // gives every image its own gradient.
    let score = logits.clone().slice([0..batch, melanoma..melanoma + 1]).sum();
    let gradients = score.backward();
    let gradient = activations.grad(&gradients).context("the melanoma logit does not depend on the explained layer")?;
    Ok(LayerGradient {
        activations: activations.without_autodiff(),
        gradient,
        probabilities: target.melanoma_probability(logits.without_autodiff()),
    })
}

/// Grad-CAM channel weights: the spatial mean of the gradient, [batch, channels, 1, 1].
fn grad_cam_weights(gradient: Tensor<4>) -> Tensor<4> {
    gradient.mean_dim(3).mean_dim(2)
}

/// Grad-CAM++ channel weights, [batch, channels, 1, 1]: the sum over positions of
/// alpha * ReLU(g), alpha = g^2 / (2 g^2 + sum(A) g^3), and alpha = 0 where that
/// denominator vanishes (there g = 0, so the position adds nothing anyway).
fn grad_cam_plus_plus_weights(activations: Tensor<4>, gradient: Tensor<4>) -> Tensor<4> {
    let activation_sums = activations.sum_dim(3).sum_dim(2);
    let squared = gradient.clone() * gradient.clone();
    let cubed = squared.clone() * gradient.clone();
    let denominator = squared.clone().mul_scalar(2.0) + activation_sums * cubed;
    let vanishing = denominator.clone().equal_elem(0.0);
    let alpha = (squared / denominator.mask_fill(vanishing.clone(), 1.0)).mask_fill(vanishing, 0.0);
    (alpha * relu(gradient)).sum_dim(3).sum_dim(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossKind;

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn grad_cam_weights_are_spatial_mean_gradients() {
        // Two channels of a 1x2 map: gradients (1, 3) and (-2, 0).
        let gradient = tensor(vec![1.0, 3.0, -2.0, 0.0], [1, 2, 1, 2]);
        assert_eq!(values(grad_cam_weights(gradient)), vec![2.0, -1.0]);
    }

    #[test]
    fn grad_cam_plus_plus_weights_follow_the_closed_form() {
        // One channel, positions with activations (1, 3) (sum 4) and gradients (0.5, -1):
        // alpha_0 = 0.25 / (0.5 + 4 * 0.125) = 0.25; the negative gradient adds nothing.
        let activations = tensor(vec![1.0, 3.0], [1, 1, 1, 2]);
        let gradient = tensor(vec![0.5, -1.0], [1, 1, 1, 2]);
        let weights = values(grad_cam_plus_plus_weights(activations, gradient));
        assert!((weights[0] - 0.25 * 0.5).abs() < 1e-6, "{weights:?}");
        // A zero gradient everywhere is a zero weight, not NaN.
        let weights = values(grad_cam_plus_plus_weights(tensor(vec![1.0, 3.0], [1, 1, 1, 2]), tensor(vec![0.0, 0.0], [1, 1, 1, 2])));
        assert_eq!(weights, vec![0.0]);
    }

    /// The gradient read at the cut is the melanoma logit's derivative with respect to the
    /// layer's output: compare it with finite differences, nudging single entries of the
    /// layer through a hook.
    #[test]
    fn the_gradient_at_the_cut_matches_finite_differences() {
        let device = Device::flex();
        device.seed(9);
        let model = naevus_models::spec("small-cnn").unwrap();
        let network = model.build(2, &device).valid();
        let pixels: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let images = tensor(pixels, [1, 3, 32, 32]);
        let layer = model.layer("block2").unwrap();
        let LayerGradient { gradient, .. } = layer_gradient(&network, images.clone(), None, layer, Target::binary(LossKind::CrossEntropy)).unwrap();
        let gradient = values(gradient);

        let melanoma_logit_with = |index: usize, delta: f32| {
            let nudge = |seen: Layer, map: Tensor<4>| {
                if seen != layer {
                    return map;
                }
                let mut offset = vec![0.0; map.shape().num_elements()];
                offset[index] = delta;
                let shape = map.dims();
                map + tensor(offset, shape)
            };
            let logits = network.forward_hooked(images.clone(), None, &nudge).logits;
            f64::from(logits.into_data().try_to_vec::<f32>().unwrap()[1])
        };
        // The entries with the largest gradients, away from ReLU and max-pool kinks.
        let mut order: Vec<usize> = (0..gradient.len()).collect();
        order.sort_by(|&a, &b| gradient[b].abs().total_cmp(&gradient[a].abs()));
        let delta = 1e-2;
        for &index in &order[..5] {
            let finite = (melanoma_logit_with(index, delta) - melanoma_logit_with(index, -delta)) / (2.0 * f64::from(delta));
            let analytic = f64::from(gradient[index]);
            assert!(analytic.abs() > 1e-6, "entry {index}: zero gradient");
            assert!((finite - analytic).abs() <= 0.02 * analytic.abs(), "entry {index}: finite {finite} vs gradient {analytic}");
        }
    }

    #[test]
    fn methods_parse_by_name() {
        for method in [Method::Attention, Method::GradCam, Method::GradCamPlusPlus] {
            assert_eq!(method.name().parse::<Method>().unwrap(), method);
        }
        assert!("lime".parse::<Method>().unwrap_err().to_string().contains("gradcam++"));
    }
}
