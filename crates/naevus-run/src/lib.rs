//! naevus-run: the run directory that `naevus train` writes and every later job reads, with
//! no burn in it, so that the report, the command line and the engine share one definition of
//! each file.
//!
//! ```text
//! RUN/
//!   config.toml          the resolved recipe ([`TrainConfig`])
//!   run.json             model, outputs, input size and normalisation, folds ([`RunInfo`])
//!   fold-K/              one per fold (fold-0 alone when the dataset's own split is used)
//!     metrics.jsonl      one JSON line per epoch ([`EpochMetrics`])
//!     best.bpk           weights of the epoch with the best validation AUC (all validation images)
//!     best_primary.bpk   ... with the best AUC on the primary source's images, when external
//!                        images are validated too (seed 004's best_20)
//!     last.bpk           the training state after the last finished epoch, one file: where the
//!                        fold stands ([`FoldState`]), the final weights and the optimiser (resume)
//!     val_predictions.csv  validation predictions of the best epoch
//!     guard.bin          the out-of-domain guard of the best weights ([`DomainGuard`])
//!   oof.csv              out-of-fold (or validation) predictions: image_name,prediction,label,fold,source
//!   oof_classes.csv      for diagnosis classes: image_name,fold,class,p_<class>... of the same images
//!   class_metrics.json   ... and their accuracy, balanced accuracy and macro AUC
//!   metrics.json         validation metrics of oof.csv, every one {value, ci95}, by source too
//!                        (naevus-report's `metrics_document`)
//!   calibration.json     temperature fitted on oof.csv ([`Calibration`], predict, explain and the service)
//!   guard_check.json     how the guards tell made-up non-dermoscopy images apart ([`GuardCheck`])
//! ```
//! An ensemble bundle holds several exported runs as one model ([`ensemble`]).
//!
//! Every file is written atomically ([`write_atomic`]), so a killed process leaves either the
//! old or the new version, never half of one; the .bpk files are sealed ([`sealed`]): a
//! header with their kind, format version and checksum, checked on every load.

pub mod calibration;
pub mod dir;
pub mod ensemble;
pub mod error;
pub mod guard;
pub mod history;
pub mod info;
pub mod predictions;
pub mod recipe;
pub mod sealed;
pub mod shard;
pub mod source_options;
pub mod text_limits;
pub mod truth;

pub use calibration::Calibration;
pub use ensemble::{Combination, EnsembleDefinition, EnsembleMember};
pub use dir::{Checkpoint, FoldDir, RunDir, RunLock, TrainingState};
pub use error::RunError;
pub use guard::{DomainCheck, DomainGuard, GUARD_PERCENTILES, GuardCheck, GuardInputs, KindCheck};
pub use history::{EpochMetrics, FoldState};
pub use info::{RUN_FORMAT, RunInfo, check_fold};
pub use naevus_data::write_atomic;
pub use predictions::{Predictions, read_predictions, write_class_predictions, write_out_of_fold, write_predictions};
pub use source_options::{CheckpointSelection, SourceShares, TrainingSource, ValidationAucs};
pub use truth::Truth;
pub use recipe::{LossKind, OptimizerKind, Precision, RecipeFlags, SamplingKind, TrainConfig};
