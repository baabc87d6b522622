//! AWS KMS for client-mode keyrings: the only module that touches `aws-sdk-kms`.
//!
//! A prefix's data key is made by GenerateDataKey at `sealfs init` and unwrapped by Decrypt at
//! mount: one KMS call per key version per mount, never per object. Every call carries an
//! encryption context naming the bucket and prefix, so a keyring copied to another prefix
//! cannot be unwrapped there without KMS allowing it. Plaintext keys go straight into
//! `Secret`s (zeroized on drop); errors carry KMS's message, never key bytes.
//!
//! Decrypt names the KMS key the user gave (`--kms-key-id`), and the key KMS says it used must
//! be that key (resolved to its ARN with DescribeKey): a keyring entry the bucket replaced with
//! a blob under a key the attacker controls is refused, never used to seal new files.

use std::collections::HashMap;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;

use crate::crypto::format::Secret;
use crate::crypto::keys::{Keyring, Names, PrefixConfig, PrefixKey, PREFIX_KEY_VERSION};
use crate::crypto::mode::Wrapping;
use crate::crypto::wrap::{KeyWrapper, WrapError};
use crate::sdk::AwsSettings;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS {op} failed: {detail}")]
    Call { op: &'static str, detail: String },
    #[error("KMS: {0}")]
    Trust(String),
    #[error("KMS returned a data key of the wrong size")]
    BadKey,
    #[error("a keyring entry is wrapped under KMS key {found}, not the key given ({given}): refusing it")]
    ForeignKey { given: String, found: String },
}

pub struct Kms {
    client: Client,
}

/// The encryption context of a keyring entry: its bucket and prefix, and from config format 2
/// on the format too, so a version-2 entry does not decrypt in a (downgraded) version-1 config.
fn context((bucket, prefix, format): (&str, &str, u32)) -> HashMap<String, String> {
    let mut c = HashMap::from([
        ("sealfs:bucket".to_string(), bucket.to_string()),
        ("sealfs:prefix".to_string(), prefix.to_string()),
    ]);
    if format >= 2 {
        c.insert("sealfs:format".to_string(), format.to_string());
    }
    c
}

fn detail<E: std::error::Error + 'static>(e: E) -> String {
    let mut cur: &dyn std::error::Error = &e;
    let mut out = cur.to_string();
    while let Some(next) = cur.source() {
        out = format!("{out}: {next}");
        cur = next;
    }
    let hint = crate::sdk::trust_hint(&out);
    out.split_whitespace().collect::<Vec<_>>().join(" ") + hint
}

impl Kms {
    /// A client from the standard AWS chain (`AWS_ENDPOINT_URL_KMS` is honoured), with the
    /// profile and CA bundle S3 uses.
    pub async fn connect(aws: &AwsSettings) -> Result<Self, KmsError> {
        let (loader, _) = crate::sdk::loader(aws)
            .await
            .map_err(|e| KmsError::Trust(e.to_string()))?;
        let sdk = loader.load().await;
        let mut builder = aws_sdk_kms::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
        })
    }

    /// A new 256-bit data key: its plaintext and its KMS ciphertext blob.
    pub async fn generate(
        &self,
        key_id: &str,
        at: (&str, &str, u32),
    ) -> Result<(Secret, Vec<u8>), KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(at)))
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
        at: (&str, &str, u32),
    ) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(data_key.0.to_vec()))
            .set_encryption_context(Some(context(at)))
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

    /// The ARN of `key_id` (an ARN, key id, alias or alias ARN).
    pub async fn arn_of(&self, key_id: &str) -> Result<String, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| KmsError::Call {
                op: "DescribeKey",
                detail: detail(e),
            })?;
        out.key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .ok_or(KmsError::BadKey)
    }

    /// Unwrap a data key blob made by `generate` for the same bucket and prefix, under KMS
    /// key `key_id` only (`arn`: its ARN, which KMS must report as the key it used).
    pub async fn decrypt(
        &self,
        blob: &[u8],
        (key_id, arn): (&str, &str),
        at: (&str, &str, u32),
    ) -> Result<Secret, KmsError> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context(Some(context(at)))
            .send()
            .await
            .map_err(|e| KmsError::Call {
                op: "Decrypt",
                detail: detail(e),
            })?;
        let used = out.key_id().unwrap_or_default();
        if used != arn {
            return Err(KmsError::ForeignKey {
                given: key_id.to_string(),
                found: used.to_string(),
            });
        }
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
        self.key_id.as_deref().ok_or_else(|| {
            WrapError::Kms(
                "this prefix's keys are wrapped by KMS: give the KMS key with --kms-key-id ID"
                    .into(),
            )
        })
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

    /// GenerateDataKey twice: KMS makes the data key and the prefix key.
    async fn create(&self, names: Names) -> Result<(Keyring, PrefixConfig), WrapError> {
        let key_id = self.key_id()?;
        let at = (self.bucket.as_str(), self.prefix.as_str(), 2);
        let (data_key, blob) = (self.kms.generate(key_id, at).await).map_err(wrap_err)?;
        let (prefix_key, prefix_blob) = (self.kms.generate(key_id, at).await).map_err(wrap_err)?;
        let ring = Keyring::new_single(data_key).with_prefix_key(PrefixKey::new(prefix_key, names));
        let config =
            PrefixConfig::wrapped_by_kms(key_id, &ring, vec![(1, blob)], Some(prefix_blob));
        Ok((ring, config))
    }

    /// One DescribeKey, then one Decrypt per key version (and one for the prefix key).
    async fn unwrap(&self, config: &PrefixConfig) -> Result<Keyring, WrapError> {
        let key_id = self.key_id()?;
        let arn = self.kms.arn_of(key_id).await.map_err(wrap_err)?;
        let mut keys = std::collections::BTreeMap::new();
        let mut prefix_key = None;
        for (version, blob) in config.kms_blobs()? {
            let key = self
                .kms
                .decrypt(
                    &blob,
                    (key_id, &arn),
                    (&self.bucket, &self.prefix, config.sealfs),
                )
                .await
                .map_err(wrap_err)?;
            match version {
                PREFIX_KEY_VERSION => prefix_key = Some(key),
                v => {
                    keys.insert(v, key);
                }
            }
        }
        Ok(config.keyring(keys, prefix_key)?)
    }

    /// One Encrypt per key version (and one for the prefix key).
    async fn wrap(&self, ring: &Keyring) -> Result<PrefixConfig, WrapError> {
        let key_id = self.key_id()?;
        let at = (
            self.bucket.as_str(),
            self.prefix.as_str(),
            ring.format_version(),
        );
        let mut blobs = Vec::new();
        for (version, key) in ring.versions() {
            let blob = self.kms.encrypt(key_id, key, at).await;
            blobs.push((version, blob.map_err(wrap_err)?));
        }
        let prefix_blob = match ring.prefix_key() {
            Some(p) => Some((self.kms.encrypt(key_id, p.secret(), at).await).map_err(wrap_err)?),
            None => None,
        };
        Ok(PrefixConfig::wrapped_by_kms(
            key_id,
            ring,
            blobs,
            prefix_blob,
        ))
    }
}
