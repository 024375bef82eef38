//! Choosing the compute device at run time among the backends compiled in.

use anyhow::{Result, bail};
use burn::tensor::{Device, FloatDType};

pub use naevus_run::Precision;

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

/// The device named `name` ("flex", "tch", "vulkan") computing in `precision`, or a clear
/// error when that backend was not compiled in or cannot compute in that type.
pub fn select_device(name: &str, precision: Precision) -> Result<Device> {
    #[allow(unused_mut)] // only mutated when a backend is compiled in
    let mut device = match name {
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
    let dtype = match precision {
        Precision::F32 => return Ok(device),
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    };
    if !device.supports_dtype(dtype) {
        bail!("device \"{name}\" cannot compute in {precision:?}; use precision = \"f32\"");
    }
    device.configure(dtype).map_err(|e| anyhow::anyhow!("setting {name} to {precision:?}: {e:?}"))?;
    Ok(device)
}
