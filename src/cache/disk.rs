//! The disk cache (`--cache-dir`): object bytes of file blocks kept in a local directory, so
//! that they survive unmounts and a working set larger than the memory cache is read from
//! local disk instead of the bucket. It sits under the memory cache: `read` asks it on a
//! memory miss, before a GET.
//!
//! What an entry holds (`docs/CONFIGURATION.md`, "The disk cache"):
//! - client mode (`Contents::AsFetched`): a block's bytes exactly as the bucket holds them,
//!   i.e. ciphertext; `read` authenticates every block it takes from here with the file's
//!   keys, like a block from the bucket, and drops the entry when it fails.
//! - other modes (`Contents::Sealed`): the bucket's bytes are plaintext, so they are sealed
//!   with AES-256-GCM under a key that never leaves this machine (`crypto::local`, a 0600 file
//!   in the directory), bound to the entry's identity. No plaintext is written either way.
//!
//! Where (`segment`): the entries of 128 consecutive blocks of one object version share a
//! segment file, one fixed-size slot each, so that a random read costs one `pread` of a file
//! already open rather than opening (after a cold start: reading the inode of) a file per
//! block, which was most of its cost.
//!
//! Invariants:
//! - A segment is named by a hash of the mount's scope (endpoint, bucket, prefix), the object
//!   key, its ETag and the block index / 128, and each slot repeats that name and its number: a
//!   changed object (new ETag) never finds an old entry, and a file renamed or copied onto
//!   another name is refused.
//! - The index says a slot is present only after its bytes are written; a slot whose header,
//!   length, name or seal is wrong is punched out (reads as a hole) and reported as a miss,
//!   never served. A crash mid-write leaves at worst such a slot. A mount takes which slots
//!   hold bytes from the files' maps of holes, without reading them (a 10 GiB cache would
//!   cost ~160,000 reads); each entry is checked when it is read.
//! - Entries' bytes (each rounded up to 4 KiB, the file system's allocation unit; slots are
//!   4 KiB-aligned so that punching one frees exactly its pages) stay within the budget: slots
//!   of the least recently used segment go first. Order survives a remount through the
//!   segments' modification times, which a hit refreshes.
//! - A write holds `changing` shared, a drop or an eviction exclusively, so a slot is never
//!   marked present in a file that an eviction has just deleted, while writes of different
//!   blocks run in parallel. Readers do not take it (a slot removed under a reader reads as a
//!   hole: a quiet miss).
//! - One mount uses a directory at a time (an exclusive `flock` on `lock`, released by the
//!   kernel when the process ends, cleanly or not); a second is refused with a message after
//!   waiting `LOCK_WAIT` for the holder to exit (a remount right after an unmount).
//! - Caching never fails a read: a write that fails (full disk) is skipped with one warning,
//!   and at most `MAX_PENDING` bytes wait to be written (beyond that, blocks are not cached).

mod segment;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use sha2::{Digest, Sha256};

use crate::crypto::keys::KeyError;
use crate::crypto::local::LocalKey;
use segment::{Read, Segment, SegmentId, SLOTS};

/// Budget when only the directory is given (less when the file system has less room).
pub const DEFAULT_BUDGET: u64 = 10 << 30;
/// How long opening waits for a directory another process holds.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Bytes of blocks waiting to be written before more are skipped.
const MAX_PENDING: u64 = 64 << 20;
/// Segment files kept open: 512 MiB of blocks read at random without reopening one.
const OPEN_FILES: usize = 64;

#[derive(Debug, Clone)]
pub struct DiskCacheConfig {
    pub dir: PathBuf,
    /// Bytes the entries may take; `None`: `DEFAULT_BUDGET`, or half the room left.
    pub budget: Option<u64>,
}

/// How the bodies of entries are kept.
pub enum Contents {
    /// The bucket's bytes are ciphertext that `read` authenticates (client mode).
    AsFetched,
    /// The bucket's bytes are plaintext: sealed under the machine-local key.
    Sealed(Box<LocalKey>),
}

#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    #[error("cache directory {0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "cache directory {path} has mode {mode:o}, open to other users: run `chmod 700 {path}`"
    )]
    LoosePermissions { path: String, mode: u32 },
    #[error("cache directory {path} is in use by another sealfs mount ({holder}): give each mount its own --cache-dir")]
    Busy { path: String, holder: String },
    #[error(
        "--cache-dir-size {size} is larger than the file system holding {path} ({total} bytes)"
    )]
    TooLarge { path: String, size: u64, total: u64 },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Names an entry: its segment and its slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId {
    segment: SegmentId,
    slot: u8,
}

