//! Server-side encryption settings of a store: what every request that writes (and, for
//! SSE-C, every request that reads) asks of the server. Kept apart from the S3 client so that
//! setup code and other stores name them without reaching into `s3`.
//!
//! Customer keys are zeroized on drop and print only their MD5.

use std::sync::Arc;

/// Server-side encryption asked on every request that writes (and, for SSE-C, reads).
#[derive(Clone, Default)]
pub enum Sse {
    #[default]
    None,
    /// SSE-S3: `x-amz-server-side-encryption: AES256`.
    S3,
    /// SSE-KMS with a key (ARN, id or alias) or the AWS-managed key.
    Kms {
        key_id: Option<String>,
        bucket_key: bool,
    },
    /// SSE-C: customer keys, the first for writes, all tried for reads (older keys).
    C(Arc<CustomerKeys>),
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sse::None => f.write_str("None"),
            Sse::S3 => f.write_str("S3"),
            Sse::Kms { key_id, bucket_key } => {
                write!(f, "Kms({key_id:?}, bucket_key {bucket_key})")
            }
            Sse::C(keys) => write!(f, "C({} keys)", keys.len()),
        }
    }
}

/// SSE-C keys, newest first: never empty, so there is always a key to write with.
#[derive(Debug)]
pub struct CustomerKeys(Vec<CustomerKey>);

impl CustomerKeys {
    /// `None` when `keys` is empty.
    pub fn new(keys: Vec<CustomerKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self(keys))
    }

    /// The key new objects are written under.
    pub fn current(&self) -> &CustomerKey {
        &self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &CustomerKey> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An SSE-C key as S3 wants it: base64 of the key, base64 of its MD5. Zeroized on drop.
pub struct CustomerKey {
    pub(super) key_b64: zeroize::Zeroizing<String>,
    pub(super) md5_b64: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerKey(md5 {})", self.md5_b64)
    }
}

impl CustomerKey {
    pub fn new(raw: &[u8; 32]) -> Self {
        use base64::Engine;
        use md5::Digest;
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            key_b64: zeroize::Zeroizing::new(b64.encode(raw)),
            md5_b64: b64.encode(md5::Md5::digest(raw)),
        }
    }

    /// The key's MD5 (base64): safe to print, identifies the key.
    pub fn md5(&self) -> &str {
        &self.md5_b64
    }
}
