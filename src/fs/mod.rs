//! The filesystem: every POSIX operation sealfs supports, as async functions over an
//! `ObjectStore`, with no FUSE types (the `fuse` module adapts them). Testable without a kernel.
//!
//! Layout (s3fs-compatible, `layout::Layout` is the one place that maps paths to keys): a file
//! is the object `PREFIX + path`; a directory is the common prefix `PREFIX + path + "/"`, plus
//! an empty marker object of that name when it was made by mkdir (so empty directories
//! exist). Attributes live in s3fs's metadata keys (`meta`). In client format 2 every name in
//! a key is encrypted (`Layout`) and attributes are one sealed value (`meta::MetaCodec`):
//! attributes that do not authenticate are `BadAttrs` (EIO), never shown.
//!
//! Consistency: close-to-open. A file's bytes are uploaded when it is closed or fsynced (and
//! earlier, part by part, for large sequential writes); opening revalidates the object unless
//! its attributes were fetched within `metadata_ttl`. Attributes and directory entries are
//! cached for `metadata_ttl`, here and in the kernel.
//!
//! State, by job, each behind its own small lock (parking_lot: no poisoning), never held
//! across an await: the inode table (`inodes`: names, parents, the kernel's references,
//! listings), what is known of each inode's object (`known`: attributes, version, file id),
//! the open-file table (`open`: handles, shared per-file state, directory listings) and the
//! per-directory attribute indexes (`dir_attrs`). Per-file state (`OpenFile`, whose life is
//! `FileState`) is behind an async mutex; take it before any of the others, never the other
//! way round. Timers read tokio's clock, so tests control time.

mod conflict;
mod dirattrs;
mod error;
mod file;
mod handles;
mod known;
mod listing;
mod names;
mod setattr;
mod xattr;

pub use names::{RenameFlags, StatFs};
pub use xattr::{supported as xattr_supported, SetMode};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use crate::meta;
pub use crate::meta::Defaults;
pub use error::{FsError, Result};

use crate::crypto::codec::{object_size_of, plain_size_of};
use crate::crypto::keys::Keyring;
pub use crate::inode::Ino;
use crate::inode::{Attr, InodeTable, Kind, ROOT_INO};
use crate::layout::Layout;
use crate::read::ReadConfig;
use crate::store::{ObjectMeta, ObjectStore};
use crate::write::WriteConfig;
use dirattrs::DirAttrs;
use handles::OpenTable;
use known::KnownTable;

/// S3 keys are at most 1024 bytes; names are further bounded by the kernel's NAME_MAX.
const MAX_NAME: usize = 255;
const MAX_KEY: usize = 1024;
/// A directory listed in one request (ListObjectsV2 returns up to 1,000 keys a page): when its
/// listing is stale, taking it again is cheaper than probing a name with a HEAD and a LIST.
const SMALL_DIR: usize = 1000;

#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix of the mount: empty, or ending in '/'.
    pub prefix: String,
    pub defaults: Defaults,
    pub metadata_ttl: Duration,
    pub read_only: bool,
    pub write: WriteConfig,
    pub read: ReadConfig,
    /// Client-side encryption: the prefix's unwrapped keyring (`None`: objects are plaintext).
    pub keys: Option<Arc<Keyring>>,
    /// Extended attributes are stored. Off (`--no-xattr`), the kernel is told once that there
    /// are none and stops asking: `ls -l` then costs two round trips less per file.
    pub xattrs: bool,
    /// Which conditional requests the server enforces (`store::probe`; S3's set by default).
    pub enforced: crate::store::probe::Enforced,
    /// Where `O_CREAT|O_EXCL` is exclusive.
    pub exclusive_create: ExclusiveCreate,
    /// Start of the names of files unlinked while open, under `.sealfs-unlinked/`: the mount's
    /// session area (`SID/unlinked-`), so a crashed mount's leftovers are cleaned with it.
    pub unlinked_names: String,
}

/// Where `open(O_CREAT|O_EXCL)` is exclusive (`--exclusive-create`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExclusiveCreate {
    /// Across hosts: the name is claimed on the server at open (an empty object, If-None-Match),
    /// at the cost of one PUT per exclusive create. cp, tar and mkstemp create every new file
    /// with O_EXCL.
    #[default]
    Server,
    /// In this mount only; a create racing another host's is caught at close, as a conflict.
    Local,
}

