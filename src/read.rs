//! Reading a file's bytes from its object: ranged GETs pinned to the version that was opened,
//! through the mount's block cache, with per-handle readahead.
//!
//! Invariants:
//! - Every GET carries `If-Match: <etag of the opened version>`, so a handle never returns a mix
//!   of two versions; an overwrite by another writer surfaces as `ReadError::Changed` (ESTALE).
//! - Reads are served in whole 64 KiB blocks from the cache (`cache::BlockCache`, keyed by
//!   version and block). A random read fetches only the blocks it needs, with one GET.
//! - A run of near-contiguous reads is a stream once it starts at offset 0 or has read
//!   `STREAM_AFTER` bytes; only a stream reads ahead. A random read that the kernel splits
//!   around pages it already holds looks contiguous for a piece or two, and must not pull in
//!   megabytes it will never use.
//! - A stream grows a readahead window (doubling up to `max_window`, reset by a seek) and
//!   fetches it ahead in background GETs of `chunk` bytes, at most `max_gets` in flight per
//!   mount, into the cache; the reader waits for a block being fetched instead of fetching it
//!   again. Readahead GETs never cross a multiple of `chunk` (plaintext): the writer cuts parts
//!   at the same multiples, so each GET reads one part of the object. Once the window is a chunk
//!   or more, it ends on such a multiple and is topped up as soon as a chunk of it has been
//!   read, so the GETs in flight are staggered.
//! - Readahead failures are dropped: the reader then fetches the block itself and returns the
//!   error it gets (EIO for a block that does not authenticate), never unverified bytes.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::cache::disk::{DiskCache, DiskCacheConfig, EntryId};
use crate::cache::{self, BlockCache, BlockKey, Fetch, Lookup};
use crate::crypto::codec::FileCodec;
use crate::crypto::format::{cipher_size, FormatError, BLOCK_PLAIN, HEADER_LEN};
use crate::crypto::keys::Keyring;
use crate::store::{Body, ObjectStore, OnSegment, StoreError};

mod cut;
use cut::{block_plain, BlockCutter};

#[derive(Debug, Clone)]
pub struct ReadConfig {
    pub min_window: u64,
    pub max_window: u64,
    /// Bytes per readahead GET.
    pub chunk: u64,
    /// Readahead GETs in flight per mount.
    pub max_gets: usize,
    /// Budget of the block cache, bytes.
    pub cache_bytes: u64,
    /// The disk cache under it (`--cache-dir`), if any.
    pub disk: Option<DiskCacheConfig>,
}

impl Default for ReadConfig {
    fn default() -> Self {
        Self {
            // A window of 1 MiB already amortises request latency for a streaming reader; it
            // doubles to 64 MiB, fetched as 8 MiB GETs with 8 in flight, which keeps a local
            // server busy and costs a few requests per 100 MiB on AWS.
            min_window: 1024 * 1024,
            max_window: 64 * 1024 * 1024,
            chunk: 8 * 1024 * 1024,
            max_gets: 8,
            cache_bytes: 256 * 1024 * 1024,
            disk: None,
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

/// What every handle of a mount shares: the store, the block cache, the readahead budget.
pub struct Fetcher {
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<BlockCache>,
    /// Object bytes of blocks kept across mounts (`--cache-dir`), asked on a memory miss.
    disk: Option<Arc<DiskCache>>,
    gets: Arc<Semaphore>,
    cfg: ReadConfig,
}

impl Fetcher {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: ReadConfig) -> Arc<Self> {
        Self::with_disk(store, cfg, None)
    }

    pub fn with_disk(
        store: Arc<dyn ObjectStore>,
        cfg: ReadConfig,
        disk: Option<Arc<DiskCache>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            cache: BlockCache::new(cfg.cache_bytes),
            disk,
            gets: Arc::new(Semaphore::new(cfg.max_gets.max(1))),
            cfg,
        })
    }

