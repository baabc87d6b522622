//! Prefix setup shared by `init` and `mount`: the config object that records a prefix's
//! encryption mode (and, in client mode, its wrapped keyring), so that mounting it later with
//! another mode or key fails clearly instead of writing a mix; and the server-side encryption
//! settings of the store.
//!
//! Every mode but `none` needs `sealfs init`. In `sse-c` mode the config object itself is
//! written under the customer key, so a wrong key is detected when the mount reads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::keys::{
    load_key_file, read_private, KeyError, Keyring, Names, PrefixConfig, PrefixKey,
};
use crate::crypto::mode::{Mode, Wrapping};
use crate::crypto::wrap::{KeyFileWrapper, KeyWrapper, WrapError};
use crate::kms::{Kms, KmsWrapper};
use crate::sdk::AwsSettings;
use crate::store::{self, ObjectStore, StoreError, UserMeta};
use crate::store::{CustomerKey, CustomerKeys, Sse};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot unwrap the prefix's keyring with KMS (key disabled, no access, or the keyring was moved or replaced?): {0}")]
    Kms(String),
    #[error("{url} is not initialized for encryption '{mode}': run `sealfs init {url} --encryption {mode} ...` first")]
    NotInitialized { url: String, mode: Mode },
    #[error("{url} is set up for encryption '{found}', not '{asked}': mount it with --encryption {found}")]
    ModeMismatch {
        url: String,
        found: Mode,
        asked: Mode,
    },
    #[error("{url} uses encryption '{found}': rotate-key works on client-mode prefixes (for SSE-C, use `sealfs rekey`)")]
    NotClientMode { url: String, found: Mode },
    #[error("{url} is already initialized (encryption '{found}')")]
    AlreadyInitialized { url: String, found: Mode },
    #[error("{0}")]
    Missing(&'static str),
    #[error("SSE-C key file {0} holds no 256-bit key (one per line, base64 or hex)")]
    BadSseCKeyFile(String),
    #[error("wrong SSE-C key: none of the keys in the key file opens {url}'s objects")]
    WrongSseCKey { url: String },
    #[error("cannot read {url}'s config object: if the prefix uses SSE-C, mount it with --encryption sse-c --sse-c-key-file FILE ({detail})")]
    ConfigUnreadable { url: String, detail: String },
    #[error("the server refused an SSE-C request. AWS blocks SSE-C by default on buckets created since April 2026: allow it in the bucket's default encryption configuration (remove SSE-C from BlockedEncryptionTypes), or use another mode. The server said: {0}")]
    SseCBlocked(String),
}

/// A prefix's encryption as the user asked for it: the mode, and the keys given for it.
/// Options the user typed win over anything the bucket says: a mount with a mode other than
/// the recorded one fails instead of following the bucket.
#[derive(Debug, Clone, Default)]
pub struct EncryptionConfig {
    pub mode: Mode,
    /// Client mode: the key file that wraps the keyring.
    pub key_file: Option<PathBuf>,
    /// Client mode: the KMS key that wraps the keyring (init); SSE-KMS: the server's key.
    pub kms_key_id: Option<String>,
    /// SSE-KMS: ask for an S3 Bucket Key.
    pub bucket_key: bool,
    /// SSE-C: the customer key file (newest key first).
    pub sse_c_key_file: Option<PathBuf>,
    /// AWS profile and CA bundle for KMS calls (the ones S3 uses).
    pub aws: AwsSettings,
    /// `init` in client mode: how the new prefix stores names.
    pub names: Names,
}

impl EncryptionConfig {
    /// A mode whose keys are missing is refused before anything connects.
    pub fn validate(&self) -> Result<(), SetupError> {
        match self.mode {
            Mode::Client if self.key_file.is_none() && self.kms_key_id.is_none() => Err(
                SetupError::Missing("--encryption client needs --key-file FILE or --kms-key-id ID"),
            ),
            Mode::SseC if self.sse_c_key_file.is_none() => Err(SetupError::Missing(
                "--encryption sse-c needs --sse-c-key-file FILE",
            )),
            _ => Ok(()),
        }
    }

    /// The same keys for the mode a prefix records (tools take the mode from the bucket).
    pub fn with_mode(&self, mode: Mode) -> Self {
        Self {
            mode,
            ..self.clone()
        }
    }
}

