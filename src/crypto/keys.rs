//! Keys of a client-mode prefix: a keyring of data keys (one per key version, the newest used
//! for new files) and, from config version 2 on, one prefix key (names, attributes and the
//! config's MAC derive from it), stored in the bucket in the prefix's config object, each
//! wrapped by the user's 256-bit key file with AES-256-GCM (or by KMS, `kms`).
//!
//! Invariants:
//! - Key material lives in `Secret`s (zeroized on drop, never printed); errors name files and
//!   versions, never bytes of a key.
//! - A key file that group or others may read is refused.
//! - A wrong key file is detected when the keyring is unwrapped (the mount refuses to start),
//!   not as a stream of read errors.
//! - A version-2 config is used only after its MAC verified under a key derived from the
//!   prefix key: mode, wrapping, names, `current_key` and every wrapped entry are covered, so
//!   the bucket cannot point `current_key` at an old key or drop an entry.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::attrs::AttrSealer;
use super::codec::FileCodec;
use super::format::{FileKeys, FormatError, Header, Secret};
use super::mode::{Mode, Wrapping};
use super::names::NameCipher;

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
    #[error("the prefix's config object fails its authentication check: it was edited, rolled back or replaced in the bucket; refusing to use it")]
    BadMac,
}

/// Load a 256-bit key file: 32 raw bytes, or 64 hex digits (keygen's output).
pub fn load_key_file(path: &Path) -> Result<Secret, KeyError> {
    let shown = path.display().to_string();
    let mut bytes = read_private(path)?;
    let key = parse_key(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    key.ok_or(KeyError::BadKeyFile(shown))
}

/// Read a file that holds key material, refusing it when group or others may read it. The
/// mode is checked on the opened descriptor, so the file read is the file checked.
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| KeyError::Read(shown.clone(), e))?;
    let meta = f.metadata().map_err(|e| KeyError::Read(shown.clone(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::LoosePermissions { path: shown, mode });
    }
    let mut out = Vec::with_capacity(meta.len().min(1 << 16) as usize);
    f.read_to_end(&mut out)
        .map_err(|e| KeyError::Read(shown, e))?;
    Ok(out)
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

/// How a version-2 prefix stores names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Names {
    /// Each name sealed with AES-SIV (`crypto::names`).
    #[default]
    Encrypted,
    /// Names in the clear (attributes are still sealed).
    Plain,
}

impl Names {
    pub fn name(self) -> &'static str {
        match self {
            Names::Encrypted => "encrypted",
            Names::Plain => "plain",
        }
    }
}

/// The prefix key of a version-2 prefix and what it was made for.
#[derive(Clone)]
pub struct PrefixKey {
    key: Secret,
    names: Names,
}

impl PrefixKey {
    pub fn new(key: Secret, names: Names) -> Self {
        Self { key, names }
    }

    pub fn secret(&self) -> &Secret {
        &self.key
    }

    fn derive<const N: usize>(&self, info: &str) -> [u8; N] {
        let mut out = [0u8; N];
        Hkdf::<Sha256>::new(None, &self.key.0)
            .expand(info.as_bytes(), &mut out)
            .expect("a valid HKDF-SHA256 length");
        out
    }
}

/// The unwrapped keys of a prefix: its data keys and (version 2) its prefix key.
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, Secret>,
    prefix: Option<PrefixKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(current {}, {} keys, format {})",
            self.current,
            self.keys.len(),
            self.format_version()
        )
    }
}

impl Keyring {
    /// A keyring from unwrapped keys; `current` must be among them.
    pub fn from_keys(current: u32, keys: BTreeMap<u32, Secret>) -> Result<Self, KeyError> {
        if !keys.contains_key(&current) {
            return Err(KeyError::BadConfig("current key missing".into()));
        }
        Ok(Self {
            current,
            keys,
            prefix: None,
        })
    }

    /// A version-1 keyring of one data key (no prefix key: plain names and attributes).
    pub fn new_single(key: Secret) -> Self {
        Self {
            current: 1,
            keys: BTreeMap::from([(1, key)]),
            prefix: None,
        }
    }

    /// A new version-2 keyring: one fresh data key and a fresh prefix key.
    pub fn new_v2(names: Names) -> Self {
        Self {
            prefix: Some(PrefixKey::new(Secret::random(), names)),
            ..Self::new_single(Secret::random())
        }
    }

