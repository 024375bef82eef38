//! [`RunDir`]: the one owner of the run directory's layout. Every job finds a run's files
//! through it, and reads and writes them with the readers and writers of this crate.

use std::path::{Path, PathBuf};

use crate::error::RunError;
use crate::history::{EpochMetrics, FoldState};
use crate::info::{RUN_FORMAT, RunInfo};
use crate::recipe::TrainConfig;
use crate::sealed;
use crate::write_atomic;

/// Sealed-file kinds.
const WEIGHTS: &str = "weights";
const TRAINING_STATE: &str = "training";

/// What `--resume` continues from, saved as one sealed file (last.bpk): where the fold
/// stands, the network's weights after the last finished epoch, the optimiser's state, and
/// the weight average when the recipe keeps one.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState {
    pub state: FoldState,
    /// burnpack bytes of the network.
    pub weights: Vec<u8>,
    /// The optimiser's record bytes.
    pub optimizer: Vec<u8>,
    /// burnpack bytes of the weight average (recipes with `ema_decay`).
    pub ema: Option<Vec<u8>>,
}

impl TrainingState {
    /// Length-prefixed sections: the state as JSON, the weights, the optimiser and, when
    /// there is one, the weight average (files written before it have three sections).
    fn to_bytes(&self) -> Result<Vec<u8>, RunError> {
        let state = serde_json::to_vec(&self.state).map_err(|e| RunError::Invalid(e.to_string()))?;
        let mut sections = vec![&state, &self.weights, &self.optimizer];
        sections.extend(&self.ema);
        let mut out = Vec::with_capacity(sections.iter().map(|s| 8 + s.len()).sum());
        for section in sections {
            out.extend_from_slice(&(section.len() as u64).to_le_bytes());
            out.extend_from_slice(section);
        }
        Ok(out)
    }

    fn from_bytes(path: &Path, mut bytes: &[u8]) -> Result<Self, RunError> {
        let mut sections = Vec::with_capacity(4);
        while sections.len() < 3 || (sections.len() == 3 && !bytes.is_empty()) {
            let damaged = || RunError::Damaged { path: path.to_path_buf(), what: "its sections do not add up".into() };
            let length = bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or_else(damaged)?;
            let length = usize::try_from(length).map_err(|_| damaged())?;
            let section = bytes.get(8..8usize.saturating_add(length)).ok_or_else(damaged)?;
            sections.push(section.to_vec());
            bytes = &bytes[8 + length..];
        }
        if !bytes.is_empty() {
            return Err(RunError::Damaged { path: path.to_path_buf(), what: format!("{} bytes follow its last section", bytes.len()) });
        }
        let mut sections = sections.into_iter();
        let mut next = || sections.next().unwrap_or_default();
        let state = serde_json::from_slice(&next()).map_err(|e| RunError::json(path, 0, &e))?;
        let (weights, optimizer) = (next(), next());
        let ema = sections.next();
        Ok(Self { state, weights, optimizer, ema })
    }
}

