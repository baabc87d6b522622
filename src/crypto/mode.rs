//! The encryption modes a prefix can use and how a client-mode keyring is wrapped, as the
//! command line and the prefix's config object (`.sealfs`, docs/FORMAT.md) spell them.
//! One enum each, so no code compares mode names as strings.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Objects hold plaintext.
    #[default]
    None,
    /// Client-side authenticated encryption: the bucket only ever holds ciphertext.
    Client,
    /// SSE-S3: the server encrypts with its own keys (AES256).
    SseS3,
    /// SSE-KMS: the server encrypts with a KMS key.
    SseKms,
    /// SSE-C: the server encrypts with the user's key, sent on every request.
    SseC,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::None,
        Mode::Client,
        Mode::SseS3,
        Mode::SseKms,
        Mode::SseC,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Client => "client",
            Mode::SseS3 => "sse-s3",
            Mode::SseKms => "sse-kms",
            Mode::SseC => "sse-c",
        }
    }

    /// The mode `name()` spells `name` (case-insensitive: fstab options are typed by hand).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What wraps a client-mode prefix's data keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wrapping {
    /// A local key file (`sealfs keygen`): AES-256-GCM key wrap.
    KeyFile,
    /// An AWS KMS key: each data key is a KMS ciphertext blob.
    Kms,
}

impl Wrapping {
    pub fn name(self) -> &'static str {
        match self {
            Wrapping::KeyFile => "key-file",
            Wrapping::Kms => "kms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_config_spelling() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_name(m.name()), Some(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Mode>(&json).unwrap(), m);
        }
        assert_eq!(Mode::from_name("SSE-C"), Some(Mode::SseC));
        assert_eq!(Mode::from_name("rot13"), None);
        assert!(serde_json::from_str::<Mode>("\"rot13\"").is_err());
        assert_eq!(
            serde_json::to_string(&Wrapping::KeyFile).unwrap(),
            "\"key-file\""
        );
    }
}