    /// This keyring with `prefix` as its prefix key (a version-2 keyring).
    pub fn with_prefix_key(mut self, prefix: PrefixKey) -> Self {
        self.prefix = Some(prefix);
        self
    }

    pub fn prefix_key(&self) -> Option<&PrefixKey> {
        self.prefix.as_ref()
    }

    /// The config format this keyring belongs to: 2 with a prefix key, else 1.
    pub fn format_version(&self) -> u32 {
        if self.prefix.is_some() {
            2
        } else {
            1
        }
    }

    /// The name cipher, when this prefix encrypts names.
    pub fn name_cipher(&self) -> Option<NameCipher> {
        let p = self
            .prefix
            .as_ref()
            .filter(|p| p.names == Names::Encrypted)?;
        Some(NameCipher::new(p.derive("sealfs v2 names")))
    }

    /// The attribute sealer of a version-2 prefix.
    pub fn attr_sealer(&self) -> Option<AttrSealer> {
        let p = self.prefix.as_ref()?;
        let mut key: [u8; 32] = p.derive("sealfs v2 attributes");
        let sealer = AttrSealer::new(&key);
        zeroize::Zeroize::zeroize(&mut key);
        Some(sealer)
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
            && match (&self.prefix, &other.prefix) {
                (None, None) => true,
                (Some(a), Some(b)) => a.names == b.names && a.key.0 == b.key.0,
                _ => false,
            }
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
    /// Config format version: 1, or 2 (prefix key, names, MAC).
    pub sealfs: u32,
    pub encryption: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping: Option<Wrapping>,
    /// The KMS key that wraps the data keys (`wrapping: "kms"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Version 2: how object names are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Names>,
    #[serde(default)]
    pub current_key: u32,
    #[serde(default)]
    pub keys: Vec<WrappedKey>,
    /// Version 2: the wrapped prefix key (`version` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_key: Option<WrappedKey>,
    /// Version 2: HMAC-SHA256 of everything above (`mac_input`), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKey {
    pub version: u32,
    pub nonce: String,
    pub wrapped: String,
}

/// The wrapped prefix key's version number (data keys start at 1).
pub const PREFIX_KEY_VERSION: u32 = 0;

/// Associated data of key `version`'s wrapping in a config of format `format`: distinct per
/// format, so entries of a version-2 config do not unwrap in a version-1 one (a downgrade).
fn wrap_aad(format: u32, version: u32) -> Vec<u8> {
    if format >= 2 && version == PREFIX_KEY_VERSION {
        b"sealfs keyring v2 prefix key".to_vec()
    } else {
        format!("sealfs keyring v{format} key {version}").into_bytes()
    }
}

fn bad(e: impl std::fmt::Display) -> KeyError {
    KeyError::BadConfig(e.to_string())
}

impl PrefixConfig {
    /// A new client-mode config (version 2, encrypted names) wrapped by `master`.
    pub fn new_client(master: &Secret) -> Self {
        Self::wrapped_by_key_file(master, &Keyring::new_v2(Names::Encrypted))
    }

    /// A client-mode config holding every key of `ring`, each wrapped by `master`, with its
    /// MAC when `ring` is a version-2 keyring.
    pub fn wrapped_by_key_file(master: &Secret, ring: &Keyring) -> Self {
        let mut c = Self {
            wrapping: Some(Wrapping::KeyFile),
            keys: (ring.versions())
                .map(|(v, k)| wrap(master, ring.format_version(), v, k))
                .collect(),
            prefix_key: (ring.prefix.as_ref()).map(|p| wrap(master, 2, PREFIX_KEY_VERSION, &p.key)),
            ..Self::client_shell(ring)
        };
        c.seal(ring);
        c
    }

    /// A client-mode config whose keys are KMS ciphertext blobs of `key_id`: the data keys
    /// by version, and (a version-2 `ring`) the prefix key.
    pub fn wrapped_by_kms(
        key_id: &str,
        ring: &Keyring,
        blobs: Vec<(u32, Vec<u8>)>,
        prefix_blob: Option<Vec<u8>>,
    ) -> Self {
        let entry = |version, blob: Vec<u8>| WrappedKey {
            version,
            nonce: String::new(),
            wrapped: hex::encode(blob),
        };
        let mut c = Self {
            wrapping: Some(Wrapping::Kms),
            kms_key_id: Some(key_id.into()),
            keys: blobs.into_iter().map(|(v, b)| entry(v, b)).collect(),
            prefix_key: prefix_blob.map(|b| entry(PREFIX_KEY_VERSION, b)),
            ..Self::client_shell(ring)
        };
        c.seal(ring);
        c
    }

