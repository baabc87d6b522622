//! Namespace operations: create, mkdir, symlink, unlink, rmdir, rename.
//!
//! S3 has no rename: a file moves by CopyObject + DeleteObject (multipart copy above 5 GiB), a
//! directory by moving every object under its prefix. Neither is atomic; a crash mid-way
//! leaves both names present (never neither): copies finish before any delete starts.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Mutex as AsyncMutex;

use super::handles::OpenFile;
use super::{Caller, Entry, Fh, Fs, FsError, Ino, Result};
use crate::inode::{Attr, Kind};
use crate::meta::{self, Defaults, MetaCodec};
use crate::store::{self, Expect, ObjectMeta, ObjectStore, UserMeta};

/// Copies in flight while moving a directory: enough to hide request latency, few enough not
/// to swamp a small server.
const RENAME_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
    pub whiteout: bool,
}

impl Fs {
    pub(super) fn new_attr(&self, kind: Kind, perm: u32, caller: Caller) -> Attr {
        let perm = (perm & 0o7777) as u16;
        Attr::new(kind, perm, caller.uid, caller.gid, SystemTime::now())
    }

    /// Create and open a new regular file. Nothing is sent to S3 until it is flushed: until
    /// then the file exists in this mount only (lookups and listings see it).
    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> Result<(Entry, Fh)> {
        self.check_writable()?;
        let path = self.child_path(parent, name)?;
        let attr = self.new_attr(Kind::File, mode, caller);
        let codec = self.new_codec();
        let exclusive = flags & super::libc_flags::O_EXCL != 0
            && self.cfg.exclusive_create == super::ExclusiveCreate::Server
            && self.cfg.enforced.put
            && self.cfg.write.on_conflict.is_conditional();
        // O_EXCL claims the name on the server at once (If-None-Match), so it is exclusive
        // across hosts, not only in this mount: lock files rely on it.
        let claimed = match exclusive {
            true => Some(self.claim(parent, name, &path, &attr, &codec, &[]).await?),
            false => None,
        };
        let ino = {
            let mut inodes = self.inodes.lock();
            let ino = inodes.link(parent, name, Kind::File);
            inodes.set_pending(ino, claimed.is_none());
            ino
        };
        self.known.remove(ino);
        let mut writer = self.new_writer(claimed.as_ref(), codec.clone());
        if claimed.is_none() {
            writer.mark_changed();
        }
        if let Some(v) = &claimed {
            self.listed_changed(parent, name);
            self.cache_attr(ino, &attr, Some(v.etag.clone()));
        }
        let mut of = OpenFile::new(attr.clone(), claimed, Some(writer));
        of.codec = Some(codec);
        of.handles = 1;
        let file = Arc::new(AsyncMutex::new(of));
        if let Some(old) = self.open.replace_file(ino, file.clone()) {
            // An inode already open under this name was replaced by this create.
            old.lock().await.mark_unlinked();
        }
        let writable = flags & super::libc_flags::O_ACCMODE != super::libc_flags::O_RDONLY;
        let fh = self.add_handle(ino, file, writable, caller.pid);
        self.entries_changed(parent);
        Ok((Entry { ino, attr }, fh))
    }

