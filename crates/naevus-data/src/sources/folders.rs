//! Class folders: one sub-folder per class, labelled by its name.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};


use super::{SourceData, SourceKind, has_image_extension, resolve_inside};
use crate::error::DataError;
use crate::records::{Metadata, Record, Reject};

/// Folder names that mean "melanoma" for the binary label.
const POSITIVE_FOLDERS: [&str; 4] = ["malignant", "melanoma", "mel", "positive"];

/// Class folders: every .jpg/.jpeg/.png inside `root/<class>/` is a record labelled by
/// its folder. Sorted by folder then file name so the order never depends on the file system.
pub(super) fn read_folders(root: &Path) -> Result<SourceData, DataError> {
    let canonical = fs::canonicalize(root).map_err(|e| DataError::io(root, e))?;
    let mut classes = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
        let entry = entry.map_err(|e| DataError::io(root, e))?;
        if entry.path().is_dir() {
            classes.push(entry.path());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "{}: no class sub-folders found; expected one folder per class (e.g. benign/, malignant/)",
            root.display()
        )));
    }

    let mut data = SourceData::default();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for class_dir in classes {
        let class = class_dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let mut files = Vec::new();
        for entry in fs::read_dir(&class_dir).map_err(|e| DataError::io(&class_dir, e))? {
            let path = entry.map_err(|e| DataError::io(&class_dir, e))?.path();
            if path.is_file() && has_image_extension(&path) {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(first) = seen.get(&id) {
                data.rejects.push(Reject {
                    row: None,
                    path: path.display().to_string(),
                    reason: format!("duplicate image id {id} (first seen as {})", first.display()),
                });
                continue;
            }
            let image_path = match resolve_inside(&canonical, &path) {
                Ok(resolved) => resolved,
                Err(reason) => {
                    data.rejects.push(Reject { row: None, path: path.display().to_string(), reason });
                    continue;
                }
            };
            seen.insert(id.clone(), path.clone());
            data.records.push(Record {
                group: id.clone(),
                id,
                file_bytes: std::fs::metadata(&image_path).ok().map(|m| m.len()),
                image_path,
                crop: None,
                is_external: false,
                melanoma: Some(POSITIVE_FOLDERS.contains(&class.as_str())),
                diagnosis: Some(class.clone()),
                metadata: Metadata::default(),
                split: None,
                source: SourceKind::Folders.as_str().to_string(),
                row: None,
            });
        }
    }
    Ok(data)
}
