//! The block cache: authenticated plaintext of 64 KiB file blocks, in memory only, shared by
//! every handle of a mount, least recently used evicted first within a byte budget.
//!
//! Invariants:
//! - Keys name an object *version* (key + ETag) and a block index, so an overwritten object
//!   can never serve stale blocks: its new ETag misses.
//! - Only plaintext that authenticated (client mode) or came from a pinned GET (plain mode) is
//!   inserted; nothing is ever written to local disk.
//! - Concurrent misses of the same block are fetched once: a fetch registers its blocks as
//!   pending, later readers wait for it and then read the cache. Each block leaves the pending
//!   set as soon as it is in (a reader waits for its block, not for the whole GET). A failed
//!   fetch leaves no entry for the blocks it did not finish, so each waiter fetches again and
//!   sees its own error.
//! - Cached bytes never exceed the budget (each block is its own allocation, so the count is
//!   the memory held).
//!
//! Under it, optionally, `disk`: the object bytes of blocks kept in a local directory.

pub mod disk;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use lru::LruCache;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub object: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

/// What a lookup found.
pub enum Lookup {
    Hit(Bytes),
    /// Another fetch is bringing the block: wait on it (`wait`), then look again.
    Pending(watch::Receiver<()>),
    Miss,
}

/// A registered fetch: its blocks are pending until `complete`d; those left are marked done
/// (failed) when it is dropped. Every change is announced on `progress`.
pub struct Fetch {
    cache: Arc<BlockCache>,
    keys: Vec<BlockKey>,
    progress: watch::Sender<()>,
    /// Tells this fetch's pending entries from a later fetch's of the same key.
    ours: watch::Receiver<()>,
}

impl Fetch {
    /// Block `k` is in: cache it and wake its waiters now, before the rest of the fetch.
    pub fn complete(&self, k: BlockKey, block: Bytes) {
        let mut inner = self.cache.inner.lock();
        self.release(&mut inner, &k);
        self.cache.insert_locked(&mut inner, k, block);
        // Under the lock, as `lookup` marks what a waiter has seen: no wake-up is lost.
        self.progress.send_modify(|_| {});
    }

    /// `k` is no longer pending on this fetch (a later fetch's claim on it stays).
    fn release(&self, inner: &mut Inner, k: &BlockKey) {
        if (inner.pending.get(k)).is_some_and(|rx| rx.same_channel(&self.ours)) {
            inner.pending.remove(k);
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        let mut inner = self.cache.inner.lock();
        for k in &self.keys {
            self.release(&mut inner, k);
        }
        self.progress.send_modify(|_| {});
    }
}

struct Inner {
    lru: LruCache<BlockKey, Bytes>,
    bytes: u64,
    pending: HashMap<BlockKey, watch::Receiver<()>>,
}

pub struct BlockCache {
    budget: u64,
    inner: Mutex<Inner>,
}

impl BlockCache {
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self {
            budget,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                pending: HashMap::new(),
            }),
        })
    }

    pub fn lookup(&self, k: &BlockKey) -> Lookup {
        let mut inner = self.inner.lock();
        let m = crate::metrics::global();
        if let Some(b) = inner.lru.get(k) {
            m.cache_hits.inc();
            return Lookup::Hit(b.clone());
        }
        match inner.pending.get(k) {
            Some(rx) => {
                m.cache_hits.inc();
                let mut rx = rx.clone();
                rx.borrow_and_update(); // wait for the next change, not an earlier one
                Lookup::Pending(rx)
            }
            None => {
                m.cache_misses.inc();
                Lookup::Miss
            }
        }
    }

    /// Whether `k` is cached or being fetched (no LRU update: for readahead planning).
    pub fn is_present(&self, k: &BlockKey) -> bool {
        let inner = self.inner.lock();
        inner.lru.contains(k) || inner.pending.contains_key(k)
    }

    /// Register a fetch of `keys` (those not already cached or pending are claimed).
    pub fn start_fetch(self: &Arc<Self>, keys: Vec<BlockKey>) -> Fetch {
        let (tx, rx) = watch::channel(());
        let mut inner = self.inner.lock();
        let mut claimed = Vec::with_capacity(keys.len());
        for k in keys {
            if !inner.pending.contains_key(&k) {
                inner.pending.insert(k.clone(), rx.clone());
                claimed.push(k);
            }
        }
        Fetch {
            cache: self.clone(),
            keys: claimed,
            progress: tx,
            ours: rx,
        }
    }

    pub fn insert(&self, k: BlockKey, block: Bytes) {
        self.insert_locked(&mut self.inner.lock(), k, block);
    }

    fn insert_locked(&self, inner: &mut Inner, k: BlockKey, block: Bytes) {
        let len = block.len() as u64;
        if len > self.budget {
            return;
        }
        let m = crate::metrics::global();
        let before = inner.bytes;
        if let Some(old) = inner.lru.put(k, block) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, b)) => {
                    inner.bytes -= b.len() as u64;
                    m.cache_evictions.inc();
                }
                None => break,
            }
        }
        // The gauge is the sum over the process's caches (one per mount in the daemon).
        let delta = inner.bytes as i64 - before as i64;
        m.cache_bytes.inc_by(delta);
    }
}

