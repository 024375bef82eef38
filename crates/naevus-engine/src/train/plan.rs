//! Which images each fold trains and validates on, which source each comes from, and how an
//! epoch draws them.

use anyhow::{Result, bail};
use naevus_data::{Cache, ClassScheme, Sampling, Split, stratified_group_kfold};
use naevus_run::{CheckpointSelection, TrainingSource};

use super::{FoldPlan, melanoma_of};
use crate::config::{SamplingKind, TrainConfig};

/// The class of every cache item under `scheme` (None: unlabelled); a diagnosis the scheme
/// does not know is an error naming the image and its source row.
pub(super) fn class_labels(cache: &Cache, scheme: ClassScheme) -> Result<Vec<Option<u8>>> {
    cache
        .records()
        .iter()
        .map(|record| {
            let class = scheme.class_of(record).map_err(|e| match record.row {
                Some(row) => anyhow::anyhow!("{e} (source {}, line {row})", record.source),
                None => anyhow::anyhow!("{e} (source {})", record.source),
            })?;
            Ok(class.map(|c| c as u8))
        })
        .collect()
}

/// The sources of a cache's records: their names in alphabetical order, and each item's.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    pub names: Vec<String>,
    /// Index into `names` of every cache item.
    pub of_item: Vec<usize>,
}

impl Sources {
    pub fn of(cache: &Cache) -> Self {
        let mut names: Vec<String> = cache.records().iter().map(|r| r.source.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let of_item = cache.records().iter().map(|r| names.binary_search(&r.source).unwrap_or(0)).collect();
        Self { names, of_item }
    }

    /// The source name of cache item `item`.
    pub fn name_of(&self, item: usize) -> &str {
        &self.names[self.of_item[item]]
    }

    /// What run.json records of each source: its labelled images and melanomas, and its
    /// share of an epoch under source-balanced sampling.
    pub fn summary(&self, cache: &Cache, classes: &[Option<u8>], config: &TrainConfig) -> Vec<TrainingSource> {
        let shares = config.source_shares.of(&self.names);
        let total: f64 = shares.iter().sum();
        self.names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let items = (0..cache.len()).filter(|&i| self.of_item[i] == k && classes[i].is_some());
                let (images, melanomas) = items.fold((0, 0), |(n, m), i| (n + 1, m + usize::from(melanoma_of(cache, i))));
                let epoch_share = (config.sampling == SamplingKind::SourceBalanced).then(|| if total > 0.0 { shares[k] / total } else { 0.0 });
                TrainingSource { name: name.clone(), images, melanomas, epoch_share }
            })
            .collect()
    }

    /// Refuses source names in the recipe that the cache does not hold (a typo would leave a
    /// source out of training, or select on nothing), naming the ones it does hold.
    pub fn check_recipe(&self, config: &TrainConfig) -> Result<()> {
        let named = config.source_shares.0.keys().map(String::as_str);
        let selected = match &config.checkpoint_selection {
            CheckpointSelection::Source(name) => Some(name.as_str()),
            _ => None,
        };
        if let Some(unknown) = named.chain(selected).find(|name| !self.names.iter().any(|n| n == name)) {
            bail!("the recipe names the source \"{unknown}\", which the cache does not hold; its sources are {}", self.names.join(", "));
        }
        if config.sampling == SamplingKind::SourceBalanced && !config.source_shares.is_empty() {
            for name in self.names.iter().filter(|n| !config.source_shares.0.contains_key(*n)) {
                eprintln!("note: source_shares does not name {name}: its images never train (they are still validated on)");
            }
        }
        Ok(())
    }
}

/// Refuses a checkpoint selection rule that reads per-source figures when validation holds
/// one source only (every epoch would score nothing, and the first would stay the best).
pub(super) fn check_selection(config: &TrainConfig, sources: &Sources, plans: &[FoldPlan]) -> Result<()> {
    let validated: std::collections::BTreeSet<&str> = plans.iter().flat_map(|p| p.val.iter().map(|&i| sources.name_of(i))).collect();
    let names = || validated.iter().copied().collect::<Vec<_>>().join(", ");
    match &config.checkpoint_selection {
        CheckpointSelection::MeanOfSources | CheckpointSelection::WorstSource if validated.len() < 2 => bail!(
            "checkpoint_selection = \"{}\" compares sources, but validation holds images of {} only; set external_in_validation = true \
             to validate every source, or choose pooled",
            config.checkpoint_selection,
            names()
        ),
        CheckpointSelection::Source(name) if !validated.contains(name.as_str()) => bail!(
            "checkpoint_selection = \"source:{name}\", but validation holds no {name} images (only {}); set external_in_validation = true",
            names()
        ),
        _ => Ok(()),
    }
}