    /// `open_object` through the disk cache: a header kept there is used (its key commitment
    /// and file id checked again, as for one fetched) instead of a GET; one fetched is kept,
    /// with the blocks of a small object fetched whole. Empty files always go to the bucket
    /// (their one block is authenticated at open, see `open_object`).
    pub async fn open(
        &self,
        ring: &Arc<Keyring>,
        v: &Version,
        expect_id: Option<&str>,
        whole_up_to: u64,
    ) -> Result<Opened, ReadError> {
        let disk = self.disk.as_ref().filter(|_| v.size > 0);
        if let Some(disk) = disk {
            let id = disk.id(&v.key, &v.etag, HEADER_ENTRY);
            let (ring2, v2) = (ring.clone(), v.clone());
            let expect = expect_id.map(str::to_string);
            let check = move |_, head: Vec<u8>| {
                let head = Bytes::from(head);
                check_header(&ring2, &v2, expect.as_deref(), &head)
                    .map(|codec| (codec, head))
                    .map_err(|e| e.to_string())
            };
            if let Some((codec, head)) = disk.get_run(vec![id], check).await.pop() {
                return Ok(Opened {
                    codec,
                    blocks: None,
                    fetched: head.into(),
                });
            }
        }
        let opened = open_object(&self.store, ring, v, expect_id, whole_up_to).await?;
        if let Some(disk) = disk {
            let head = opened.fetched.slice(0..HEADER_LEN as usize);
            let mut keep = vec![(disk.id(&v.key, &v.etag, HEADER_ENTRY), head)];
            if opened.blocks.is_some() {
                let body = opened
                    .fetched
                    .sub(HEADER_LEN as usize..opened.fetched.len());
                let n = crate::crypto::format::block_count(v.size);
                keep.extend(disk_entries(disk, v, &opened.codec, 0..n, &body, &[]));
            }
            disk.put(keep);
        }
        Ok(opened)
    }

    pub fn config(&self) -> &ReadConfig {
        &self.cfg
    }

    /// Put every block of `v` into the cache: `blocks` are its plaintext blocks, all of them,
    /// already authenticated (`Opened::blocks`).
    pub fn seed(&self, v: &Version, blocks: Vec<Bytes>) {
        let (object, etag): (Arc<str>, Arc<str>) = (v.key.as_str().into(), v.etag.as_str().into());
        for (i, b) in (0..).zip(blocks) {
            if !b.is_empty() {
                self.cache.insert(block_key(v, &object, &etag, i), b);
            }
        }
    }
}

fn block_key(v: &Version, object: &Arc<str>, etag: &Arc<str>, index: u64) -> BlockKey {
    debug_assert_eq!(&**object, v.key.as_str());
    BlockKey {
        object: object.clone(),
        etag: etag.clone(),
        index,
    }
}

/// Object bytes `fetch` of version `v`, all of them, or `Changed` if the object was replaced.
/// The one pinned GET of sealfs: reads, the writer's read-modify-write and opening a header
/// all go through it.
pub async fn get_pinned(
    store: &Arc<dyn ObjectStore>,
    v: &Version,
    fetch: std::ops::Range<u64>,
) -> Result<Body, ReadError> {
    get_pinned_with(store, v, fetch, &mut |_| {}).await
}

/// `get_pinned`, showing `seen` each segment of the body as it arrives.
async fn get_pinned_with(
    store: &Arc<dyn ObjectStore>,
    v: &Version,
    fetch: std::ops::Range<u64>,
    seen: OnSegment<'_>,
) -> Result<Body, ReadError> {
    let raw = store
        .get_body_with(&v.key, fetch.clone(), Some(&v.etag), seen)
        .await
        .map_err(|e| match e {
            StoreError::PreconditionFailed(m) | StoreError::NotFound(m) => ReadError::Changed(m),
            other => ReadError::Store(other),
        })?;
    if (raw.len() as u64) < fetch.end - fetch.start {
        return Err(ReadError::Changed(v.key.clone()));
    }
    Ok(raw)
}

/// A client-mode object, opened: its codec (key commitment checked, bound to the file id
/// its metadata records) and, when it was fetched whole, its plaintext blocks, every one of
/// them authenticated.
pub struct Opened {
    pub codec: FileCodec,
    pub blocks: Option<Vec<Bytes>>,
    /// The object bytes this came from: the header, or the whole object.
    pub fetched: Body,
}

/// The codec of version `v` from its header bytes `head` (`open_object`'s checks).
fn check_header(
    ring: &Keyring,
    v: &Version,
    expect_id: Option<&str>,
    head: &[u8],
) -> Result<FileCodec, ReadError> {
    let corrupt = |error| ReadError::Corrupt {
        key: v.key.clone(),
        error,
    };
    let codec = ring.open_header(head).map_err(corrupt)?;
    if let (Some(want), FileCodec::Client(keys)) = (expect_id, &codec) {
        if want != hex::encode(keys.header().file_id) {
            return Err(corrupt(FormatError::Swapped));
        }
    }
    Ok(codec)
}

