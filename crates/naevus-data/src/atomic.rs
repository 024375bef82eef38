//! Writing a file so that a reader, or a process killed half-way, never sees half of it: the
//! one helper every crate of naevus writes its files with (the data crate is the lowest of
//! them, so the helper lives here; naevus-run re-exports it for the run directory). This
//! module also owns the temporary files' naming, and the removal of those a killed process
//! left behind.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Writes `bytes` to `path` so that a reader never sees half of it, without replacing what
/// is not a plain file:
/// - `-` is standard output;
/// - an existing device, FIFO or socket (also through a symbolic link, as /dev/stdout is) is
///   opened and written directly: renaming over it would only hide it;
/// - a symbolic link is followed, and its final target replaced, so the link stays a link;
/// - otherwise the bytes go to a temporary file in the same directory, synced, then renamed
///   over the file. The temporary name carries the process id, so processes that share a
///   directory (train --only-folds) never write the same temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout.write_all(bytes).and_then(|_| stdout.flush()).map_err(|e| DataError::io("standard output", e));
    }
    // fs::metadata follows links; a missing path or a dangling link is an error here.
    if fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
        return write_through(path, bytes);
    }
    replace_file(&resolve_links(path)?, bytes)
}

/// Opens an existing device or FIFO and writes into it (no temporary file, no rename). A FIFO
/// waits here for its reader, as with a shell's `>`.
fn write_through(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let mut file = fs::OpenOptions::new().write(true).open(path).map_err(|e| DataError::io(path, e))?;
    file.write_all(bytes).and_then(|_| file.flush()).map_err(|e| DataError::io(path, e))
}

/// The path a chain of symbolic links ends at (the path itself when it is not a link). The
/// end need not exist: a dangling link's target is created.
fn resolve_links(path: &Path) -> Result<PathBuf, DataError> {
    // As the kernel does (ELOOP): a cycle of links must not loop for ever.
    const MAX_LINKS: usize = 40;
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let is_link = fs::symlink_metadata(&current).is_ok_and(|meta| meta.file_type().is_symlink());
        if !is_link {
            return Ok(current);
        }
        let target = fs::read_link(&current).map_err(|e| DataError::io(&current, e))?;
        // A relative target is relative to the link's own directory.
        current = match current.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    Err(DataError::io(path, std::io::Error::other(format!("more than {MAX_LINKS} symbolic links in a row (a cycle?)"))))
}

/// Writes a temporary file beside `path`, synced, then renames it over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
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

    /// Issue 29.9: a symbolic link keeps pointing at its target, which gets the bytes (also
    /// when the target does not exist yet, and through a chain of relative links).
    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_stays_and_its_target_is_replaced() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/out.csv"), "old").unwrap();
        symlink("real/out.csv", dir.path().join("link.csv")).unwrap();
        symlink("link.csv", dir.path().join("link2.csv")).unwrap();
        write_atomic(&dir.path().join("link2.csv"), b"new").unwrap();
        for link in ["link.csv", "link2.csv"] {
            assert!(fs::symlink_metadata(dir.path().join(link)).unwrap().file_type().is_symlink(), "{link}");
        }
        assert_eq!(fs::read(dir.path().join("real/out.csv")).unwrap(), b"new");

        symlink("real/later.csv", dir.path().join("dangling.csv")).unwrap();
        write_atomic(&dir.path().join("dangling.csv"), b"made").unwrap();
        assert!(fs::symlink_metadata(dir.path().join("dangling.csv")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(dir.path().join("real/later.csv")).unwrap(), b"made");
        let names: Vec<_> = fs::read_dir(dir.path().join("real")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");

        symlink("loop-b", dir.path().join("loop-a")).unwrap();
        symlink("loop-a", dir.path().join("loop-b")).unwrap();
        let err = write_atomic(&dir.path().join("loop-a"), b"x").unwrap_err().to_string();
        assert!(err.contains("loop-a") && err.contains("symbolic links"), "{err}");
    }

    /// Issue 29.9: a FIFO is written into, not replaced by a file; so is a device.
    #[cfg(unix)]
    #[test]
    fn a_fifo_and_a_device_are_written_through() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let (sender, received) = std::sync::mpsc::channel();
        let reader_path = fifo.clone();
        std::thread::spawn(move || {
            // Opening a FIFO for reading waits for its writer; the read ends when it closes.
            let bytes = fs::read(&reader_path);
            let _ = sender.send(bytes.map_err(|e| e.to_string()));
        });
        write_atomic(&fifo, b"image_name,target\na,0.5\n").unwrap();
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
        let read = received.recv_timeout(std::time::Duration::from_secs(10)).expect("the reader got the bytes within 10 s");
        assert_eq!(read.unwrap(), b"image_name,target\na,0.5\n");

        write_atomic(Path::new("/dev/null"), b"nothing").unwrap();
        assert!(fs::symlink_metadata("/dev/null").unwrap().file_type().is_char_device());
        let strays: Vec<_> = fs::read_dir("/dev").unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".null.")).collect();
        assert!(strays.is_empty(), "{strays:?}");
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