impl EntryId {
    fn name(&self) -> String {
        format!("{}#{}", self.segment.file_name(), self.slot)
    }
}

struct Index {
    lru: LruCache<SegmentId, Segment>,
    bytes: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    scope: Vec<u8>,
    budget: u64,
    contents: Contents,
    index: Mutex<Index>,
    /// Open segment files; readers open one only if it exists, writers create it.
    files: Mutex<LruCache<SegmentId, Arc<File>>>,
    /// Held while what a segment file holds changes: shared by writes, exclusively by drops
    /// and evictions.
    changing: RwLock<()>,
    pending: AtomicU64,
    warned_full: AtomicBool,
    /// Holds the directory's lock for the cache's life.
    _lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskCacheError + '_ {
    move |e| DiskCacheError::Io(path.display().to_string(), e)
}

fn private_dir(d: &Path) -> Result<(), DiskCacheError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(d)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(io(d))
}

impl DiskCache {
    /// Open (creating) the cache in `cfg.dir` for the mount named by `scope`; `contents`
    /// says how entries are kept, given where a local key would live. A directory in use is
    /// waited for up to `LOCK_WAIT` (an unmounted mount's process may still be exiting).
    pub fn open(
        cfg: &DiskCacheConfig,
        scope: &str,
        contents: impl FnOnce(&Path) -> Result<Contents, KeyError>,
    ) -> Result<Arc<Self>, DiskCacheError> {
        Self::open_waiting(cfg, scope, contents, LOCK_WAIT)
    }

