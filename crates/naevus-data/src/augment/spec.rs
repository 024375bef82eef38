//! How recipes name augmentation: the preset ([`AugmentPreset`]), the per-operation changes
//! ([`AugmentOps`]) and the strict parsing of parameter values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{AugmentPlan, Border};

/// One parameter of an operation, for listings and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDoc {
    pub name: &'static str,
    /// The values allowed, e.g. "0 to 1".
    pub range: String,
    pub doc: &'static str,
}

/// An operation's parameters, settable by name from text.
pub trait OpParams {
    /// Every parameter with its default, range and meaning.
    fn params(&self) -> Vec<ParamDoc>;
    /// Sets `param` from `value`; an unknown parameter or a value out of range is an error.
    fn set(&mut self, param: &str, value: &str) -> Result<(), String>;
    /// The operation's chance.
    fn chance(&self) -> f32;
    /// A parameter's value as text, as `set` reads it.
    fn get(&self, param: &str) -> Option<String>;
}

/// A parameter's type: parsed from text, bounded by a range.
pub(super) trait ParamValue: Copy + PartialOrd + fmt::Display + FromStr {
    /// What a value looks like, for error messages.
    const KIND: &'static str;
    /// The values allowed from `low` to `high`.
    fn range_text(low: Self, high: Self) -> String {
        format!("{low} to {high}")
    }
}

impl ParamValue for f32 {
    const KIND: &'static str = "a number";
}

impl ParamValue for u32 {
    const KIND: &'static str = "a whole number";
}

impl ParamValue for Border {
    const KIND: &'static str = "black or reflect";
    fn range_text(_: Self, _: Self) -> String {
        Self::KIND.to_string()
    }
}

impl FromStr for Border {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "black" => Ok(Border::Black),
            "reflect" => Ok(Border::Reflect),
            _ => Err(format!("{text:?} is not black or reflect")),
        }
    }
}

impl fmt::Display for Border {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Border::Black => "black",
            Border::Reflect => "reflect",
        })
    }
}

/// The values allowed between `low` and `high`, for people.
pub(super) fn range_text<T: ParamValue>(low: T, high: T) -> String {
    T::range_text(low, high)
}

/// `text` as a value of `param` in `low..=high` (NaN and infinities fall outside any range).
pub(super) fn parse_param<T: ParamValue>(param: &str, text: &str, low: T, high: T) -> Result<T, String> {
    let shown = crate::error::excerpt(text);
    let value: T = text.parse().map_err(|_| format!("{param}={shown}: not {}", T::KIND))?;
    if low <= value && value <= high { Ok(value) } else { Err(format!("{param}={shown} is out of range ({low} to {high})")) }
}

/// The recipe's `augment`: which table of operations a run starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AugmentPreset {
    /// Nothing (`false` in older recipes).
    None,
    /// Dihedral transforms, a small affine and colour jitter (`true` in older recipes).
    #[default]
    Light,
    /// The SIIM-ISIC 2020 winners' albumentations set.
    Seed004,
    /// Synthetic hair, flips, any rotation, colour jitter.
    Seed002,
}

impl AugmentPreset {
    /// Every preset, as recipes name them.
    pub const NAMES: [&'static str; 4] = ["light", "seed-004", "seed-002", "none"];

    /// The name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AugmentPreset::None => "none",
            AugmentPreset::Light => "light",
            AugmentPreset::Seed004 => "seed-004",
            AugmentPreset::Seed002 => "seed-002",
        }
    }
}

impl FromStr for AugmentPreset {
    type Err = String;
    /// A preset's name, or `true` / `false` as recipes said before presets existed.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "light" | "true" => Ok(AugmentPreset::Light),
            "seed-004" => Ok(AugmentPreset::Seed004),
            "seed-002" => Ok(AugmentPreset::Seed002),
            "none" | "false" => Ok(AugmentPreset::None),
            other => Err(format!("unknown augment preset {other:?}: use light, seed-004, seed-002 or none (true = light, false = none)")),
        }
    }
}

impl fmt::Display for AugmentPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for AugmentPreset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for AugmentPreset {
    /// A preset's name, or a boolean: saved runs of older builds say `augment = true`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PresetVisitor;
        impl serde::de::Visitor<'_> for PresetVisitor {
            type Value = AugmentPreset;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an augment preset (light, seed-004, seed-002 or none) or true / false")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<AugmentPreset, E> {
                Ok(if on { AugmentPreset::Light } else { AugmentPreset::None })
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<AugmentPreset, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PresetVisitor)
    }
}