/// A run directory (it need not exist yet: training creates it).
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// run.json.
    pub fn info_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    /// config.toml, the resolved recipe.
    pub fn recipe_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn oof_csv(&self) -> PathBuf {
        self.path.join("oof.csv")
    }

    /// The weight average's out-of-fold predictions (recipes with `ema_decay`).
    pub fn oof_ema_csv(&self) -> PathBuf {
        self.path.join("oof_ema.csv")
    }

    pub fn oof_classes_csv(&self) -> PathBuf {
        self.path.join("oof_classes.csv")
    }

    pub fn metrics_json(&self) -> PathBuf {
        self.path.join("metrics.json")
    }

    pub fn class_metrics_json(&self) -> PathBuf {
        self.path.join("class_metrics.json")
    }

    pub fn calibration_json(&self) -> PathBuf {
        self.path.join(crate::calibration::CALIBRATION_FILE)
    }

    /// A short SHA-256 of what decides the model's answers: run.json and the weights of
    /// `checkpoint` of every fold it lists. Copies of one model share it; any change to either
    /// gives another, so a result records which model gave it.
    pub fn model_sha256(&self, info: &RunInfo, checkpoint: Checkpoint) -> Result<String, RunError> {
        Ok(self.read_model(info, checkpoint)?.0)
    }

    /// [`model_sha256`](Self::model_sha256) and the weights it hashed, every fold's (checked
    /// against its checksum), in fold order: a model loaded from these is the one hashed.
    pub fn read_model(&self, info: &RunInfo, checkpoint: Checkpoint) -> Result<(String, Vec<Vec<u8>>), RunError> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let info_path = self.info_path();
        hasher.update(std::fs::read(&info_path).map_err(|e| RunError::io(&info_path, e))?);
        let mut weights = Vec::with_capacity(info.folds.len());
        for fold in &info.folds {
            let bytes = self.fold(fold).read_weights(checkpoint)?;
            hasher.update(&bytes);
            weights.push(bytes);
        }
        Ok((hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect(), weights))
    }

    /// The directory of fold `name` (e.g. "fold-0").
    pub fn fold(&self, name: &str) -> FoldDir {
        FoldDir { name: name.to_string(), path: self.path.join(name) }
    }

    /// Whether a run has been started here (run.json exists).
    pub fn holds_run(&self) -> bool {
        self.info_path().exists()
    }

    /// Takes the run's lock for this process: a second process training into the same run is
    /// refused with the first one's process id. The lock goes when the guard is dropped or
    /// the process ends (also when killed), so a stale one is taken over.
    pub fn lock(&self) -> Result<RunLock, RunError> {
        RunLock::take(&self.path.join(".lock"), &format!("training the run {}", self.path.display()), false)
    }

    /// Takes the run's lock, waiting while another process holds it: processes that share a
    /// run with `--only-folds` set it up one after the other.
    pub fn lock_waiting(&self) -> Result<RunLock, RunError> {
        RunLock::take(&self.path.join(".lock"), &format!("training the run {}", self.path.display()), true)
    }

    /// Removes the temporary files that killed processes left in the run directory (call with
    /// the run's lock), saying how many on stderr; returns how many.
    pub fn remove_stale_temporaries(&self) -> usize {
        naevus_data::atomic::remove_stale_temporaries(&self.path)
    }

    /// Reads run.json; a file of another format version is refused.
    pub fn read_info(&self) -> Result<RunInfo, RunError> {
        let path = self.info_path();
        let text = std::fs::read_to_string(&path).map_err(|source| RunError::NotARun { dir: self.path.clone(), path: path.clone(), source })?;
        // The version first, so that an older run says so rather than "missing field".
        let version: serde_json::Value = serde_json::from_str(&text).map_err(|e| RunError::json(&path, 0, &e))?;
        let found = version.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        if found != RUN_FORMAT {
            return Err(RunError::Format { path, found, expected: RUN_FORMAT });
        }
        if let Some(problem) = crate::text_limits::overlong_string(&version) {
            return Err(RunError::Invalid(format!("{}: {problem}", path.display())));
        }
        let info: RunInfo = serde_json::from_value(version).map_err(|e| RunError::Invalid(format!("{}: {e}", path.display())))?;
        // Fold names become directories of the run: a name that is a path would lead outside it.
        info.check().map_err(|problem| RunError::Invalid(format!("{}: {problem}", path.display())))?;
        Ok(info)
    }

    pub fn write_info(&self, info: &RunInfo) -> Result<(), RunError> {
        let json = serde_json::to_string_pretty(info).map_err(|e| RunError::Invalid(e.to_string()))?;
        Ok(write_atomic(&self.info_path(), json.as_bytes())?)
    }

    /// Reads the resolved recipe saved in the run.
    pub fn read_recipe(&self) -> Result<TrainConfig, RunError> {
        TrainConfig::from_toml_file(&self.recipe_path())
    }

    pub fn write_recipe(&self, recipe: &TrainConfig) -> Result<(), RunError> {
        Ok(write_atomic(&self.recipe_path(), recipe.to_toml()?.as_bytes())?)
    }

    /// The cache a run names: as written when absolute or when it exists relative to the
    /// current directory, else relative to the run directory.
    pub fn resolve_cache(&self, info: &RunInfo) -> PathBuf {
        let cache = &info.cache;
        if cache.is_absolute() || cache.exists() {
            return cache.clone();
        }
        self.path.join(cache)
    }
}

