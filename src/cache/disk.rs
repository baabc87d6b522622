//! The disk cache (`--cache-dir`): object bytes of file blocks kept in a local directory, so
//! that they survive unmounts and a working set larger than the memory cache is read from
//! local disk instead of the bucket. It sits under the memory cache: `read` asks it on a
//! memory miss, before a GET.
//!
//! What a cache file holds (`docs/CONFIGURATION.md`, "The disk cache"):
//! - client mode (`Contents::AsFetched`): a block's bytes exactly as the bucket holds them,
//!   i.e. ciphertext; `read` authenticates every block it takes from here with the file's
//!   keys, like a block from the bucket, and drops the entry when it fails.
//! - other modes (`Contents::Sealed`): the bucket's bytes are plaintext, so they are sealed
//!   with AES-256-GCM under a key that never leaves this machine (`crypto::local`, a 0600 file
//!   in the directory), bound to the entry's identity. No plaintext is written either way.
//!
//! Invariants:
//! - An entry is named by a hash of the mount's scope (endpoint, bucket, prefix), the object
//!   key, its ETag and the block index, and the file repeats that id: a changed object (new
//!   ETag) never finds an old entry, and a file renamed or copied onto another name is refused.
//! - A file is written under `tmp/` and renamed into `blocks/`, so a crash leaves at worst a
//!   stray temporary (deleted at the next open) or a short file; a file whose length, magic,
//!   id or seal is wrong is deleted and reported as a miss, never served.
//! - Entries' bytes (rounded up to 4 KiB, the file system's allocation unit) stay within the
//!   budget: the least recently used are deleted first. Order survives a remount through the
//!   files' modification times, which a hit refreshes.
//! - One mount uses a directory at a time (an exclusive `flock` on `lock`, released by the
//!   kernel when the process ends, cleanly or not); a second is refused with a message after
//!   waiting `LOCK_WAIT` for the holder to exit (a remount right after an unmount).
//! - Caching never fails a read: a write that fails (full disk) is skipped with one warning,
//!   and at most `MAX_PENDING` bytes wait to be written (beyond that, blocks are not cached).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::crypto::keys::KeyError;
use crate::crypto::local::LocalKey;

/// Budget when only the directory is given (less when the file system has less room).
pub const DEFAULT_BUDGET: u64 = 10 << 30;
/// How long opening waits for a directory another process holds.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Bytes of blocks waiting to be written before more are skipped.
const MAX_PENDING: u64 = 64 << 20;
const MAGIC: &[u8; 8] = b"sealfsc1";
const HEADER: usize = 8 + 1 + 32 + 4;
const KIND_AS_FETCHED: u8 = 1;
const KIND_SEALED: u8 = 2;

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

/// Names an entry: a hash of scope, key, ETag and block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId([u8; 32]);

impl EntryId {
    fn file_name(&self) -> String {
        hex::encode(self.0)
    }

    fn parse(name: &str) -> Option<Self> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(name, &mut id).ok()?;
        Some(Self(id))
    }
}

struct Index {
    lru: LruCache<EntryId, u64>,
    bytes: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    scope: Vec<u8>,
    budget: u64,
    contents: Contents,
    index: Mutex<Index>,
    pending: AtomicU64,
    warned_full: AtomicBool,
    /// Holds the directory's lock for the cache's life.
    _lock: std::fs::File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskCacheError + '_ {
    move |e| DiskCacheError::Io(path.display().to_string(), e)
}

