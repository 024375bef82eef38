//! A share of a prediction job. `naevus predict --shard K/N` scores the images at positions
//! K, K + N, K + 2N, ... of the job's image list (the same list in every shard: the cache's
//! order, or the files as found) and writes, beside its CSV, what it was given and did
//! ([`ShardRecord`], `OUT.shard.json`), so that `naevus merge` can check that the shards
//! together scored every image exactly once. A Kubernetes Indexed Job or a Slurm array runs
//! one shard per task, the index read from the environment (`--shard env/N`).

use std::path::{Path, PathBuf};

use naevus_data::error::excerpt;
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::write_atomic;

/// Environment variables that give a task its index: a Kubernetes Indexed Job's, then a Slurm
/// array's (launch it with `--array=0-(N-1)`).
pub const INDEX_VARIABLES: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];

/// Most shards a job may be cut into.
pub const MAX_SHARDS: usize = 1_000_000;

/// This process's share: every `count`-th image from the `index`-th (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Reads `K/N` (K from 0 to N - 1), or `env/N` with K from [`INDEX_VARIABLES`] as `env`
    /// gives them (the process environment, in use).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, RunError> {
        let invalid = |why: String| RunError::Invalid(format!("--shard {}: {why}", excerpt(text)));
        let (index, count) = text.split_once('/').ok_or_else(|| invalid("expected K/N (e.g. 0/8) or env/N".into()))?;
        let count: usize = count.trim().parse().map_err(|_| invalid(format!("the shard count \"{}\" is not a whole number", excerpt(count))))?;
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(invalid(format!("the shard count must be 1 to {MAX_SHARDS}")));
        }
        let index = match index.trim() {
            "env" => {
                let found: Vec<(&str, String)> = INDEX_VARIABLES.iter().filter_map(|name| env(name).map(|value| (*name, value))).collect();
                let (name, value) = found.first().ok_or_else(|| invalid(format!("none of {} is set", INDEX_VARIABLES.join(" or "))))?;
                value.trim().parse::<usize>().map_err(|_| invalid(format!("{name}={} is not a whole number", excerpt(value))))?
            }
            index => index.parse().map_err(|_| invalid(format!("the shard index \"{}\" is not a whole number or env", excerpt(index))))?,
        };
        if index >= count {
            return Err(invalid(format!("the shard index {index} must be below the shard count {count} (indices start at 0)")));
        }
        Ok(Self { index, count })
    }

    /// Whether the image at `position` of the job's list is this shard's.
    pub fn keeps(self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// What one shard was given and did, written beside its CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub shard: usize,
    pub shards: usize,
    /// [`inputs_sha256`] of the whole job's image ids: shards of one job share it.
    pub inputs_sha256: String,
    /// Images in the whole job.
    pub images_in_all: usize,
    /// Images that were this shard's.
    pub assigned: usize,
    /// Rows of its CSV.
    pub scored: usize,
    /// Ids of its images that could not be read (named when it ran).
    pub unreadable: Vec<String>,
}

impl ShardRecord {
    /// Where the record of the CSV `csv` lives: `CSV.shard.json`.
    pub fn path_for(csv: &Path) -> PathBuf {
        let mut name = csv.as_os_str().to_owned();
        name.push(".shard.json");
        PathBuf::from(name)
    }

    pub fn write(&self, csv: &Path) -> Result<(), RunError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| RunError::Invalid(e.to_string()))?;
        Ok(write_atomic(&Self::path_for(csv), json.as_bytes())?)
    }

    /// The record beside `csv`; an error naming it when it is missing or not one.
    pub fn read(csv: &Path) -> Result<Self, RunError> {
        let path = Self::path_for(csv);
        let mut text = String::new();
        let file = std::fs::File::open(&path)
            .map_err(|e| RunError::Invalid(format!("{}: {e}; is {} the CSV of `naevus predict --shard`?", path.display(), csv.display())))?;
        // A record is a few hundred bytes plus the unreadable ids.
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 256 << 20), &mut text).map_err(|e| RunError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| RunError::json(&path, 0, &e))
    }
}

/// A short SHA-256 of a job's image ids, in order: two shards share it only when they were
/// given the same images.
pub fn inputs_sha256(ids: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_read_from_the_flag_or_the_environment_and_checked() {
        let none = |_: &str| None;
        assert_eq!(Shard::parse("2/8", none).unwrap(), Shard { index: 2, count: 8 });
        let kubernetes = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        assert_eq!(Shard::parse("env/4", kubernetes).unwrap(), Shard { index: 3, count: 4 });
        let slurm = |name: &str| (name == "SLURM_ARRAY_TASK_ID").then(|| "1".to_string());
        assert_eq!(Shard::parse("env/4", slurm).unwrap(), Shard { index: 1, count: 4 });
        for (text, expected) in [
            ("8/8", "must be below the shard count 8"),
            ("1", "expected K/N"),
            ("0/0", "must be 1 to"),
            ("x/2", "not a whole number or env"),
            ("env/2", "none of JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID is set"),
        ] {
            let message = Shard::parse(text, none).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
        let wrong = |_: &str| Some("seven".to_string());
        assert!(Shard::parse("env/8", wrong).unwrap_err().to_string().contains("JOB_COMPLETION_INDEX=seven"));
        // Every position belongs to exactly one shard.
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for position in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.keeps(position)).count(), 1);
        }
    }
}