    fn client_shell(ring: &Keyring) -> Self {
        Self {
            sealfs: ring.format_version(),
            encryption: Mode::Client,
            wrapping: None,
            kms_key_id: None,
            names: ring.prefix.as_ref().map(|p| p.names),
            current_key: ring.current,
            keys: Vec::new(),
            prefix_key: None,
            mac: None,
        }
    }

    pub fn is_kms(&self) -> bool {
        self.wrapping == Some(Wrapping::Kms)
    }

    /// The KMS blobs of a KMS-wrapped keyring, by key version (the prefix key's is version 0).
    pub fn kms_blobs(&self) -> Result<Vec<(u32, Vec<u8>)>, KeyError> {
        self.keys
            .iter()
            .chain(&self.prefix_key)
            .map(|k| hex::decode(&k.wrapped).map(|b| (k.version, b)).map_err(bad))
            .collect()
    }

    pub fn plain(mode: Mode) -> Self {
        Self {
            sealfs: 1,
            encryption: mode,
            wrapping: None,
            kms_key_id: None,
            names: None,
            current_key: 0,
            keys: Vec::new(),
            prefix_key: None,
            mac: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("config serializes")
    }

    /// Parse a config object (not yet authenticated: `Keyring`s come from `unwrap`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let c: Self = serde_json::from_slice(bytes).map_err(bad)?;
        match c.sealfs {
            1 if c.names.is_none() && c.prefix_key.is_none() && c.mac.is_none() => Ok(c),
            1 => Err(bad("names, prefix_key and mac belong to config version 2")),
            2 if c.encryption != Mode::Client => Err(bad("config version 2 is client mode")),
            2 if c.names.is_none() || c.prefix_key.is_none() || c.mac.is_none() => {
                Err(bad("config version 2 needs names, prefix_key and mac"))
            }
            2 => Ok(c),
            v => Err(bad(format!("unknown config version {v}"))),
        }
    }

    /// The bytes the MAC covers (docs/FORMAT.md): every field but `mac`, length-prefixed.
    pub fn mac_input(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut out = b"sealfs config v2\0".to_vec();
        field(&mut out, self.encryption.name());
        field(&mut out, self.wrapping.map_or("", |w| w.name()));
        field(&mut out, self.kms_key_id.as_deref().unwrap_or(""));
        field(&mut out, self.names.map_or("", |n| n.name()));
        out.extend_from_slice(&self.current_key.to_be_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for k in self.keys.iter().chain(&self.prefix_key) {
            out.extend_from_slice(&k.version.to_be_bytes());
            field(&mut out, &k.nonce);
            field(&mut out, &k.wrapped);
        }
        out
    }

    fn mac_with(&self, prefix: &PrefixKey) -> Hmac<Sha256> {
        let mut key: [u8; 32] = prefix.derive("sealfs v2 config mac");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        zeroize::Zeroize::zeroize(&mut key);
        mac.update(&self.mac_input());
        mac
    }

    /// This config with its MAC set for `ring` (documented vectors; `wrapped_by_*` do it).
    pub fn sealed(mut self, ring: &Keyring) -> Self {
        self.seal(ring);
        self
    }

    /// Set `mac` for a version-2 keyring (nothing for version 1).
    fn seal(&mut self, ring: &Keyring) {
        self.mac = ring
            .prefix
            .as_ref()
            .map(|p| hex::encode(self.mac_with(p).finalize().into_bytes()));
    }

    /// `ring` (unwrapped from this config) once the config's MAC verified (version 2).
    pub fn authenticate(&self, ring: Keyring) -> Result<Keyring, KeyError> {
        match (self.sealfs, &ring.prefix, &self.mac) {
            (1, None, None) => Ok(ring),
            (2, Some(p), Some(mac)) => {
                let tag = hex::decode(mac).map_err(|_| KeyError::BadMac)?;
                self.mac_with(p)
                    .verify_slice(&tag)
                    .map_err(|_| KeyError::BadMac)?;
                Ok(ring)
            }
            _ => Err(KeyError::BadMac),
        }
    }

    /// Unwrap every key with `master` and authenticate the config.
    pub fn unwrap(&self, master: &Secret) -> Result<Keyring, KeyError> {
        let cipher = Aes256Gcm::new_from_slice(&master.0).expect("32-byte key");
        let open = |k: &WrappedKey| -> Result<Secret, KeyError> {
            let nonce = hex::decode(&k.nonce).map_err(bad)?;
            let wrapped = hex::decode(&k.wrapped).map_err(bad)?;
            if nonce.len() != 12 {
                return Err(bad("nonce length"));
            }
            let mut plain = cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &wrapped,
                        aad: &wrap_aad(self.sealfs, k.version),
                    },
                )
                .map_err(|_| KeyError::WrongKeyFile)?;
            let key: Result<[u8; 32], _> = plain.as_slice().try_into();
            zeroize::Zeroize::zeroize(&mut plain);
            Ok(Secret(key.map_err(|_| bad("data key length"))?))
        };
        let mut keys = BTreeMap::new();
        for k in &self.keys {
            if k.version == PREFIX_KEY_VERSION {
                return Err(bad("data key version 0"));
            }
            keys.insert(k.version, open(k)?);
        }
        let prefix = match &self.prefix_key {
            Some(k) if k.version == PREFIX_KEY_VERSION => Some(open(k)?),
            Some(_) => return Err(bad("prefix key version")),
            None => None,
        };
        self.keyring(keys, prefix)
    }