/// Bytes a file of `len` bytes takes on disk.
fn on_disk(len: u64) -> u64 {
    len.div_ceil(4096) * 4096
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
        let (blocks, tmp) = (dir.join("blocks"), dir.join("tmp"));
        for d in [&blocks, &tmp] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(io(d))?;
        }
        // Temporaries of a process that died while writing.
        for e in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let (mut found, mut bytes) = (Vec::new(), 0u64);
        for e in std::fs::read_dir(&blocks).map_err(io(&blocks))?.flatten() {
            let name = e.file_name();
            match (name.to_str().and_then(EntryId::parse), e.metadata()) {
                (Some(id), Ok(md)) if md.is_file() => {
                    let used = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    bytes += on_disk(md.len());
                    found.push((used, id, on_disk(md.len())));
                }
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        found.sort_by_key(|(used, ..)| *used);
        let mut lru = LruCache::unbounded();
        for (_, id, size) in found {
            lru.put(id, size);
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
            pending: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
            _lock: lock,
        });
        cache.account(bytes as i64);
        cache.evict();
        Ok(cache)
    }

    fn lock(dir: &Path, wait: Duration) -> Result<std::fs::File, DiskCacheError> {
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
        h.update(index.to_le_bytes());
        EntryId(h.finalize().into())
    }

    fn path(&self, id: &EntryId) -> PathBuf {
        self.dir.join("blocks").join(id.file_name())
    }

    fn account(&self, delta: i64) {
        let mut index = self.index.lock();
        index.bytes = index.bytes.saturating_add_signed(delta);
        crate::metrics::global().disk_cache_bytes.inc_by(delta);
    }

    /// Whether `id` is cached (no recency update).
    #[cfg(test)]
    fn contains(&self, id: &EntryId) -> bool {
        self.index.lock().lru.contains(id)
    }

    /// What `check` makes of the bodies of the leading run of `ids` that the cache holds, each
    /// read back, checked here (`read_entry`) and then by `check` (given its position in
    /// `ids`; client mode authenticates the block there), in one blocking task. The run ends
    /// at the first miss; an entry found bad is deleted and ends it too.
    pub async fn get_run<T, F>(self: &Arc<Self>, ids: Vec<EntryId>, mut check: F) -> Vec<T>
    where
        T: Send + 'static,
        F: FnMut(usize, Bytes) -> Result<T, String> + Send + 'static,
    {
        let m = crate::metrics::global();
        let me = self.clone();
        let read = move || {
            let mut out = Vec::new();
            for (n, id) in ids.into_iter().enumerate() {
                if me.index.lock().lru.get(&id).is_none() {
                    m.disk_cache_misses.inc();
                    break;
                }
                let checked = me
                    .read_entry(&id)
                    .map_err(str::to_string)
                    .and_then(|body| check(n, body));
                match checked {
                    Ok(body) => {
                        m.disk_cache_hits.inc();
                        out.push(body);
                    }
                    Err(why) => {
                        m.disk_cache_misses.inc();
                        me.drop_entry(&id, &why);
                        break;
                    }
                }
            }
            out
        };
        blocking(read).await
    }

    fn read_entry(&self, id: &EntryId) -> Result<Bytes, &'static str> {
        let path = self.path(id);
        let mut f = std::fs::File::open(&path).map_err(|_| "unreadable")?;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut raw).map_err(|_| "unreadable")?;
        // Keep recently used entries last in the order the next mount rebuilds.
        let _ = f.set_modified(SystemTime::now());
        if raw.len() < HEADER || &raw[..8] != MAGIC || raw[9..41] != id.0 {
            return Err("not an entry of this name (torn or foreign)");
        }
        let len = u32::from_le_bytes(raw[41..45].try_into().expect("4 bytes")) as usize;
        if raw.len() != HEADER + len {
            return Err("length does not match (torn write)");
        }
        match (&self.contents, raw[8]) {
            (Contents::AsFetched, KIND_AS_FETCHED) => {
                Ok(Bytes::from(raw).slice(HEADER..HEADER + len))
            }
            (Contents::Sealed(key), KIND_SEALED) => key
                .open(&raw[..HEADER], &raw[HEADER..])
                .map(Bytes::from)
                .map_err(|_| "does not authenticate under the local key"),
            _ => Err("kept in another mode"),
        }
    }

    /// Delete entry `id`: it was found bad (`why`), here or by the reader that authenticated it.
    pub fn drop_entry(&self, id: &EntryId, why: &str) {
        tracing::warn!(entry = %id.file_name(), why, "disk cache: dropped a bad entry; fetching the block from the bucket");
        crate::metrics::global().disk_cache_dropped.inc();
        self.forget(id);
    }

    fn forget(&self, id: &EntryId) {
        let size = self.index.lock().lru.pop(id);
        if let Some(size) = size {
            let _ = std::fs::remove_file(self.path(id));
            self.account(-(size as i64));
        }
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

    /// Write entry `id`, replacing one of that name: blocks are fetched from the bucket only
    /// when the run read from here stopped before them, so an entry already there may be one
    /// that has not been checked yet (and may be bad).
    fn write_entry(&self, id: EntryId, body: &[u8]) {
        let mut buf = Vec::with_capacity(HEADER + body.len() + LocalKey::OVERHEAD);
        buf.extend_from_slice(MAGIC);
        let kind = match self.contents {
            Contents::AsFetched => KIND_AS_FETCHED,
            Contents::Sealed(_) => KIND_SEALED,
        };
        buf.push(kind);
        buf.extend_from_slice(&id.0);
        let len = match &self.contents {
            Contents::AsFetched => body.len(),
            Contents::Sealed(_) => body.len() + LocalKey::OVERHEAD,
        };
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        match &self.contents {
            Contents::AsFetched => buf.extend_from_slice(body),
            Contents::Sealed(key) => {
                let aad = buf.clone();
                key.seal(&aad, body, &mut buf);
            }
        }
        let name = id.file_name();
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{name}.{}", crate::sys::random_hex::<4>()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&buf))
            .and_then(|_| std::fs::rename(&tmp, self.path(&id)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "disk cache: cannot write an entry; blocks that cannot be written are not cached (reads are unaffected)");
            }
            return;
        }
        let size = on_disk(buf.len() as u64);
        let replaced = self.index.lock().lru.put(id, size);
        self.account(size as i64 - replaced.unwrap_or(0) as i64);
        self.evict();
    }

    /// Delete least recently used entries until the rest fit the budget.
    fn evict(&self) {
        loop {
            let victim = {
                let mut index = self.index.lock();
                if index.bytes <= self.budget {
                    return;
                }
                index.lru.pop_lru()
            };
            let Some((id, size)) = victim else { return };
            let _ = std::fs::remove_file(self.path(&id));
            self.account(-(size as i64));
            crate::metrics::global().disk_cache_evictions.inc();
        }
    }
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