impl From<WrapError> for SetupError {
    fn from(e: WrapError) -> Self {
        match e {
            WrapError::Key(k) => SetupError::Key(k),
            WrapError::Kms(m) => SetupError::Kms(m),
        }
    }
}

/// The key provider for a keyring wrapped by `wrapping`: the key file given (`missing` says
/// what to give when there is none), or KMS (whose blobs name their key: `kms_key_id` is only
/// needed to make or rewrap a keyring).
async fn wrapper(
    wrapping: Wrapping,
    key_file: Option<&Path>,
    kms_key_id: Option<&str>,
    aws: &AwsSettings,
    (bucket, prefix): (&str, &str),
    missing: &'static str,
) -> Result<Box<dyn KeyWrapper>, SetupError> {
    Ok(match wrapping {
        Wrapping::KeyFile => {
            let path = key_file.ok_or(SetupError::Missing(missing))?;
            Box::new(KeyFileWrapper::new(load_key_file(path)?))
        }
        Wrapping::Kms => Box::new(KmsWrapper::new(
            Kms::connect(aws)
                .await
                .map_err(|e| SetupError::Kms(e.to_string()))?,
            kms_key_id.map(str::to_string),
            bucket,
            prefix,
        )),
    })
}

/// Parse an SSE-C key file: 32 raw bytes, or one key per line (base64 or 64 hex digits),
/// the first for writes.
pub fn load_sse_c_keys(path: &Path) -> Result<CustomerKeys, SetupError> {
    use base64::Engine;
    let shown = path.display().to_string();
    let mut bytes = read_private(path)?;
    let mut keys = Vec::new();
    if bytes.len() == 32 {
        keys.push(CustomerKey::new(
            bytes.as_slice().try_into().expect("32 bytes"),
        ));
    } else if let Ok(text) = std::str::from_utf8(&bytes) {
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut raw = [0u8; 32];
            let ok = if line.len() == 64 {
                hex::decode_to_slice(line, &mut raw).is_ok()
            } else {
                matches!(base64::engine::general_purpose::STANDARD.decode(line), Ok(v) if v.len() == 32 && { raw.copy_from_slice(&v); true })
            };
            if !ok {
                zeroize::Zeroize::zeroize(&mut bytes);
                return Err(SetupError::BadSseCKeyFile(shown));
            }
            keys.push(CustomerKey::new(&raw));
            zeroize::Zeroize::zeroize(&mut raw);
        }
    }
    zeroize::Zeroize::zeroize(&mut bytes);
    CustomerKeys::new(keys).ok_or(SetupError::BadSseCKeyFile(shown))
}

/// The store's server-side encryption for `enc`.
pub fn sse_for(enc: &EncryptionConfig) -> Result<Sse, SetupError> {
    Ok(match enc.mode {
        Mode::None | Mode::Client => Sse::None,
        Mode::SseS3 => Sse::S3,
        Mode::SseKms => Sse::Kms {
            key_id: enc.kms_key_id.clone(),
            bucket_key: enc.bucket_key,
        },
        Mode::SseC => {
            let path = enc.sse_c_key_file.as_deref().ok_or(SetupError::Missing(
                "--encryption sse-c needs --sse-c-key-file FILE",
            ))?;
            Sse::C(Arc::new(load_sse_c_keys(path)?))
        }
    })
}

fn config_key(prefix: &str) -> String {
    crate::layout::Layout::new(prefix).config_key()
}

async fn read_config(
    s: &dyn ObjectStore,
    url: &str,
    prefix: &str,
    mode: Mode,
) -> Result<Option<PrefixConfig>, SetupError> {
    match store::get_all(s, &config_key(prefix)).await {
        Ok(Some(bytes)) => Ok(Some(PrefixConfig::from_json(&bytes)?)),
        Ok(None) => Ok(None),
        Err(StoreError::AccessDenied(d) | StoreError::BadRequest(d)) => Err(match mode {
            Mode::SseC => SetupError::WrongSseCKey { url: url.into() },
            _ => SetupError::ConfigUnreadable {
                url: url.into(),
                detail: d,
            },
        }),
        Err(e) => Err(e.into()),
    }
}

