//! Named layers: the points of the forward pass whose feature maps explanations read.
//!
//! Every backbone passes each stage output, and ChipNet its re-stacked chip grid, through a
//! [`LayerHook`] before the deeper layers use it. An ordinary forward pass hooks in
//! [`unchanged`]; Grad-CAM swaps one map for a leaf that records its gradient, which cuts the
//! network at that layer without a second copy of any architecture's forward code.

use burn::prelude::*;

/// A point of the forward pass whose output an explanation can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The backbone stage output with this index, shallow to deep, as `stages` lists them.
    Stage(usize),
    /// ChipNet's grid of chip embeddings, [batch, channels, n, n].
    ChipGrid,
}

/// Sees a layer's output on its way through the network and returns the map the network
/// goes on with.
pub type LayerHook<'a> = &'a dyn Fn(Layer, Tensor<4>) -> Tensor<4>;

/// The hook of an ordinary forward pass: every map passes as it is.
pub fn unchanged(_layer: Layer, map: Tensor<4>) -> Tensor<4> {
    map
}

/// Name of [`Layer::ChipGrid`].
pub const CHIP_GRID: &str = "chip-grid";

/// A layer name the model does not have.
#[derive(Debug, thiserror::Error)]
#[error("model {model} has no layer \"{name}\"; its layers: {known}")]
pub struct UnknownLayer {
    pub model: String,
    pub name: String,
    pub known: String,
}
