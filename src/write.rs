//! Write staging: turns any sequence of writes and truncates on one file into S3 uploads with
//! bounded memory and no local disk.
//!
//! Model: the new object is `base` (the object as it was opened, of which the first
//! `base_valid` bytes still count) overlaid with `dirty` extents, zero-filled elsewhere, cut at
//! `size`. Part `n` (1-based) of the new object always covers bytes `[(n-1)*P, n*P)`, so a part
//! with no dirty bytes can be copied server-side from the same range of the base
//! (UploadPartCopy) instead of being downloaded and sent again.
//!
//! Invariants:
//! - Bytes below `committed_end` have been handed to the multipart upload; `dirty` holds only
//!   bytes at or above it. A write, truncate or read below `committed_end` first completes the
//!   upload (a *checkpoint*), which makes the object current, and restarts from it as the base.
//! - A sequential writer never checkpoints early: each full part is uploaded (in parallel, at
//!   most `max_inflight` at once) as soon as it is complete. Random writers are bounded by
//!   `max_dirty`: past it, parts are composed up to the last dirty byte.
//! - The object becomes visible only when the upload completes (a checkpoint); any failure
//!   aborts the multipart upload, so no partial object is ever visible, and leaves the writer
//!   failed (a terminal state): every later call returns the error.
//! - With `OnConflict::KeepBoth`, every upload names what it replaces: `If-None-Match: *` for a new file,
//!   `If-Match: ETAG` of the base otherwise. When the server says the object is no longer that
//!   (another host wrote it), the writer fails with `WriteError::Conflict`, which hands over
//!   what this writer would have stored (the PUT body, or the multipart upload, still
//!   pending) so the caller can keep it: nothing is aborted or dropped for a conflict.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::crypto::codec::{seal_part, FileCodec};
use crate::crypto::format::FormatError;
mod conflict;
mod dirty;
mod pool;
mod upload;
pub use conflict::{Lost, LostData, OnConflict};
use dirty::{Dirty, Parts};
pub use pool::PartPool;
use upload::{drain, flatten, join_one, Upload};

use crate::store::{self, CompletedPart, Expect, ObjectMeta, ObjectStore, StoreError, UserMeta};

#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// Plaintext bytes per multipart part; files up to this size go in one PUT.
    pub part_size: u64,
    /// Parts uploading at once per file.
    pub max_inflight: usize,
    /// Dirty bytes held in memory per file before parts are composed early.
    pub max_dirty: u64,
    /// Smallest part copied server-side (S3 refuses smaller non-final parts).
    pub min_copy_part: u64,
    /// What an upload does about other writers of its object.
    pub on_conflict: OnConflict,
}

impl Default for WriteConfig {
    fn default() -> Self {
        Self {
            // 8 MiB parts: S3's 10,000-part limit then allows 78 GiB files, and a part is large
            // enough to keep a request's fixed latency small against its transfer time.
            part_size: 8 * 1024 * 1024,
            max_inflight: 4,
            max_dirty: 64 * 1024 * 1024,
            min_copy_part: store::MIN_PART_SIZE,
            on_conflict: OnConflict::default(),
        }
    }
}

impl WriteConfig {
    /// The largest file this configuration can store: S3's 10,000 parts of `part_size`.
    pub fn max_plain_size(&self) -> u64 {
        self.part_size.saturating_mul(store::MAX_PARTS)
    }

    /// Capacity of a part buffer: a whole part, sealed (the larger of its two forms).
    pub fn part_buffer(&self) -> usize {
        crate::crypto::format::cipher_size(self.part_size) as usize
    }

    /// The part buffers a mount's writers share: enough spares for one sequential writer (a
    /// part being filled, `max_inflight` uploading, one being sealed).
    pub fn pool(&self) -> Arc<PartPool> {
        PartPool::new(self.part_buffer(), self.max_inflight + 2)
    }

