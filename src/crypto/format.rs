//! The client-side object format, version 1 (docs/FORMAT.md is the byte-exact description).
//!
//! ```text
//! object = header (64 bytes) || block_0 || ... || block_{n-1}      n = max(1, ceil(plain / 65536))
//! header = "SEALFS" || version u8 = 1 || 0u8 || block_size u32 BE = 65536
//!          || key_version u32 BE || file_id [16] || key_commitment [32]
//! block  = nonce [12] || AES-256-GCM ciphertext (same length as the plaintext) || tag [16]
//! AAD    = header[0..32] || block_index u64 BE || last u8 (1 for block n-1, else 0)
//! keys   = HKDF-SHA256(ikm = data key, salt = file_id, info = "sealfs v1 file key") -> 64 bytes:
//!          [0..32] block key, [32..64] key commitment (stored in the header)
//! ```
//!
//! Invariants (each is what a tamper test checks):
//! - A block only opens at its own index of its own file under its own key: the AAD binds the
//!   header (file id, key version) and the index, and the key is derived from the file id.
//! - The last block is marked in its AAD, so truncation at a block boundary and appended blocks
//!   fail to authenticate; every object has at least one block (an empty file has an empty
//!   last block), so even an empty file cannot be truncated unnoticed.
//! - A wrong data key is caught by the header's key commitment before any block is opened.
//! - Sizes are a pure function of each other: `plain_size(cipher_size)` needs nothing but the
//!   listing's object size, and only sizes `cipher_size` can produce are accepted.
//! - Nonces are random per sealing, so rewriting a block never reuses a nonce under its key.
//!   The object name is not bound here, so CopyObject (rename) keeps a body readable; in
//!   format 2 the sealed attributes (`attrs`) bind the name to the file id.

use aes_gcm::aead::OsRng;
// Blocks are sealed with AWS-LC's AES-256-GCM (the same library the TLS stack links): on
// this project's machines it seals 64 KiB blocks ~10x faster than the `aes-gcm` crate
// (VAES/AVX-512 code paths; figures in the issue-14 closing note). The bytes are standard
// AES-256-GCM either way: the test vectors below hold for both.
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const MAGIC: &[u8; 6] = b"SEALFS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: u64 = 64;
/// Plaintext bytes per block: small enough that a random 4 KiB read fetches little, large
/// enough that the 28-byte overhead is 0.04%.
pub const BLOCK_PLAIN: u64 = 65536;
pub const NONCE_LEN: u64 = 12;
pub const TAG_LEN: u64 = 16;
pub const BLOCK_OVERHEAD: u64 = NONCE_LEN + TAG_LEN;
pub const BLOCK_CIPHER: u64 = BLOCK_PLAIN + BLOCK_OVERHEAD;
/// The part of the header every block's AAD covers (all but the commitment).
const HEADER_AAD_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a sealfs object (no sealfs header)")]
    NotSealfs,
    #[error("unsupported sealfs format version {0}")]
    Version(u8),
    #[error("invalid header field: {0}")]
    BadHeader(&'static str),
    #[error("object size {0} is not a valid sealfs ciphertext size")]
    BadSize(u64),
    #[error("wrong key: the key commitment in the header does not match")]
    WrongKey,
    #[error("sealed under key version {0}, which this keyring does not have (keys rotated since the mount started? remount)")]
    UnknownKeyVersion(u32),
    #[error("the object's body belongs to another file (its header's file id is not the one in its metadata)")]
    Swapped,
    #[error(
        "block {0} failed authentication (corrupted, truncated, reordered or from another object)"
    )]
    BadBlock(u64),
}

/// A 256-bit secret that is wiped when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(pub [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut k);
        Secret(k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key_version: u32,
    pub file_id: [u8; 16],
    pub commitment: [u8; 32],
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..6].copy_from_slice(MAGIC);
        h[6] = VERSION;
        h[7] = 0;
        h[8..12].copy_from_slice(&(BLOCK_PLAIN as u32).to_be_bytes());
        h[12..16].copy_from_slice(&self.key_version.to_be_bytes());
        h[16..32].copy_from_slice(&self.file_id);
        h[32..64].copy_from_slice(&self.commitment);
        h
    }

    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN as usize || &b[0..6] != MAGIC {
            return Err(FormatError::NotSealfs);
        }
        if b[6] != VERSION {
            return Err(FormatError::Version(b[6]));
        }
        if b[7] != 0 {
            return Err(FormatError::BadHeader("reserved byte"));
        }
        if u32::from_be_bytes(b[8..12].try_into().unwrap()) as u64 != BLOCK_PLAIN {
            return Err(FormatError::BadHeader("block size"));
        }
        Ok(Header {
            key_version: u32::from_be_bytes(b[12..16].try_into().unwrap()),
            file_id: b[16..32].try_into().unwrap(),
            commitment: b[32..64].try_into().unwrap(),
        })
    }
}