/// Who is asking: new files and directories are owned by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The calling process: a handle remembers who opened it (see `Fs::flush`).
    pub pid: u32,
}

/// An open file or directory handle, as the kernel names it back to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fh(pub u64);

impl std::fmt::Display for Fh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub ino: Ino,
    pub attr: Attr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub name: String,
    pub kind: Kind,
}

/// Changes asked by setattr; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    /// The complete new set of extended attributes (setxattr, removexattr).
    pub xattrs: Option<crate::inode::Xattrs>,
}

pub struct Fs {
    store: Arc<dyn ObjectStore>,
    fetcher: Arc<crate::read::Fetcher>,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    open: OpenTable,
    /// Per listed directory: its files' attributes without a HEAD each (`dirattrs`).
    dir_attrs: Mutex<HashMap<Ino, Arc<DirAttrs>>>,
    index_writes: dirattrs::Pending,
    /// What is known of each inode's object (attributes, version, file id).
    known: KnownTable,
    /// Where paths live in the bucket (names encrypted in client format 2).
    layout: Layout,
    /// How objects carry their attributes (sealed in client format 2).
    meta: Arc<meta::MetaCodec>,
    /// Directories whose listing held names that are not this prefix's (logged once each).
    foreign_logged: Mutex<std::collections::HashSet<String>>,
    root_attr: Mutex<Attr>,
    /// Part buffers shared by this mount's writers (`write::PartPool`).
    parts: Arc<crate::write::PartPool>,
}

