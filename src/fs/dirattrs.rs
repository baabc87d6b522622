//! Attributes of a listed directory's files without one sequential HEAD per file: what
//! `ls -l`, `rsync` and `find -ls` need right after a listing.
//!
//! One `DirAttrs` per directory listing (it lives as long as the listing is fresh). For a file
//! the listing reported, `resolve` answers, in order:
//! 1. from the directory's attribute index (`crate::dirindex`, one GET, loaded on first use),
//!    when its entry names the version the listing reported: no HEAD;
//! 2. from a HEAD already made for this listing (by a lookahead task, below);
//! 3. with a HEAD.
//!
//! Lookahead: once two lookups in one listing needed a HEAD, each lookup starts HEADs for the
//! next `LOOKAHEAD` listed files in name order (the order `ls` stats them), so a sequential
//! stat of every entry keeps that many requests in flight instead of one. Every name is
//! resolved at most once per listing (a `OnceCell` each): a lookup of a name whose HEAD is in
//! flight waits for it.
//!
//! Learning: a HEAD that saw the listed version (same ETag and size) becomes an index entry.
//! Once `MIN_FILES` were learned, a task waits until lookups stop for a second, then writes the
//! index: the learned entries plus the old index's still-valid ones. Entries for versions
//! modified within `SETTLE` of the local clock are not recorded: a same-second metadata change
//! by another client would share the listed LastModified on servers that list whole seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use tokio::sync::OnceCell;

use crate::dirindex::{self, IndexEntry};
use crate::store::{ObjectMeta, ObjectStore, StoreError};

/// Directories with fewer listed files neither load nor write an index (a few HEADs are
/// cheaper than keeping an object per directory).
pub(super) const MIN_FILES: usize = 8;
/// HEADs kept in flight ahead of a sequential stat of a directory's entries.
pub(super) const LOOKAHEAD: usize = 32;
const SETTLE: Duration = Duration::from_secs(2);
/// Quiet time before the index is written (lookups still learning entries delay it).
pub(super) const WRITE_AFTER: Duration = Duration::from_secs(1);
/// Larger indexes are ignored (and not written): 64 MiB holds ~500,000 entries.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// A file as the listing reported it.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub etag: String,
    pub size: u64,
    pub modified: SystemTime,
}

type Cell = Arc<OnceCell<Option<ObjectMeta>>>;

/// Listings with an index write pending, so that unmounting can write them at once.
pub(super) type Pending = Arc<Mutex<Vec<std::sync::Weak<DirAttrs>>>>;

pub(super) struct DirAttrs {
    pub at: Instant,
    store: Arc<dyn ObjectStore>,
    /// Key prefix of the directory's entries.
    key_prefix: String,
    index_key: String,
    writable: bool,
    /// Listed files, minus names this mount changed since the listing.
    files: Mutex<HashMap<String, Listed>>,
    /// The listed files' stored names in the order of their plaintext names (the order `ls`
    /// stats them, and of lookahead).
    order: Vec<String>,
    /// Each stored name's place in `order`. In client mode stored names are ciphertext, so
    /// `order` is not sorted by them and cannot be searched by them.
    rank: HashMap<String, usize>,
    index: OnceCell<HashMap<String, IndexEntry>>,
    cells: Mutex<HashMap<String, Cell>>,
    learned: Mutex<HashMap<String, IndexEntry>>,
    heads: AtomicUsize,
    writer: AtomicBool,
    written: AtomicBool,
    pending: Pending,
    last_use: Mutex<Instant>,
}