/// The keys of one file, derived from the data key and the file id.
pub struct FileKeys {
    cipher: LessSafeKey,
    header: Header,
    header_bytes: [u8; HEADER_LEN as usize],
}

fn derive(data_key: &Secret, file_id: &[u8; 16]) -> Secret2 {
    let hk = Hkdf::<Sha256>::new(Some(file_id), &data_key.0);
    let mut okm = Secret2([0u8; 64]);
    hk.expand(b"sealfs v1 file key", &mut okm.0)
        .expect("64 bytes is a valid HKDF-SHA256 length");
    okm
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct Secret2([u8; 64]);

impl FileKeys {
    /// Keys for a new file (random file id) under data key `key_version`.
    pub fn new_file(data_key: &Secret, key_version: u32) -> Self {
        let mut file_id = [0u8; 16];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut file_id);
        Self::with_id(data_key, key_version, file_id)
    }

    pub fn with_id(data_key: &Secret, key_version: u32, file_id: [u8; 16]) -> Self {
        let okm = derive(data_key, &file_id);
        let header = Header {
            key_version,
            file_id,
            commitment: okm.0[32..64].try_into().unwrap(),
        };
        Self {
            cipher: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &okm.0[0..32]).expect("32-byte key"),
            ),
            header_bytes: header.to_bytes(),
            header,
        }
    }

    /// Keys of an existing object: checks the key commitment (wrong key -> `WrongKey`).
    pub fn open(data_key: &Secret, header: &Header) -> Result<Self, FormatError> {
        let keys = Self::with_id(data_key, header.key_version, header.file_id);
        // Constant-time comparison: the commitment is not secret, but this costs nothing.
        let diff = keys
            .header
            .commitment
            .iter()
            .zip(header.commitment.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(FormatError::WrongKey);
        }
        Ok(keys)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn header_bytes(&self) -> &[u8; HEADER_LEN as usize] {
        &self.header_bytes
    }

    fn aad(&self, index: u64, last: bool) -> [u8; HEADER_AAD_LEN + 9] {
        let mut aad = [0u8; HEADER_AAD_LEN + 9];
        aad[..HEADER_AAD_LEN].copy_from_slice(&self.header_bytes[..HEADER_AAD_LEN]);
        aad[HEADER_AAD_LEN..HEADER_AAD_LEN + 8].copy_from_slice(&index.to_be_bytes());
        aad[HEADER_AAD_LEN + 8] = u8::from(last);
        aad
    }

    /// Seal one block (at most `BLOCK_PLAIN` bytes) with a fresh random nonce.
    pub fn seal(&self, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN as usize];
        aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
        self.seal_with_nonce(index, last, plain, nonce, out);
    }

    /// Sealing with a given nonce: only for the documented test vectors.
    pub fn seal_with_nonce(
        &self,
        index: u64,
        last: bool,
        plain: &[u8],
        nonce: [u8; 12],
        out: &mut Vec<u8>,
    ) {
        debug_assert!(plain.len() as u64 <= BLOCK_PLAIN);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(index, last)),
                &mut out[start..],
            )
            .expect("a block is far below AES-GCM's message limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Open one sealed block; returns the plaintext.
    pub fn open_block(
        &self,
        index: u64,
        last: bool,
        sealed: &[u8],
    ) -> Result<Vec<u8>, FormatError> {
        let nonce = sealed.get(..NONCE_LEN as usize).unwrap_or_default();
        let rest = sealed.get(NONCE_LEN as usize..).unwrap_or_default();
        self.open_block_in(index, last, nonce, rest.to_vec())
    }

    /// Open one sealed block held whole (nonce, ciphertext, tag) in `buf`, which becomes the
    /// plaintext: decrypted where it lies and moved to the front while still in the CPU's
    /// cache, so a block read straight into its own buffer (a disk cache hit) is not copied
    /// again.
    pub fn open_block_within(
        &self,
        index: u64,
        last: bool,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, FormatError> {
        if !(BLOCK_OVERHEAD..=BLOCK_CIPHER).contains(&(buf.len() as u64)) {
            return Err(FormatError::BadBlock(index));
        }
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN as usize])
            .map_err(|_| FormatError::BadBlock(index))?;
        let plain_len = self
            .cipher
            .open_within(
                nonce,
                Aad::from(self.aad(index, last)),
                &mut buf,
                NONCE_LEN as usize..,
            )
            .map_err(|_| FormatError::BadBlock(index))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// Open one sealed block given as its `nonce` and the rest of it (ciphertext and tag)
    /// in `buf`, which becomes the plaintext: decrypted in place, so a block copied once out
    /// of a response body is never copied or zeroed again.
    pub fn open_block_in(
        &self,
        index: u64,
        last: bool,
        nonce: &[u8],
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, FormatError> {
        let sealed_len = (nonce.len() + buf.len()) as u64;
        if nonce.len() as u64 != NONCE_LEN || !(BLOCK_OVERHEAD..=BLOCK_CIPHER).contains(&sealed_len)
        {
            return Err(FormatError::BadBlock(index));
        }
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| FormatError::BadBlock(index))?;
        let plain_len = self
            .cipher
            .open_in_place(nonce, Aad::from(self.aad(index, last)), &mut buf)
            .map_err(|_| FormatError::BadBlock(index))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// Number of blocks of a file of `plain` bytes (at least one).
pub fn block_count(plain: u64) -> u64 {
    plain.div_ceil(BLOCK_PLAIN).max(1)
}

/// Object size of a file of `plain` bytes.
pub fn cipher_size(plain: u64) -> u64 {
    HEADER_LEN + plain + block_count(plain) * BLOCK_OVERHEAD
}

/// File size of an object of `cipher` bytes, or `BadSize` if no file has that object size.
/// Strict: a size is accepted only when `cipher_size` of the answer gives it back, so each
/// file size has exactly one object size (an empty block appended after a last block that is
/// full would otherwise read as the same file).
pub fn plain_size(cipher: u64) -> Result<u64, FormatError> {
    let body = cipher
        .checked_sub(HEADER_LEN)
        .ok_or(FormatError::BadSize(cipher))?;
    let full = body / BLOCK_CIPHER;
    let rem = body % BLOCK_CIPHER;
    let plain = match (full, rem) {
        (0, 0) => return Err(FormatError::BadSize(cipher)),
        (_, 0) => full * BLOCK_PLAIN,
        (_, r) if r >= BLOCK_OVERHEAD => full * BLOCK_PLAIN + r - BLOCK_OVERHEAD,
        _ => return Err(FormatError::BadSize(cipher)),
    };
    if cipher_size(plain) != cipher {
        return Err(FormatError::BadSize(cipher));
    }
    Ok(plain)
}

/// Byte range of block `index` in the object, for a file of `plain` bytes.
pub fn block_range(index: u64, plain: u64) -> std::ops::Range<u64> {
    let start = HEADER_LEN + index * BLOCK_CIPHER;
    let len = (plain - (index * BLOCK_PLAIN).min(plain)).min(BLOCK_PLAIN) + BLOCK_OVERHEAD;
    start..start + len
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;

/// Seal a whole file's plaintext into an object (used for small files and by tools).
pub fn seal_all(keys: &FileKeys, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cipher_size(plain.len() as u64) as usize);
    out.extend_from_slice(keys.header_bytes());
    let n = block_count(plain.len() as u64);
    for i in 0..n {
        let from = (i * BLOCK_PLAIN) as usize;
        let to = ((i + 1) * BLOCK_PLAIN).min(plain.len() as u64) as usize;
        keys.seal(i, i + 1 == n, &plain[from.min(to)..to], &mut out);
    }
    out
}

/// Open a whole object: header, commitment, every block, in order.
pub fn open_all(data_key: &Secret, object: &[u8]) -> Result<Vec<u8>, FormatError> {
    let header = Header::parse(object)?;
    let keys = FileKeys::open(data_key, &header)?;
    let plain = plain_size(object.len() as u64)?;
    let n = block_count(plain);
    let mut out = Vec::with_capacity(plain as usize);
    for i in 0..n {
        let r = block_range(i, plain);
        out.extend_from_slice(&keys.open_block(
            i,
            i + 1 == n,
            &object[r.start as usize..r.end as usize],
        )?);
    }
    Ok(out)
}
