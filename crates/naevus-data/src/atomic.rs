//! Writing a file so that a reader, or a process killed half-way, never sees half of it: the
//! one helper every crate of naevus writes its files with (the data crate is the lowest of
//! them, so the helper lives here; naevus-run re-exports it for the run directory). This
//! module also owns the temporary files' naming, and the removal of those a killed process
//! left behind.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, then
/// renamed over `path`. The temporary name carries the process id, so processes that share
/// a directory (train --only-folds) never write the same temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = temporary_path(dir, path);
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        // A full disk must not leave the partial temporary file behind.
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(&tmp, std::io::Error::new(e.kind(), format!("{e} (is the disk full?)"))));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        DataError::io(path, e)
    })
}

/// `.NAME.PID.tmp` in `dir`, for `path` named NAME and this process.
fn temporary_path(dir: &Path, path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Whether `file_name` is a temporary file of [`write_atomic`] whose process has ended: it
/// can only be left over from a kill (or a crash), and nobody will rename it any more.
pub(crate) fn is_stale_temporary(file_name: &str) -> bool {
    let Some(inner) = file_name.strip_prefix('.').and_then(|rest| rest.strip_suffix(".tmp")) else { return false };
    let Some((name, pid)) = inner.rsplit_once('.') else { return false };
    match pid.parse::<u32>() {
        Ok(pid) => !name.is_empty() && pid != std::process::id() && !process_is_running(pid),
        Err(_) => false,
    }
}

/// Removes from `dir` (not its sub-directories) the temporary files of [`write_atomic`]
/// that processes no longer running left there, and says on stderr how many, when any.
/// Call it with `dir`'s lock held where it has one; the process check keeps a live
/// process's temporary file even without a lock. Returns how many were removed.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_stale_temporary(&entry.file_name().to_string_lossy()) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        eprintln!("note: removed {removed} temporary file(s) left in {} by killed naevus processes", dir.display());
    }
    removed
}

/// Whether a process with this id runs now (signal 0 checks without sending anything; EPERM
/// means it runs under another user).
#[cfg(unix)]
fn process_is_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let status = unsafe { libc::kill(pid, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Elsewhere there is no cheap check: every such file counts as a live process's.
#[cfg(not(unix))]
fn process_is_running(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["file.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn only_temporaries_of_ended_processes_are_stale() {
        // A child that has been waited for has ended; its pid is not reused this quickly.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let ended = child.id();
        assert!(is_stale_temporary(&format!(".run.json.{ended}.tmp")));
        assert!(!is_stale_temporary(&format!(".run.json.{}.tmp", std::process::id())));
        for other in [".run.json.tmp", "run.json.123.tmp", ".run.json.12x.tmp", "..4194304.tmp", ".run.json.123"] {
            assert!(!is_stale_temporary(other), "{other}");
        }
    }
}
