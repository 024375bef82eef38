//! Sealed files: checkpoints, optimiser states and training states carry a header with what
//! they are, their format version and a SHA-256 of their contents, checked on every load, so
//! that a damaged or foreign file is refused instead of loaded as garbage.
//!
//! ```text
//! "NAEVUS\0" kind (8 bytes, NUL-padded) version (u32 LE) length (u64 LE) sha256 (32 bytes) payload
//! ```

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::RunError;

const MAGIC: &[u8; 7] = b"NAEVUS\0";
const HEADER: usize = 7 + 8 + 4 + 8 + 32;
/// Bumped when a sealed payload's layout changes.
pub const SEALED_FORMAT: u32 = 1;

/// `payload` with the header that names it `kind` (at most 8 bytes, e.g. "weights").
pub fn seal(kind: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&kind_bytes(kind));
    out.extend_from_slice(&SEALED_FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of a sealed file's `bytes` read from `path`, once its header says it is a
/// `kind` of this format and its checksum matches; otherwise an error naming the file and
/// what to do.
pub fn unseal<'a>(path: &Path, kind: &str, bytes: &'a [u8]) -> Result<&'a [u8], RunError> {
    let damaged = |what: String| RunError::Damaged { path: path.to_path_buf(), what };
    if bytes.len() < HEADER || &bytes[..7] != MAGIC {
        return Err(damaged(format!("it is not a naevus {kind} file (no naevus header; written by another program or by a naevus before checksums)")));
    }
    let found_kind = &bytes[7..15];
    if found_kind != kind_bytes(kind) {
        let found = String::from_utf8_lossy(found_kind).trim_end_matches('\0').to_string();
        return Err(damaged(format!("it holds a {found:?}, not a {kind:?}")));
    }
    let version = u32::from_le_bytes(bytes[15..19].try_into().unwrap_or_default());
    if version != SEALED_FORMAT {
        return Err(damaged(format!("it has format {version}; this naevus reads format {SEALED_FORMAT}")));
    }
    let length = u64::from_le_bytes(bytes[19..27].try_into().unwrap_or_default());
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != length {
        return Err(damaged(format!("it is truncated or extended: {} bytes of contents, the header says {length}", payload.len())));
    }
    if Sha256::digest(payload).as_slice() != &bytes[27..HEADER] {
        return Err(damaged("its checksum does not match its contents".into()));
    }
    Ok(payload)
}

/// Reads and unseals the file at `path`.
pub fn read_sealed(path: &Path, kind: &str) -> Result<Vec<u8>, RunError> {
    let bytes = std::fs::read(path).map_err(|e| RunError::io(path, e))?;
    Ok(unseal(path, kind, &bytes)?.to_vec())
}

/// Seals `payload` and writes it atomically.
pub fn write_sealed(path: &Path, kind: &str, payload: &[u8]) -> Result<(), RunError> {
    Ok(crate::write_atomic(path, &seal(kind, payload))?)
}

fn kind_bytes(kind: &str) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(kind.bytes()) {
        *o = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_flipped_byte_truncation_or_other_kind_is_refused() {
        let path = Path::new("fold-0/best.bpk");
        let sealed = seal("weights", b"some tensor bytes");
        assert_eq!(unseal(path, "weights", &sealed).unwrap(), b"some tensor bytes");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            let error = unseal(path, "weights", &bad).unwrap_err().to_string();
            assert!(error.contains("fold-0/best.bpk"), "byte {i}: {error}");
        }
        assert!(unseal(path, "weights", &sealed[..sealed.len() - 1]).unwrap_err().to_string().contains("truncated"));
        assert!(unseal(path, "optim", &sealed).unwrap_err().to_string().contains("not a \"optim\""));
        assert!(unseal(path, "weights", b"PK\x03\x04 a zip").unwrap_err().to_string().contains("no naevus header"));
    }
}