impl DirAttrs {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        key_prefix: String,
        index_key: String,
        writable: bool,
        files: Vec<(String, Listed)>,
        known: HashMap<String, IndexEntry>,
        pending: Pending,
    ) -> Self {
        let order: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        let rank = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let files = files.into_iter().collect();
        Self {
            at: Instant::now(),
            store,
            key_prefix,
            index_key,
            writable,
            files: Mutex::new(files),
            order,
            rank,
            // What an earlier listing of the directory knew stays true of the same versions.
            index: match known.is_empty() {
                true => OnceCell::new(),
                false => OnceCell::new_with(Some(known)),
            },
            cells: Mutex::new(HashMap::new()),
            learned: Mutex::new(HashMap::new()),
            heads: AtomicUsize::new(0),
            writer: AtomicBool::new(false),
            written: AtomicBool::new(false),
            pending,
            last_use: Mutex::new(Instant::now()),
        }
    }

    /// Whether lookups used this listing within `within` (someone is stat-ing its entries:
    /// worth listing again when it expires rather than falling back to a HEAD per name).
    pub fn in_use(&self, within: Duration) -> bool {
        self.last_use.lock().elapsed() < within
    }

    /// Every index entry known here (loaded or learned), for the directory's next listing.
    pub fn known(&self) -> HashMap<String, IndexEntry> {
        let mut out = self.index.get().cloned().unwrap_or_default();
        out.extend(self.learned.lock().clone());
        out
    }

    /// This mount changed `name`: what the listing said of it no longer holds.
    pub fn changed(&self, name: &str) {
        self.files.lock().remove(name);
        self.cells.lock().remove(name);
    }

    /// The HEAD answer for listed file `name` (`Some(None)`: it is gone), or `None` when the
    /// listing did not report `name` as a file (the caller asks the store itself).
    pub async fn resolve(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Option<Option<ObjectMeta>>, StoreError> {
        let listed = self.files.lock().get(name).cloned();
        let Some(listed) = listed else {
            return Ok(None);
        };
        *self.last_use.lock() = Instant::now();
        if self.heads.load(Ordering::Relaxed) >= 2 {
            self.look_ahead(name);
        }
        let cell = self.cell(name);
        let meta = cell
            .get_or_try_init(|| self.clone().fetch(name.to_string(), listed))
            .await?;
        Ok(Some(meta.clone()))
    }

    /// `resolve` when it needs no request and no wait: `None` unless the name's lookahead
    /// finished or the loaded index describes the listed version.
    pub fn resolved_now(&self, name: &str) -> Option<Option<ObjectMeta>> {
        let listed = self.files.lock().get(name).cloned()?;
        *self.last_use.lock() = Instant::now();
        let cell = self.cells.lock().get(name).cloned();
        if let Some(done) = cell.as_ref().and_then(|c| c.get()) {
            return Some(done.clone());
        }
        self.index_hit(self.index.get()?, name, &listed).map(Some)
    }

    /// What a HEAD of the listed version would have said, when `index` describes that version.
    fn index_hit(
        &self,
        index: &HashMap<String, IndexEntry>,
        name: &str,
        listed: &Listed,
    ) -> Option<ObjectMeta> {
        let e = index.get(name)?;
        if !e.matches(&listed.etag, listed.size, listed.modified) {
            return None;
        }
        Some(ObjectMeta {
            key: format!("{}{name}", self.key_prefix),
            size: e.size,
            etag: e.etag.clone(),
            // HEAD's Last-Modified has whole seconds: answer the same either way.
            last_modified: whole_seconds(listed.modified),
            user: e.user.clone(),
            sse: None,
            sse_c_key_md5: None,
            content_type: None,
        })
    }

    fn cell(&self, name: &str) -> Cell {
        self.cells
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    async fn fetch(
        self: Arc<Self>,
        name: String,
        listed: Listed,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        if let Some(hit) = self.index_hit(self.load_index().await, &name, &listed) {
            return Ok(Some(hit));
        }
        let key = format!("{}{name}", self.key_prefix);
        self.heads.fetch_add(1, Ordering::Relaxed);
        let obj = self.store.head(&key).await?;
        if let Some(o) = &obj {
            let settled = listed.modified + SETTLE < SystemTime::now();
            if o.etag == listed.etag && o.size == listed.size && settled {
                self.learn(name, &listed, o);
            }
        }
        Ok(obj)
    }

    async fn load_index(&self) -> &HashMap<String, IndexEntry> {
        self.index
            .get_or_init(|| async {
                if self.files.lock().len() < MIN_FILES {
                    return HashMap::new();
                }
                let got = self
                    .store
                    .get_range(&self.index_key, 0..MAX_INDEX_BYTES, None)
                    .await;
                match got {
                    Ok(bytes) => dirindex::decode(&bytes).unwrap_or_else(|| {
                        tracing::debug!(key = %self.index_key, "not a directory index: ignored");
                        HashMap::new()
                    }),
                    Err(StoreError::NotFound(_)) => HashMap::new(),
                    Err(error) => {
                        tracing::debug!(key = %self.index_key, %error, "directory index not read");
                        HashMap::new()
                    }
                }
            })
            .await
    }

    /// Start HEADs for the listed files after `name` that nobody resolved yet.
    fn look_ahead(self: &Arc<Self>, name: &str) {
        let Some(&at) = self.rank.get(name) else {
            return;
        };
        let start = at + 1;
        for next in self.order.iter().skip(start).take(LOOKAHEAD) {
            if self.cells.lock().contains_key(next) {
                continue;
            }
            let Some(listed) = self.files.lock().get(next).cloned() else {
                continue;
            };
            let cell = self.cell(next);
            let this = self.clone();
            let next = next.clone();
            tokio::spawn(async move {
                // A failure is left for the lookup itself to meet and report.
                let _ = cell
                    .get_or_try_init(|| this.clone().fetch(next, listed))
                    .await;
            });
        }
    }

    fn learn(self: &Arc<Self>, name: String, listed: &Listed, obj: &ObjectMeta) {
        if crate::meta::is_old_style_dir(obj) {
            // The index keeps metadata, not Content-Type, which alone makes this a directory.
            return;
        }
        let entry = IndexEntry {
            etag: listed.etag.clone(),
            size: listed.size,
            modified_ms: dirindex::millis(listed.modified),
            user: obj.user.clone(),
        };
        let n = {
            let mut learned = self.learned.lock();
            learned.insert(name, entry);
            learned.len()
        };
        if self.writable && n >= MIN_FILES && !self.writer.swap(true, Ordering::AcqRel) {
            let mut pending = self.pending.lock();
            pending.retain(|w| {
                w.upgrade()
                    .is_some_and(|a| !a.written.load(Ordering::Acquire))
            });
            pending.push(Arc::downgrade(self));
            drop(pending);
            let this = self.clone();
            tokio::spawn(async move { this.write_when_quiet().await });
        }
    }

    async fn write_when_quiet(self: Arc<Self>) {
        let mut seen = 0;
        loop {
            tokio::time::sleep(WRITE_AFTER).await;
            let n = self.learned.lock().len();
            if n == seen {
                break;
            }
            seen = n;
        }
        self.write().await;
    }

    /// Write the index now (once per listing; unmounting calls this for pending writes).
    pub async fn write(&self) {
        if self.written.swap(true, Ordering::AcqRel) {
            return;
        }
        let body = {
            let files = self.files.lock();
            let learned = self.learned.lock();
            let old = self.index.get();
            let entries: HashMap<&String, &IndexEntry> = files
                .iter()
                .filter_map(|(name, l)| {
                    let e = learned
                        .get(name)
                        .or_else(|| old.and_then(|o| o.get(name)))?;
                    e.matches(&l.etag, l.size, l.modified).then_some((name, e))
                })
                .collect();
            dirindex::encode(entries)
        };
        if body.len() as u64 > MAX_INDEX_BYTES {
            return;
        }
        match self
            .store
            .put(&self.index_key, body.into(), &Default::default())
            .await
        {
            Ok(_) => tracing::debug!(key = %self.index_key, "directory index written"),
            Err(error) => {
                tracing::warn!(key = %self.index_key, %error, "directory index not written")
            }
        }
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}
