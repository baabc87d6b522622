//! Key providers: what wraps a client-mode prefix's data keys. One trait, `KeyWrapper`, with a
//! local key file (`KeyFileWrapper`, here) and an AWS KMS key (`kms::KmsWrapper`) behind it, so
//! `setup` makes, opens and rewraps keyrings the same way whichever the user chose.
//!
//! A wrapper never writes the config object itself and never logs key material; its errors
//! name the key file or the KMS call, never key bytes.

use async_trait::async_trait;

use super::format::Secret;
use super::keys::{KeyError, Keyring, Names, PrefixConfig};
use super::mode::Wrapping;

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A KMS call failed (its message, never key bytes).
    #[error("{0}")]
    Kms(String),
}

#[async_trait]
pub trait KeyWrapper: Send + Sync {
    fn wrapping(&self) -> Wrapping;
    /// A new (version 2) keyring of one fresh data key and a fresh prefix key, and the config
    /// object that holds them wrapped.
    async fn create(&self, names: Names) -> Result<(Keyring, PrefixConfig), WrapError>;
    /// Every key of `config`, unwrapped, once the config authenticated.
    async fn unwrap(&self, config: &PrefixConfig) -> Result<Keyring, WrapError>;
    /// `ring` wrapped into a config object.
    async fn wrap(&self, ring: &Keyring) -> Result<PrefixConfig, WrapError>;
}

/// Data keys wrapped (AES-256-GCM) by a 256-bit key from a local key file.
pub struct KeyFileWrapper {
    master: Secret,
}

impl KeyFileWrapper {
    pub fn new(master: Secret) -> Self {
        Self { master }
    }
}

#[async_trait]
impl KeyWrapper for KeyFileWrapper {
    fn wrapping(&self) -> Wrapping {
        Wrapping::KeyFile
    }

    async fn create(&self, names: Names) -> Result<(Keyring, PrefixConfig), WrapError> {
        let ring = Keyring::new_v2(names);
        let config = PrefixConfig::wrapped_by_key_file(&self.master, &ring);
        Ok((ring, config))
    }

    async fn unwrap(&self, config: &PrefixConfig) -> Result<Keyring, WrapError> {
        Ok(config.unwrap(&self.master)?)
    }

    async fn wrap(&self, ring: &Keyring) -> Result<PrefixConfig, WrapError> {
        Ok(PrefixConfig::wrapped_by_key_file(&self.master, ring))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_file_wrapper_opens_what_it_wrapped_and_nothing_else() {
        let w = KeyFileWrapper::new(Secret::random());
        let (ring, config) = w.create(Names::Encrypted).await.unwrap();
        assert_eq!(config.wrapping, Some(Wrapping::KeyFile));
        assert!(w.unwrap(&config).await.unwrap().same_as(&ring));
        let rewrapped = w.wrap(&ring).await.unwrap();
        assert!(w.unwrap(&rewrapped).await.unwrap().same_as(&ring));
        let other = KeyFileWrapper::new(Secret::random());
        assert!(matches!(
            other.unwrap(&config).await,
            Err(WrapError::Key(KeyError::WrongKeyFile))
        ));
    }
}
