//! Writing a file so that a reader, or a process killed half-way, never sees half of it: the
//! one helper every crate of naevus writes its files with (the data crate is the lowest of
//! them, so the helper lives here; naevus-run re-exports it for the run directory).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

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
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
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
}
