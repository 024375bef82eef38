//! The refusal a recipe value outside its bounds gets: the key, the bound and the value.

use crate::error::RunError;

/// `value` of `key` if it lies in `low..=high` (NaN and infinities never do), else the
/// message that names the key and the bound. The value is shown as Debug shows it, which
/// writes 1e308 as such rather than as 309 digits.
pub(super) fn in_range<T: PartialOrd + std::fmt::Display + std::fmt::Debug>(key: &str, value: T, low: T, high: T) -> Result<(), RunError> {
    if low <= value && value <= high {
        Ok(())
    } else {
        Err(RunError::Invalid(format!("{key} must be between {low} and {high}, got {value:?}")))
    }
}

/// As [`in_range`], for a value that must be above 0.
pub(super) fn positive_at_most(key: &str, value: f64, high: f64) -> Result<(), RunError> {
    if value > 0.0 && value <= high {
        Ok(())
    } else {
        Err(RunError::Invalid(format!("{key} must be above 0 and at most {high}, got {value:?}")))
    }
}