/// Open version `v` of a client-mode object with `ring`: one pinned GET of its header, or of
/// the whole object when that is at most `whole_up_to` bytes (a small file then costs one
/// GET), and always for an empty file, whose one (empty, last) block is authenticated here
/// since no read ever asks for it. `expect_id` is the file id the object's metadata records:
/// a header naming another file means the body was swapped in from elsewhere, and is refused.
pub async fn open_object(
    store: &Arc<dyn ObjectStore>,
    ring: &Keyring,
    v: &Version,
    expect_id: Option<&str>,
    whole_up_to: u64,
) -> Result<Opened, ReadError> {
    let object = cipher_size(v.size);
    let whole = object <= whole_up_to || v.size == 0;
    let fetch = if whole { object } else { HEADER_LEN };
    let corrupt = |error| ReadError::Corrupt {
        key: v.key.clone(),
        error,
    };
    // A shorter object than its size says (a foreign one in a client prefix) fails in the
    // header check below, as a format error rather than a "changed" one.
    let head = match store.get_body(&v.key, 0..fetch, Some(&v.etag)).await {
        Ok(h) => h,
        Err(StoreError::InvalidRange(_)) => Body::default(),
        Err(StoreError::PreconditionFailed(m) | StoreError::NotFound(m)) => {
            return Err(ReadError::Changed(m))
        }
        Err(e) => return Err(e.into()),
    };
    let codec = check_header(ring, v, expect_id, &head.slice(0..HEADER_LEN as usize))?;
    let blocks = if whole {
        if head.len() as u64 != fetch {
            return Err(corrupt(FormatError::BadSize(head.len() as u64)));
        }
        let n = crate::crypto::format::block_count(v.size);
        let body = head.sub(HEADER_LEN as usize..head.len());
        Some(codec.decode_blocks(&body, 0, n, v.size).map_err(corrupt)?)
    } else {
        None
    };
    Ok(Opened {
        codec,
        blocks,
        fetched: head,
    })
}

/// Blocks `first..end` of `v`, each put in the cache through `claim` as soon as it is in:
/// the leading run the disk cache holds (each authenticated), the rest with one GET, cut
/// into blocks while its body arrives (then kept on disk).
async fn fetch_blocks(
    f: &Fetcher,
    v: &Version,
    codec: &FileCodec,
    ids: (&Arc<str>, &Arc<str>),
    (first, end): (u64, u64),
    claim: &Fetch,
) -> Result<Vec<Bytes>, ReadError> {
    let mut blocks = match &f.disk {
        Some(disk) => from_disk(disk, v, codec, first, end).await,
        None => Vec::new(),
    };
    for (i, b) in (first..).zip(&blocks) {
        claim.complete(block_key(v, ids.0, ids.1, i), b.clone());
    }
    let from = first + blocks.len() as u64;
    if from < end {
        let plain = from * BLOCK_PLAIN..(end * BLOCK_PLAIN).min(v.size);
        let mut cutter = BlockCutter::new(codec, v.size, from, end);
        let mut fetched = Vec::with_capacity((end - from) as usize);
        let mut keep = |i, b: Bytes| {
            claim.complete(block_key(v, ids.0, ids.1, i), b.clone());
            fetched.push(b);
        };
        let fetch = codec.fetch_range(&plain, v.size);
        let raw = get_pinned_with(&f.store, v, fetch, &mut |s| cutter.push(s, &mut keep)).await?;
        cutter.finish().map_err(|error| ReadError::Corrupt {
            key: v.key.clone(),
            error,
        })?;
        if let Some(disk) = &f.disk {
            disk.put(disk_entries(disk, v, codec, from..end, &raw, &fetched));
        }
        blocks.extend(fetched);
    }
    Ok(blocks)
}

/// The disk cache's entry of a file's header (block indices never reach it).
const HEADER_ENTRY: u64 = u64::MAX;

/// The leading run of blocks `first..end` of `v` that the disk cache holds, each checked: in
/// client mode authenticated by `codec` like a block from the bucket, in other modes unsealed
/// by the cache and of the block's length. A bad entry is dropped and ends the run.
async fn from_disk(
    disk: &Arc<DiskCache>,
    v: &Version,
    codec: &FileCodec,
    first: u64,
    end: u64,
) -> Vec<Bytes> {
    let ids: Vec<_> = (first..end).map(|i| disk.id(&v.key, &v.etag, i)).collect();
    let (codec, size) = (codec.clone(), v.size);
    let check = move |n: usize, body: Vec<u8>| {
        codec
            .decode_block(first + n as u64, size, body)
            .map_err(|e| e.to_string())
    };
    disk.get_run(ids, check).await
}