/// Splits the labelled images of `cache` (those with a class in `classes`, see
/// `class_labels`) into folds as the recipe asks. External images join every fold's
/// training set, and its validation folds only when the recipe says so. Folds are stratified
/// by melanoma, and by source too when more than one source is validated, so that every
/// source's held-out images are spread evenly over the folds.
pub(super) fn plan_folds(cache: &Cache, config: &TrainConfig, classes: &[Option<u8>], sources: &Sources) -> Result<Vec<FoldPlan>> {
    let labelled: Vec<usize> = (0..cache.len()).filter(|&i| classes[i].is_some()).collect();
    if labelled.len() < cache.len() {
        eprintln!("note: {} of {} images have no label and are not used for training", cache.len() - labelled.len(), cache.len());
    }
    let validatable = |i: &usize| config.external_in_validation || !cache.records()[*i].is_external;
    let (candidates, train_only): (Vec<usize>, Vec<usize>) = labelled.into_iter().partition(validatable);
    if !train_only.is_empty() {
        eprintln!("{} external images train in every fold and are never validated on", train_only.len());
    }
    if config.folds >= 2 {
        let first_source = candidates.first().map(|&i| sources.of_item[i]);
        let several_sources = candidates.iter().any(|&i| Some(sources.of_item[i]) != first_source);
        let stratum = |i: usize| melanoma_of(cache, i) as usize + if several_sources { 2 * sources.of_item[i] } else { 0 };
        let labels: Vec<usize> = candidates.iter().map(|&i| stratum(i)).collect();
        let groups: Vec<&str> = candidates.iter().map(|&i| cache.records()[i].group.as_str()).collect();
        let fold_of = stratified_group_kfold(&labels, &groups, config.folds, config.seed)?;
        return Ok((0..config.folds)
            .map(|k| FoldPlan {
                name: format!("fold-{k}"),
                train: candidates.iter().zip(&fold_of).filter(|(_, f)| **f != k).map(|(i, _)| *i).chain(train_only.iter().copied()).collect(),
                val: candidates.iter().zip(&fold_of).filter(|(_, f)| **f == k).map(|(i, _)| *i).collect(),
            })
            .collect());
    }
    let split = |s: Split| -> Vec<usize> { candidates.iter().copied().filter(|&i| cache.records()[i].split == Some(s)).collect() };
    let (mut train, val) = (split(Split::Train), split(Split::Val));
    train.extend(train_only.iter().copied());
    if train.is_empty() || val.is_empty() {
        bail!(
            "the cache has no train/val split ({} train, {} val images); use --folds K for grouped cross-validation",
            train.len(),
            val.len()
        );
    }
    Ok(vec![FoldPlan { name: "fold-0".into(), train, val }])
}

/// How a fold's epochs draw from its training images `train` (cache items), and the label of
/// each that the sampler balances or undersamples on.
pub(super) fn sampling(config: &TrainConfig, cache: &Cache, classes: &[Option<u8>], sources: &Sources, train: &[usize]) -> (Sampling, Vec<usize>) {
    let melanoma = || train.iter().map(|&i| melanoma_of(cache, i) as usize).collect();
    match config.sampling {
        SamplingKind::Shuffle => (Sampling::Shuffle, train.iter().map(|&i| classes[i].unwrap_or(0) as usize).collect()),
        SamplingKind::Balanced => (Sampling::Balanced, train.iter().map(|&i| classes[i].unwrap_or(0) as usize).collect()),
        SamplingKind::Undersample => (Sampling::Undersample { negatives_per_positive: config.negatives_per_positive }, melanoma()),
        SamplingKind::SourceBalanced => (
            Sampling::SourceBalanced {
                sources: train.iter().map(|&i| sources.of_item[i]).collect(),
                shares: config.source_shares.of(&sources.names),
                negatives_per_positive: config.negatives_per_positive,
            },
            melanoma(),
        ),
    }
}
