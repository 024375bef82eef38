//! A folder that a command writes whole (export's model, combine's cache): written under a
//! temporary name beside its destination and renamed into place when complete, under the
//! project's lock (`RunLock::beside`). A failure leaves no destination behind, so a retry
//! succeeds; a second process writing the same destination at once is refused; and the
//! rename never puts a folder over another one's files, so two runs never mix.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use naevus_run::RunLock;

/// Suffix of the temporary folders, `.NAME.PID.partial`.
const PARTIAL: &str = "partial";

/// Refuses a destination that exists and is not an empty folder. Call it before slow work,
/// so a mistaken --out is said at once; [`write_folder`] checks again under the lock.
pub fn refuse_unless_empty(destination: &Path) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(destination) else { return Ok(()) };
    if !meta.is_dir() {
        bail!("{} exists and is not a folder; choose a new folder", destination.display());
    }
    if !fs::read_dir(destination).is_ok_and(|mut entries| entries.next().is_none()) {
        bail!("{} exists and is not empty; choose a new folder", destination.display());
    }
    Ok(())
}

/// Runs `write` on an empty temporary folder beside `destination`, then renames that folder
/// to `destination` (which must not exist, or be an empty folder). When `write` fails, the
/// temporary folder is removed and `destination` is untouched.
pub fn write_folder<T>(destination: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let _lock = RunLock::beside(destination)?;
    // Another process may have finished this destination while this one prepared its work.
    refuse_unless_empty(destination)?;
    remove_leftovers(destination);
    let temporary = partial_path(destination, std::process::id());
    fs::create_dir_all(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    let written = write(&temporary).with_context(|| format!("writing {} (nothing of it is left)", destination.display())).and_then(|value| {
        // rename(2) replaces an empty folder, and fails on one that holds anything.
        fs::rename(&temporary, destination)
            .with_context(|| format!("moving the finished {} to {}; nothing was written there", temporary.display(), destination.display()))?;
        Ok(value)
    });
    if written.is_err() {
        let _ = fs::remove_dir_all(&temporary);
    }
    written
}

/// `.NAME.PID.partial` beside `destination`.
fn partial_path(destination: &Path, pid: u32) -> PathBuf {
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    destination.with_file_name(format!(".{name}.{pid}.{PARTIAL}"))
}

/// Removes the temporary folders of `destination` that killed processes left (call with its
/// lock held: no live process writes one then), saying so on stderr.
fn remove_leftovers(destination: &Path) {
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = file_name.strip_prefix(&format!(".{name}.")).and_then(|rest| rest.strip_suffix(&format!(".{PARTIAL}")));
        let is_partial = pid.is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if is_partial && entry.file_type().is_ok_and(|t| t.is_dir()) && fs::remove_dir_all(entry.path()).is_ok() {
            eprintln!("note: removed {}, left by a killed naevus process", entry.path().display());
        }
    }
}
