//! Reading a file's bytes from its object: ranged GETs pinned to the version that was opened,
//! with a per-handle readahead window.
//!
//! Invariants:
//! - Every GET carries `If-Match: <etag of the opened version>`, so a handle never returns a mix
//!   of two versions; an overwrite by another writer surfaces as `ReadError::Changed` (ESTALE).
//! - A random read fetches just the bytes asked for; sequential reads grow the window
//!   (doubling up to `max_window`) so large files stream in few requests; a seek resets it.

use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::codec::FileCodec;
use crate::crypto::format::FormatError;
use crate::store::{ObjectStore, StoreError};

#[derive(Debug, Clone)]
pub struct ReadConfig {
    pub min_window: u64,
    pub max_window: u64,
}

impl Default for ReadConfig {
    fn default() -> Self {
        Self {
            // The kernel asks in 128 KiB pieces by default; a window 8x that already amortises
            // request latency, and 16 MiB keeps a streaming reader near the server's throughput.
            min_window: 1024 * 1024,
            max_window: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("object changed on the server since it was opened: {0}")]
    Changed(String),
    #[error("{key}: {error}")]
    Corrupt { key: String, error: FormatError },
}

/// The object version a handle reads; `size` is the file (plaintext) size.
#[derive(Debug, Clone)]
pub struct Version {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

pub struct Reader {
    cfg: ReadConfig,
    window: u64,
    next_offset: u64,
    buf_offset: u64,
    buf: Bytes,
    /// The version `buf` was read from; a new version invalidates it.
    buf_etag: String,
}

impl Reader {
    pub fn new(cfg: ReadConfig) -> Self {
        Self {
            window: cfg.min_window,
            cfg,
            next_offset: 0,
            buf_offset: 0,
            buf: Bytes::new(),
            buf_etag: String::new(),
        }
    }

    pub async fn read(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        version: &Version,
        codec: &FileCodec,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ReadError> {
        let end = (offset + len).min(version.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if self.buf_etag != version.etag {
            self.buf = Bytes::new();
        }
        let sequential = offset == self.next_offset;
        self.next_offset = end;
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if offset >= self.buf_offset && end <= buf_end {
            let from = (offset - self.buf_offset) as usize;
            return Ok(self.buf.slice(from..from + (end - offset) as usize));
        }
        if sequential {
            self.window = (self.window * 2).min(self.cfg.max_window);
        } else {
            self.window = self.cfg.min_window;
        }
        // Random reads fetch only what was asked for; sequential ones a window ahead.
        let want = if sequential {
            self.window.max(len)
        } else {
            len
        };
        let fetch_end = (offset + want).min(version.size);
        let data = read_range(store, version, codec, offset..fetch_end).await?;
        if (data.len() as u64) < end - offset {
            return Err(ReadError::Changed(version.key.clone()));
        }
        let out = data.slice(0..(end - offset) as usize);
        self.buf_offset = offset;
        self.buf = data;
        self.buf_etag = version.etag.clone();
        Ok(out)
    }
}

/// Plaintext `range` of `version` (non-empty, within the file): one ranged GET pinned to the
/// version, authenticated and decrypted by `codec`.
pub async fn read_range(
    store: &Arc<dyn ObjectStore>,
    version: &Version,
    codec: &FileCodec,
    range: std::ops::Range<u64>,
) -> Result<Bytes, ReadError> {
    let fetch = codec.fetch_range(&range, version.size);
    let raw = store
        .get_range(&version.key, fetch.clone(), Some(&version.etag))
        .await
        .map_err(|e| match e {
            StoreError::PreconditionFailed(m) | StoreError::NotFound(m) => ReadError::Changed(m),
            other => ReadError::Store(other),
        })?;
    if (raw.len() as u64) < fetch.end - fetch.start {
        return Err(ReadError::Changed(version.key.clone()));
    }
    codec
        .decode(raw, &range, version.size)
        .map_err(|error| ReadError::Corrupt {
            key: version.key.clone(),
            error,
        })
}