    /// The keyring of unwrapped `keys` (and prefix key), once the config authenticates.
    pub fn keyring(
        &self,
        keys: BTreeMap<u32, Secret>,
        prefix: Option<Secret>,
    ) -> Result<Keyring, KeyError> {
        let mut ring = Keyring::from_keys(self.current_key, keys)?;
        if let (Some(key), Some(names)) = (prefix, self.names) {
            ring = ring.with_prefix_key(PrefixKey::new(key, names));
        }
        self.authenticate(ring)
    }
}

fn wrap(master: &Secret, format: u32, version: u32, data_key: &Secret) -> WrappedKey {
    let mut nonce = [0u8; 12];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
    wrap_with_nonce(master, (format, version), data_key, nonce)
}

/// Wrap with a given nonce: `wrap`, and the documented test vectors.
pub fn wrap_with_nonce(
    master: &Secret,
    (format, version): (u32, u32),
    data_key: &Secret,
    nonce: [u8; 12],
) -> WrappedKey {
    let cipher = Aes256Gcm::new_from_slice(&master.0).expect("32-byte key");
    let wrapped = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &data_key.0,
                aad: &wrap_aad(format, version),
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
    fn a_version_2_config_is_refused_when_any_field_changed() {
        let master = Secret([1; 32]);
        let mut ring = Keyring::new_v2(Names::Encrypted);
        ring.add_version();
        let cfg = PrefixConfig::wrapped_by_key_file(&master, &ring);
        assert_eq!((cfg.sealfs, cfg.current_key, cfg.keys.len()), (2, 2, 2));
        assert!(cfg.unwrap(&master).unwrap().same_as(&ring));
        type Change = fn(&mut PrefixConfig);
        let tampered: Vec<(&str, Change)> = vec![
            ("current_key rolled back", |c| c.current_key = 1),
            ("newest key dropped", |c| {
                c.keys.pop();
                c.current_key = 1;
            }),
            ("names", |c| c.names = Some(Names::Plain)),
            ("mac removed", |c| c.mac = None),
            ("downgraded to version 1", |c| {
                c.sealfs = 1;
                c.names = None;
                c.prefix_key = None;
                c.mac = None;
            }),
        ];
        for (what, change) in tampered {
            let mut c = cfg.clone();
            change(&mut c);
            let parsed = PrefixConfig::from_json(&c.to_json());
            let res = parsed.and_then(|p| p.unwrap(&master));
            // A downgrade fails too: version-2 entries do not unwrap as version-1 ones.
            assert!(res.is_err(), "{what}: accepted");
        }
        // A whole config made with another prefix key does not pass as this one's.
        let other = PrefixConfig::wrapped_by_key_file(&master, &Keyring::new_v2(Names::Encrypted));
        let mut mixed = cfg.clone();
        mixed.mac = other.mac.clone();
        assert!(matches!(mixed.unwrap(&master), Err(KeyError::BadMac)));
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
