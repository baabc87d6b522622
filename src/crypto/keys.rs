//! Keys of a client-mode prefix: a keyring of data keys (one per key version, the newest used
//! for new files), stored in the bucket in the prefix's config object, each data key wrapped
//! by the user's 256-bit key file with AES-256-GCM.
//!
//! Invariants:
//! - Key material lives in `Secret`s (zeroized on drop, never printed); errors name files and
//!   versions, never bytes of a key.
//! - A key file that group or others may read is refused.
//! - A wrong key file is detected when the keyring is unwrapped (the mount refuses to start),
//!   not as a stream of read errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use super::codec::FileCodec;
use super::format::{FileKeys, FormatError, Header, Secret};
use super::mode::{Mode, Wrapping};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("key file {path} has mode {mode:o}, readable by others: run `chmod 600 {path}`")]
    LoosePermissions { path: String, mode: u32 },
    #[error("key file {0} does not hold a 256-bit key (32 raw bytes or 64 hex digits)")]
    BadKeyFile(String),
    #[error("cannot write key file {0}: {1}")]
    Write(String, std::io::Error),
    #[error("the key file does not unwrap this prefix's keyring (wrong key file?)")]
    WrongKeyFile,
    #[error("the prefix's config object is not valid: {0}")]
    BadConfig(String),
}

/// Load a 256-bit key file: 32 raw bytes, or 64 hex digits (keygen's output).
pub fn load_key_file(path: &Path) -> Result<Secret, KeyError> {
    let shown = path.display().to_string();
    let mut bytes = read_private(path)?;
    let key = parse_key(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    key.ok_or(KeyError::BadKeyFile(shown))
}

/// Read a file that holds key material, refusing it when group or others may read it.
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| KeyError::Read(shown.clone(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::LoosePermissions { path: shown, mode });
    }
    std::fs::read(path).map_err(|e| KeyError::Read(shown, e))
}

fn parse_key(bytes: &[u8]) -> Option<Secret> {
    if bytes.len() == 32 {
        return Some(Secret(bytes.try_into().ok()?));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let mut k = [0u8; 32];
    hex::decode_to_slice(text, &mut k).ok()?;
    Some(Secret(k))
}

/// Write a new random key file (64 hex digits), created with mode 0600; never overwrites.
pub fn keygen(path: &Path) -> Result<(), KeyError> {
    let shown = path.display().to_string();
    let key = Secret::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KeyError::Write(shown.clone(), e))?;
    let mut text = hex::encode(key.0);
    text.push('\n');
    let res = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    zeroize::Zeroize::zeroize(&mut text);
    res.map_err(|e| KeyError::Write(shown, e))
}

/// The unwrapped data keys of a prefix.
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, Secret>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(current {}, {} keys)",
            self.current,
            self.keys.len()
        )
    }
}

impl Keyring {
    /// A keyring from unwrapped keys; `current` must be among them.
    pub fn from_keys(current: u32, keys: BTreeMap<u32, Secret>) -> Result<Self, KeyError> {
        if !keys.contains_key(&current) {
            return Err(KeyError::BadConfig("current key missing".into()));
        }
        Ok(Self { current, keys })
    }

    pub fn new_single(key: Secret) -> Self {
        Self {
            current: 1,
            keys: BTreeMap::from([(1, key)]),
        }
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Add a fresh random data key as the newest version: new files use it from now on,
    /// objects sealed under older versions stay readable.
    pub fn add_version(&mut self) -> u32 {
        let version = self.keys.keys().last().map_or(1, |v| v + 1);
        self.keys.insert(version, Secret::random());
        self.current = version;
        version
    }

    /// Every data key with its version, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = (u32, &Secret)> {
        self.keys.iter().map(|(v, k)| (*v, k))
    }

