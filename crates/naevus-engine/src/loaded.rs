//! [`LoadedModel`]: a model as predict, explain and the service use it, whether it is one
//! trained run (its fold ensemble) or an ensemble bundle of several runs
//! ([`naevus_run::EnsembleDefinition`]). Each member keeps its own network, input size,
//! normalisation, metadata and calibration; its probabilities are put on its own one scale and
//! then combined as the bundle says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::{Cache, DecodeLimits, Record};
use naevus_models::Network;
use naevus_run::{Checkpoint, Combination, DomainCheck, DomainGuard, EnsembleDefinition};

use crate::trained::TrainedRun;

/// One run of the model, loaded.
pub struct Member {
    /// The run's folder name, or its name in the ensemble.
    pub name: String,
    /// Its share of the combination (the weights sum to 1).
    pub weight: f64,
    pub run: TrainedRun,
    /// Its folds' networks.
    pub folds: Vec<Network>,
    /// One out-of-domain guard per fold (None: the run has none for its weights).
    pub guards: Option<Vec<DomainGuard>>,
    /// `RunDir::model_sha256` of the weights the folds were loaded from.
    pub model_sha256: String,
}

/// One image as every member takes it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Per member: square HWC RGB u8 at its input size (see [`TrainedRun::load_images`]).
    pub pixels: Vec<Vec<u8>>,
    /// Per member: its metadata features, for members with a metadata branch.
    pub metadata: Vec<Option<Vec<f32>>>,
}

/// What the model says of each image.
#[derive(Debug, Clone)]
pub struct ModelScores {
    /// The melanoma probability on the model's one scale: each member's calibrated (when it
    /// has a calibration), combined.
    pub melanoma: Vec<f64>,
    /// The same combination of the members' uncalibrated probabilities.
    pub melanoma_uncalibrated: Vec<f64>,
    /// Every output's probability (one per class for multi-class models), uncalibrated: the
    /// weighted mean over members (empty from [`LoadedModel::score_cache`], which reads the
    /// melanoma output alone).
    pub outputs: Vec<Vec<f64>>,
    /// Per image, each member's melanoma probability on its own scale (one for a single run).
    pub members: Vec<Vec<f64>>,
    /// What the guards say; None when a member has no guard for the weights used.
    pub domain: Option<Vec<DomainCheck>>,
}

/// A trained model opened for inference: one run, or an ensemble of runs.
pub struct LoadedModel {
    path: PathBuf,
    pub members: Vec<Member>,
    pub combination: Combination,
    pub checkpoint: Checkpoint,
    ensemble: bool,
}