impl Fs {
    /// A filesystem over `store`, reading through `fetcher` (whose cache and readahead budget
    /// the wiring sizes; it must read from the same store).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        fetcher: Arc<crate::read::Fetcher>,
        cfg: FsConfig,
    ) -> Self {
        let d = &cfg.defaults;
        let root_attr = Attr::new(Kind::Dir, d.dir_mode, d.uid, d.gid, SystemTime::now());
        Self {
            fetcher,
            store,
            inodes: Mutex::new(InodeTable::new()),
            open: OpenTable::new(),
            dir_attrs: Mutex::new(HashMap::new()),
            index_writes: Default::default(),
            known: KnownTable::default(),
            layout: Layout::with_names(
                &cfg.prefix,
                cfg.keys.as_ref().and_then(|r| r.name_cipher()),
            ),
            meta: Arc::new(match cfg.keys.as_ref().and_then(|r| r.attr_sealer()) {
                Some(sealer) => meta::MetaCodec::sealed(&cfg.prefix, sealer),
                None => meta::MetaCodec::plain(&cfg.prefix),
            }),
            foreign_logged: Mutex::new(Default::default()),
            parts: cfg.write.pool(),
            cfg,
            root_attr: Mutex::new(root_attr),
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    fn check_writable(&self) -> Result<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Path of `ino` inside the mount.
    fn path(&self, ino: Ino) -> Result<String> {
        self.inodes.lock().path(ino).ok_or(FsError::NotFound)
    }

    /// Path of `name` under directory `parent`, checking the name.
    fn child_path(&self, parent: Ino, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(FsError::Invalid("file name"));
        }
        if name.len() > MAX_NAME {
            return Err(FsError::NameTooLong);
        }
        if Layout::is_reserved(parent == ROOT_INO, name) {
            return Err(FsError::Reserved);
        }
        let inodes = self.inodes.lock();
        let node = inodes.get(parent).ok_or(FsError::NotFound)?;
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let ppath = inodes.path(parent).ok_or(FsError::NotFound)?;
        let path = if ppath.is_empty() {
            name.to_string()
        } else {
            format!("{ppath}/{name}")
        };
        // +1: a directory's marker ends in '/'.
        if self.layout.key_len(&path) + 1 > MAX_KEY {
            return Err(FsError::NameTooLong);
        }
        Ok(path)
    }

    /// Attributes of a file or symlink object (its metadata says which).
    fn object_attr(&self, obj: &ObjectMeta) -> Result<Attr> {
        Ok(self.decode(obj, false)?.attr)
    }

    /// What `obj`'s metadata says (`marker`: it is a directory marker). Attributes that do
    /// not authenticate are an error naming the object, never shown.
    fn decode(&self, obj: &ObjectMeta, marker: bool) -> Result<meta::Decoded> {
        // A foreign object in a client-mode prefix keeps its raw size (reading it fails).
        let size = match marker {
            true => 0,
            false => plain_size_of(self.cfg.keys.is_some(), obj.size).unwrap_or(obj.size),
        };
        self.meta
            .decode(obj, marker, size, &self.cfg.defaults)
            .map_err(|error| {
                tracing::error!(key = %obj.key, %error, "refusing the object's attributes");
                FsError::BadAttrs {
                    key: obj.key.clone(),
                    error,
                }
            })
    }

    /// Object size of a file of `plain` bytes in this mount's mode.
    fn object_size(&self, plain: u64) -> u64 {
        object_size_of(self.cfg.keys.is_some(), plain)
    }

    fn dir_attr(&self, marker: Option<&ObjectMeta>) -> Result<Attr> {
        Ok(match marker {
            Some(m) => self.decode(m, true)?.attr,
            None => Attr {
                kind: Kind::Dir,
                ..self.root_attr.lock().clone()
            },
        })
    }

    /// Record fresh attributes (and the object version) for `ino`.
    fn cache_attr(&self, ino: Ino, attr: &Attr, etag: Option<String>) {
        self.known.set_attr(ino, attr, etag);
    }

    /// Remember what a HEAD said about the object's identity (see `OpenFile::expect_id`).
    fn cache_object(&self, ino: Ino, obj: &ObjectMeta) -> Result<()> {
        let id = self.decode(obj, false)?.file_id;
        self.known.set_file_id(ino, id);
        Ok(())
    }

    fn fresh_attr(&self, ino: Ino) -> Option<Attr> {
        self.known.fresh_attr(ino, self.cfg.metadata_ttl)
    }

    /// Drop what is known of `ino` once the inode table no longer has it.
    fn forget_if_gone(&self, ino: Ino) {
        if self.inodes.lock().get(ino).is_none() {
            self.known.remove(ino);
        }
    }

    /// What is at `path` in the bucket: a file or symlink object, a directory, or nothing.
    async fn stat_path(&self, path: &str) -> Result<Option<(Attr, Option<ObjectMeta>)>> {
        let key = self.layout.file_key(path);
        if let Some(obj) = self.store.head(&key).await? {
            return Ok(Some((self.object_attr(&obj)?, Some(obj))));
        }
        self.stat_dir(path).await
    }

    /// Whether `path` is a directory (a marker or any key under it), with its attributes.
    async fn stat_dir(&self, path: &str) -> Result<Option<(Attr, Option<ObjectMeta>)>> {
        let prefix = self.layout.dir_prefix(path);
        let page = self.store.list(&prefix, Some("/"), None, Some(1)).await?;
        if page.objects.is_empty() && page.prefixes.is_empty() {
            return Ok(None);
        }
        let marker = match page.objects.first() {
            Some(o) if o.key == prefix => self.store.head(&prefix).await?,
            _ => None,
        };
        Ok(Some((self.dir_attr(marker.as_ref())?, None)))
    }

    /// `stat_path` for `name` in `parent`, answered from the parent's listing where it can be:
    /// within the TTL of a listing (or of the directory's creation here) a missing name costs
    /// no request, a listed file one HEAD, a listed directory one LIST (and its marker's HEAD).
    /// A directory of fewer than 1,000 entries is listed again (one request) when its listing
    /// is older than the TTL, instead of probing each name with two; so is a larger one whose
    /// entries are being stat-ed one after another (`ls -l`), whose files' attributes then
    /// come from the listing's `DirAttrs`.
    pub(super) async fn stat_child(
        &self,
        parent: Ino,
        name: &str,
        path: &str,
    ) -> Result<Option<(Attr, Option<ObjectMeta>)>> {
        let ttl = self.cfg.metadata_ttl;
        let (mut listed, small) = self
            .inodes
            .lock()
            .listed_or_small(parent, name, ttl, SMALL_DIR);
        if listed.is_none() && !ttl.is_zero() {
            let in_use = (self.dir_attrs.lock().get(&parent)).is_some_and(|a| a.in_use(ttl));
            if small || in_use {
                self.list_dir(parent).await?;
                listed = self.inodes.lock().listed(parent, name, ttl);
            }
        }
        match listed {
            Some(None) => Ok(None),
            Some(Some(Kind::Dir)) => self.stat_dir(path).await,
            Some(Some(_)) => match self.head_listed(parent, name, path).await? {
                Some(obj) => Ok(Some((self.object_attr(&obj)?, Some(obj)))),
                None => self.stat_dir(path).await,
            },
            None => self.stat_path(path).await,
        }
    }

    /// HEAD of a file `parent`'s listing reported, answered by its `DirAttrs` while fresh.
    async fn head_listed(&self, parent: Ino, name: &str, path: &str) -> Result<Option<ObjectMeta>> {
        let attrs = self.dir_attrs.lock().get(&parent).cloned();
        if let Some(a) = attrs.filter(|a| a.at.elapsed() < self.cfg.metadata_ttl) {
            let stored = self.layout.stored_name(Layout::split(path).0, name);
            if let Some(found) = a.resolve(&stored).await? {
                return Ok(found);
            }
        }
        Ok(self.store.head(&self.layout.file_key(path)).await?)
    }

    /// This mount changed the object at `name` in `parent`: its listed version is history.
    fn listed_changed(&self, parent: Ino, name: &str) {
        let attrs = self.dir_attrs.lock().get(&parent).cloned();
        if let (Some(a), Ok(dir)) = (attrs, self.path(parent)) {
            a.changed(&self.layout.stored_name(&dir, name));
        }
    }

    fn ino_changed(&self, ino: Ino) {
        let at = {
            let inodes = self.inodes.lock();
            inodes.get(ino).map(|n| (n.parent, n.name.clone()))
        };
        if let Some((parent, name)) = at {
            self.listed_changed(parent, &name);
        }
    }

    /// `lookup` when memory alone can answer it (no request, no await): fresh attributes of a
    /// known inode, a name a fresh listing lacks, a listed file whose attributes the
    /// directory's index or a finished lookahead holds. `None`: call `lookup`.
    pub fn lookup_cached(&self, parent: Ino, name: &str) -> Option<Result<Entry>> {
        let res = self.lookup_memory(parent, name)?;
        Some(res.map(|e| self.shown_entry(e)))
    }

    /// `attr` of `ino` as `stat` shows it: a directory's link count is 2 plus the
    /// subdirectories its listing holds, and its mtime and ctime are no older than this
    /// mount's last change of its entries (other mounts see the marker's stored times).
    fn shown(&self, ino: Ino, mut attr: Attr) -> Attr {
        if attr.kind != Kind::Dir {
            return attr;
        }
        let (changed, subdirs) = self.inodes.lock().dir_shown(ino);
        if let Some(n) = subdirs {
            attr.nlink = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(2);
        }
        if let Some(t) = changed {
            attr.mtime = attr.mtime.max(t);
            attr.ctime = attr.ctime.max(t);
        }
        attr
    }

    fn shown_entry(&self, e: Entry) -> Entry {
        Entry {
            attr: self.shown(e.ino, e.attr),
            ino: e.ino,
        }
    }

    /// This mount created, removed or renamed an entry of `dir`: its times move now.
    pub(super) fn entries_changed(&self, dir: Ino) {
        self.inodes
            .lock()
            .entries_changed(dir, Some(SystemTime::now()));
    }

    fn lookup_memory(&self, parent: Ino, name: &str) -> Option<Result<Entry>> {
        let path = match self.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let local = self.inodes.lock().child(parent, name);
        if let Some(ino) = local {
            // An open file's attributes live in its `OpenFile` (behind an async lock).
            if self.open.is_open(ino) {
                return None;
            }
            if let Some(attr) = self.fresh_attr(ino) {
                self.inodes.lock().link(parent, name, attr.kind);
                return Some(Ok(Entry { ino, attr }));
            }
        }
        let ttl = self.cfg.metadata_ttl;
        match self.inodes.lock().listed(parent, name, ttl)? {
            None => return Some(Err(FsError::NotFound)),
            Some(Kind::Dir) => return None,
            Some(_) => {}
        }
        let attrs = self.dir_attrs.lock().get(&parent).cloned()?;
        if attrs.at.elapsed() >= ttl {
            return None;
        }
        // `Some(None)`: the file is gone; `lookup` finds out whether a directory took its place.
        let stored = self.layout.stored_name(Layout::split(&path).0, name);
        let obj = attrs.resolved_now(&stored)??;
        Some(
            self.object_attr(&obj)
                .and_then(|attr| self.link_found(parent, name, attr, Some(obj))),
        )
    }

    /// Link `name` to what a lookup found there and cache what the object (if any) says.
    fn link_found(
        &self,
        parent: Ino,
        name: &str,
        attr: Attr,
        obj: Option<ObjectMeta>,
    ) -> Result<Entry> {
        let ino = self.inodes.lock().link(parent, name, attr.kind);
        if let Some(o) = &obj {
            self.cache_object(ino, o)?;
        }
        self.cache_attr(ino, &attr, obj.map(|o| o.etag));
        Ok(Entry { ino, attr })
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Entry> {
        let e = self.lookup_inner(parent, name).await?;
        Ok(self.shown_entry(e))
    }

    async fn lookup_inner(&self, parent: Ino, name: &str) -> Result<Entry> {
        let path = self.child_path(parent, name)?;
        let local = self.inodes.lock().child(parent, name);
        if let Some(ino) = local {
            let attr = match self.open_attr(ino).await {
                Some(a) => Some(a),
                None => self.fresh_attr(ino),
            };
            if let Some(attr) = attr {
                self.inodes.lock().link(parent, name, attr.kind);
                return Ok(Entry { ino, attr });
            }
        }
        let (attr, obj) = self
            .stat_child(parent, name, &path)
            .await?
            .ok_or(FsError::NotFound)?;
        self.link_found(parent, name, attr, obj)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.inodes.lock().forget(ino, n);
        self.forget_if_gone(ino);
    }

    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let attr = self.getattr_inner(ino).await?;
        Ok(self.shown(ino, attr))
    }

    async fn getattr_inner(&self, ino: Ino) -> Result<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr.lock().clone());
        }
        if let Some(attr) = self.open_attr(ino).await {
            return Ok(attr);
        }
        if let Some(attr) = self.fresh_attr(ino) {
            return Ok(attr);
        }
        let path = self.path(ino)?;
        let (attr, obj) = self.stat_path(&path).await?.ok_or(FsError::NotFound)?;
        if let Some(o) = &obj {
            self.cache_object(ino, o)?;
        }
        self.cache_attr(ino, &attr, obj.map(|o| o.etag));
        Ok(attr)
    }

    pub async fn readlink(&self, ino: Ino) -> Result<String> {
        let cached = self.known.symlink_target(ino);
        if let Some(t) = cached {
            return Ok(t);
        }
        let key = self.layout.file_key(&self.path(ino)?);
        let obj = self.store.head(&key).await?.ok_or(FsError::NotFound)?;
        let decoded = self.decode(&obj, false)?;
        if decoded.attr.kind != Kind::Symlink {
            return Err(FsError::Invalid("not a symlink"));
        }
        let body = self
            .store
            .get_range(&key, 0..obj.size, Some(&obj.etag))
            .await?;
        let body = match &self.cfg.keys {
            Some(ring) => ring.open_object(&body).map_err(|error| FsError::Corrupt {
                key: key.clone(),
                error,
            })?,
            None => body.to_vec(),
        };
        let target = String::from_utf8_lossy(&body).into_owned();
        self.known.set_symlink_target(ino, &target);
        Ok(target)
    }

    /// Flush every open file (unmount, shutdown) and write the directory indexes still
    /// waiting for lookups to stop. Returns the number of files that failed.
    pub async fn flush_all(&self) -> usize {
        let pending: Vec<_> = std::mem::take(&mut *self.index_writes.lock());
        for attrs in pending.iter().filter_map(|w| w.upgrade()) {
            attrs.write().await;
        }
        let inos = self.open.open_inos();
        let mut failed = 0;
        for ino in inos {
            if let Err(e) = self.flush_ino(ino).await {
                tracing::error!(%ino, error = %e, "flush at shutdown failed");
                failed += 1;
            }
        }
        failed
    }
}

/// Open-flag values the fs uses (kept here so the fs needs no libc in its signatures).
pub mod libc_flags {
    pub const O_ACCMODE: i32 = libc::O_ACCMODE;
    pub const O_RDONLY: i32 = libc::O_RDONLY;
    pub const O_WRONLY: i32 = libc::O_WRONLY;
    pub const O_TRUNC: i32 = libc::O_TRUNC;
    pub const O_EXCL: i32 = libc::O_EXCL;
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dirattrs;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_hosts;
#[cfg(test)]
mod tests_posix;
#[cfg(test)]
mod tests_sealed;
