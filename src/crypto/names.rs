//! Encrypted file names (format version 2): each name in a path is sealed with AES-SIV
//! (RFC 5297, AES-256, deterministic) under the prefix's name key, with the plaintext path of
//! its parent directory as associated data, and written in unpadded base64url.
//!
//! ```text
//! padded  = name || k bytes of value k            (k in 1..=16, total a multiple of 16)
//! sealed  = AES-SIV-256(names key, AD = [parent path], padded) = V (16) || ciphertext
//! encoded = base64url(sealed), no '=' padding
//! ```
//!
//! Invariants:
//! - Deterministic: the same name in the same directory always gives the same object key, so
//!   a lookup is one HEAD and a listing one LIST per 1,000 names, as with plain names.
//! - Bound to the parent: the same encrypted name under another directory does not decrypt
//!   (a moved object is refused, not shown under its old name).
//! - The bucket learns a name's length rounded up to 16 bytes, and which names in one
//!   directory are equal across time; never a name's bytes.
//! - Anything that does not decode and authenticate is `NameError::NotSealed`, never a panic.

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// AES-SIV's synthetic IV, at the front of every sealed name.
const SIV_LEN: usize = 16;
const PAD: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("not an encrypted name of this directory")]
    NotSealed,
}

/// The 512-bit AES-SIV key for names (two AES-256 keys: CMAC and CTR).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NameCipher {
    key: [u8; 64],
}

impl std::fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCipher(..)")
    }
}

impl NameCipher {
    pub fn new(key: [u8; 64]) -> Self {
        Self { key }
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(&self.key).expect("64-byte AES-SIV key")
    }

    /// The encrypted form of `name` in the directory at plaintext path `parent`.
    pub fn encrypt(&self, parent: &str, name: &str) -> String {
        let k = PAD - name.len() % PAD;
        let mut padded = Vec::with_capacity(name.len() + k);
        padded.extend_from_slice(name.as_bytes());
        padded.resize(name.len() + k, k as u8);
        let sealed = self
            .siv()
            .encrypt([parent.as_bytes()], &padded)
            .expect("AES-SIV encrypts any length");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The plaintext name `encoded` stands for in directory `parent`.
    pub fn decrypt(&self, parent: &str, encoded: &str) -> Result<String, NameError> {
        let sealed = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| NameError::NotSealed)?;
        if sealed.len() < SIV_LEN + PAD || !(sealed.len() - SIV_LEN).is_multiple_of(PAD) {
            return Err(NameError::NotSealed);
        }
        let mut padded = self
            .siv()
            .decrypt([parent.as_bytes()], &sealed)
            .map_err(|_| NameError::NotSealed)?;
        let k = usize::from(*padded.last().ok_or(NameError::NotSealed)?);
        if k == 0
            || k > PAD
            || padded[padded.len() - k..]
                .iter()
                .any(|&b| usize::from(b) != k)
        {
            return Err(NameError::NotSealed);
        }
        padded.truncate(padded.len() - k);
        let name = String::from_utf8(padded).map_err(|_| NameError::NotSealed)?;
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(NameError::NotSealed);
        }
        Ok(name)
    }

    /// Length of the encrypted form of a name of `len` bytes.
    pub fn encrypted_len(len: usize) -> usize {
        let sealed = SIV_LEN + (len / PAD + 1) * PAD;
        sealed.div_ceil(3) * 4 - (3 - sealed % 3) % 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> NameCipher {
        NameCipher::new(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn names_round_trip_deterministically_and_only_in_their_directory() {
        let c = cipher();
        for name in [
            "a",
            "hello.txt",
            "fifteen-bytes!!",
            "sixteen-bytes!!!",
            "日本語 ✓",
        ] {
            let e = c.encrypt("dir/sub", name);
            assert_eq!(e, c.encrypt("dir/sub", name), "deterministic");
            assert_eq!(e.len(), NameCipher::encrypted_len(name.len()), "{name}");
            assert!(e
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(c.decrypt("dir/sub", &e).unwrap(), name);
            assert_eq!(c.decrypt("dir", &e), Err(NameError::NotSealed), "moved");
            assert_ne!(e, c.encrypt("", name));
        }
        let long = "x".repeat(255);
        assert_eq!(c.encrypt("", &long).len(), 363);
        assert_eq!(c.decrypt("", &c.encrypt("", &long)).unwrap(), long);
        let other = NameCipher::new([7; 64]);
        assert_eq!(
            other.decrypt("", &c.encrypt("", "a")),
            Err(NameError::NotSealed)
        );
    }

    #[test]
    fn foreign_names_are_refused_not_panicked_on() {
        let c = cipher();
        for junk in [
            "",
            ".sealfs",
            "plain.txt",
            "a_$folder$",
            "AAAA",
            &"A".repeat(43),
        ] {
            assert_eq!(c.decrypt("", junk), Err(NameError::NotSealed), "{junk:?}");
        }
        let mut e = c.encrypt("", "name").into_bytes();
        e[3] = if e[3] == b'A' { b'B' } else { b'A' };
        assert!(c.decrypt("", std::str::from_utf8(&e).unwrap()).is_err());
    }
}