/// What the disk cache keeps of blocks `range` of `v`: in client mode each block's object
/// bytes (sliced from `raw`, which holds exactly those blocks); otherwise the plaintext
/// blocks `plain`, which the cache seals. Plaintext is never handed to a cache that keeps
/// bytes as fetched.
fn disk_entries(
    disk: &DiskCache,
    v: &Version,
    codec: &FileCodec,
    range: std::ops::Range<u64>,
    raw: &Body,
    plain: &[Bytes],
) -> Vec<(EntryId, Bytes)> {
    let id = |i| disk.id(&v.key, &v.etag, i);
    match codec {
        FileCodec::Client(_) => {
            let base = codec
                .fetch_range(&block_plain(range.start, v.size), v.size)
                .start;
            range
                .filter_map(|i| {
                    let r = codec.fetch_range(&block_plain(i, v.size), v.size);
                    let (lo, hi) = ((r.start - base) as usize, (r.end - base) as usize);
                    (hi <= raw.len()).then(|| (id(i), raw.slice(lo..hi)))
                })
                .collect()
        }
        FileCodec::Plain if disk.as_fetched() => Vec::new(),
        FileCodec::Plain => range.zip(plain).map(|(i, b)| (id(i), b.clone())).collect(),
    }
}

/// Bytes a run of reads that did not start at offset 0 must have read before it reads ahead:
/// four of the kernel's 64 KiB random reads split into pieces stay below it, two 128 KiB
/// streaming reads reach it.
pub const STREAM_AFTER: u64 = 256 * 1024;

/// How far a read may start from where the last one ended and still continue its run: the
/// kernel's own readahead delivers a stream's reads slightly out of order.
const RUN_SLACK: u64 = 2 * 1024 * 1024;

/// The reads of one handle since its last seek (plaintext offsets).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    /// The furthest end of a read in the run.
    next: u64,
}

impl Run {
    fn is_stream(&self) -> bool {
        self.start == 0 || self.next.saturating_sub(self.start) >= STREAM_AFTER
    }
}

pub struct Reader {
    window: u64,
    /// `None` until the first read.
    run: Option<Run>,
    /// Blocks below this index have had readahead issued (for the version in `ids`).
    ahead_until: u64,
    ids: Option<(Arc<str>, Arc<str>)>,
}

impl Reader {
    pub fn new(cfg: &ReadConfig) -> Self {
        Self {
            window: cfg.min_window,
            run: None,
            ahead_until: 0,
            ids: None,
        }
    }

    /// Count the read `offset..end` into the run it continues, or start a new run; true when
    /// the run is (now) a stream, which reads ahead.
    fn note(&mut self, cfg: &ReadConfig, offset: u64, end: u64) -> bool {
        let continues = match &self.run {
            Some(run) => offset.abs_diff(run.next) <= RUN_SLACK,
            None => offset == 0,
        };
        if continues {
            self.window = (self.window * 2).min(cfg.max_window);
        } else {
            self.window = cfg.min_window;
            self.ahead_until = 0;
        }
        match &mut self.run {
            Some(run) if continues => run.next = run.next.max(end),
            // A first read at offset 0 starts the run it continues.
            _ => {
                self.run = Some(Run {
                    start: offset,
                    next: end,
                })
            }
        }
        continues && self.run.is_some_and(|run| run.is_stream())
    }

