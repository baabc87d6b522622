//! What this mount last learned about each inode's object: attributes (with when they were
//! fetched), the version (ETag) they describe, the file id its metadata records, a symlink's
//! target, and the version whose pages the kernel may still cache. Kept apart from the inode
//! table (`inode`), which holds only the namespace and the kernel's references, each behind
//! its own lock.
//!
//! Invariants: an entry is only ever a cache: a missing or expired one means "ask the bucket".
//! Entries of inodes the table has dropped are removed by `Fs` (`forget_if_gone`); inode
//! numbers are never reused, so a leftover entry could never be read for another file.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::inode::{Attr, Ino};

#[derive(Debug, Clone, Default)]
struct Known {
    attr: Option<(Attr, Instant)>,
    /// The object version the cached attributes describe (files and symlinks).
    etag: Option<String>,
    /// The file id recorded in the object's metadata (client mode), checked against the
    /// object's header when it is opened.
    sealfs_id: Option<String>,
    symlink_target: Option<String>,
    /// The version whose pages the kernel may still cache from an earlier open: opening the
    /// same version again keeps them (hot re-reads at memory speed).
    page_cache_etag: Option<String>,
}

#[derive(Default)]
pub(super) struct KnownTable {
    map: Mutex<HashMap<Ino, Known>>,
}

impl KnownTable {
    /// Attributes fetched less than `ttl` ago.
    pub fn fresh_attr(&self, ino: Ino, ttl: Duration) -> Option<Attr> {
        let map = self.map.lock();
        let (attr, at) = map.get(&ino)?.attr.as_ref()?;
        (at.elapsed() < ttl).then(|| attr.clone())
    }

    /// Fresh attributes together with the version they describe.
    pub fn fresh_version(&self, ino: Ino, ttl: Duration) -> Option<(Attr, String)> {
        let map = self.map.lock();
        let k = map.get(&ino)?;
        match (&k.attr, &k.etag) {
            (Some((a, at)), Some(e)) if at.elapsed() < ttl => Some((a.clone(), e.clone())),
            _ => None,
        }
    }

    /// Record fresh attributes (and, when known, the object version they describe).
    pub fn set_attr(&self, ino: Ino, attr: &Attr, etag: Option<String>) {
        let mut map = self.map.lock();
        let k = map.entry(ino).or_default();
        k.attr = Some((attr.clone(), Instant::now()));
        if etag.is_some() {
            k.etag = etag;
        }
    }

    /// The object's version changed (a rename's copy): keep what else is known.
    pub fn set_etag(&self, ino: Ino, etag: String) {
        self.map.lock().entry(ino).or_default().etag = Some(etag);
    }

    /// Forget the attributes and version (the object moved or was replaced).
    pub fn forget_version(&self, ino: Ino) {
        if let Some(k) = self.map.lock().get_mut(&ino) {
            k.attr = None;
            k.etag = None;
        }
    }

    pub fn set_file_id(&self, ino: Ino, id: Option<String>) {
        self.map.lock().entry(ino).or_default().sealfs_id = id;
    }

    pub fn file_id(&self, ino: Ino) -> Option<String> {
        self.map.lock().get(&ino)?.sealfs_id.clone()
    }

    pub fn symlink_target(&self, ino: Ino) -> Option<String> {
        self.map.lock().get(&ino)?.symlink_target.clone()
    }

    pub fn set_symlink_target(&self, ino: Ino, target: &str) {
        self.map.lock().entry(ino).or_default().symlink_target = Some(target.to_string());
    }

    /// An open of `ino` at version `current` (`None`: not reading a stored version): whether
    /// the kernel may keep the pages it cached at the previous open (same version).
    pub fn keep_page_cache(&self, ino: Ino, current: Option<String>) -> bool {
        let mut map = self.map.lock();
        let k = map.entry(ino).or_default();
        let keep = current.is_some() && k.page_cache_etag == current;
        k.page_cache_etag = current;
        keep
    }

    /// Forget everything about `ino` (a file created here, or an inode the table dropped).
    pub fn remove(&self, ino: Ino) {
        self.map.lock().remove(&ino);
    }
}
