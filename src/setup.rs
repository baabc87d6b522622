//! Prefix setup shared by `init` and `mount`: the config object that records a prefix's
//! encryption mode (and, in client mode, its wrapped keyring), so that mounting it later with
//! another mode or key fails clearly instead of writing a mix.

use std::sync::Arc;

use bytes::Bytes;

use crate::cli::Encryption;
use crate::crypto::keys::{load_key_file, KeyError, Keyring, PrefixConfig, CONFIG_NAME};
use crate::store::{self, ObjectStore, StoreError, UserMeta};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{url} is not initialized for client-side encryption: run `sealfs init {url} --encryption client --key-file FILE` first")]
    NotInitialized { url: String },
    #[error("{url} is set up for encryption '{found}', not '{asked}': mount it with --encryption {found}")]
    ModeMismatch {
        url: String,
        found: String,
        asked: String,
    },
    #[error("{url} is already initialized (encryption '{found}')")]
    AlreadyInitialized { url: String, found: String },
    #[error(
        "--encryption client needs --key-file FILE (make one with `sealfs keygen --out FILE`)"
    )]
    NoKeyFile,
}

fn config_key(prefix: &str) -> String {
    format!("{prefix}{CONFIG_NAME}")
}

async fn read_config(
    s: &dyn ObjectStore,
    prefix: &str,
) -> Result<Option<PrefixConfig>, SetupError> {
    match store::get_all(s, &config_key(prefix)).await? {
        Some(bytes) => Ok(Some(PrefixConfig::from_json(&bytes)?)),
        None => Ok(None),
    }
}

/// `sealfs init`: record the mode (and create the keyring) for a prefix that has none.
pub async fn init(
    s: &dyn ObjectStore,
    url: &str,
    prefix: &str,
    mode: Encryption,
    key_file: Option<&std::path::Path>,
) -> Result<(), SetupError> {
    if let Some(found) = read_config(s, prefix).await? {
        return Err(SetupError::AlreadyInitialized {
            url: url.into(),
            found: found.encryption,
        });
    }
    let config = match mode {
        Encryption::Client => {
            let master = load_key_file(key_file.ok_or(SetupError::NoKeyFile)?)?;
            PrefixConfig::new_client(&master)
        }
        Encryption::None => PrefixConfig::plain("none"),
    };
    s.put(
        &config_key(prefix),
        Bytes::from(config.to_json()),
        &UserMeta::new(),
    )
    .await?;
    Ok(())
}

/// At mount: check the prefix's recorded mode against the asked one; in client mode unwrap
/// its keyring with the key file.
pub async fn open(
    s: &dyn ObjectStore,
    url: &str,
    prefix: &str,
    mode: Encryption,
    key_file: Option<&std::path::Path>,
) -> Result<Option<Arc<Keyring>>, SetupError> {
    let config = read_config(s, prefix).await?;
    let found = config
        .as_ref()
        .map_or("none", |c| c.encryption.as_str())
        .to_string();
    if found != mode.name() {
        return Err(match (mode, config) {
            (Encryption::Client, None) => SetupError::NotInitialized { url: url.into() },
            _ => SetupError::ModeMismatch {
                url: url.into(),
                found,
                asked: mode.name().into(),
            },
        });
    }
    match (mode, config) {
        (Encryption::Client, Some(c)) => {
            let master = load_key_file(key_file.ok_or(SetupError::NoKeyFile)?)?;
            Ok(Some(Arc::new(c.unwrap(&master)?)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn modes_are_recorded_and_enforced() {
        let mem = MemStore::new();
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
        crate::crypto::keys::keygen(&k1).unwrap();
        crate::crypto::keys::keygen(&k2).unwrap();
        let url = "s3://b/p";
        let err = open(&mem, url, "p/", Encryption::Client, Some(&k1))
            .await
            .unwrap_err();
        assert!(matches!(err, SetupError::NotInitialized { .. }), "{err}");
        assert!(open(&mem, url, "p/", Encryption::None, None)
            .await
            .unwrap()
            .is_none());
        init(&mem, url, "p/", Encryption::Client, Some(&k1))
            .await
            .unwrap();
        assert!(init(&mem, url, "p/", Encryption::Client, Some(&k1))
            .await
            .is_err());
        assert!(open(&mem, url, "p/", Encryption::Client, Some(&k1))
            .await
            .unwrap()
            .is_some());
        let err = open(&mem, url, "p/", Encryption::Client, Some(&k2))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SetupError::Key(KeyError::WrongKeyFile)),
            "{err}"
        );
        let err = open(&mem, url, "p/", Encryption::None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--encryption client"), "{err}");
        std::fs::set_permissions(&k1, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = open(&mem, url, "p/", Encryption::Client, Some(&k1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
