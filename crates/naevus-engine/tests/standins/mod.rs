//! Where the torchvision stand-ins are, for the tests of naevus-engine and naevus-cli that
//! load them (the CLI's tests include this file by its path).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The folder of stand-ins, made by scripts/torchvision-standins.sh on first use in the test
/// process (about 940 MB under target/torchvision-standins), or NAEVUS_TORCHVISION_STANDINS
/// when it is set.
pub fn standins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("NAEVUS_TORCHVISION_STANDINS") {
            return PathBuf::from(dir);
        }
        let dir = workspace().join("target/torchvision-standins");
        let script = workspace().join("scripts/torchvision-standins.sh");
        let status = Command::new(&script).arg(&dir).status().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(status.success(), "{} failed (it needs python3 with venv and pip, and PyPI for numpy)", script.display());
        dir
    })
}
