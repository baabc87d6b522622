//! A key that never leaves this machine: the disk cache's key in modes where the bucket's
//! bytes are plaintext (`none`, `sse-*`), so that cache files hold only ciphertext there too.
//!
//! Invariants:
//! - The key file is created once with mode 0600 (never overwritten) and refused when group or
//!   others may read it, like every key file of sealfs.
//! - `seal` output is `nonce (12) || ciphertext || tag (16)` of AES-256-GCM with a random
//!   nonce; `open` authenticates it against the same associated data before returning a byte.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::keys::{keygen, load_key_file, KeyError};

const NONCE: usize = 12;
const TAG: usize = 16;

pub struct LocalKey {
    aead: Aes256Gcm,
}

/// Sealed bytes that did not authenticate (torn, corrupted, or sealed under another key).
#[derive(Debug, thiserror::Error)]
#[error("sealed bytes do not authenticate under the local key")]
pub struct Unsealable;

impl LocalKey {
    /// The key in `path`, made first if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if !path.exists() {
            match keygen(path) {
                Ok(()) => {}
                // Another process made it first: read theirs.
                Err(KeyError::Write(_, e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let key = load_key_file(path)?;
        Ok(Self {
            aead: Aes256Gcm::new((&key.0).into()),
        })
    }

    /// Bytes `seal` adds to a plaintext.
    pub const OVERHEAD: usize = NONCE + TAG;

    pub fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let nonce: [u8; NONCE] = crate::sys::random_bytes();
        let sealed = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
    }

    /// The plaintext of `sealed`, decrypted where it lies and then moved to the front of the
    /// same buffer (while still in the CPU's cache): nothing is allocated.
    pub fn open(&self, aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>, Unsealable> {
        let Some(end) = sealed.len().checked_sub(TAG).filter(|&e| e >= NONCE) else {
            return Err(Unsealable);
        };
        let (nonce, rest) = sealed.split_at_mut(NONCE);
        let (text, tag) = rest.split_at_mut(end - NONCE);
        self.aead
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                aad,
                text,
                aes_gcm::Tag::from_slice(tag),
            )
            .map_err(|_| Unsealable)?;
        sealed.truncate(end);
        sealed.drain(..NONCE);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = LocalKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut sealed = Vec::new();
        k.seal(b"ctx", b"plain bytes", &mut sealed);
        assert_eq!(sealed.len(), 11 + LocalKey::OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"plain"));
        let again = LocalKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(b"ctx", sealed.clone()).unwrap(), b"plain bytes");
        assert!(again.open(b"other", sealed.clone()).is_err());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(k.open(b"ctx", bad).is_err());
        assert!(k.open(b"ctx", sealed[..10].to_vec()).is_err());
        let other = LocalKey::load_or_create(&dir.path().join("k2")).unwrap();
        assert!(other.open(b"ctx", sealed).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LocalKey::load_or_create(&path),
            Err(KeyError::LoosePermissions { .. })
        ));
    }
}