    /// Whether `other` holds exactly these keys and the same current version.
    pub fn same_as(&self, other: &Keyring) -> bool {
        self.current == other.current
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|((va, a), (vb, b))| va == vb && a.0 == b.0)
    }

    /// Codec for a new file: fresh file id, newest data key.
    pub fn new_file(&self) -> FileCodec {
        let key = &self.keys[&self.current];
        FileCodec::Client(Arc::new(FileKeys::new_file(key, self.current)))
    }

    /// Codec of an existing object from its header bytes (checks the key commitment).
    pub fn open_header(&self, bytes: &[u8]) -> Result<FileCodec, FormatError> {
        let header = Header::parse(bytes)?;
        let key = self
            .keys
            .get(&header.key_version)
            .ok_or(FormatError::UnknownKeyVersion(header.key_version))?;
        Ok(FileCodec::Client(Arc::new(FileKeys::open(key, &header)?)))
    }

    /// A whole object's plaintext (symlink targets, tools).
    pub fn open_object(&self, object: &[u8]) -> Result<Vec<u8>, FormatError> {
        let header = Header::parse(object)?;
        let key = self
            .keys
            .get(&header.key_version)
            .ok_or(FormatError::UnknownKeyVersion(header.key_version))?;
        super::format::open_all(key, object)
    }
}

/// The config object of a prefix: its encryption mode and, in client mode, the wrapped keyring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrefixConfig {
    /// Config format version.
    pub sealfs: u32,
    pub encryption: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping: Option<Wrapping>,
    /// The KMS key that wraps the data keys (`wrapping: "kms"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub current_key: u32,
    #[serde(default)]
    pub keys: Vec<WrappedKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKey {
    pub version: u32,
    pub nonce: String,
    pub wrapped: String,
}

fn wrap_aad(version: u32) -> Vec<u8> {
    format!("sealfs keyring v1 key {version}").into_bytes()
}

impl PrefixConfig {
    /// A new client-mode config with one fresh data key wrapped by `master`.
    pub fn new_client(master: &Secret) -> Self {
        Self::wrapped_by_key_file(master, &Keyring::new_single(Secret::random()))
    }

    /// A client-mode config holding every key of `ring`, each wrapped by `master`.
    pub fn wrapped_by_key_file(master: &Secret, ring: &Keyring) -> Self {
        Self {
            sealfs: 1,
            encryption: Mode::Client,
            wrapping: Some(Wrapping::KeyFile),
            kms_key_id: None,
            current_key: ring.current,
            keys: ring.versions().map(|(v, k)| wrap(master, v, k)).collect(),
        }
    }

    /// A new client-mode config whose data key is a KMS ciphertext blob.
    pub fn new_client_kms(key_id: &str, blob: &[u8]) -> Self {
        Self::wrapped_by_kms(key_id, 1, vec![(1, blob.to_vec())])
    }

    /// A client-mode config whose data keys are KMS ciphertext blobs (by version) of `key_id`.
    pub fn wrapped_by_kms(key_id: &str, current: u32, blobs: Vec<(u32, Vec<u8>)>) -> Self {
        Self {
            sealfs: 1,
            encryption: Mode::Client,
            wrapping: Some(Wrapping::Kms),
            kms_key_id: Some(key_id.into()),
            current_key: current,
            keys: blobs
                .into_iter()
                .map(|(version, blob)| WrappedKey {
                    version,
                    nonce: String::new(),
                    wrapped: hex::encode(blob),
                })
                .collect(),
        }
    }

    pub fn is_kms(&self) -> bool {
        self.wrapping == Some(Wrapping::Kms)
    }

    /// The KMS blobs of a KMS-wrapped keyring, by key version.
    pub fn kms_blobs(&self) -> Result<Vec<(u32, Vec<u8>)>, KeyError> {
        self.keys
            .iter()
            .map(|k| {
                hex::decode(&k.wrapped)
                    .map(|b| (k.version, b))
                    .map_err(|e| KeyError::BadConfig(e.to_string()))
            })
            .collect()
    }

