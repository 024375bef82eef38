//! Helpers shared by the end-to-end tests of the `naevus` binary.

// Each test binary uses some of these helpers.
#[allow(dead_code)]
pub mod http;
#[allow(dead_code)]
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The committed CC0 fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Runs the binary with `args` and waits for it.
pub fn naevus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naevus")).args(args).output().expect("the naevus binary runs")
}

/// Everything the command printed, stdout then stderr.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Writes `content` to `dir/name`; its path as text, for an argument.
#[allow(dead_code)] // not every test binary writes files this way
pub fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

#[allow(dead_code)] // used by some of the test binaries
/// Waits until `path` exists while `child` runs. Panics, naming the file, when the child ends
/// first or five minutes pass (a child that died early must fail the test, not hang it).
pub fn wait_for_file(path: &Path, child: &mut Child) {
    let started = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the process ended ({status}) before {} appeared", path.display());
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("{} did not appear within 300 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
