//! naevus-report: the burn-free reporting layer of naevus.
//!
//! * [`ensemble`]: mean, weighted and rank-averaged ensembles of prediction files.
//! * [`evaluation`]: the metric table (ROC AUC, ISIC 2024 pAUC, average precision,
//!   operating points, calibration) with bootstrap 95% intervals.
//! * [`run_dir`]: what the report shows of a run directory (read with naevus-run).
//! * [`plots`] and [`report`]: the charts (plotters, embedded font) and the self-contained
//!   HTML report.
//! * [`saliency`]: JET overlays, grey maps and captioned grids of where a model looks.

pub mod ensemble;
pub mod error;
pub mod evaluation;
pub mod metrics_json;
pub mod model_card;
pub mod plots;
pub mod report;
pub mod run_dir;
pub mod saliency;

pub use ensemble::{Mode, combine, normalized_ranks};
pub use error::ReportError;
pub use model_card::ModelCard;
pub use metrics_json::{METRICS_FORMAT, metrics_document, write_metrics_json};
pub use evaluation::{EvaluationReport, Estimate, OperatingEstimate, TableRow, evaluate_scores, table_rows};
pub use naevus_run::{Predictions, read_predictions, write_predictions};
pub use report::{ReportOptions, ReportSummary, write_report};
pub use run_dir::{RunData, read_run};