/// The recipe's `augment_ops`: changes to single operations of the preset, as
/// `op:param=value,param=value;op:...` (for example `cutout:p=0.5,size=0.3;hair:p=0`). An
/// operation named alone (`hair`) is turned on with its defaults. Parsing is strict: an
/// unknown operation or parameter, a value out of range, an operation named twice or a
/// minimum above its maximum is an error naming it. Held in canonical form (no spaces,
/// values as numbers print), so equal changes compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AugmentOps {
    canonical: String,
}

impl AugmentOps {
    /// The changes as text (empty: none).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Whether there are no changes.
    pub fn is_empty(&self) -> bool {
        self.canonical.is_empty()
    }

    /// Makes the changes on `plan`, then checks its ranges (a change can upset a preset's).
    pub fn apply_to(&self, plan: &mut AugmentPlan) -> Result<(), String> {
        for (op, params) in entries(&self.canonical) {
            let params_of = plan.op_mut(op).ok_or_else(|| unknown_op(op))?;
            for (param, value) in params {
                params_of.set(param, value).map_err(|e| format!("augment_ops: {op} {e}"))?;
            }
        }
        plan.validate().map_err(|e| format!("augment_ops: {e}"))
    }
}

/// `op:param=value,...` entries of `text` split on `;` and `,`, blanks and empty entries dropped.
fn entries(text: &str) -> impl Iterator<Item = (&str, Vec<(&str, &str)>)> {
    text.split(';').map(str::trim).filter(|entry| !entry.is_empty()).map(|entry| {
        let (op, params) = entry.split_once(':').unwrap_or((entry, ""));
        let params = params
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                (name.trim(), value.trim())
            })
            .collect();
        (op.trim(), params)
    })
}

fn unknown_op(op: &str) -> String {
    format!("augment_ops: unknown operation {:?}; the operations are {}", crate::error::excerpt(op), AugmentPlan::OPS.join(", "))
}

/// Longest `augment_ops` text: every operation with every parameter written out takes well
/// under a tenth of it, and a longer one (from a hostile recipe or flag) is refused before
/// any of it is quoted in a message.
const MAX_OPS_BYTES: usize = 4096;

impl FromStr for AugmentOps {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() > MAX_OPS_BYTES {
            return Err(format!(
                "augment_ops is {} bytes long (\"{}\"); every operation with all its parameters fits in {MAX_OPS_BYTES}",
                text.len(),
                crate::error::excerpt(text)
            ));
        }
        // Each change is tried on a plan of the operations' defaults; the preset's own values
        // are checked again when the run applies them.
        let mut plan = AugmentPlan::none();
        let mut seen: Vec<&str> = Vec::new();
        let mut parts = Vec::new();
        for (op, params) in entries(text) {
            // Names are checked against the known ones first, so that a message only ever
            // repeats a known (short) name, or an excerpt.
            let params_of = plan.op_mut(op).ok_or_else(|| unknown_op(op))?;
            if seen.contains(&op) {
                return Err(format!("augment_ops: {op} is named twice; give all of its parameters in one entry"));
            }
            seen.push(op);
            let known: Vec<&str> = params_of.params().iter().map(|p| p.name).collect();
            let mut written = Vec::new();
            let mut given: Vec<&str> = Vec::new();
            for (param, value) in params {
                if !known.contains(&param) {
                    return Err(format!(
                        "augment_ops: {op} has no parameter \"{}\" (its parameters: {})",
                        crate::error::excerpt(param),
                        known.join(", ")
                    ));
                }
                if given.contains(&param) {
                    return Err(format!("augment_ops: {op}: {param} is given twice"));
                }
                given.push(param);
                if value.is_empty() {
                    return Err(format!("augment_ops: {op}: {param:?} has no value (write {param}=VALUE)"));
                }
                params_of.set(param, value).map_err(|e| format!("augment_ops: {op} {e}"))?;
                written.push(format!("{param}={}", params_of.get(param).unwrap_or_default()));
            }
            parts.push(if written.is_empty() { op.to_string() } else { format!("{op}:{}", written.join(",")) });
        }
        plan.validate().map_err(|e| format!("augment_ops: {e}"))?;
        Ok(AugmentOps { canonical: parts.join(";") })
    }
}

impl fmt::Display for AugmentOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl Serialize for AugmentOps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical)
    }
}

impl<'de> Deserialize<'de> for AugmentOps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
