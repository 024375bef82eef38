//! naevus architectures as burn modules, and the registry that names them.
//!
//! Models know nothing of files or datasets: they map normalised image tensors to logits
//! (and attention maps where the architecture has them).

pub mod attention;
pub mod backbone;
pub mod efficientnet;
pub mod heads;
pub mod layers;
pub mod mobilenet_v2;
pub mod registry;
pub mod resnet;
pub mod small_cnn;
pub mod vgg;

pub use layers::{Layer, LayerHook, UnknownLayer};
pub use registry::{HeadOptions, MODELS, ModelSpec, Network, Output, PretrainedWeights, UnknownModel, spec};