    pub fn plain(mode: Mode) -> Self {
        Self {
            sealfs: 1,
            encryption: mode,
            wrapping: None,
            kms_key_id: None,
            current_key: 0,
            keys: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("config serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let c: Self =
            serde_json::from_slice(bytes).map_err(|e| KeyError::BadConfig(e.to_string()))?;
        if c.sealfs != 1 {
            return Err(KeyError::BadConfig(format!(
                "unknown config version {}",
                c.sealfs
            )));
        }
        Ok(c)
    }

    /// Unwrap every data key with `master`.
    pub fn unwrap(&self, master: &Secret) -> Result<Keyring, KeyError> {
        let cipher = Aes256Gcm::new_from_slice(&master.0).expect("32-byte key");
        let mut keys = BTreeMap::new();
        for k in &self.keys {
            let nonce = hex::decode(&k.nonce).map_err(|e| KeyError::BadConfig(e.to_string()))?;
            let wrapped =
                hex::decode(&k.wrapped).map_err(|e| KeyError::BadConfig(e.to_string()))?;
            if nonce.len() != 12 {
                return Err(KeyError::BadConfig("nonce length".into()));
            }
            let mut plain = cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &wrapped,
                        aad: &wrap_aad(k.version),
                    },
                )
                .map_err(|_| KeyError::WrongKeyFile)?;
            let key: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadConfig("data key length".into()))?;
            zeroize::Zeroize::zeroize(&mut plain);
            keys.insert(k.version, Secret(key));
        }
        if !keys.contains_key(&self.current_key) {
            return Err(KeyError::BadConfig("current key missing".into()));
        }
        Ok(Keyring {
            current: self.current_key,
            keys,
        })
    }
}

fn wrap(master: &Secret, version: u32, data_key: &Secret) -> WrappedKey {
    let cipher = Aes256Gcm::new_from_slice(&master.0).expect("32-byte key");
    let mut nonce = [0u8; 12];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
    let wrapped = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &data_key.0,
                aad: &wrap_aad(version),
            },
        )
        .expect("wrapping 32 bytes cannot fail");
    WrappedKey {
        version,
        nonce: hex::encode(nonce),
        wrapped: hex::encode(wrapped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_unwraps_only_with_its_key_file_key() {
        let master = Secret([1; 32]);
        let cfg = PrefixConfig::new_client(&master);
        let json = cfg.to_json();
        assert!(!String::from_utf8_lossy(&json).contains(&hex::encode([1u8; 32])));
        let back = PrefixConfig::from_json(&json).unwrap();
        let ring = back.unwrap(&master).unwrap();
        assert_eq!(ring.current_version(), 1);
        assert!(matches!(
            back.unwrap(&Secret([2; 32])),
            Err(KeyError::WrongKeyFile)
        ));
    }

    #[test]
    fn rotation_adds_a_version_and_rewrapping_keeps_every_key() {
        let (old, new) = (Secret([5; 32]), Secret([6; 32]));
        let mut ring = PrefixConfig::new_client(&old).unwrap(&old).unwrap();
        let FileCodec::Client(keys) = ring.new_file() else {
            panic!()
        };
        let before = super::super::format::seal_all(&keys, b"old file");
        assert_eq!(ring.add_version(), 2);
        assert_eq!(ring.current_version(), 2);
        let cfg = PrefixConfig::wrapped_by_key_file(&new, &ring);
        assert!(matches!(cfg.unwrap(&old), Err(KeyError::WrongKeyFile)));
        let back = cfg.unwrap(&new).unwrap();
        assert!(back.same_as(&ring));
        assert_eq!(back.open_object(&before).unwrap(), b"old file");
        let FileCodec::Client(keys) = back.new_file() else {
            panic!()
        };
        assert_eq!(keys.header().key_version, 2);
    }

    #[test]
    fn key_files_must_be_private_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        keygen(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        load_key_file(&path).unwrap();
        assert!(keygen(&path).is_err(), "never overwrites");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"short").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load_key_file(&bad), Err(KeyError::BadKeyFile(_))));
    }

    #[test]
    fn objects_sealed_under_the_keyring_open_and_others_do_not() {
        let ring = Keyring::new_single(Secret([3; 32]));
        let FileCodec::Client(keys) = ring.new_file() else {
            panic!()
        };
        let obj = super::super::format::seal_all(&keys, b"secret");
        assert_eq!(ring.open_object(&obj).unwrap(), b"secret");
        assert!(ring.open_header(&obj[..64]).is_ok());
        let other = Keyring::new_single(Secret([4; 32]));
        assert_eq!(other.open_object(&obj), Err(FormatError::WrongKey));
    }
}
