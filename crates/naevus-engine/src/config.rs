//! The training recipe (defined with its keys in naevus-run), and the checks that need the
//! model registry.

use anyhow::{Result, bail};

pub use naevus_run::recipe::{OptimizerKind, SamplingKind, TrainConfig};

/// Rejects recipes that cannot train: the recipe's own checks, and the model's (it must be
/// in the registry, and have ImageNet weights when `pretrained` asks for them).
pub fn check(config: &TrainConfig) -> Result<()> {
    let spec = naevus_models::spec(&config.model)?;
    if config.pretrained && spec.pretrained.is_none() {
        bail!("no ImageNet weights can be had for {}; drop `pretrained` or choose a model that has them (`naevus models`)", config.model);
    }
    config.validate()?;
    Ok(())
}