/// `sealfs init`: record the mode (and create the keyring) for a prefix that has none.
pub async fn init(
    s: &dyn ObjectStore,
    bucket: &str,
    url: &str,
    prefix: &str,
    enc: &EncryptionConfig,
) -> Result<(), SetupError> {
    if let Some(found) = read_config(s, url, prefix, enc.mode).await? {
        return Err(SetupError::AlreadyInitialized {
            url: url.into(),
            found: found.encryption,
        });
    }
    let config = match enc.mode {
        Mode::Client => {
            let wrapping = match enc.kms_key_id {
                Some(_) => Wrapping::Kms,
                None => Wrapping::KeyFile,
            };
            let w = wrapper(
                wrapping,
                enc.key_file.as_deref(),
                enc.kms_key_id.as_deref(),
                &enc.aws,
                (bucket, prefix),
                "--encryption client needs --key-file FILE or --kms-key-id ID",
            )
            .await?;
            w.create(enc.names).await?.1
        }
        mode => PrefixConfig::plain(mode),
    };
    match s
        .put(
            &config_key(prefix),
            Bytes::from(config.to_json()),
            &UserMeta::new(),
        )
        .await
    {
        Err(StoreError::AccessDenied(d) | StoreError::BadRequest(d)) if enc.mode == Mode::SseC => {
            Err(SetupError::SseCBlocked(d))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// At mount: check the prefix's recorded mode against the asked one (reading the config with
/// the SSE-C key proves that key); in client mode unwrap its keyring with the key file.
pub async fn open(
    s: &dyn ObjectStore,
    bucket: &str,
    url: &str,
    prefix: &str,
    enc: &EncryptionConfig,
) -> Result<Option<Arc<Keyring>>, SetupError> {
    let mode = enc.mode;
    let config = read_config(s, url, prefix, mode).await?;
    let found = config.as_ref().map_or(Mode::None, |c| c.encryption);
    if found != mode {
        return Err(match config {
            None => SetupError::NotInitialized {
                url: url.into(),
                mode,
            },
            Some(_) => SetupError::ModeMismatch {
                url: url.into(),
                found,
                asked: mode,
            },
        });
    }
    match (mode, config) {
        (Mode::Client, Some(c)) => Ok(Some(Arc::new(
            unwrap_ring(&c, (bucket, prefix), enc).await?,
        ))),
        _ => Ok(None),
    }
}

/// The keys of a client-mode config, with the provider its `wrapping` names and the key the
/// user gave for it (a KMS-wrapped keyring is unwrapped only under the `--kms-key-id` given).
async fn unwrap_ring(
    c: &PrefixConfig,
    at: (&str, &str),
    enc: &EncryptionConfig,
) -> Result<Keyring, SetupError> {
    let wrapping = c.wrapping.unwrap_or(Wrapping::KeyFile);
    let missing = "this prefix's keys are wrapped by a key file: give it with --key-file FILE";
    let w = wrapper(
        wrapping,
        enc.key_file.as_deref(),
        enc.kms_key_id.as_deref(),
        &enc.aws,
        at,
        missing,
    )
    .await?;
    Ok(w.unwrap(c).await?)
}

/// `sealfs migrate`, first step: a version-1 client-mode config becomes version 2 (the same
/// data keys, a new prefix key, encrypted names, a MAC), checked by unwrapping it again before
/// it replaces the old one. A version-2 config is left as it is (a migration resumed). Returns
/// the version-2 keyring and whether the config was upgraded now.
pub async fn upgrade(
    s: &dyn ObjectStore,
    bucket: &str,
    url: &str,
    prefix: &str,
    enc: &EncryptionConfig,
) -> Result<(Arc<Keyring>, bool), SetupError> {
    let client = enc.with_mode(Mode::Client);
    let ring = open(s, bucket, url, prefix, &client)
        .await?
        .ok_or(SetupError::Missing("the prefix has no keyring"))?;
    if ring.format_version() >= 2 {
        return Ok((ring, false));
    }
    let old = read_config(s, url, prefix, Mode::Client)
        .await?
        .ok_or(SetupError::Missing("the prefix has no config object"))?;
    let ring = Arc::try_unwrap(ring)
        .map_err(|_| SetupError::Missing("the keyring is in use"))?
        .with_prefix_key(PrefixKey::new(
            crate::crypto::format::Secret::random(),
            Names::Encrypted,
        ));
    let at = (bucket, prefix);
    let wrapping = old.wrapping.unwrap_or(Wrapping::KeyFile);
    let missing = "this prefix's keys are wrapped by a key file: give it with --key-file FILE";
    let w = wrapper(
        wrapping,
        client.key_file.as_deref(),
        client.kms_key_id.as_deref(),
        &client.aws,
        at,
        missing,
    )
    .await?;
    replace_keyring(s, at, &*w, &ring, &client).await?;
    Ok((Arc::new(ring), true))
}

/// Wrap `ring` with `w` and make it the prefix's config, once it unwraps again (with the keys
/// in `check_with`) to the same keys: a failure changes nothing. Returns the new config.
async fn replace_keyring(
    s: &dyn ObjectStore,
    at: (&str, &str),
    w: &dyn KeyWrapper,
    ring: &Keyring,
    check_with: &EncryptionConfig,
) -> Result<PrefixConfig, SetupError> {
    let new = w.wrap(ring).await?;
    if !unwrap_ring(&new, at, check_with).await?.same_as(ring) {
        return Err(KeyError::BadConfig(
            "the new keyring does not unwrap to the same keys; nothing was changed".into(),
        )
        .into());
    }
    s.put(
        &config_key(at.1),
        Bytes::from(new.to_json()),
        &UserMeta::new(),
    )
    .await?;
    Ok(new)
}

/// What `sealfs rotate-key` changes.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Add a new data key version, used for new files from now on.
    pub new_data_key: bool,
    /// Rewrap every data key under this key file...
    pub to_key_file: Option<std::path::PathBuf>,
    /// ...or under this KMS key. Neither: keep the current wrapping.
    pub to_kms_key_id: Option<String>,
}

/// `sealfs rotate-key`: rotate a client-mode keyring without rewriting any object. The new
/// config is unwrapped again and compared before it replaces the old one, so a failure (KMS
/// refusing Encrypt, an unreadable key file) changes nothing. `current` holds the keys that
/// open the keyring now (`--key-file` or `--kms-key-id`). Returns the new config.
pub async fn rotate(
    s: &dyn ObjectStore,
    bucket: &str,
    url: &str,
    prefix: &str,
    current: &EncryptionConfig,
    how: &Rotation,
) -> Result<PrefixConfig, SetupError> {
    if !how.new_data_key && how.to_key_file.is_none() && how.to_kms_key_id.is_none() {
        return Err(SetupError::Missing(
            "nothing to rotate: drop --rewrap-only, or give --new-key-file or --new-kms-key-id",
        ));
    }
    let old = match read_config(s, url, prefix, Mode::Client).await? {
        Some(c) if c.encryption == Mode::Client => c,
        found => {
            return Err(SetupError::NotClientMode {
                url: url.into(),
                found: found.map_or(Mode::None, |c| c.encryption),
            })
        }
    };
    let mut ring = unwrap_ring(&old, (bucket, prefix), current).await?;
    if how.new_data_key {
        ring.add_version();
    }
    let kms_target = match (&how.to_kms_key_id, &how.to_key_file) {
        (Some(id), _) => Some(id.clone()),
        (None, None) if old.is_kms() => current.kms_key_id.clone(),
        _ => None,
    };
    let new_key_file = how.to_key_file.as_deref().or(current.key_file.as_deref());
    let (wrapping, missing) = match kms_target {
        Some(_) => (Wrapping::Kms, ""),
        None => (
            Wrapping::KeyFile,
            "rewrapping under a key file needs --new-key-file FILE",
        ),
    };
    let at = (bucket, prefix);
    let target = wrapper(
        wrapping,
        new_key_file,
        kms_target.as_deref(),
        &current.aws,
        at,
        missing,
    )
    .await?;
    let check_with = EncryptionConfig {
        key_file: new_key_file.map(Path::to_path_buf),
        kms_key_id: kms_target.clone(),
        ..current.clone()
    };
    replace_keyring(s, at, &*target, &ring, &check_with).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use std::os::unix::fs::PermissionsExt;

    fn client(key: &Path) -> EncryptionConfig {
        EncryptionConfig {
            mode: Mode::Client,
            key_file: Some(key.into()),
            ..Default::default()
        }
    }

    fn none() -> EncryptionConfig {
        EncryptionConfig::default()
    }

    #[tokio::test]
    async fn modes_are_recorded_and_enforced() {
        let mem = MemStore::new();
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
        crate::crypto::keys::keygen(&k1).unwrap();
        crate::crypto::keys::keygen(&k2).unwrap();
        let none = none();
        let url = "s3://b/p";
        let err = open(&mem, "b", url, "p/", &client(&k1)).await.unwrap_err();
        assert!(matches!(err, SetupError::NotInitialized { .. }), "{err}");
        assert!(open(&mem, "b", url, "p/", &none).await.unwrap().is_none());
        init(&mem, "b", url, "p/", &client(&k1)).await.unwrap();
        assert!(init(&mem, "b", url, "p/", &client(&k1)).await.is_err());
        assert!(open(&mem, "b", url, "p/", &client(&k1))
            .await
            .unwrap()
            .is_some());
        let err = open(&mem, "b", url, "p/", &client(&k2)).await.unwrap_err();
        assert!(
            matches!(err, SetupError::Key(KeyError::WrongKeyFile)),
            "{err}"
        );
        let err = open(&mem, "b", url, "p/", &none).await.unwrap_err();
        assert!(err.to_string().contains("--encryption client"), "{err}");
        std::fs::set_permissions(&k1, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = open(&mem, "b", url, "p/", &client(&k1)).await.unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[tokio::test]
    async fn rotate_key_adds_versions_and_rewraps_without_losing_old_objects() {
        use crate::crypto::codec::FileCodec;
        let mem = MemStore::new();
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
        crate::crypto::keys::keygen(&k1).unwrap();
        crate::crypto::keys::keygen(&k2).unwrap();
        let url = "s3://b/p";
        init(&mem, "b", url, "p/", &client(&k1)).await.unwrap();
        let ring = open(&mem, "b", url, "p/", &client(&k1))
            .await
            .unwrap()
            .unwrap();
        let FileCodec::Client(keys) = ring.new_file() else {
            panic!()
        };
        let old_object = crate::crypto::format::seal_all(&keys, b"written before");

        let nothing = Rotation::default();
        assert!(rotate(&mem, "b", url, "p/", &client(&k1), &nothing)
            .await
            .is_err());
        let err = rotate(
            &mem,
            "b",
            url,
            "p/",
            &client(&k2),
            &Rotation {
                new_data_key: true,
                ..nothing.clone()
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SetupError::Key(KeyError::WrongKeyFile)),
            "{err}"
        );

        let to_k2 = Rotation {
            new_data_key: true,
            to_key_file: Some(k2.clone()),
            to_kms_key_id: None,
        };
        let cfg = rotate(&mem, "b", url, "p/", &client(&k1), &to_k2)
            .await
            .unwrap();
        assert_eq!((cfg.current_key, cfg.keys.len()), (2, 2));
        let err = open(&mem, "b", url, "p/", &client(&k1)).await.unwrap_err();
        assert!(
            matches!(err, SetupError::Key(KeyError::WrongKeyFile)),
            "{err}"
        );
        let ring = open(&mem, "b", url, "p/", &client(&k2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ring.open_object(&old_object).unwrap(), b"written before");
        let FileCodec::Client(keys) = ring.new_file() else {
            panic!()
        };
        assert_eq!(keys.header().key_version, 2);

        let none = none();
        init(&mem, "b", "s3://b/q", "q/", &none).await.unwrap();
        let err = rotate(&mem, "b", "s3://b/q", "q/", &client(&k1), &to_k2)
            .await
            .unwrap_err();
        assert!(matches!(err, SetupError::NotClientMode { .. }), "{err}");
    }

    #[test]
    fn sse_c_key_files_parse_base64_hex_and_raw() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let text = format!("# keys, newest first\n{b64}\n{}\n", hex::encode([2u8; 32]));
        let keys = load_sse_c_keys(&write("two", text.as_bytes())).unwrap();
        assert_eq!(keys.len(), 2);
        let md5s: Vec<_> = keys.iter().map(|k| k.md5().to_string()).collect();
        assert_eq!(keys.current().md5(), md5s[0]);
        assert_ne!(md5s[0], md5s[1]);
        assert_eq!(load_sse_c_keys(&write("raw", &[3u8; 32])).unwrap().len(), 1);
        assert!(load_sse_c_keys(&write("bad", b"not a key\n")).is_err());
        let loose = write("loose", b"x");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_sse_c_keys(&loose)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }
}
