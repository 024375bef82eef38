//! Whole-number flags with a stated bound. clap's own ranged parsers say only "invalid digit"
//! for a value such as 1e8; these say what is taken, so the bound is in the message as well as
//! in --help.

use std::fmt::Display;
use std::str::FromStr;

/// A parser for a whole number from `low` to `high`, for `#[arg(value_parser = ...)]`.
pub fn whole<T>(low: T, high: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |text: &str| match text.trim().parse::<T>() {
        Ok(n) if low <= n && n <= high => Ok(n),
        _ => Err(format!("expected a whole number from {low} to {high}")),
    }
}
