//! A network's weights as bytes (burnpack), to be sealed into a run's checkpoint files by
//! naevus-run, and loaded back with every tensor checked.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, BurnpackStore, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Bytes;
use naevus_models::Network;
use naevus_models::inverted_residual::EFFICIENTNET_BLOCK_KEYS;

/// The network's weights as burnpack bytes.
pub fn weights_bytes(model: &Network) -> Result<Vec<u8>> {
    let mut store = BurnpackStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("serialising weights: {e}"))?;
    let bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("serialising weights: {e}"))?;
    Ok(bytes.to_vec())
}

/// Loads weights from burnpack `bytes` (read from `path`) into `model`; every tensor must
/// match, and every weight must be a finite number.
pub fn load_weights(model: Network, bytes: Vec<u8>, path: &Path) -> Result<Network> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    // Runs saved before EfficientNet-Lite and MobileNetV2 shared one block name its
    // BatchNorms as lukemelas did; they load under today's names.
    for (from, to) in EFFICIENTNET_BLOCK_KEYS {
        store = store.with_remap_pattern(from, to);
    }
    let mut model = model;
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("loading checkpoint {}: {e}", path.display()))?;
    anyhow::ensure!(
        result.missing.is_empty() && result.unused.is_empty() && result.errors.is_empty(),
        "checkpoint {} does not fit the model: missing {:?}, unused {:?}, errors {:?}",
        path.display(),
        result.missing,
        result.unused,
        result.errors
    );
    Ok(model)
}

/// Whether every weight of `model` is a finite number: a network whose weights became NaN or
/// infinite is never saved as a checkpoint.
pub fn weights_finite(model: &Network) -> bool {
    struct Finite(bool);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0 {
                let all_finite = param.val().is_finite().all().into_scalar::<bool>();
                self.0 = all_finite;
            }
        }
    }
    let mut visitor = Finite(true);
    model.visit(&mut visitor);
    visitor.0
}

/// The network's weights as a safetensors file in PyTorch's conventions (linear weights
/// [out, in], BatchNorm `weight`/`bias`/`running_mean`/`running_var`), for use outside naevus.
pub fn pytorch_safetensors(model: &Network) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("writing safetensors: {e}"))?;
    store.get_bytes().map_err(|e| anyhow::anyhow!("writing safetensors: {e}"))
}

/// The network's weights as a safetensors file timm loads: the tensors of
/// [`pytorch_safetensors`] under timm's keys (see [`naevus_models::timm`]), with the timm
/// model's name and class count in the file's metadata (`timm_model`, `num_classes`).
/// Fails, naming the key, when a tensor would keep a naevus name.
pub fn timm_safetensors(model: &Network, timm_model: &str, num_classes: usize) -> Result<Vec<u8>> {
    let rewrites = naevus_models::timm::key_rewrites(model).map_err(anyhow::Error::msg)?;
    let remapper = KeyRemapper::from_patterns(rewrites).map_err(|e| anyhow::anyhow!("a timm key rewrite is not a regex: {e}"))?;
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper)
        .metadata("timm_model", timm_model)
        .metadata("num_classes", num_classes.to_string());
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("writing timm safetensors: {e}"))?;
    let bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("writing timm safetensors: {e}"))?;
    if let Some((key, _, _)) = safetensors_keys(&bytes)?.into_iter().find(|(key, _, _)| naevus_models::timm::is_naevus_key(key)) {
        anyhow::bail!("{key} has no name in timm's {timm_model}");
    }
    Ok(bytes)
}

/// Every tensor of a safetensors file: its key, dtype and shape, in key order (read from
/// the file's own header, so it describes what was written).
pub fn safetensors_keys(bytes: &[u8]) -> Result<Vec<(String, String, Vec<usize>)>> {
    let length = bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).context("a safetensors file starts with its header length")?;
    let header = bytes.get(8..8 + length as usize).context("the safetensors header is cut off")?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)?;
    let mut keys: Vec<(String, String, Vec<usize>)> = header
        .into_iter()
        .filter(|(key, _)| key != "__metadata__")
        .map(|(key, entry)| {
            let dtype = entry["dtype"].as_str().unwrap_or("").to_string();
            let shape = entry["shape"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect()).unwrap_or_default();
            (key, dtype, shape)
        })
        .collect();
    keys.sort();
    Ok(keys)
}