/// Checkpoints of a fold that prediction can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The epoch with the best validation AUC.
    Best,
    /// The epoch with the best AUC on primary-source images (runs validating external images too).
    BestPrimary,
    /// The weight average at its best validation AUC (recipes with `ema_decay`).
    BestEma,
    /// The weights after the last finished epoch (part of the training state).
    Final,
}

impl std::str::FromStr for Checkpoint {
    type Err = RunError;
    fn from_str(name: &str) -> Result<Self, RunError> {
        Checkpoint::parse(name)
    }
}

impl Checkpoint {
    /// Parses best, best_primary, best_ema or final ("last", what earlier versions called the
    /// final weights).
    pub fn parse(name: &str) -> Result<Self, RunError> {
        match name {
            "best" => Ok(Checkpoint::Best),
            "best_primary" => Ok(Checkpoint::BestPrimary),
            "best_ema" => Ok(Checkpoint::BestEma),
            "final" | "last" => Ok(Checkpoint::Final),
            other => Err(RunError::Invalid(format!("unknown checkpoint {other:?}; choose one of best, best_primary, best_ema, final"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Best => "best",
            Checkpoint::BestPrimary => "best_primary",
            Checkpoint::BestEma => "best_ema",
            Checkpoint::Final => "final",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Checkpoint::Best => "best.bpk",
            Checkpoint::BestPrimary => "best_primary.bpk",
            Checkpoint::BestEma => "best_ema.bpk",
            Checkpoint::Final => "last.bpk",
        }
    }
}

/// One fold's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldDir {
    pub name: String,
    pub path: PathBuf,
}

impl FoldDir {
    /// The weights file of `checkpoint`.
    pub fn checkpoint(&self, checkpoint: Checkpoint) -> PathBuf {
        self.path.join(checkpoint.file())
    }


    pub fn metrics_jsonl(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    pub fn val_predictions_csv(&self) -> PathBuf {
        self.path.join("val_predictions.csv")
    }

    /// Takes the fold's lock (see [`RunDir::lock`]): processes sharing a run with
    /// `--only-folds` never train the same fold.
    pub fn lock(&self) -> Result<RunLock, RunError> {
        RunLock::take(&self.path.join(".lock"), &format!("training the fold {}", self.path.display()), false)
    }

    /// Removes the temporary files that killed processes left in the fold's directory (call
    /// with the fold's lock), saying how many on stderr; returns how many.
    pub fn remove_stale_temporaries(&self) -> usize {
        naevus_data::atomic::remove_stale_temporaries(&self.path)
    }

    /// Where the fold stands (from its training state); a fold not yet started has the
    /// default state.
    pub fn read_state(&self) -> Result<FoldState, RunError> {
        Ok(self.read_training_state()?.map(|t| t.state).unwrap_or_default())
    }

    /// The training state saved after the last finished epoch, if any.
    pub fn read_training_state(&self) -> Result<Option<TrainingState>, RunError> {
        let path = self.checkpoint(Checkpoint::Final);
        if !path.exists() {
            return Ok(None);
        }
        let payload = sealed::read_sealed(&path, TRAINING_STATE)?;
        TrainingState::from_bytes(&path, &payload).map(Some)
    }

    /// Saves the training state as one file, so that a kill or a full disk at any moment
    /// leaves either the previous epoch's state or this one, never a mix.
    pub fn write_training_state(&self, training: &TrainingState) -> Result<(), RunError> {
        sealed::write_sealed(&self.checkpoint(Checkpoint::Final), TRAINING_STATE, &training.to_bytes()?)
    }

    /// The network weights (burnpack bytes) of `checkpoint`, checked against their checksum.
    pub fn read_weights(&self, checkpoint: Checkpoint) -> Result<Vec<u8>, RunError> {
        match checkpoint {
            Checkpoint::Final => {
                let path = self.checkpoint(checkpoint);
                let training = self.read_training_state()?.ok_or_else(|| RunError::io(&path, std::io::ErrorKind::NotFound.into()))?;
                Ok(training.weights)
            }
            _ => sealed::read_sealed(&self.checkpoint(checkpoint), WEIGHTS),
        }
    }

    /// Saves the weights (burnpack bytes) of a best checkpoint, sealed.
    pub fn write_weights(&self, checkpoint: Checkpoint, weights: &[u8]) -> Result<(), RunError> {
        debug_assert!(checkpoint != Checkpoint::Final, "the final weights are part of the training state");
        sealed::write_sealed(&self.checkpoint(checkpoint), WEIGHTS, weights)
    }

    /// Every epoch of metrics.jsonl (none when the fold has not finished one). A line that
    /// does not parse is an error naming its line and column.
    pub fn read_epochs(&self) -> Result<Vec<EpochMetrics>, RunError> {
        let path = self.metrics_jsonl();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RunError::io(path, e)),
        };
        let mut epochs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            epochs.push(serde_json::from_str(line).map_err(|e| RunError::json(&path, i, &e))?);
        }
        Ok(epochs)
    }