    pub async fn read(
        &mut self,
        f: &Arc<Fetcher>,
        version: &Version,
        codec: &FileCodec,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ReadError> {
        let end = (offset + len).min(version.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let (object, etag) = match &self.ids {
            Some((o, e)) if **o == *version.key && **e == *version.etag => (o.clone(), e.clone()),
            _ => {
                let ids = (
                    Arc::<str>::from(version.key.as_str()),
                    Arc::from(version.etag.as_str()),
                );
                self.ids = Some(ids.clone());
                self.ahead_until = 0;
                ids
            }
        };
        let stream = self.note(&f.cfg, offset, end);
        let first = offset / BLOCK_PLAIN;
        let last = (end - 1) / BLOCK_PLAIN;
        if stream {
            self.read_ahead(f, version, codec, (&object, &etag), last + 1);
        }
        let mut parts: Vec<Bytes> = Vec::new();
        let mut i = first;
        while i <= last {
            let key = block_key(version, &object, &etag, i);
            let lookup = f.cache.lookup(&key);
            if stream && !matches!(lookup, Lookup::Miss) {
                crate::metrics::global().readahead_hits.inc();
            }
            let found = match lookup {
                Lookup::Hit(b) => Some(b),
                Lookup::Pending(mut rx) => loop {
                    // Woken by any progress of that fetch: the block may still be coming.
                    cache::wait(rx).await;
                    match f.cache.lookup(&key) {
                        Lookup::Hit(b) => break Some(b),
                        Lookup::Pending(again) => rx = again,
                        Lookup::Miss => break None,
                    }
                },
                Lookup::Miss => None,
            };
            let blocks = match found {
                Some(b) => vec![b],
                None => {
                    // Fetch the run of blocks up to the next one cached or being fetched.
                    let mut j = i + 1;
                    while j <= last && !f.cache.is_present(&block_key(version, &object, &etag, j)) {
                        j += 1;
                    }
                    let keys = (i..j)
                        .map(|k| block_key(version, &object, &etag, k))
                        .collect();
                    let claim = f.cache.start_fetch(keys);
                    fetch_blocks(f, version, codec, (&object, &etag), (i, j), &claim).await?
                }
            };
            for b in blocks {
                let block_start = i * BLOCK_PLAIN;
                let lo = offset.saturating_sub(block_start) as usize;
                let hi = ((end - block_start) as usize).min(b.len());
                if lo >= hi {
                    return Err(ReadError::Changed(version.key.clone()));
                }
                parts.push(b.slice(lo..hi));
                i += 1;
            }
        }
        Ok(match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => Bytes::from(parts.concat()),
        })
    }

    /// Issue background GETs so that the window after block `from` is cached or coming.
    fn read_ahead(
        &mut self,
        f: &Arc<Fetcher>,
        version: &Version,
        codec: &FileCodec,
        ids: (&Arc<str>, &Arc<str>),
        from: u64,
    ) {
        let nblocks = version.size.div_ceil(BLOCK_PLAIN);
        let window_blocks = self.window / BLOCK_PLAIN;
        let chunk_blocks = (f.cfg.chunk / BLOCK_PLAIN).max(1);
        // A window of a chunk or more ends where a part does; a smaller one (a young stream)
        // fetches no more than itself.
        let window_end = from + window_blocks;
        let target = if window_blocks >= chunk_blocks {
            window_end.next_multiple_of(chunk_blocks)
        } else {
            window_end
        }
        .min(nblocks);
        // Top up as soon as a chunk of the window has been consumed.
        let low = (window_blocks / 2).max(window_blocks.saturating_sub(chunk_blocks));
        if self.ahead_until >= from + low || self.ahead_until >= nblocks {
            return;
        }
        let mut start = self.ahead_until.max(from);
        while start < target {
            let end = (start + 1).next_multiple_of(chunk_blocks).min(target);
            let missing: Vec<u64> = (start..end)
                .filter(|&k| !f.cache.is_present(&block_key(version, ids.0, ids.1, k)))
                .collect();
            if let (Some(&lo), Some(&hi)) = (missing.first(), missing.last()) {
                let keys = (lo..=hi)
                    .map(|k| block_key(version, ids.0, ids.1, k))
                    .collect();
                let claim = f.cache.start_fetch(keys);
                crate::metrics::global()
                    .readahead_blocks
                    .inc_by(hi - lo + 1);
                let (f, v, codec) = (f.clone(), version.clone(), codec.clone());
                let (o, e) = (ids.0.clone(), ids.1.clone());
                tokio::spawn(async move {
                    let Ok(_permit) = f.gets.clone().acquire_owned().await else {
                        return;
                    };
                    let run = (lo, hi + 1);
                    if let Err(err) = fetch_blocks(&f, &v, &codec, (&o, &e), run, &claim).await {
                        tracing::debug!(key = %v.key, error = %err, "readahead failed");
                    }
                    drop(claim);
                });
            }
            start = end;
        }
        self.ahead_until = target;
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
    let raw = get_pinned(store, version, codec.fetch_range(&range, version.size)).await?;
    codec
        .decode(raw, &range, version.size)
        .map_err(|error| ReadError::Corrupt {
            key: version.key.clone(),
            error,
        })
}

#[cfg(test)]
mod tests;