    /// `plain_size` bytes fit in one object, or `TooLarge` (EFBIG).
    pub fn check_size(&self, plain_size: u64) -> Result<()> {
        if plain_size > self.max_plain_size() {
            return Err(WriteError::TooLarge(plain_size, store::MAX_PARTS));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an earlier upload of this file failed; the file handle is unusable")]
    Failed,
    #[error("file too large: {0} bytes exceed {1} parts of the configured part size")]
    TooLarge(u64, u64),
    #[error("the object changed on the server while this file was open: {0}")]
    Changed(String),
    #[error("{key}: {error}")]
    Corrupt { key: String, error: FormatError },
    #[error("{}: another writer changed the object since this file was opened", .0.key)]
    Conflict(Box<Lost>),
}

impl From<crate::read::ReadError> for WriteError {
    fn from(e: crate::read::ReadError) -> Self {
        use crate::read::ReadError;
        match e {
            ReadError::Store(s) => WriteError::Store(s),
            ReadError::Changed(m) => WriteError::Changed(m),
            ReadError::Corrupt { key, error } => WriteError::Corrupt { key, error },
        }
    }
}

pub type Result<T> = std::result::Result<T, WriteError>;

/// The object version a writer starts from (`size`: its plaintext size).
pub use crate::read::Version as Base;

pub struct Writer {
    store: Arc<dyn ObjectStore>,
    codec: FileCodec,
    cfg: WriteConfig,
    base: Option<Base>,
    base_valid: u64,
    size: u64,
    dirty: Dirty,
    upload: Option<Upload>,
    committed_end: u64,
    state: WriterState,
    /// Where part buffers come from and go back to (shared by a mount's writers).
    pool: Arc<PartPool>,
}

/// Where a writer stands against its base object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// The object in the bucket is this writer's view (or nothing was asked yet).
    Clean,
    /// Something must be uploaded at the next checkpoint (writes, a truncate, a new file).
    Changed,
    /// An upload failed and was aborted: terminal, every later call is `WriteError::Failed`.
    Failed,
}

impl Writer {
    /// A writer over `base` (None for a new file). `mark_changed` forces an upload on the
    /// next checkpoint even without writes (a new empty file, an O_TRUNC open).
    /// `codec` seals the new object; for an existing base it must be the base's own (same
    /// file keys), so that untouched parts can be copied.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cfg: WriteConfig,
        base: Option<Base>,
        codec: FileCodec,
    ) -> Self {
        let size = base.as_ref().map_or(0, |b| b.size);
        let pool = PartPool::new(cfg.part_buffer(), 0);
        Self {
            store,
            codec,
            cfg,
            pool,
            base_valid: size,
            base,
            size,
            dirty: Dirty::default(),
            upload: None,
            committed_end: 0,
            state: WriterState::Clean,
        }
    }