    /// Appends one epoch's line.
    pub fn append_epoch(&self, metrics: &EpochMetrics) -> Result<(), RunError> {
        use std::io::Write;
        let path = self.metrics_jsonl();
        let line = serde_json::to_string(metrics).map_err(|e| RunError::Invalid(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| RunError::io(&path, e))?;
        writeln!(file, "{line}").map_err(|e| RunError::io(&path, e))
    }

    /// Drops metric lines of epochs after `epochs_done`: an epoch whose checkpoint was not
    /// completed before a kill is trained again and must not be logged twice.
    pub fn forget_epochs_after(&self, epochs_done: usize) -> Result<(), RunError> {
        let path = self.metrics_jsonl();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| serde_json::from_str::<EpochMetrics>(line).is_ok_and(|m| m.epoch <= epochs_done))
            .collect();
        if kept.len() != text.lines().count() {
            let mut body = kept.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            write_atomic(&path, body.as_bytes())?;
        }
        Ok(())
    }
}

/// An exclusive advisory lock on a file, held while the guard lives.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of a folder that a command writes whole and then renames into place
    /// (export's model, combine's cache): the file `.NAME.lock` beside the folder, so that it
    /// stays put while the folder appears. A second process writing the same folder is
    /// refused with the first one's process id.
    pub fn beside(folder: &Path) -> Result<Self, RunError> {
        let name = folder.file_name().ok_or_else(|| RunError::Invalid(format!("{} does not name a folder to write", folder.display())))?;
        let lock = folder.with_file_name(format!(".{}.lock", name.to_string_lossy()));
        Self::take(&lock, &format!("writing {}", folder.display()), false)
    }

    fn take(path: &Path, what: &str, wait: bool) -> Result<Self, RunError> {
        use std::io::{Read, Seek, Write};
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(|e| RunError::io(path, e))?;
        let locked = if wait { file.lock().map_err(std::fs::TryLockError::Error) } else { file.try_lock() };
        match locked {
            Ok(()) => {
                let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
                written.map_err(|e| RunError::io(path, e))?;
                Ok(Self { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().chars().take(20).collect::<String>();
                Err(RunError::Invalid(format!(
                    "another naevus process (pid {}) is {what}; wait for it to end, or choose another --out",
                    if holder.is_empty() { "unknown".to_string() } else { holder }
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(RunError::io(path, e)),
        }
    }
}

/// A name that stays inside the directory it is joined to.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
