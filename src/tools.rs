//! Tools that work on a prefix without FUSE: `sealfs cat` (decrypt one object to stdout),
//! `sealfs put` (upload a local file as a mount would write it), `sealfs verify`
//! (authenticate every object under a prefix) and `sealfs rekey` (move SSE-C objects to the
//! newest customer key). All find the nearest config object above the key; the mode is the one
//! the user's options fix (a config that disagrees or fails its MAC is refused), or without
//! such options the one the config records, so they open and write exactly what a mount
//! would. Keys are given as mount paths under the prefix (`s3://BUCKET/PREFIX/dir/file`):
//! with encrypted names the tools find the object's stored key themselves.
//!
//! Invariants: `cat` writes a block to stdout only after it authenticated; on the first
//! failure it stops with an error (non-zero exit), never writing unverified bytes. `put`
//! makes the object visible only once the whole file is uploaded.

use std::io::Write;
use std::sync::Arc;

use crate::crypto::codec::FileCodec;
use crate::crypto::format::plain_size;
use crate::crypto::keys::{Keyring, PrefixConfig};
use crate::crypto::mode::Mode;
use crate::inode::{Attr, Kind};
use crate::layout::{Layout, CONFIG_NAME};
use crate::meta::MetaCodec;
use crate::progress::Progress;
use crate::read::{open_object, read_range, ReadError, Version};
use crate::setup::{self, EncryptionConfig, SetupError};
use crate::store::{self, ObjectStore, StoreError};
use crate::write::{WriteConfig, Writer};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("{key}: {why}")]
    Bad { key: String, why: String },
    #[error("cannot write to stdout: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read {0}: {1}")]
    Local(String, std::io::Error),
    #[error("upload failed, nothing was written: {0}")]
    Write(#[from] crate::write::WriteError),
    #[error("{0}")]
    Refused(String),
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
        if let Some(bytes) = store::get_all(s, &Layout::new(prefix).config_key()).await? {
            let cfg = PrefixConfig::from_json(&bytes).map_err(SetupError::from)?;
            return Ok((prefix.to_string(), Some(cfg)));
        }
        if prefix.is_empty() {
            return Ok((String::new(), None));
        }
        cut = prefix.len() - 1;
    }
}

/// The encryption mode recorded for the prefix governing `key` (`none` without a config).
pub async fn mode_of(s: &dyn ObjectStore, key: &str) -> Result<Mode, ToolError> {
    let (_, cfg) = governing(s, key).await?;
    Ok(cfg.map_or(Mode::None, |c| c.encryption))
}

/// The prefix governing a key, opened: its keys (client mode), where its paths live and how
/// its objects carry attributes.
struct Target {
    prefix: String,
    keys: Option<Arc<Keyring>>,
    layout: Layout,
    meta: MetaCodec,
}

impl Target {
    /// The stored key of `key` (a prefix plus a mount path, as the user typed it).
    fn object_key(&self, key: &str) -> String {
        let path = key.strip_prefix(&self.prefix).unwrap_or(key);
        self.layout.file_key(path)
    }

    /// How `key` (a stored key) is shown: its mount path under the prefix when it decrypts.
    fn shown(&self, key: &str) -> String {
        match (self.layout.encrypts_names(), self.layout.path_of(key)) {
            (true, Some(path)) => format!("{}{path} ({key})", self.prefix),
            _ => key.to_string(),
        }
    }
}

/// The prefix governing `key`, opened with the given options (see the module comment).
async fn open_for(
    s: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    enc: &EncryptionConfig,
) -> Result<Target, ToolError> {
    let (prefix, cfg) = governing(s, key).await?;
    // A mode the user's options fix wins: a prefix whose config is missing, says another mode
    // or fails its MAC is refused. Without one, the bucket says which mode.
    let enc = match &cfg {
        Some(c) if enc.mode == Mode::None => enc.with_mode(c.encryption),
        _ => enc.clone(),
    };
    let url = format!("s3://{bucket}/{prefix}");
    let keys = setup::open(s, bucket, url.trim_end_matches('/'), &prefix, &enc).await?;
    let names = keys.as_ref().and_then(|r| r.name_cipher());
    let meta = match keys.as_ref().and_then(|r| r.attr_sealer()) {
        Some(sealer) => MetaCodec::sealed(&prefix, sealer),
        None => MetaCodec::plain(&prefix),
    };
    Ok(Target {
        layout: Layout::with_names(&prefix, names),
        prefix,
        keys,
        meta,
    })
}

