//! Tools that work on a prefix without FUSE: `sealfs cat` (decrypt one object to stdout) and
//! `sealfs verify` (authenticate every object under a prefix). Both read the mode from the
//! nearest config object above the key, so they open exactly what a mount would.
//!
//! Invariant: `cat` writes a block to stdout only after it authenticated; on the first failure
//! it stops with an error (non-zero exit), never writing unverified bytes.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use crate::cli::{Encryption, EncryptionArgs};
use crate::crypto::codec::FileCodec;
use crate::crypto::format::{plain_size, HEADER_LEN};
use crate::crypto::keys::{Keyring, PrefixConfig, CONFIG_NAME};
use crate::read::{read_range, Version};
use crate::setup::{self, SetupError};
use crate::store::{self, ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Read(#[from] crate::read::ReadError),
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("{key}: {why}")]
    Bad { key: String, why: String },
    #[error("cannot write to stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// The prefix (ending in '/', or empty) whose config object governs `key`, and its config.
async fn governing(
    s: &dyn ObjectStore,
    key: &str,
) -> Result<(String, Option<PrefixConfig>), ToolError> {
    let mut cut = key.len();
    loop {
        let prefix = match key[..cut].rfind('/') {
            Some(i) => &key[..=i],
            None => "",
        };
        if let Some(bytes) = store::get_all(s, &format!("{prefix}{CONFIG_NAME}")).await? {
            let cfg = PrefixConfig::from_json(&bytes).map_err(SetupError::from)?;
            return Ok((prefix.to_string(), Some(cfg)));
        }
        if prefix.is_empty() {
            return Ok((String::new(), None));
        }
        cut = prefix.len() - 1;
    }
}

/// Keys (client mode) for the prefix governing `key`, checking the given options' mode.
async fn open_for(
    s: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    enc: &EncryptionArgs,
) -> Result<Option<Arc<Keyring>>, ToolError> {
    let (prefix, cfg) = governing(s, key).await?;
    let mut enc = enc.clone();
    if let Some(c) = &cfg {
        // The bucket says which mode; the options only supply keys.
        enc.encryption = Encryption::from_name(&c.encryption).unwrap_or(Encryption::None);
    }
    let url = format!("s3://{bucket}/{prefix}");
    Ok(setup::open(s, bucket, url.trim_end_matches('/'), &prefix, &enc).await?)
}

/// The codec and version of one object: its header checked (client mode).
async fn object(
    s: &Arc<dyn ObjectStore>,
    keys: &Option<Arc<Keyring>>,
    key: &str,
) -> Result<(FileCodec, Version), ToolError> {
    let obj = s
        .head(key)
        .await?
        .ok_or_else(|| ToolError::NotFound(key.into()))?;
    let bad = |why: String| ToolError::Bad {
        key: key.into(),
        why,
    };
    let Some(ring) = keys else {
        return Ok((
            FileCodec::Plain,
            Version {
                key: key.into(),
                etag: obj.etag,
                size: obj.size,
            },
        ));
    };
    let size = plain_size(obj.size).map_err(|e| bad(format!("not a sealfs object ({e})")))?;
    let head = s
        .get_range(key, 0..HEADER_LEN.min(obj.size), Some(&obj.etag))
        .await?;
    let codec = ring.open_header(&head).map_err(|e| bad(e.to_string()))?;
    if let (Some(want), FileCodec::Client(k)) = (obj.user.get("sealfs-id"), &codec) {
        if *want != hex::encode(k.header().file_id) {
            return Err(bad(crate::crypto::format::FormatError::Swapped.to_string()));
        }
    }
    Ok((
        codec,
        Version {
            key: key.into(),
            etag: obj.etag,
            size,
        },
    ))
}

/// Read (and authenticate) a whole object block run by block run, handing each to `sink`.
async fn stream(
    s: &Arc<dyn ObjectStore>,
    codec: &FileCodec,
    v: &Version,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), ToolError> {
    // 128 blocks (8 MiB) per request: few requests, bounded memory.
    const CHUNK: u64 = 128 * 65536;
    let mut off = 0;
    while off < v.size {
        let end = (off + CHUNK).min(v.size);
        let data = read_range(s, v, codec, off..end).await?;
        sink(&data)?;
        off = end;
    }
    Ok(())
}

/// `sealfs cat s3://BUCKET/KEY`
pub async fn cat(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    enc: &EncryptionArgs,
) -> Result<(), ToolError> {
    let keys = open_for(&*s, bucket, key, enc).await?;
    let (codec, v) = object(&s, &keys, key).await?;
    let mut out = std::io::stdout().lock();
    stream(&s, &codec, &v, |b| out.write_all(b)).await?;
    out.flush()?;
    Ok(())
}

/// `sealfs verify s3://BUCKET/PREFIX`: returns (objects checked, bad objects).
pub async fn verify(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    enc: &EncryptionArgs,
) -> Result<(usize, usize), ToolError> {
    let keys = open_for(&*s, bucket, &format!("{prefix}{CONFIG_NAME}"), enc).await?;
    let objects: Vec<_> = store::list_all(&*s, prefix)
        .await?
        .into_iter()
        .filter(|o| !o.key.ends_with(CONFIG_NAME) && !o.key.ends_with('/'))
        .collect();
    let tty = std::io::stderr().is_terminal();
    let total_bytes: u64 = objects.iter().map(|o| o.size).sum();
    let (mut done_bytes, mut bad) = (0u64, 0usize);
    for (i, o) in objects.iter().enumerate() {
        let res = match object(&s, &keys, &o.key).await {
            Ok((codec, v)) => stream(&s, &codec, &v, |_| Ok(())).await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            bad += 1;
            if tty {
                eprint!("\r\x1b[K");
            }
            println!("BAD {}: {e}", o.key);
        }
        done_bytes += o.size;
        if tty {
            let pct = (done_bytes * 100).checked_div(total_bytes).unwrap_or(100);
            eprint!(
                "\rverified {}/{} objects, {pct}% of {} bytes",
                i + 1,
                objects.len(),
                total_bytes
            );
        }
    }
    if tty {
        eprintln!();
    }
    Ok((objects.len(), bad))
}