    /// Take part buffers from `pool` (a mount's, `WriteConfig::pool`) rather than allocate
    /// each: see `pool` for why.
    pub fn with_pool(mut self, pool: Arc<PartPool>) -> Self {
        if pool.capacity() == self.cfg.part_buffer() {
            self.pool = pool;
        }
        self
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_changed(&self) -> bool {
        self.state == WriterState::Changed
    }

    /// Whether the bucket lacks this writer's view: changes to upload, or a failed upload
    /// (whose error every later read, write and flush reports).
    pub fn is_pending(&self) -> bool {
        self.state != WriterState::Clean
    }

    /// Upload at the next checkpoint even without writes (a new empty file, an O_TRUNC open).
    pub fn mark_changed(&mut self) {
        if self.state == WriterState::Clean {
            self.state = WriterState::Changed;
        }
    }

    pub fn base(&self) -> Option<&Base> {
        self.base.as_ref()
    }

    /// Whether a multipart upload is in flight (its object appears where it completes).
    pub fn is_uploading(&self) -> bool {
        self.upload.is_some()
    }

    pub fn is_failed(&self) -> bool {
        self.state == WriterState::Failed
    }

    fn check(&self) -> Result<()> {
        if self.is_failed() {
            Err(WriteError::Failed)
        } else {
            Ok(())
        }
    }

    /// Run `op`; on error abort any upload and enter the failed state.
    async fn guard<T>(&mut self, res: Result<T>) -> Result<T> {
        if res.is_err() {
            self.state = WriterState::Failed;
            self.abort().await;
        }
        res
    }

    pub async fn write(
        &mut self,
        key: &str,
        meta: &UserMeta,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        self.check()?;
        let end = offset.saturating_add(data.len() as u64);
        self.cfg.check_size(end)?;
        if offset < self.committed_end {
            let r = self.checkpoint_inner(key, meta).await;
            self.guard(r).await?;
        }
        self.insert_dirty(offset, data);
        self.size = self.size.max(end);
        self.mark_changed();
        let r = self.pump(key, meta).await;
        self.guard(r).await
    }

    /// Hold `data` at `offset` until a part takes it.
    fn insert_dirty(&mut self, offset: u64, data: &[u8]) {
        let parts = Parts {
            size: self.cfg.part_size,
            committed_end: self.committed_end,
            pool: &self.pool,
        };
        self.dirty.insert(offset, data, &parts);
    }

    pub async fn truncate(&mut self, key: &str, meta: &UserMeta, new_size: u64) -> Result<()> {
        self.check()?;
        // Refused before anything changes: an extension is zeros uploaded at the next
        // checkpoint, and one past the limit would upload for hours before failing.
        self.cfg.check_size(new_size)?;
        // At the boundary too: the part before it was sealed as "not last".
        if self.upload.is_some() && new_size <= self.committed_end {
            let r = self.checkpoint_inner(key, meta).await;
            self.guard(r).await?;
        }
        self.dirty.trim(new_size);
        self.base_valid = self.base_valid.min(new_size);
        self.size = new_size;
        self.mark_changed();
        Ok(())
    }

    /// Read the file as this writer sees it (its own writes included).
    pub async fn read(
        &mut self,
        key: &str,
        meta: &UserMeta,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        self.check()?;
        if self.upload.is_some() && offset < self.committed_end {
            let r = self.checkpoint_inner(key, meta).await;
            self.guard(r).await?;
        }
        let end = (offset + len).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let r = self.assemble(offset..end).await;
        self.guard(r).await.map(Bytes::from)
    }

    /// Make the object in S3 equal to this writer's view, with `meta`. Returns the new
    /// version, or `None` when nothing had changed.
    pub async fn checkpoint(&mut self, key: &str, meta: &UserMeta) -> Result<Option<Base>> {
        self.check()?;
        if !self.is_changed() {
            return Ok(None);
        }
        let r = self.checkpoint_inner(key, meta).await;
        self.guard(r).await.map(Some)
    }

    /// Abandon pending work: abort the multipart upload (if any) so nothing is left behind.
    pub async fn abort(&mut self) {
        if let Some(mut up) = self.upload.take() {
            up.inflight.abort_all();
            while up.inflight.join_next().await.is_some() {}
            if let Err(e) = self.store.abort_multipart(&up.key, &up.id).await {
                tracing::warn!(key = %up.key, error = %e, "could not abort multipart upload");
            }
        }
        self.dirty.clear();
        self.committed_end = 0;
    }

    /// What an upload to `key` must find there: nothing for a new file, the base otherwise.
    fn expect_at(&self, key: &str) -> Expect {
        self.cfg.on_conflict.expect(match &self.base {
            None => Expect::Absent,
            Some(b) if b.key == key => Expect::Version(b.etag.clone()),
            // A base elsewhere (a file renamed before its first upload completed): the new
            // name's object is not one this writer read, so it gets no condition.
            Some(_) => Expect::Anything,
        })
    }

    async fn checkpoint_inner(&mut self, key: &str, meta: &UserMeta) -> Result<Base> {
        let p = self.cfg.part_size;
        let etag = if self.upload.is_none() && self.size <= p {
            let body = self.assemble(0..self.size).await?;
            let body = self.codec.encode(0, Bytes::from(body), self.size);
            let expected = self.expect_at(key);
            match self.store.put_if(key, body.clone(), meta, &expected).await {
                Ok(etag) => etag,
                // Some servers answer an If-Match on a deleted key with 404: a conflict too.
                Err(StoreError::PreconditionFailed(_)) | Err(StoreError::NotFound(_))
                    if expected != Expect::Anything =>
                {
                    return Err(WriteError::Conflict(Box::new(Lost {
                        key: key.to_string(),
                        expected,
                        data: LostData::Body(body),
                    })));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            self.start_upload(key, meta).await?;
            while self.committed_end < self.size {
                let end = (self.committed_end + p).min(self.size);
                self.send_part(self.committed_end..end).await?;
            }
            let mut up = self.upload.take().expect("upload started above");
            let joined = drain(&mut up).await;
            if let Err(e) = joined {
                self.upload = Some(up);
                return Err(e.into());
            }
            up.parts.sort_by_key(|p| p.number);
            let expected = self.expect_at(&up.key);
            let etag = match self
                .store
                .complete_multipart_if(&up.key, &up.id, &up.parts, &expected)
                .await
            {
                Ok(etag) => etag,
                Err(StoreError::PreconditionFailed(_)) => {
                    // Handed over, not aborted: the parts are this writer's bytes.
                    return Err(WriteError::Conflict(Box::new(Lost {
                        key: up.key,
                        expected,
                        data: LostData::Upload {
                            id: up.id,
                            parts: up.parts,
                        },
                    })));
                }
                Err(e) => {
                    self.upload = Some(up);
                    return Err(e.into());
                }
            };
            let done = ObjectMeta {
                key: up.key.clone(),
                size: self.codec.object_size(self.size),
                etag,
                last_modified: std::time::SystemTime::now(),
                user: up.meta.clone(),
                sse: None,
                sse_c_key_md5: None,
                content_type: None,
            };
            // Metadata is fixed when the upload starts; a chmod/utimens/rename since then is
            // applied with one server-side copy.
            if up.key != key || up.meta != *meta {
                let expected = match up.key == key {
                    true => self
                        .cfg
                        .on_conflict
                        .expect(Expect::Version(done.etag.clone())),
                    false => self.expect_at(key),
                };
                let etag =
                    store::copy_any_size(&*self.store, &done, key, meta, p, &expected).await?;
                if up.key != key {
                    self.store.delete(&up.key).await?;
                }
                etag
            } else {
                done.etag
            }
        };
        let base = Base {
            key: key.to_string(),
            etag,
            size: self.size,
        };
        self.base = Some(base.clone());
        self.base_valid = self.size;
        self.dirty.clear();
        self.committed_end = 0;
        self.state = WriterState::Clean;
        Ok(base)
    }

    async fn start_upload(&mut self, key: &str, meta: &UserMeta) -> Result<()> {
        if self.upload.is_none() {
            let id = self.store.create_multipart(key, meta).await?;
            self.upload = Some(Upload {
                key: key.to_string(),
                id,
                meta: meta.clone(),
                parts: Vec::new(),
                inflight: JoinSet::new(),
                _counted: crate::metrics::InFlight::new(
                    &crate::metrics::global().uploads_in_flight,
                ),
            });
        }
        Ok(())
    }

    /// Upload full parts as they become available, and keep memory within bounds.
    async fn pump(&mut self, key: &str, meta: &UserMeta) -> Result<()> {
        let p = self.cfg.part_size;
        loop {
            let ce = self.committed_end;
            // Only once the file extends past the part: the part holding the file's end is
            // always sealed at checkpoint, when the final size (and so the last block) is known.
            let full = self.size > ce + p && self.dirty.holds(ce, p);
            let pressure_limit = if self.dirty.bytes() > self.cfg.max_dirty.max(p) {
                let last_end = self.dirty.end();
                (last_end / p * p).min(self.size.saturating_sub(1) / p * p)
            } else {
                0
            };
            if !full && pressure_limit <= ce {
                return Ok(());
            }
            self.start_upload(key, meta).await?;
            self.send_part(ce..ce + p).await?;
        }
    }

    /// Compose part `range` (copy from base or assemble bytes), queue it, and advance
    /// `committed_end`, waiting while too many parts are in flight.
    async fn send_part(&mut self, range: Range<u64>) -> Result<()> {
        let number = (range.start / self.cfg.part_size) as i32 + 1;
        let part_end = range.end;
        let untouched = !self.dirty.touches(range.clone());
        let copy_from = match &self.base {
            Some(b)
                if untouched
                    && range.end <= self.base_valid
                    && self.codec.copy_safe(&range, b.size, self.size)
                    && (range.end - range.start >= self.cfg.min_copy_part
                        || range.end == self.size) =>
            {
                let src = self.codec.object_range(&range, b.size);
                Some((b.clone(), src))
            }
            _ => None,
        };
        let plain = match copy_from {
            Some(_) => None,
            None => Some(self.take_part_bytes(range.clone()).await?),
        };
        self.dirty.drop_below(range.end);
        let (store, pool) = (self.store.clone(), self.pool.clone());
        let (codec, size) = (self.codec.clone(), self.size);
        let up = self.upload.as_mut().expect("upload started before parts");
        let (key, id) = (up.key.clone(), up.id.clone());
        up.inflight.spawn(async move {
            let m = crate::metrics::global();
            let etag = match (copy_from, plain) {
                (Some((b, src)), _) => {
                    m.parts_copied.inc();
                    store
                        .upload_part_copy(&key, &id, number, &b.key, &b.etag, src)
                        .await?
                }
                (None, Some(plain)) => {
                    // Sealed here, in the part's own task: parts in flight seal in parallel,
                    // and the application's write does not wait for the cipher.
                    m.parts_uploaded.inc();
                    let body = match codec {
                        FileCodec::Plain => pool.lease(plain),
                        FileCodec::Client(keys) => {
                            let mut sealed = pool.take();
                            seal_part(&keys, range.start, &plain, size, &mut sealed);
                            pool.give(plain);
                            pool.lease(sealed)
                        }
                    };
                    let _in_flight = crate::metrics::InFlight::new(&m.parts_in_flight);
                    store.upload_part(&key, &id, number, body).await?
                }
                (None, None) => unreachable!("a part is either copied or sent"),
            };
            Ok(CompletedPart { number, etag })
        });
        self.committed_end = self.committed_end.max(part_end);
        let max = self.cfg.max_inflight.max(1);
        let up = self.upload.as_mut().expect("upload present");
        while up.inflight.len() >= max {
            join_one(up).await?;
        }
        while let Some(res) = up.inflight.try_join_next() {
            up.parts.push(flatten(res)?);
        }
        Ok(())
    }

    /// The bytes of `range`: taken without copying when one dirty extent starts there and
    /// covers it (the sequential case), assembled otherwise.
    async fn take_part_bytes(&mut self, range: Range<u64>) -> Result<Vec<u8>> {
        match self.dirty.take(range.clone()) {
            Some(v) => Ok(v),
            None => self.assemble(range).await,
        }
    }

    /// Base bytes (only those not overwritten) + dirty extents + zeros.
    async fn assemble(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        let base_end = range.end.min(self.base_valid);
        if let (Some(base), true) = (&self.base, range.start < base_end) {
            let gaps = self.dirty.uncovered(range.start..base_end);
            if let (Some(first), Some(last)) = (gaps.first(), gaps.last()) {
                let span = first.start..last.end;
                let fetch = self.codec.fetch_range(&span, base.size);
                let raw = crate::read::get_pinned(&self.store, base, fetch).await?;
                let data = self.codec.decode(raw, &span, base.size).map_err(|error| {
                    WriteError::Corrupt {
                        key: base.key.clone(),
                        error,
                    }
                })?;
                let at = (span.start - range.start) as usize;
                buf[at..at + data.len()].copy_from_slice(&data);
            }
        }
        self.dirty.overlay(range, &mut buf);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests;
