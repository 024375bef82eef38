//! naevus-data: the burn-free data layer of naevus.
//!
//! Readers for ISIC 2017/2019/2020, HAM10000 and class folders ([`sources`]), robust image
//! decoding ([`image_io`]), a resumable prepared-pixel cache ([`cache`]), patient-grouped
//! stratified folds ([`folds`]), epoch sampling ([`sampling`]), augmentation ([`augment`])
//! and a background batch loader ([`loader`]).

pub mod atomic;
pub mod augment;
pub mod cache;
pub mod classes;
pub mod colour;
pub mod crop;
pub mod csv_limits;
pub mod error;
pub mod folds;
pub mod image_io;
pub mod loader;
pub mod metadata;
pub mod pixels;
pub mod records;
pub mod sampling;
pub mod sources;
pub mod statistics;

pub use atomic::write_atomic;
pub use augment::{AugmentOps, AugmentPlan, AugmentPreset, Border, augment_preview};
pub use pixels::{IMAGENET, Normalize, dihedral, dihedral_inverse, to_chw_f32};
pub use cache::{Cache, PrepareOptions, PrepareSummary, combine, prepare};
pub use classes::{ClassScheme, UnknownDiagnosis};
pub use colour::{ColourConstancy, ColourConstancyKind, SHADES_OF_GRAY_P};
pub use crop::{CropBox, CropSettings, attention_box};
pub use error::DataError;
/// A decoded image, as the readers give it.
pub use image::RgbImage;
pub use folds::stratified_group_kfold;
pub use image_io::{
    DecodeError, DecodeFailure, DecodeLimits, center_crop_resize, crop_resize, decode_rgb, decode_rgb_limited, decode_square_limited, load_rgb, load_rgb_limited,
    load_square, load_square_limited, resize_square,
};
pub use loader::{Batch, BatchIter, LoaderConfig, batches, image_at_size, item_rng};
pub use metadata::{MetadataEncoder, MetadataField, field_missing, images_per_group};
pub use records::{Metadata, Record, Reject, Sex, Split, normalize_diagnosis};
pub use sampling::{Sampling, epoch_order};
pub use sources::{SourceData, SourceKind, SourceSpec, read_source};
pub use statistics::{IMAGE_STATISTICS, image_statistics};
