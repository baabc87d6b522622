//! Sealed attributes (format version 2): a file's mode (file type bits included), owner,
//! group, mtime and file id travel in one object metadata value, `x-amz-meta-sealfs-attr`,
//! encrypted and authenticated with AES-256-GCM under the prefix's attribute key and bound to
//! the object's key (relative to the mount prefix).
//!
//! ```text
//! plain  = mode u32 || uid u32 || gid u32 || mtime seconds i64 || mtime nanoseconds u32
//!          || file id [16]                  (all big-endian; 40 bytes; zero id for directories)
//! AAD    = "sealfs attr v2" || 0x00 || object key relative to the prefix
//! value  = base64url(nonce [12] || ciphertext [40] || tag [16]), no padding (91 characters)
//! ```
//!
//! Invariants: a value copied from another object (another key), edited, or sealed under
//! another prefix key fails to open; nothing of it is used before it opens.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The metadata key (without `x-amz-meta-`) holding the sealed attributes.
pub const ATTR_KEY: &str = "sealfs-attr";
const PLAIN_LEN: usize = 40;
const AAD_TAG: &[u8] = b"sealfs attr v2\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttrError {
    #[error("no sealed attributes (sealfs-attr metadata missing)")]
    Missing,
    #[error("sealed attributes do not authenticate (copied from another object, edited, or from another prefix)")]
    Forged,
}

/// What a sealed attribute value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedAttrs {
    /// `st_mode`: file type bits and permissions.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// The file id of the object's header (all zero for a directory marker).
    pub file_id: [u8; 16],
}

impl SealedAttrs {
    fn to_bytes(self) -> [u8; PLAIN_LEN] {
        let mut b = [0u8; PLAIN_LEN];
        b[0..4].copy_from_slice(&self.mode.to_be_bytes());
        b[4..8].copy_from_slice(&self.uid.to_be_bytes());
        b[8..12].copy_from_slice(&self.gid.to_be_bytes());
        b[12..20].copy_from_slice(&self.mtime_secs.to_be_bytes());
        b[20..24].copy_from_slice(&self.mtime_nanos.to_be_bytes());
        b[24..40].copy_from_slice(&self.file_id);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != PLAIN_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Some(Self {
            mode: u32_at(0),
            uid: u32_at(4),
            gid: u32_at(8),
            mtime_secs: i64::from_be_bytes(b[12..20].try_into().expect("8 bytes")),
            mtime_nanos: u32_at(20),
            file_id: b[24..40].try_into().expect("16 bytes"),
        })
    }
}

/// AES-256-GCM under the prefix's attribute key.
pub struct AttrSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for AttrSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttrSealer(..)")
    }
}

fn aad(rel_key: &str) -> Vec<u8> {
    [AAD_TAG, rel_key.as_bytes()].concat()
}

impl AttrSealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
        }
    }

    /// The metadata value for `attrs` of the object at `rel_key`, with a random nonce.
    pub fn seal(&self, rel_key: &str, attrs: &SealedAttrs) -> String {
        let mut nonce = [0u8; 12];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
        self.seal_with_nonce(rel_key, attrs, nonce)
    }

    /// Sealing with a given nonce: only for the documented test vectors.
    pub fn seal_with_nonce(&self, rel_key: &str, attrs: &SealedAttrs, nonce: [u8; 12]) -> String {
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &attrs.to_bytes(),
                    aad: &aad(rel_key),
                },
            )
            .expect("40 bytes seal");
        URL_SAFE_NO_PAD.encode([&nonce[..], &sealed].concat())
    }

    /// The attributes sealed in `value` for the object at `rel_key`.
    pub fn open(&self, rel_key: &str, value: &str) -> Result<SealedAttrs, AttrError> {
        let raw = URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|_| AttrError::Forged)?;
        if raw.len() != 12 + PLAIN_LEN + 16 {
            return Err(AttrError::Forged);
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&raw[..12]),
                Payload {
                    msg: &raw[12..],
                    aad: &aad(rel_key),
                },
            )
            .map_err(|_| AttrError::Forged)?;
        SealedAttrs::from_bytes(&plain).ok_or(AttrError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_open_only_on_their_own_object_under_their_own_key() {
        let s = AttrSealer::new(&[9; 32]);
        let a = SealedAttrs {
            mode: 0o100644,
            uid: 1000,
            gid: 100,
            mtime_secs: 1_700_000_000,
            mtime_nanos: 5,
            file_id: [0xa5; 16],
        };
        let v = s.seal("dir/file", &a);
        assert_eq!(v.len(), 91);
        assert_eq!(s.open("dir/file", &v), Ok(a));
        assert_eq!(s.open("dir/other", &v), Err(AttrError::Forged));
        assert_eq!(s.open("dir/file/", &v), Err(AttrError::Forged), "marker");
        assert_eq!(
            AttrSealer::new(&[8; 32]).open("dir/file", &v),
            Err(AttrError::Forged)
        );
        let mut edited = v.clone().into_bytes();
        edited[40] = if edited[40] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(s.open("dir/file", &edited), Err(AttrError::Forged));
        assert_eq!(s.open("dir/file", "33188"), Err(AttrError::Forged));
    }
}
