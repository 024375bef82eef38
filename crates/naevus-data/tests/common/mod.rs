//! Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;

/// tests/fixtures at the repository root.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The shared ISIC 2017 fixture images.
pub fn images() -> PathBuf {
    fixtures().join("isic2017/images")
}