    /// Store a file holding `body` at `path` if nothing is there (EEXIST otherwise, whoever
    /// made it; with `--on-conflict overwrite`, unconditionally).
    async fn claim(
        &self,
        parent: Ino,
        name: &str,
        path: &str,
        attr: &Attr,
        codec: &crate::crypto::codec::FileCodec,
        body: &[u8],
    ) -> Result<crate::read::Version> {
        let key = self.layout.file_key(path);
        let m = self
            .meta
            .encode(&key, attr, meta::file_id_of(Some(codec)), None);
        let size = body.len() as u64;
        let body = codec.encode(0, Bytes::copy_from_slice(body), size);
        match self
            .store
            .put_if(&key, body, &m, &self.expect(Expect::Absent))
            .await
        {
            Ok(etag) => Ok(crate::read::Version { key, etag, size }),
            Err(store::StoreError::PreconditionFailed(_)) => {
                self.changed_elsewhere(parent, name);
                Err(FsError::Exists)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Entry> {
        self.check_writable()?;
        let path = self.child_path(parent, name)?;
        if self.stat_child(parent, name, &path).await?.is_some() {
            return Err(FsError::Exists);
        }
        let attr = self.new_attr(Kind::Dir, mode, caller);
        let marker = self.layout.dir_prefix(&path);
        let m = self.meta.encode(&marker, &attr, None, None);
        self.store.put(&marker, Bytes::new(), &m).await?;
        let ino = {
            let mut inodes = self.inodes.lock();
            let ino = inodes.link(parent, name, Kind::Dir);
            // Made here, so empty: lookups in it need no request for the TTL.
            inodes.set_listing(ino, Default::default());
            ino
        };
        self.entries_changed(parent);
        self.cache_attr(ino, &attr, None);
        Ok(Entry { ino, attr })
    }

    /// Symlinks are s3fs-style: an object whose body is the target and whose `mode` says
    /// S_IFLNK.
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> Result<Entry> {
        let mut attr = self.new_attr(Kind::Symlink, 0o777, caller);
        attr.size = target.len() as u64;
        let entry = self.put_new(parent, name, attr, target.as_bytes()).await?;
        self.known.set_symlink_target(entry.ino, target);
        Ok(entry)
    }

    /// mknod(2): a regular file (stored at once, empty, as s3fs does) or a special file: an
    /// empty object whose `mode` carries the type (FIFO, socket, character or block device)
    /// and whose `rdev` the device number, s3fs's convention. The kernel implements special
    /// files; the mount only stores them, so `cp -a`, `tar` and `rsync -a` can copy trees
    /// holding them and they survive a remount.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Entry> {
        // A type of 0 is a regular file, as mknod(2) says.
        let kind = match mode & meta::S_IFMT {
            0 => Kind::File,
            bits => meta::kind_of_mode(bits).ok_or(FsError::Invalid("file type"))?,
        };
        if kind == Kind::Dir || kind == Kind::Symlink {
            return Err(FsError::Invalid("mknod of a directory or symlink"));
        }
        let mut attr = self.new_attr(kind, mode, caller);
        if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            attr.rdev = rdev;
        }
        self.put_new(parent, name, attr, &[]).await
    }

    /// Store a new object at (parent, name) holding `body` with `attr`, unless the name is
    /// taken (EEXIST).
    async fn put_new(&self, parent: Ino, name: &str, attr: Attr, body: &[u8]) -> Result<Entry> {
        self.check_writable()?;
        let path = self.child_path(parent, name)?;
        if self.stat_at(parent, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        // Created only if still absent: another host may have made the name since the check.
        let etag = self
            .claim(parent, name, &path, &attr, &self.new_codec(), body)
            .await?
            .etag;
        let ino = self.inodes.lock().link(parent, name, attr.kind);
        self.listed_changed(parent, name);
        self.entries_changed(parent);
        self.cache_attr(ino, &attr, Some(etag));
        Ok(Entry { ino, attr })
    }

    /// Kind of what is at (parent, name): the inode table first, then the bucket.
    async fn kind_at(&self, parent: Ino, name: &str) -> Result<Option<Kind>> {
        Ok(self.stat_at(parent, name).await?.map(|(kind, _)| kind))
    }

    /// Kind of what is at (parent, name), with the object's HEAD when one was made.
    pub(super) async fn stat_at(
        &self,
        parent: Ino,
        name: &str,
    ) -> Result<Option<(Kind, Option<ObjectMeta>)>> {
        let known = {
            let inodes = self.inodes.lock();
            inodes
                .child(parent, name)
                .and_then(|i| inodes.get(i).map(|n| (n.kind, inodes.is_pending(i))))
        };
        match known {
            Some((kind, true)) => Ok(Some((kind, None))),
            _ => {
                let path = self.child_path(parent, name)?;
                Ok(self
                    .stat_child(parent, name, &path)
                    .await?
                    .map(|(a, obj)| (a.kind, obj)))
            }
        }
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        let path = self.child_path(parent, name)?;
        let mut shown = self.shown_version(parent, name);
        let kind = self.kind_at(parent, name).await?.ok_or(FsError::NotFound)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let ino = self.inodes.lock().child(parent, name);
        if let Some(ino) = ino.filter(|&i| self.open.is_open(i)) {
            self.detach_if_open(ino).await?;
            shown = None;
        }
        // Checked after the detach, whose flush may have made or changed the object.
        let pending = ino.is_some_and(|i| self.inodes.lock().is_pending(i));
        if !pending {
            // Only the version this mount saw: another host's newer one stays (EBUSY).
            let expected = match self.seen_version(parent, name, shown).await? {
                Expect::Absent => Expect::Anything,
                e => e,
            };
            let key = self.layout.file_key(&path);
            if let Err(e) = self.store.delete_if(&key, &expected).await {
                return Err(self.refused(parent, name, &path, e, "not deleted"));
            }
        }
        self.listed_changed(parent, name);
        let gone = self.inodes.lock().unlink(parent, name);
        if let Some(gone) = gone {
            self.forget_if_gone(gone);
        }
        self.entries_changed(parent);
        Ok(())
    }

    /// `ino` loses its name (unlink, or a rename over it). If it is open here, its handles
    /// keep reading and writing it until the last close, as on a local filesystem: its bytes
    /// move to a private key no listing shows (`Layout::unlinked_key`, CopyObject), later
    /// uploads go there too, and the last release deletes it. The caller then removes the
    /// name's object (or a rename overwrites it).
    async fn detach_if_open(&self, ino: Ino) -> Result<()> {
        let Some(file) = self.open.file(ino) else {
            return Ok(());
        };
        let mut of = file.lock().await;
        if of.is_closed() || of.is_unlinked() {
            return Ok(());
        }
        let pending = self.inodes.lock().is_pending(ino);
        let uploading = of.writer.as_ref().is_some_and(|w| w.is_uploading());
        if !pending || uploading {
            // What this mount wrote goes into the object before the object moves (a part
            // already sent cannot be moved; a failed upload stays failed for the handles).
            if let Err(e) = self.flush_locked(ino, &mut of).await {
                tracing::warn!(%ino, error = %e, "flush before unlinking an open file failed");
            }
        }
        let id = crate::sys::random_hex::<16>();
        let private = (self.layout).unlinked_key(&format!("{}{id}", self.cfg.unlinked_names));
        let stored = match &of.version {
            Some(v) => self.store.head(&v.key).await?.filter(|o| o.etag == v.etag),
            None => None,
        };
        if let Some(obj) = stored {
            let m = resealed(&self.meta, &obj, &private, &self.cfg.defaults, None)?;
            // A fresh random key: nothing there to protect.
            let part = self.cfg.write.part_size;
            let etag =
                store::copy_any_size(&*self.store, &obj, &private, &m, part, &Expect::Anything)
                    .await?;
            if let Some(v) = of.version.as_mut() {
                v.key = private.clone();
                v.etag = etag;
            }
            if of.writer.as_ref().is_some_and(|w| !w.is_failed()) {
                // Flushed above: the writer starts again over the moved object.
                of.writer = None;
            }
        }
        tracing::debug!(%ino, key = %private, "open file unlinked: kept until its last close");
        of.detached = Some(private);
        of.attr.nlink = 0;
        of.mark_unlinked();
        Ok(())
    }

    /// Whether directory `path` (known to exist) has entries other than its marker.
    async fn dir_has_entries(&self, dir_ino: Option<Ino>, path: &str) -> Result<bool> {
        if let Some(ino) = dir_ino {
            if !self.inodes.lock().pending_children(ino).is_empty() {
                return Ok(true);
            }
        }
        let prefix = self.layout.dir_prefix(path);
        let page = self.store.list(&prefix, Some("/"), None, Some(2)).await?;
        Ok(!page.prefixes.is_empty() || page.objects.iter().any(|o| o.key != prefix))
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        let path = self.child_path(parent, name)?;
        let old_style = match self.stat_at(parent, name).await? {
            None => return Err(FsError::NotFound),
            // An s3fs old-style directory is an object of the directory's own name.
            Some((Kind::Dir, obj)) => obj.map(|o| o.key),
            Some(_) => return Err(FsError::NotDir),
        };
        let ino = self.inodes.lock().child(parent, name);
        if self.dir_has_entries(ino, &path).await? {
            return Err(FsError::NotEmpty);
        }
        let mut doomed = self.layout.dir_markers(&path);
        doomed.push(self.layout.index_key(&path));
        doomed.extend(old_style);
        self.store.delete_many(&doomed).await?;
        let gone = self.inodes.lock().unlink(parent, name);
        if let Some(gone) = gone {
            self.forget_if_gone(gone);
        }
        self.entries_changed(parent);
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        flags: RenameFlags,
    ) -> Result<()> {
        self.check_writable()?;
        if flags.exchange || flags.whiteout {
            return Err(FsError::Invalid("RENAME_EXCHANGE and RENAME_WHITEOUT"));
        }
        let src = self.child_path(parent, name)?;
        let dst = self.child_path(new_parent, new_name)?;
        if src == dst {
            return Ok(());
        }
        let (kind, src_obj) = self.stat_at(parent, name).await?.ok_or(FsError::NotFound)?;
        if kind == Kind::Dir && dst.starts_with(&format!("{src}/")) {
            return Err(FsError::Invalid("rename of a directory into itself"));
        }
        let mut dst_shown = self.shown_version(new_parent, new_name);
        let dst_kind = self.kind_at(new_parent, new_name).await?;
        if dst_kind.is_some() && flags.noreplace {
            return Err(FsError::Exists);
        }
        match (kind, dst_kind) {
            (Kind::Dir, Some(Kind::Dir)) => {
                let dst_ino = self.inodes.lock().child(new_parent, new_name);
                if self.dir_has_entries(dst_ino, &dst).await? {
                    return Err(FsError::NotEmpty);
                }
            }
            (Kind::Dir, Some(_)) => return Err(FsError::NotDir),
            (_, Some(Kind::Dir)) => return Err(FsError::IsDir),
            _ => {}
        }
        let replaced = self.inodes.lock().child(new_parent, new_name);
        if let Some(ino) = replaced.filter(|_| kind != Kind::Dir) {
            // An open file being replaced stays readable through its handles.
            if self.open.is_open(ino) {
                self.detach_if_open(ino).await?;
                dst_shown = None;
            }
        }
        if kind == Kind::Dir {
            self.flush_under(&src).await?;
            self.move_dir(&src, &dst).await?;
            if let Some(old) = src_obj {
                // An s3fs old-style directory object becomes a marker at its new name.
                let marker = self.layout.dir_prefix(&dst);
                let attr = self.decode(&old, false)?.attr;
                let m = self.meta.encode(&marker, &attr, None, Some(&old.user));
                self.store.put(&marker, Bytes::new(), &m).await?;
                self.store.delete(&old.key).await?;
            }
        } else {
            // What the copy may replace: nothing, or the version this mount sees now (after
            // the detach above, whose flush may have changed it).
            let dst_expect = match dst_kind {
                None => self.expect(Expect::Absent),
                Some(_) => self.seen_version(new_parent, new_name, dst_shown).await?,
            };
            let moved = self.move_file(parent, name, &src, &dst, &dst_expect).await;
            if let Err(e) = moved {
                self.changed_elsewhere(new_parent, new_name);
                return Err(self.refused(parent, name, &src, e, "not renamed"));
            }
        }
        let moved_dir = kind == Kind::Dir;
        self.listed_changed(parent, name);
        self.listed_changed(new_parent, new_name);
        self.inodes
            .lock()
            .rename(parent, name, new_parent, new_name);
        self.entries_changed(parent);
        self.entries_changed(new_parent);
        if let Some(gone) = replaced {
            self.forget_if_gone(gone);
        }
        if moved_dir {
            self.repin_under(&dst).await?;
        }
        Ok(())
    }

    /// After a directory moved, its objects are copies with new ETags (always under SSE-C,
    /// and for multipart objects in any mode): forget cached versions of everything under
    /// it, and re-pin open files to their new objects.
    async fn repin_under(&self, dir: &str) -> Result<()> {
        let inos = {
            let inos = self.inodes.lock().under(dir);
            for &i in &inos {
                self.known.forget_version(i);
            }
            inos
        };
        for ino in inos {
            let file = self.open.file(ino);
            let Some(file) = file else { continue };
            let mut of = file.lock().await;
            let Some(v) = of.version.clone() else {
                continue;
            };
            let key = self.layout.file_key(&self.path(ino)?);
            if let Some(obj) = self.store.head(&key).await? {
                of.version = Some(crate::read::Version {
                    key,
                    etag: obj.etag,
                    ..v
                });
                of.writer = None;
            }
        }
        Ok(())
    }

    /// Move a file's object: copy (its metadata from a fresh HEAD, so a metadata update made
    /// since the checks is not undone, with the ctime of the rename and, sealed, resealed for
    /// the new key), then delete the source.
    async fn move_file(
        &self,
        parent: Ino,
        name: &str,
        src: &str,
        dst: &str,
        dst_expect: &Expect,
    ) -> Result<()> {
        let ino = self.inodes.lock().child(parent, name);
        if let Some(ino) = ino {
            let pending = self.inodes.lock().is_pending(ino);
            if pending {
                // Not uploaded yet: it will be, under its new name, when it is closed.
                return Ok(());
            }
            if self.open.is_open(ino) {
                self.flush_ino(ino).await?;
            }
        }
        let src_key = self.layout.file_key(src);
        let dst_key = self.layout.file_key(dst);
        let now = SystemTime::now();
        let fresh = self.store.head(&src_key).await?.ok_or(FsError::NotFound)?;
        let m = resealed(&self.meta, &fresh, &dst_key, &self.cfg.defaults, Some(now))?;
        let part = self.cfg.write.part_size;
        let etag =
            store::copy_any_size(&*self.store, &fresh, &dst_key, &m, part, dst_expect).await?;
        // The source goes only as it was copied; a change made since stays under its name.
        let deleted = self
            .store
            .delete_if(&src_key, &self.expect_seen(Some(&fresh)))
            .await;
        if let Err(store::StoreError::PreconditionFailed(_)) = deleted {
            self.changed_elsewhere(parent, name);
            tracing::warn!(
                from = src,
                to = dst,
                "conflict: the file changed on the server while it was being renamed; the \
                 copy under the new name holds the version renamed, the old name the change"
            );
            return Err(FsError::Busy(format!(
                "{src}: copied to {dst}, but changed by another writer meanwhile: both names \
                 exist"
            )));
        }
        deleted?;
        if let Some(ino) = ino {
            let file = self.open.file(ino);
            if let Some(file) = file {
                let mut of = file.lock().await;
                if let Some(v) = of.version.as_mut() {
                    v.key = dst_key;
                    v.etag = etag.clone();
                }
                of.attr.ctime = now;
                if of.writer.is_some() {
                    // The writer's base moved: start again from the new object.
                    of.writer = None;
                }
            }
            // The cached attributes predate the new ctime.
            self.known.forget_version(ino);
            self.known.set_etag(ino, etag);
        }
        Ok(())
    }

    /// Move every object under `src/` to `dst/`: all copies first, then the deletes.
    async fn move_dir(&self, src: &str, dst: &str) -> Result<()> {
        let src_prefix = self.layout.dir_prefix(src);
        let objects = store::list_all(&*self.store, &src_prefix).await?;
        let store = self.store.clone();
        let part_size = self.cfg.write.part_size;
        // Each source goes only as it was copied (If-Match, one DELETE each) where the server
        // enforces it; otherwise in batches of 1,000, as before (DeleteObjects has no
        // per-key condition on general purpose buckets).
        let one_by_one = self.cfg.enforced.delete && self.cfg.write.on_conflict.is_conditional();
        let mut tasks = tokio::task::JoinSet::new();
        let mut keys = Vec::with_capacity(objects.len());
        let mut kept = Vec::new();
        for o in objects {
            while tasks.len() >= RENAME_CONCURRENCY {
                kept.extend(join(&mut tasks).await?);
            }
            // Encrypted names are bound to their parents: every name below is re-encrypted.
            let to = self.layout.moved(src, dst, &o.key);
            keys.push(o.key.clone());
            let (store, meta) = (store.clone(), self.meta.clone());
            let defaults = self.cfg.defaults.clone();
            tasks.spawn(async move {
                let etag =
                    copy_keep_meta(&*store, &meta, &defaults, &o.key, &to, part_size).await?;
                if !one_by_one {
                    return Ok(None);
                }
                match store.delete_if(&o.key, &Expect::Version(etag)).await {
                    Ok(()) => Ok(None),
                    Err(store::StoreError::PreconditionFailed(_)) => Ok(Some(o.key)),
                    Err(e) => Err(e.into()),
                }
            });
        }
        while !tasks.is_empty() {
            kept.extend(join(&mut tasks).await?);
        }
        if !one_by_one {
            store::delete_all(&*self.store, &keys).await?;
        }
        if !kept.is_empty() {
            tracing::warn!(
                from = src,
                to = dst,
                changed = ?kept,
                "directory rename: these objects changed on the server while they were being \
                 copied; the changed versions stay under the old name"
            );
            return Err(FsError::Busy(format!(
                "{src}: {} file(s) changed by another writer during the rename stay under the \
                 old name",
                kept.len()
            )));
        }
        Ok(())
    }

    pub fn statfs(&self) -> StatFs {
        StatFs::default()
    }
}

/// The next finished copy: the key it had to leave in place (changed meanwhile), if any.
async fn join(tasks: &mut tokio::task::JoinSet<Result<Option<String>>>) -> Result<Option<String>> {
    match tasks.join_next().await {
        Some(res) => res.map_err(store::StoreError::from)?,
        None => Ok(None),
    }
}

/// `obj`'s metadata for a copy of it at `to`: its sealed attributes (which must open) resealed
/// for the new key, plain metadata as it is; with `ctime` (a rename's time, as on a local
/// filesystem) that time replaces the stored ctime.
pub(super) fn resealed(
    meta: &MetaCodec,
    obj: &ObjectMeta,
    to: &str,
    d: &Defaults,
    ctime: Option<SystemTime>,
) -> Result<UserMeta> {
    if !meta.is_sealed() {
        let mut m = obj.user.clone();
        if let Some(t) = ctime {
            m.insert("ctime".into(), meta::format_time(t));
        }
        return Ok(m);
    }
    let marker = obj.key.ends_with('/');
    let decoded = meta
        .decode(obj, marker, 0, d)
        .map_err(|error| FsError::BadAttrs {
            key: obj.key.clone(),
            error,
        })?;
    let attr = Attr {
        ctime: ctime.unwrap_or(decoded.attr.ctime),
        ..decoded.attr
    };
    let id = meta::id_bytes(decoded.file_id.as_deref());
    Ok(meta.encode(to, &attr, id, Some(&obj.user)))
}

/// Copy `from` to `to` with its metadata (resealed for `to` when sealed). An object whose
/// sealed attributes do not open (not this prefix's) is copied as it is: it stays as
/// unreadable under its new name as under its old one. Returns the source version copied.
async fn copy_keep_meta(
    s: &dyn ObjectStore,
    meta: &MetaCodec,
    d: &Defaults,
    from: &str,
    to: &str,
    part: u64,
) -> Result<String> {
    let obj = s
        .head(from)
        .await?
        .ok_or_else(|| store::StoreError::NotFound(from.to_string()))?;
    let m = resealed(meta, &obj, to, d, None).unwrap_or_else(|_| obj.user.clone());
    store::copy_any_size(s, &obj, to, &m, part, &Expect::Anything).await?;
    Ok(obj.etag)
}

/// What statfs reports: S3 has no capacity, so a large fixed size that tools (df, installers
/// checking free space) accept.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

impl Default for StatFs {
    fn default() -> Self {
        const BSIZE: u64 = 4096;
        // 1 PiB.
        let blocks = (1u64 << 50) / BSIZE;
        Self {
            blocks,
            bfree: blocks,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: BSIZE as u32,
            namelen: 255,
        }
    }
}