/// The codec and version of one object (a stored key): its attributes and header checked
/// (client mode).
async fn object(
    s: &Arc<dyn ObjectStore>,
    t: &Target,
    key: &str,
) -> Result<(FileCodec, Version), ToolError> {
    let obj = s
        .head(key)
        .await?
        .ok_or_else(|| ToolError::NotFound(t.shown(key)))?;
    let bad = |why: String| ToolError::Bad {
        key: t.shown(key),
        why,
    };
    let decoded = (t.meta)
        .decode(&obj, false, 0, &no_defaults())
        .map_err(|e| bad(e.to_string()))?;
    let Some(ring) = &t.keys else {
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
    let v = Version {
        key: key.into(),
        etag: obj.etag,
        size,
    };
    match open_object(s, ring, &v, decoded.file_id.as_deref(), 0).await {
        Ok(opened) => Ok((opened.codec, v)),
        Err(ReadError::Corrupt { error, .. }) => Err(bad(error.to_string())),
        Err(e) => Err(e.into()),
    }
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
    enc: &EncryptionConfig,
) -> Result<(), ToolError> {
    let t = open_for(&*s, bucket, key, enc).await?;
    let (codec, v) = object(&s, &t, &t.object_key(key)).await?;
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
    enc: &EncryptionConfig,
) -> Result<(usize, usize), ToolError> {
    let t = open_for(&*s, bucket, &Layout::new(prefix).config_key(), enc).await?;
    let objects: Vec<_> = store::list_all(&*s, prefix)
        .await?
        .into_iter()
        // The config objects of this prefix and of any below it, and the attribute indexes.
        .filter(|o| o.key.rsplit('/').next() != Some(CONFIG_NAME))
        .filter(|o| !t.layout.is_internal(&o.key))
        .collect();
    let total_bytes: u64 = objects.iter().map(|o| o.size).sum();
    let mut progress = Progress::new("verified", objects.len() as u64, total_bytes);
    let mut bad = 0usize;
    for o in &objects {
        let res = if o.key.ends_with('/') {
            marker(&s, &t, &o.key).await
        } else if t.layout.encrypts_names() && t.layout.path_of(&o.key).is_none() {
            Err(ToolError::Bad {
                key: o.key.clone(),
                why: "not an encrypted name of this prefix (written by another tool, or moved)"
                    .into(),
            })
        } else {
            match object(&s, &t, &o.key).await {
                Ok((codec, v)) => stream(&s, &codec, &v, |_| Ok(())).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = res {
            bad += 1;
            let why = match e {
                ToolError::Bad { why, .. } => why,
                ToolError::Read(ReadError::Corrupt { error, .. }) => error.to_string(),
                other => other.to_string(),
            };
            progress.say(&format!("BAD {}: {why}", t.shown(&o.key)));
        }
        progress.inc(o.size);
    }
    progress.finish();
    Ok((objects.len(), bad))
}

/// A directory marker's attributes (sealed ones must open; plain ones need no check).
async fn marker(s: &Arc<dyn ObjectStore>, t: &Target, key: &str) -> Result<(), ToolError> {
    if !t.meta.is_sealed() || key == t.prefix {
        return Ok(());
    }
    let Some(obj) = s.head(key).await? else {
        return Ok(());
    };
    let bad = |e: crate::crypto::attrs::AttrError| ToolError::Bad {
        key: t.shown(key),
        why: e.to_string(),
    };
    if t.layout.path_of(key).is_none() {
        return Err(ToolError::Bad {
            key: key.into(),
            why: "not an encrypted name of this prefix".into(),
        });
    }
    t.meta
        .decode(&obj, true, 0, &no_defaults())
        .map(|_| ())
        .map_err(bad)
}

/// Defaults for attributes an object lacks: the tools only check, they show none.
fn no_defaults() -> crate::meta::Defaults {
    crate::meta::Defaults {
        uid: 0,
        gid: 0,
        file_mode: 0o600,
        dir_mode: 0o700,
    }
}

/// `sealfs put FILE s3://BUCKET/KEY`: upload a regular file with its mode, owner and mtime, in
/// parts as a mount writes it (sealed in client mode). Returns the bytes uploaded (plaintext).
pub async fn put(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    enc: &EncryptionConfig,
    file: &std::path::Path,
) -> Result<u64, ToolError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    if key.is_empty() || key.ends_with('/') || key.rsplit('/').next() == Some(CONFIG_NAME) {
        return Err(ToolError::Refused(format!(
            "cannot put to '{key}': give the object's full key (s3://BUCKET/PATH/NAME)"
        )));
    }
    let shown = file.display().to_string();
    let local = |e| ToolError::Local(shown.clone(), e);
    let mut f = std::fs::File::open(file).map_err(local)?;
    let md = f.metadata().map_err(local)?;
    if !md.is_file() {
        return Err(ToolError::Refused(format!("{shown} is not a regular file")));
    }
    let t = open_for(&*s, bucket, key, enc).await?;
    let key = &t.object_key(key);
    let codec = t.keys.as_ref().map_or(FileCodec::Plain, |r| r.new_file());
    let attr = Attr {
        size: md.len(),
        mtime: md.modified().map_err(local)?,
        ..Attr::new(
            Kind::File,
            (md.mode() & 0o7777) as u16,
            md.uid(),
            md.gid(),
            std::time::SystemTime::now(),
        )
    };
    let meta = (t.meta).encode(key, &attr, crate::meta::file_id_of(Some(&codec)), None);
    let mut w = Writer::new(s, WriteConfig::default(), None, codec);
    w.mark_changed();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    let res = async {
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(local(e)),
            };
            w.write(key, &meta, off, &buf[..n]).await?;
            off += n as u64;
        }
        w.checkpoint(key, &meta).await?;
        Ok(off)
    }
    .await;
    if res.is_err() {
        w.abort().await;
    }
    res
}

