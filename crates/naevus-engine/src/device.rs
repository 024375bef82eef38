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
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// The device named `name` ("flex", "tch", "vulkan", "cuda" or "cuda:N" for the N-th NVIDIA
/// GPU, counted from 0) computing in `precision`, or a clear error when that backend was not
/// compiled in, cannot compute in that type, or (cuda) finds no driver or no such GPU.
///
/// On cuda, cubecl keeps its autotune results and compiled kernels on disk, in
/// $NAEVUS_KERNEL_CACHE, else the `cubecl` folder of the user cache (~/.cache/naevus/cubecl),
/// unless a cubecl.toml (or burn.toml with a [cubecl] table) in the working directory or above
/// configures cubecl itself; CUBECL_* environment variables apply either way.
pub fn select_device(name: &str, precision: Precision) -> Result<Device> {
    #[allow(unused_mut)] // only mutated when a backend is compiled in
    let mut device = match name {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        "tch" => Device::libtorch(),
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(Default::default()),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => cuda::device(name)?,
        #[allow(unreachable_patterns)] // reachable for the backends not compiled in
        "flex" | "tch" | "vulkan" | "cuda" => bail!(
            "device \"{name}\" was not compiled into this naevus; compiled: {}. Rebuild with `cargo install --features {name}`",
            compiled_backends().join(", ")
        ),
        #[allow(unreachable_patterns)]
        n if n.starts_with("cuda:") => bail!(
            "device \"{name}\": cuda was not compiled into this naevus; compiled: {}. Rebuild with `cargo install --features cuda`",
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

/// The CUDA device of `select_device`: the driver asked first, the kernel caches placed.
#[cfg(feature = "cuda")]
mod cuda {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, anyhow, bail};
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use burn::tensor::Device;
    use cudarc::driver::result as driver;

    /// "cuda" or "cuda:N". burn's CUDA runtime panics (inside cudarc) when the driver library
    /// cannot be loaded, so the driver is asked here first, and its answer reported as an error.
    pub fn device(name: &str) -> Result<Device> {
        let index: usize = match name.strip_prefix("cuda:") {
            None => 0,
            Some(n) => n
                .parse()
                .with_context(|| format!("device \"{name}\": after \"cuda:\" comes the GPU's index (cuda:0, cuda:1, ...)"))?,
        };
        // SAFETY: only tries to load the driver library (libcuda.so) and drops it again.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!(
                "device \"{name}\": no CUDA driver available on this machine (libcuda.so could not be loaded: \
                 is the NVIDIA driver installed, and its folder in LD_LIBRARY_PATH?)"
            );
        }
        driver::init().map_err(|e| anyhow!("device \"{name}\": the CUDA driver does not start ({e})"))?;
        let count = driver::device::get_count()
            .map_err(|e| anyhow!("device \"{name}\": the CUDA driver cannot count its GPUs ({e})"))?;
        if index >= count.max(0) as usize {
            let range = if count > 0 { format!(", cuda:0 to cuda:{}", count - 1) } else { String::new() };
            bail!("device \"{name}\": the CUDA driver sees {count} GPU(s){range}");
        }
        use_kernel_cache();
        Ok(Device::cuda(index))
    }

    /// cubecl's caches, by default under `target/` of the outermost Cargo.toml above the
    /// working directory (else ~/.cache/cubecl), and without compiled kernels, go to the
    /// naevus kernel cache with both autotune results and compiled kernels kept; a cubecl
    /// configuration file of the user's is left to govern. Once per process, before any
    /// device starts (cubecl reads its configuration once).
    fn use_kernel_cache() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if let Some(file) = cubecl_config_file() {
                eprintln!("naevus: cubecl configured by {} (its kernel caches go where it says)", file.display());
                return;
            }
            let dir = match kernel_cache_dir() {
                Ok(dir) => dir,
                Err(e) => return eprintln!("naevus: no kernel cache ({e:#}); kernels are compiled and tuned in every run"),
            };
            if let Err(e) = std::fs::create_dir_all(&dir) {
                let dir = dir.display();
                return eprintln!("naevus: no kernel cache in {dir} ({e}); kernels are compiled and tuned in every run");
            }
            let mut config = CubeClRuntimeConfig::default().override_from_env();
            config.environment.path = CacheConfig::Directory(dir);
            config.compilation.cache = true;
            // False when cubecl already read its configuration: then it keeps that one.
            let _ = CubeClRuntimeConfig::try_set(config);
        });
    }

    /// $NAEVUS_KERNEL_CACHE, else the `cubecl` folder of the user cache.
    fn kernel_cache_dir() -> Result<PathBuf> {
        match std::env::var_os("NAEVUS_KERNEL_CACHE") {
            Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
            _ => Ok(crate::weights::cache_dir()?.join("cubecl")),
        }
    }

    /// The file cubecl would read its configuration from: cubecl.toml or CubeCL.toml, or a
    /// burn.toml / Burn.toml with a [cubecl] table, in the working directory or above.
    fn cubecl_config_file() -> Option<PathBuf> {
        let cwd = std::env::current_dir().ok()?;
        let mut dir: Option<&Path> = Some(&cwd);
        while let Some(d) = dir {
            for name in ["cubecl.toml", "CubeCL.toml"] {
                if d.join(name).is_file() {
                    return Some(d.join(name));
                }
            }
            for name in ["burn.toml", "Burn.toml"] {
                let file = d.join(name);
                let has_section = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|text| text.parse::<toml::Table>().ok())
                    .is_some_and(|table| table.contains_key("cubecl"));
                if has_section {
                    return Some(file);
                }
            }
            dir = d.parent();
        }
        None
    }
}
