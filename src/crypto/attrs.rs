//! Sealed attributes (format version 2): a file's mode (file type bits included), owner,
//! group, times, device number, extended attributes and file id travel in one object metadata
//! value, `x-amz-meta-sealfs-attr`, encrypted and authenticated with AES-256-GCM under the
//! prefix's attribute key and bound to the object's key (relative to the mount prefix).
//!
//! ```text
//! plain  = mode u32 || uid u32 || gid u32 || mtime seconds i64 || mtime nanoseconds u32
//!          || file id [16]                  (all big-endian; zero id for directories)
//!          || ctime seconds i64 || ctime nanoseconds u32 || rdev u32
//!          || { name length u8 || name || value length u16 || value }*   (extended attributes)
//! AAD    = "sealfs attr v2" || 0x00 || object key relative to the prefix
//! value  = base64url(nonce [12] || ciphertext || tag [16]), no padding
//! ```
//!
//! The first 40 bytes alone (no ctime, device or extended attributes) are what sealfs wrote
//! before it stored them; such values still open (`ctime`: `None`).
//!
//! Invariants: a value copied from another object (another key), edited, or sealed under
//! another prefix key fails to open; nothing of it is used before it opens.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The metadata key (without `x-amz-meta-`) holding the sealed attributes.
pub const ATTR_KEY: &str = "sealfs-attr";
/// The layout written before ctime, devices and extended attributes were stored.
const CORE_LEN: usize = 40;
/// The fixed part of the current layout.
const FIXED_LEN: usize = 56;
const AAD_TAG: &[u8] = b"sealfs attr v2\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttrError {
    #[error("no sealed attributes (sealfs-attr metadata missing)")]
    Missing,
    #[error("sealed attributes do not authenticate (copied from another object, edited, or from another prefix)")]
    Forged,
}

/// What a sealed attribute value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedAttrs {
    /// `st_mode`: file type bits and permissions.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// The file id of the object's header (all zero for a directory marker).
    pub file_id: [u8; 16],
    /// Seconds and nanoseconds; `None` in values of the 40-byte layout.
    pub ctime: Option<(i64, u32)>,
    /// Device number of a character or block device (0 otherwise).
    pub rdev: u32,
    /// Extended attributes (names of at most 255 bytes, values of at most 65,535).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl SealedAttrs {
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_LEN);
        b.extend_from_slice(&self.mode.to_be_bytes());
        b.extend_from_slice(&self.uid.to_be_bytes());
        b.extend_from_slice(&self.gid.to_be_bytes());
        b.extend_from_slice(&self.mtime_secs.to_be_bytes());
        b.extend_from_slice(&self.mtime_nanos.to_be_bytes());
        b.extend_from_slice(&self.file_id);
        let (secs, nanos) = self.ctime.unwrap_or((self.mtime_secs, self.mtime_nanos));
        b.extend_from_slice(&secs.to_be_bytes());
        b.extend_from_slice(&nanos.to_be_bytes());
        b.extend_from_slice(&self.rdev.to_be_bytes());
        for (name, value) in &self.xattrs {
            // The callers bound both (`meta::xattr_fits`); anything longer is cut, never
            // mis-framed.
            let name = &name.as_bytes()[..name.len().min(255)];
            let value = &value[..value.len().min(u16::MAX as usize)];
            b.push(name.len() as u8);
            b.extend_from_slice(name);
            b.extend_from_slice(&(value.len() as u16).to_be_bytes());
            b.extend_from_slice(value);
        }
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != CORE_LEN && b.len() < FIXED_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let i64_at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let mut a = Self {
            mode: u32_at(0),
            uid: u32_at(4),
            gid: u32_at(8),
            mtime_secs: i64_at(12),
            mtime_nanos: u32_at(20),
            file_id: b[24..40].try_into().expect("16 bytes"),
            ctime: None,
            rdev: 0,
            xattrs: Vec::new(),
        };
        if b.len() == CORE_LEN {
            return Some(a);
        }
        a.ctime = Some((i64_at(40), u32_at(48)));
        a.rdev = u32_at(52);
        let mut rest = &b[FIXED_LEN..];
        while let Some((&n, tail)) = rest.split_first() {
            let name = tail.get(..usize::from(n))?;
            let len = tail.get(usize::from(n)..usize::from(n) + 2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let value = tail.get(usize::from(n) + 2..usize::from(n) + 2 + len)?;
            a.xattrs
                .push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
            rest = &tail[usize::from(n) + 2 + len..];
        }
        Some(a)
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
        self.seal_plain(rel_key, &attrs.to_bytes(), nonce)
    }

    fn seal_plain(&self, rel_key: &str, plain: &[u8], nonce: [u8; 12]) -> String {
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad(rel_key),
                },
            )
            .expect("AES-GCM seals any length");
        URL_SAFE_NO_PAD.encode([&nonce[..], &sealed].concat())
    }

    /// The attributes sealed in `value` for the object at `rel_key`.
    pub fn open(&self, rel_key: &str, value: &str) -> Result<SealedAttrs, AttrError> {
        let raw = URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|_| AttrError::Forged)?;
        if raw.len() < 12 + CORE_LEN + 16 {
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
            ctime: Some((1_700_000_001, 7)),
            rdev: 0x0801,
            xattrs: vec![("user.a".into(), b"x".to_vec()), ("user.b".into(), vec![])],
        };
        let v = s.seal("dir/file", &a);
        // 12 + 56 + (1 + 6 + 2 + 1) + (1 + 6 + 2) + 16 = 103 bytes.
        assert_eq!(v.len(), 138);
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

    #[test]
    fn the_forty_byte_layout_still_opens_and_truncated_entries_do_not() {
        let s = AttrSealer::new(&[9; 32]);
        let a = SealedAttrs {
            mode: 0o100600,
            uid: 1,
            gid: 2,
            mtime_secs: 3,
            mtime_nanos: 4,
            file_id: [5; 16],
            ctime: Some((6, 7)),
            rdev: 0,
            xattrs: vec![("user.k".into(), b"value".to_vec())],
        };
        let full = a.to_bytes();
        let old = s.seal_plain("f", &full[..CORE_LEN], [1; 12]);
        let opened = s.open("f", &old).unwrap();
        assert_eq!((opened.ctime, opened.rdev), (None, 0));
        assert!(opened.xattrs.is_empty());
        // Every cut inside the entry list, and a cut fixed part, is refused.
        for cut in (CORE_LEN + 1..FIXED_LEN).chain(FIXED_LEN + 1..full.len()) {
            let v = s.seal_plain("f", &full[..cut], [1; 12]);
            assert_eq!(s.open("f", &v), Err(AttrError::Forged), "cut at {cut}");
        }
        assert_eq!(s.open("f", &s.seal_plain("f", &full, [1; 12])), Ok(a));
    }
}