/// One line of `sealfs versions`: the version, when it was written, its plaintext size
/// (`None` for a delete marker or a size no sealfs object has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    pub version_id: String,
    pub last_modified: std::time::SystemTime,
    pub plain_size: Option<u64>,
    pub latest: bool,
    pub deleted: bool,
}

/// `sealfs versions s3://BUCKET/PREFIX/PATH`: every version of one file, newest first (a
/// versioned bucket). With encrypted names the stored key is found as for `cat`.
pub async fn versions(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    enc: &EncryptionConfig,
) -> Result<Vec<VersionLine>, ToolError> {
    let t = open_for(&*s, bucket, key, enc).await?;
    let stored = t.object_key(key);
    let lines: Vec<VersionLine> = store::list_all_versions(&*s, &stored)
        .await?
        .into_iter()
        .filter(|v| v.key == stored)
        .map(|v| VersionLine {
            plain_size: match (v.delete_marker, &t.keys) {
                (true, _) => None,
                (false, Some(_)) => plain_size(v.size).ok(),
                (false, None) => Some(v.size),
            },
            version_id: v.version_id,
            last_modified: v.last_modified,
            latest: v.is_latest,
            deleted: v.delete_marker,
        })
        .collect();
    if lines.is_empty() {
        return Err(ToolError::NotFound(format!("{key} (no version of it)")));
    }
    Ok(lines)
}

/// `sealfs rekey s3://BUCKET/PREFIX` (SSE-C): copy every object that is not under the newest
/// customer key (`current_md5`) onto itself, server-side, under that key. Objects no key opens
/// are reported and left alone. Returns (objects rekeyed, objects that failed).
pub async fn rekey(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    enc: &EncryptionConfig,
    current_md5: &str,
) -> Result<(usize, usize), ToolError> {
    // Proves the key file opens the prefix (its config object is under one of its keys).
    open_for(&*s, bucket, &Layout::new(prefix).config_key(), enc).await?;
    let (mut moved, mut failed) = (0, 0);
    let objects = store::list_all(&*s, prefix).await?;
    let total_bytes = objects.iter().map(|o| o.size).sum();
    let mut progress = Progress::new("rekeyed", objects.len() as u64, total_bytes);
    for o in objects {
        progress.inc(o.size);
        let res = match s.head(&o.key).await {
            Ok(Some(m)) if m.sse_c_key_md5.as_deref() == Some(current_md5) => continue,
            Ok(Some(m)) => {
                // In place, on the version just read: a concurrent change is not undone.
                let expected = store::Expect::Version(m.etag.clone());
                let part = WriteConfig::default().part_size;
                store::copy_any_size(&*s, &m, &m.key, &m.user, part, &expected).await
            }
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        match res {
            Ok(_) => moved += 1,
            Err(e) => {
                failed += 1;
                progress.say(&format!("FAILED {}: {e}", o.key));
            }
        }
    }
    progress.finish();
    Ok((moved, failed))
}
