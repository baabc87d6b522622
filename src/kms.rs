//! AWS KMS for client-mode keyrings: the only module that touches `aws-sdk-kms`.
//!
//! A prefix's data key is made by GenerateDataKey at `sealfs init` and unwrapped by Decrypt at
//! mount: one KMS call per key version per mount, never per object. Every call carries an
//! encryption context naming the bucket and prefix, so a keyring copied to another prefix
//! cannot be unwrapped there without KMS allowing it. Plaintext keys go straight into
//! `Secret`s (zeroized on drop); errors carry KMS's message, never key bytes.

use std::collections::HashMap;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;

use crate::crypto::format::Secret;
use crate::crypto::keys::{Keyring, PrefixConfig};
use crate::crypto::mode::Wrapping;
use crate::crypto::wrap::{KeyWrapper, WrapError};

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS {op} failed: {detail}")]
    Call { op: &'static str, detail: String },
    #[error("KMS returned a data key of the wrong size")]
    BadKey,
}

pub struct Kms {
    client: Client,
}

fn context(bucket: &str, prefix: &str) -> HashMap<String, String> {
    HashMap::from([
        ("sealfs:bucket".to_string(), bucket.to_string()),
        ("sealfs:prefix".to_string(), prefix.to_string()),
    ])
}

fn detail<E: std::error::Error + 'static>(e: E) -> String {
    let mut cur: &dyn std::error::Error = &e;
    let mut out = cur.to_string();
    while let Some(next) = cur.source() {
        out = format!("{out}: {next}");
        cur = next;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Kms {
    /// A client from the standard AWS chain (`AWS_ENDPOINT_URL_KMS` is honoured), with
    /// `profile`'s settings when one is named.
    pub async fn connect(profile: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        let sdk = loader.load().await;
        let mut builder = aws_sdk_kms::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        Self {
            client: Client::from_conf(builder.build()),
        }
    }

    /// A new 256-bit data key: its plaintext and its KMS ciphertext blob.
    pub async fn generate(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<(Secret, Vec<u8>), KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(bucket, prefix)))
            .send()
            .await
            .map_err(|e| KmsError::Call {
                op: "GenerateDataKey",
                detail: detail(e),
            })?;
        let plain = out.plaintext().ok_or(KmsError::BadKey)?.as_ref();
        let key: [u8; 32] = plain.try_into().map_err(|_| KmsError::BadKey)?;
        let blob = out
            .ciphertext_blob()
            .ok_or(KmsError::BadKey)?
            .as_ref()
            .to_vec();
        Ok((Secret(key), blob))
    }

    /// Wrap an existing data key under `key_id` (rotating a keyring to another KMS key).
    pub async fn encrypt(
        &self,
        key_id: &str,
        data_key: &Secret,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(data_key.0.to_vec()))
            .set_encryption_context(Some(context(bucket, prefix)))
            .send()
            .await
            .map_err(|e| KmsError::Call {
                op: "Encrypt",
                detail: detail(e),
            })?;
        Ok(out
            .ciphertext_blob()
            .ok_or(KmsError::BadKey)?
            .as_ref()
            .to_vec())
    }

    /// Unwrap a data key blob made by `generate` for the same bucket and prefix.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        bucket: &str,
        prefix: &str,
    ) -> Result<Secret, KmsError> {
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context(Some(context(bucket, prefix)))
            .send()
            .await
            .map_err(|e| KmsError::Call {
                op: "Decrypt",
                detail: detail(e),
            })?;
        let plain = out.plaintext().ok_or(KmsError::BadKey)?.as_ref();
        let key: [u8; 32] = plain.try_into().map_err(|_| KmsError::BadKey)?;
        Ok(Secret(key))
    }
}

/// Client-mode data keys wrapped by a KMS key: `kms` bound to one bucket and prefix (every
/// call's encryption context). `key_id` is the key new keyrings are made or rewrapped under.
pub struct KmsWrapper {
    kms: Kms,
    key_id: Option<String>,
    bucket: String,
    prefix: String,
}

impl KmsWrapper {
    pub fn new(kms: Kms, key_id: Option<String>, bucket: &str, prefix: &str) -> Self {
        Self {
            kms,
            key_id,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }
    }

    fn key_id(&self) -> Result<&str, WrapError> {
        self.key_id
            .as_deref()
            .ok_or_else(|| WrapError::Kms("no KMS key id given (--kms-key-id)".into()))
    }
}

fn wrap_err(e: KmsError) -> WrapError {
    WrapError::Kms(e.to_string())
}

#[async_trait::async_trait]
impl KeyWrapper for KmsWrapper {
    fn wrapping(&self) -> Wrapping {
        Wrapping::Kms
    }

    /// GenerateDataKey: KMS makes the data key (one call).
    async fn create(&self) -> Result<(Keyring, PrefixConfig), WrapError> {
        let key_id = self.key_id()?;
        let (data_key, blob) = self
            .kms
            .generate(key_id, &self.bucket, &self.prefix)
            .await
            .map_err(wrap_err)?;
        Ok((
            Keyring::new_single(data_key),
            PrefixConfig::new_client_kms(key_id, &blob),
        ))
    }

    /// One Decrypt per key version.
    async fn unwrap(&self, config: &PrefixConfig) -> Result<Keyring, WrapError> {
        let mut keys = std::collections::BTreeMap::new();
        for (version, blob) in config.kms_blobs()? {
            let key = self
                .kms
                .decrypt(&blob, &self.bucket, &self.prefix)
                .await
                .map_err(wrap_err)?;
            keys.insert(version, key);
        }
        Ok(Keyring::from_keys(config.current_key, keys)?)
    }

    /// One Encrypt per key version.
    async fn wrap(&self, ring: &Keyring) -> Result<PrefixConfig, WrapError> {
        let key_id = self.key_id()?;
        let mut blobs = Vec::new();
        for (version, key) in ring.versions() {
            let blob = self
                .kms
                .encrypt(key_id, key, &self.bucket, &self.prefix)
                .await
                .map_err(wrap_err)?;
            blobs.push((version, blob));
        }
        Ok(PrefixConfig::wrapped_by_kms(
            key_id,
            ring.current_version(),
            blobs,
        ))
    }
}