impl BlockCache {
    /// Bytes of blocks held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        let bytes = self.inner.lock().bytes;
        crate::metrics::global().cache_bytes.dec_by(bytes as i64);
    }
}

/// Wait until a pending fetch has made progress: a block in, or the fetch over. Then look
/// again: the block may still be coming, in, evicted since, or failed.
pub async fn wait(mut rx: watch::Receiver<()>) {
    let _ = rx.changed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> BlockKey {
        BlockKey {
            object: "o".into(),
            etag: "e1".into(),
            index: i,
        }
    }

    #[test]
    fn evicts_least_recently_used_within_the_budget() {
        let c = BlockCache::new(3 * 10);
        for i in 0..3 {
            c.insert(key(i), Bytes::from(vec![i as u8; 10]));
        }
        assert!(matches!(c.lookup(&key(0)), Lookup::Hit(_)));
        c.insert(key(3), Bytes::from(vec![3; 10]));
        assert!(
            matches!(c.lookup(&key(1)), Lookup::Miss),
            "1 was least recent"
        );
        assert!(matches!(c.lookup(&key(0)), Lookup::Hit(_)));
        assert_eq!(c.bytes(), 30);
        let other_version = BlockKey {
            etag: "e2".into(),
            ..key(0)
        };
        assert!(matches!(c.lookup(&other_version), Lookup::Miss));
    }

    #[tokio::test]
    async fn a_pending_block_is_waited_for_not_fetched_twice() {
        let c = BlockCache::new(1 << 20);
        let fetch = c.start_fetch(vec![key(0), key(1)]);
        let Lookup::Pending(rx) = c.lookup(&key(1)) else {
            panic!("pending")
        };
        let waiter = tokio::spawn(wait(rx));
        fetch.complete(key(1), Bytes::from_static(b"data"));
        // Woken by its own block, while the rest of the fetch is still out.
        waiter.await.unwrap();
        assert!(matches!(c.lookup(&key(1)), Lookup::Hit(_)));
        assert!(matches!(c.lookup(&key(0)), Lookup::Pending(_)));
        drop(fetch);
        assert!(
            matches!(c.lookup(&key(0)), Lookup::Miss),
            "a failed block is not left pending"
        );
    }

    #[test]
    fn an_ended_fetch_leaves_a_later_fetch_of_the_same_block_pending() {
        let c = BlockCache::new(4);
        let a = c.start_fetch(vec![key(0), key(1)]);
        a.complete(key(0), Bytes::from_static(b"aaaa"));
        c.insert(key(2), Bytes::from_static(b"cccc")); // evicts block 0
        let b = c.start_fetch(vec![key(0)]);
        drop(a);
        assert!(matches!(c.lookup(&key(0)), Lookup::Pending(_)), "b's claim");
        assert!(
            matches!(c.lookup(&key(1)), Lookup::Miss),
            "a's unfinished block"
        );
        drop(b);
        assert!(matches!(c.lookup(&key(0)), Lookup::Miss));
    }
}
