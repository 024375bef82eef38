//! Choosing the compute device at run time among the backends compiled in.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// The backends this binary was built with, in the order they are preferred.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "tch") {
        names.push("tch");
    }
    if cfg!(feature = "vulkan") {
        names.push("vulkan");
    }
    names
}

/// The device named `name` ("flex", "tch", "vulkan"), or a clear error when that backend
/// was not compiled in.
pub fn select_device(name: &str) -> Result<Device> {
    let device = match name {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        "tch" => Device::libtorch(),
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(Default::default()),
        #[allow(unreachable_patterns)] // reachable for the backends not compiled in
        "flex" | "tch" | "vulkan" => bail!(
            "device \"{name}\" was not compiled into this naevus; compiled: {}. Rebuild with `cargo install --features {name}`",
            compiled_backends().join(", ")
        ),
        other => bail!(
            "unknown device \"{other}\"; choose one of: {}",
            compiled_backends().join(", ")
        ),
    };
    Ok(device)
}