    fn open_waiting(
        cfg: &DiskCacheConfig,
        scope: &str,
        contents: impl FnOnce(&Path) -> Result<Contents, KeyError>,
        wait: Duration,
    ) -> Result<Arc<Self>, DiskCacheError> {
        let dir = cfg.dir.as_path();
        let shown = dir.display().to_string();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mode = std::fs::metadata(dir).map_err(io(dir))?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DiskCacheError::LoosePermissions { path: shown, mode });
        }
        let lock = Self::lock(dir, wait)?;
        let contents = contents(&dir.join("local.key"))?;
        // The layout of earlier versions (a file per block), and its temporaries.
        for old in ["blocks", "tmp"] {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
        let segments = dir.join("segments");
        private_dir(&segments)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(&segments)
            .map_err(io(&segments))?
            .flatten()
        {
            let id = e.file_name().to_str().and_then(SegmentId::parse);
            let kept = id.and_then(|id| Some((id, segment::scan(&e.path()).ok()??)));
            match kept {
                Some((id, (seg, used))) => found.push((used, id, seg)),
                None => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        found.sort_by_key(|(used, ..)| *used);
        let (mut lru, mut bytes) = (LruCache::unbounded(), 0);
        for (_, id, seg) in found {
            bytes += seg.bytes();
            lru.put(id, seg);
        }
        let (total, avail) = crate::sys::fs_space(dir).map_err(io(dir))?;
        let budget = match cfg.budget {
            Some(size) if size > total => {
                return Err(DiskCacheError::TooLarge {
                    path: shown,
                    size,
                    total,
                })
            }
            Some(size) => size,
            None => DEFAULT_BUDGET.min(bytes + avail / 2),
        };
        let cache = Arc::new(Self {
            dir: dir.to_path_buf(),
            scope: scope.as_bytes().to_vec(),
            budget,
            contents,
            index: Mutex::new(Index { lru, bytes: 0 }),
            files: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(OPEN_FILES).expect("nonzero"),
            )),
            changing: RwLock::new(()),
            pending: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
            _lock: lock,
        });
        cache.account(bytes as i64);
        cache.evict();
        Ok(cache)
    }

    fn lock(dir: &Path, wait: Duration) -> Result<File, DiskCacheError> {
        let path = dir.join("lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let deadline = Instant::now() + wait;
        let mut locked = crate::sys::try_lock_exclusive(&f).map_err(io(&path))?;
        while !locked && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            locked = crate::sys::try_lock_exclusive(&f).map_err(io(&path))?;
        }
        if !locked {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(DiskCacheError::Busy {
                path: dir.display().to_string(),
                holder: match holder.trim() {
                    "" => "pid unknown".to_string(),
                    h => h.to_string(),
                },
            });
        }
        f.set_len(0)
            .and_then(|_| writeln!(f, "pid {}", std::process::id()))
            .map_err(io(&path))?;
        Ok(f)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes the entries take on disk now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().bytes
    }

    /// Whether entries are kept as fetched (client mode) rather than sealed.
    pub fn as_fetched(&self) -> bool {
        matches!(self.contents, Contents::AsFetched)
    }

    /// The entry of block `index` of version `etag` of object `key` (`u64::MAX`: its header).
    pub fn id(&self, key: &str, etag: &str, index: u64) -> EntryId {
        let mut h = Sha256::new();
        for part in [&self.scope[..], key.as_bytes(), etag.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update((index / SLOTS).to_le_bytes());
        EntryId {
            segment: SegmentId(h.finalize().into()),
            slot: (index % SLOTS) as u8,
        }
    }

    fn path(&self, id: &SegmentId) -> PathBuf {
        self.dir.join("segments").join(id.file_name())
    }

    /// Segment `id`'s file, open for reading and writing; created only if `create`.
    fn file(&self, id: &SegmentId, create: bool) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.files.lock().get(id) {
            return Ok(f.clone());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(self.path(id))?;
        let f = Arc::new(f);
        self.files.lock().put(*id, f.clone());
        Ok(f)
    }

    fn account(&self, delta: i64) {
        let mut index = self.index.lock();
        index.bytes = index.bytes.saturating_add_signed(delta);
        crate::metrics::global().disk_cache_bytes.inc_by(delta);
    }

    /// Whether `id` is cached (no recency update).
    #[cfg(test)]
    fn contains(&self, id: &EntryId) -> bool {
        let index = self.index.lock();
        index.lru.peek(&id.segment).is_some_and(|s| s.has(id.slot))
    }

    /// What `check` makes of the bodies of the leading run of `ids` that the cache holds, each
    /// read back, checked here (`segment::read`) and then by `check` (given its position in
    /// `ids`, and the body to keep or decrypt in place; client mode authenticates the block
    /// there). The run ends at the first miss; an entry found bad is deleted and ends it too.
    pub async fn get_run<T, F>(self: &Arc<Self>, ids: Vec<EntryId>, mut check: F) -> Vec<T>
    where
        T: Send + 'static,
        F: FnMut(usize, Vec<u8>) -> Result<T, String> + Send + 'static,
    {
        let m = crate::metrics::global();
        let me = self.clone();
        let read = move || {
            let mut out = Vec::new();
            for (n, id) in ids.into_iter().enumerate() {
                let Some(touch) = me.lookup(&id) else {
                    m.disk_cache_misses.inc();
                    break;
                };
                let checked = match me.read_entry(&id, touch) {
                    Read::Absent => Err(None),
                    Read::Bad(why) => Err(Some(why.to_string())),
                    Read::Entry(body) => check(n, body).map_err(Some),
                };
                match checked {
                    Ok(body) => {
                        m.disk_cache_hits.inc();
                        out.push(body);
                    }
                    Err(why) => {
                        m.disk_cache_misses.inc();
                        match why {
                            Some(why) => me.drop_entry(&id, &why),
                            // Listed but gone: removed since the index was asked (dropped or
                            // evicted), or a hole a crash left.
                            None => me.forget(&id),
                        }
                        break;
                    }
                }
            }
            out
        };
        blocking(read).await
    }

    /// Whether the index holds `id`, marking its segment most recently used; `Some(true)`
    /// when that changed the order, which the segment's modification time then records.
    fn lookup(&self, id: &EntryId) -> Option<bool> {
        let mut index = self.index.lock();
        let was_first = index.lru.peek_mru().map(|(s, _)| *s) == Some(id.segment);
        let seg = index.lru.get(&id.segment)?;
        seg.has(id.slot).then_some(!was_first)
    }

    fn read_entry(&self, id: &EntryId, touch: bool) -> Read {
        let file = match self.file(&id.segment, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Absent,
            Err(_) => return Read::Bad("unreadable"),
        };
        let read = segment::read(&file, id, |kind, header, body| {
            match (&self.contents, kind) {
                (Contents::AsFetched, segment::KIND_AS_FETCHED) => Ok(body),
                (Contents::Sealed(key), segment::KIND_SEALED) => key
                    .open(header, body)
                    .map_err(|_| "does not authenticate under the local key"),
                _ => Err("kept in another mode"),
            }
        });
        if touch && matches!(read, Read::Entry(_)) {
            // Keep recently used segments last in the order the next mount rebuilds.
            let _ = file.set_modified(SystemTime::now());
        }
        read
    }

    /// Delete entry `id`: it was found bad (`why`), here or by the reader that authenticated it.
    pub fn drop_entry(&self, id: &EntryId, why: &str) {
        tracing::warn!(entry = %id.name(), why, "disk cache: dropped a bad entry; fetching the block from the bucket");
        crate::metrics::global().disk_cache_dropped.inc();
        self.forget(id);
    }

    /// Remove entry `id` from the index and its bytes from its segment.
    fn forget(&self, id: &EntryId) {
        let _changing = self.changing.write();
        self.remove_slot(&id.segment, id.slot);
    }

    /// Punch out `slot` of segment `seg` and unlist it; a segment left empty is deleted.
    /// Called with `changing` held exclusively.
    fn remove_slot(&self, seg: &SegmentId, slot: u8) {
        let (size, empty) = {
            let mut index = self.index.lock();
            let Some(s) = index.lru.peek_mut(seg) else {
                return;
            };
            let size = s.take(slot);
            let empty = s.is_empty();
            if empty {
                index.lru.pop(seg);
            }
            (size, empty)
        };
        if empty {
            self.files.lock().pop(seg);
            let _ = std::fs::remove_file(self.path(seg));
        } else if let Ok(f) = self.file(seg, false) {
            let _ = segment::punch(&f, slot);
        }
        self.account(-(size as i64));
    }

    /// Store `entries` (id and body) in the background; skipped when too much is waiting.
    pub fn put(self: &Arc<Self>, entries: Vec<(EntryId, Bytes)>) {
        let size: u64 = entries.iter().map(|(_, b)| b.len() as u64).sum();
        if self.pending.fetch_add(size, Ordering::AcqRel) + size > MAX_PENDING {
            self.pending.fetch_sub(size, Ordering::AcqRel);
            tracing::debug!(
                size,
                "disk cache: writes backed up; not caching these blocks"
            );
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            for (id, body) in entries {
                me.write_entry(id, &body);
            }
            me.pending.fetch_sub(size, Ordering::AcqRel);
        });
    }

    /// Write entry `id`, replacing one in its slot: blocks are fetched from the bucket only
    /// when the run read from here stopped before them, so an entry already there may be one
    /// that has not been checked yet (and may be bad).
    fn write_entry(&self, id: EntryId, body: &[u8]) {
        let sealed;
        let (kind, body) = match &self.contents {
            Contents::AsFetched => (segment::KIND_AS_FETCHED, body),
            Contents::Sealed(key) => {
                let header = segment::header(segment::KIND_SEALED, &id, sealed_len(body));
                let mut out = Vec::with_capacity(sealed_len(body));
                key.seal(&header, body, &mut out);
                sealed = out;
                (segment::KIND_SEALED, &sealed[..])
            }
        };
        if !segment::fits(body.len()) {
            tracing::debug!(
                len = body.len(),
                "disk cache: entry larger than a slot; not cached"
            );
            return;
        }
        let changing = self.changing.read();
        // A write that fails part-way leaves no bytes behind in the slot.
        let written = self.file(&id.segment, true).and_then(|f| {
            segment::write(&f, kind, &id, body).inspect_err(|_| {
                let _ = segment::punch(&f, id.slot);
            })
        });
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                if !self.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "disk cache: cannot write an entry; blocks that cannot be written are not cached (reads are unaffected)");
                }
                return;
            }
        };
        let replaced = self
            .index
            .lock()
            .lru
            .get_or_insert_mut(id.segment, Segment::default)
            .put(id.slot, len);
        self.account(segment::on_disk(len) as i64 - replaced as i64);
        drop(changing);
        if self.bytes() > self.budget {
            self.evict();
        }
    }

    /// Delete slots of the least recently used segments until the rest fit the budget.
    fn evict(&self) {
        let changing = self.changing.write();
        self.evict_locked(&changing);
    }

    fn evict_locked(&self, _changing: &RwLockWriteGuard<'_, ()>) {
        loop {
            let victim = {
                let index = self.index.lock();
                if index.bytes <= self.budget {
                    return;
                }
                index
                    .lru
                    .peek_lru()
                    .and_then(|(id, s)| Some((*id, s.first()?)))
            };
            let Some((seg, slot)) = victim else { return };
            self.remove_slot(&seg, slot);
            crate::metrics::global().disk_cache_evictions.inc();
        }
    }
}

/// Length of `body` sealed under the local key.
fn sealed_len(body: &[u8]) -> usize {
    body.len() + LocalKey::OVERHEAD
}

/// Run `f`, which reads local disk: on a multi-threaded runtime in place (on a FUSE thread,
/// which owns its request, directly; on a worker, after handing its other tasks to another
/// thread), saving the two thread wake-ups of a trip through the blocking pool; elsewhere (a
/// current-thread runtime, as in tests) on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Vec<T> + Send + 'static) -> Vec<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => tokio::task::spawn_blocking(f).await.unwrap_or_default(),
    }
}

impl Drop for DiskCache {
    fn drop(&mut self) {
        let bytes = self.index.lock().bytes;
        crate::metrics::global()
            .disk_cache_bytes
            .dec_by(bytes as i64);
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
