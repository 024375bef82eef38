//! sha256 digests of weight files and downloads, as the lowercase hex torchvision's URLs
//! and the wheels' records quote.

use std::io::{ErrorKind, Read};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The sha256 of `bytes` in hex.
pub(crate) fn of_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The sha256 of the file at `path` in hex, read in pieces of 1 MiB (weight files reach
/// hundreds of MB), each piece also handed to `each_piece` (to write a copy on the way).
pub(crate) fn of_file(path: &Path, mut each_piece: impl FnMut(&[u8]) -> Result<()>) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        hasher.update(&buffer[..n]);
        each_piece(&buffer[..n])?;
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