impl LoadedModel {
    /// Opens the run, single-run bundle or ensemble bundle in `dir` on `device` (None: the
    /// device each run trained with) and loads every fold's `checkpoint` and guard.
    pub fn open(dir: &Path, device: Option<&str>, checkpoint: Checkpoint) -> Result<Self> {
        if !EnsembleDefinition::is_ensemble(dir) {
            let run = TrainedRun::open(dir, device)?;
            let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
            let member = Member::load(name, 1.0, run, checkpoint)?;
            return Ok(Self { path: dir.to_path_buf(), members: vec![member], combination: Combination::MeanProbability, checkpoint, ensemble: false });
        }
        let definition = EnsembleDefinition::read_bundle(dir)?;
        let mut members = Vec::with_capacity(definition.members.len());
        for (spec, weight) in definition.members.iter().zip(definition.weights()) {
            let run = TrainedRun::open(&spec.run, device).with_context(|| format!("opening member {} of the ensemble {}", spec.name, dir.display()))?;
            // Each fold's weights are read once: hashed, checked, then loaded.
            let (sha256, weights) = run.read_model(checkpoint)?;
            if spec.model_sha256.as_deref() != Some(sha256.as_str()) {
                bail!(
                    "{}: member {} has changed since it was exported (its {} weights hash to {sha256}, ensemble.json says {}); export the ensemble again",
                    dir.display(),
                    spec.name,
                    checkpoint.name(),
                    spec.model_sha256.as_deref().unwrap_or("nothing")
                );
            }
            members.push(Member::of_weights(spec.name.clone(), weight, run, checkpoint, sha256, weights)?);
        }
        let first = &members[0].run.info;
        for member in &members[1..] {
            let info = &member.run.info;
            if info.num_outputs != first.num_outputs || info.classes.class_names() != first.classes.class_names() {
                bail!(
                    "{}: member {} has outputs {:?} and member {} has {:?}; an ensemble's members must answer the same classes",
                    dir.display(),
                    members[0].name,
                    first.classes.class_names(),
                    member.name,
                    info.classes.class_names()
                );
            }
        }
        Ok(Self { path: dir.to_path_buf(), members, combination: definition.combination, checkpoint, ensemble: true })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is an ensemble bundle (else one run).
    pub fn is_ensemble(&self) -> bool {
        self.ensemble
    }

    /// The first member: the one run of a single-run model, the ensemble's first otherwise.
    pub fn first(&self) -> &Member {
        &self.members[0]
    }

    /// The member named `name`, or an error listing them.
    pub fn member(&self, name: &str) -> Result<(usize, &Member)> {
        self.members.iter().enumerate().find(|(_, m)| m.name == name).with_context(|| {
            let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
            format!("{} has no member \"{}\"; its members are {}", self.path.display(), naevus_data::error::excerpt(name), names.join(", "))
        })
    }

    /// Whether every member has its guards: only then is an image checked against the domain.
    pub fn has_guard(&self) -> bool {
        self.members.iter().all(|m| m.guards.is_some())
    }

    /// Whether any member's probabilities are calibrated.
    pub fn calibrated(&self) -> bool {
        self.members.iter().any(|m| m.run.calibration.is_some())
    }

    /// The model in a few words, for closing lines: "5 fold(s) of resnet18" or an ensemble's
    /// members with their input sizes and the combination.
    pub fn describe(&self) -> String {
        let folds = |m: &Member| format!("{} fold(s) of {}", m.folds.len(), m.run.info.model);
        if !self.ensemble {
            return folds(self.first());
        }
        let members: Vec<String> =
            self.members.iter().map(|m| format!("{} ({} at {} px, weight {:.2})", m.name, folds(m), m.run.input.image_size, m.weight)).collect();
        format!("an ensemble of {} by {}: {}", self.members.len(), self.combination.name(), members.join(", "))
    }

    /// The scale of [`ModelScores::melanoma`], in words.
    pub fn scale(&self) -> String {
        if !self.ensemble {
            return self.first().run.scale();
        }
        let calibrated = self.members.iter().filter(|m| m.run.calibration.is_some()).count();
        format!("{calibrated} of {} members calibrated, then combined", self.members.len())
    }

    /// Each image file read as every member takes it (the run's one input path), or why it
    /// cannot be (named per file; the first member's reason).
    pub fn load_images(&self, paths: &[PathBuf], limits: &DecodeLimits) -> Result<Vec<Result<Vec<Vec<u8>>, String>>> {
        let mut images: Vec<Result<Vec<Vec<u8>>, String>> = vec![Ok(Vec::with_capacity(self.members.len())); paths.len()];
        for member in &self.members {
            for (image, read) in images.iter_mut().zip(member.run.load_images(paths, limits)?) {
                if let Ok(pixels) = image {
                    match read {
                        Ok(read) => pixels.push(read),
                        Err(reason) => *image = Err(reason),
                    }
                }
            }
        }
        Ok(images)
    }

    /// [`load_images`](Self::load_images) of one image's bytes already in memory (an upload).
    pub fn decode_image(&self, bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<Vec<u8>>> {
        self.members.iter().map(|member| member.run.decode_image(bytes, limits)).collect()
    }

    /// A decoded RGB image (a caller's array) as every member takes it (see
    /// [`TrainedRun::rgb_image`]).
    pub fn rgb_image(&self, image: &naevus_data::RgbImage) -> Result<Vec<Vec<u8>>> {
        self.members.iter().map(|member| member.run.rgb_image(image)).collect()
    }

    /// Each member's metadata features of `record` (None: a patient whose metadata is
    /// unknown), for members with a metadata branch.
    pub fn metadata_of(&self, record: Option<&Record>) -> Vec<Option<Vec<f32>>> {
        let member_features = |m: &Member| {
            let encoder = m.run.info.metadata.as_ref()?;
            Some(record.map_or_else(|| encoder.encode_unknown(), |r| encoder.encode(r, 1)))
        };
        self.members.iter().map(member_features).collect()
    }

    /// What the members say of metadata the model cannot use (each warning once).
    pub fn metadata_warnings<'a>(&self, records: impl Iterator<Item = &'a Record> + Clone) -> Vec<String> {
        let mut warnings: Vec<String> = Vec::new();
        for member in &self.members {
            for warning in member.run.info.metadata_warnings(records.clone()) {
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
        warnings
    }

    /// Scores images, each averaged over `tta` dihedral views by every fold of every member.
    pub fn score(&self, inputs: &[ModelInput], tta: usize) -> Result<ModelScores> {
        let mut by_member = Vec::with_capacity(self.members.len());
        for (k, member) in self.members.iter().enumerate() {
            let pixels: Vec<&[u8]> = inputs.iter().map(|input| input.pixels[k].as_slice()).collect();
            let metadata: Option<Vec<Vec<f32>>> = inputs.iter().map(|input| input.metadata[k].clone()).collect();
            let scores = member.run.score_images(&member.folds, member.guards.as_deref(), &pixels, metadata.as_deref(), tta)?;
            by_member.push(MemberScores { melanoma: scores.melanoma, uncalibrated: scores.melanoma_uncalibrated, outputs: scores.outputs, domain: scores.domain });
        }
        Ok(self.combine(by_member))
    }

    /// Scores the cache items `items`, each averaged over `tta` views by every fold of every
    /// member (each member reads the cache at its own input size).
    pub fn score_cache(&self, cache: &Arc<Cache>, items: &[usize], tta: usize) -> Result<ModelScores> {
        let mut by_member = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let run = &member.run;
            let (uncalibrated, domain) = run.predict_cache(&member.folds, member.guards.as_deref(), cache, items, tta)?;
            let mut melanoma = uncalibrated.clone();
            run.calibrate(&mut melanoma);
            by_member.push(MemberScores { melanoma, uncalibrated, outputs: Vec::new(), domain });
        }
        Ok(self.combine(by_member))
    }

    /// The ensemble's scores from its members'. A single run's are its own exactly.
    fn combine(&self, members: Vec<MemberScores>) -> ModelScores {
        let weights: Vec<f64> = self.members.iter().map(|m| m.weight).collect();
        let images = members.first().map_or(0, |m| m.melanoma.len());
        let column = |i: usize, pick: fn(&MemberScores) -> &Vec<f64>| -> Vec<f64> { members.iter().map(|m| pick(m)[i]).collect() };
        let melanoma_by_image: Vec<Vec<f64>> = (0..images).map(|i| column(i, |m| &m.melanoma)).collect();
        let outputs = (0..images)
            .filter(|_| !members[0].outputs.is_empty())
            .map(|i| {
                let width = members[0].outputs[i].len();
                (0..width).map(|c| members.iter().zip(&weights).map(|(m, w)| m.outputs[i][c] * w).sum()).collect()
            })
            .collect();
        let domain = members.iter().map(|m| m.domain.clone()).collect::<Option<Vec<Vec<DomainCheck>>>>().map(|checks| {
            (0..images).map(|i| DomainCheck::of_members(&checks.iter().map(|c| c[i]).collect::<Vec<_>>())).collect()
        });
        ModelScores {
            melanoma: melanoma_by_image.iter().map(|p| self.combination.combine(p, &weights)).collect(),
            melanoma_uncalibrated: (0..images).map(|i| self.combination.combine(&column(i, |m| &m.uncalibrated), &weights)).collect(),
            outputs,
            members: melanoma_by_image,
            domain,
        }
    }
}

/// One member's scores, before they are combined.
struct MemberScores {
    melanoma: Vec<f64>,
    uncalibrated: Vec<f64>,
    outputs: Vec<Vec<f64>>,
    domain: Option<Vec<DomainCheck>>,
}

impl Member {
    /// Each fold's weights are read once: hashed, then loaded.
    fn load(name: String, weight: f64, run: TrainedRun, checkpoint: Checkpoint) -> Result<Self> {
        let (model_sha256, weights) = run.read_model(checkpoint)?;
        Self::of_weights(name, weight, run, checkpoint, model_sha256, weights)
    }

    /// The member with its folds built from `weights`, which hash to `model_sha256`.
    fn of_weights(name: String, weight: f64, run: TrainedRun, checkpoint: Checkpoint, model_sha256: String, weights: Vec<Vec<u8>>) -> Result<Self> {
        let folds = run.ensemble_of(checkpoint, weights)?;
        let guards = run.guards(checkpoint)?;
        Ok(Self { name, weight, run, folds, guards, model_sha256 })
    }
}
