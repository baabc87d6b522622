//! Changing attributes (`setattr`: chmod, chown, utimens, truncate): on a file open here, in
//! its handle's state (uploaded at the next flush); otherwise a metadata update of the object
//! (a server-side copy onto itself, on the version just read, so another host's change since
//! is `ESTALE`, not undone), or, for a truncate, an open, truncate and close. The root has no
//! object: its changes last for the mount only.

use std::time::SystemTime;

use super::{libc_flags, Fh, Fs, FsError, Ino, Result, SetAttr};
use crate::inode::{Attr, Kind, ROOT_INO};
use crate::meta;

impl Fs {
    pub async fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        let attr = self.setattr_inner(ino, fh, set).await?;
        Ok(self.shown(ino, attr))
    }

    async fn setattr_inner(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Attr> {
        self.check_writable()?;
        if set.mtime.is_some() {
            // utimens of a directory: the times set win over its entries' last change.
            self.inodes.lock().entries_changed(ino, None);
        }
        if let Some(size) = set.size {
            // EFBIG before anything is opened or sent.
            self.cfg.write.check_size(size)?;
        }
        if ino == ROOT_INO {
            // The root has no object to hold attributes: changes last for this mount only.
            let mut root = self.root_attr.lock();
            apply(&mut root, &set);
            return Ok(root.clone());
        }
        if let Some(attr) = self.setattr_open(ino, fh, &set).await? {
            return Ok(attr);
        }
        let path = self.path(ino)?;
        let (mut attr, obj) = self.stat_path(&path).await?.ok_or(FsError::NotFound)?;
        if set.size.is_some() {
            if attr.kind != Kind::File {
                return Err(FsError::IsDir);
            }
            // truncate(2) on a file nobody has open: open it, truncate, close; on the version
            // just read (the upload replaces that one only, and in client mode a version
            // another host replaced since this mount's last look would be ESTALE).
            self.cache_attr(ino, &attr, obj.as_ref().map(|o| o.etag.clone()));
            let fh = self.open(ino, libc_flags::O_WRONLY, 0).await?;
            let res = self.setattr_open(ino, Some(fh), &set).await;
            let flushed = self.fsync(fh).await;
            self.release(fh).await;
            let attr = res?.ok_or(FsError::BadHandle)?;
            flushed?;
            return Ok(attr);
        }
        apply(&mut attr, &set);
        // Keep what else the object's metadata holds (its file id, other tools' keys).
        let file_id = match &obj {
            Some(o) if attr.kind != Kind::Dir => {
                meta::id_bytes(self.decode(o, false)?.file_id.as_deref())
            }
            _ => None,
        };
        match (attr.kind, obj) {
            (Kind::Dir, _) => {
                let marker = self.layout.dir_prefix(&path);
                // The marker's other metadata (another tool's keys) survives the rewrite.
                let old = self.store.head(&marker).await?.map(|o| o.user);
                let new_meta = self.meta.encode(&marker, &attr, None, old.as_ref());
                self.store
                    .put(&marker, bytes::Bytes::new(), &new_meta)
                    .await?;
            }
            (_, Some(obj)) => {
                let new_meta = self.meta.encode(&obj.key, &attr, file_id, Some(&obj.user));
                tracing::debug!(key = %obj.key, meta = ?new_meta, "metadata update of a closed file");
                // On the version just read: a change another host made since is not undone
                // (ESTALE, and the next try reads it afresh).
                let expected = self.expect_seen(Some(&obj));
                let part = self.cfg.write.part_size;
                let copied = crate::store::copy_any_size(
                    &*self.store,
                    &obj,
                    &obj.key,
                    &new_meta,
                    part,
                    &expected,
                )
                .await;
                self.ino_changed(ino);
                if copied.is_err() {
                    self.known.forget_version(ino);
                }
                let etag = copied?;
                self.cache_attr(ino, &attr, Some(etag));
                return Ok(attr);
            }
            (_, None) => return Err(FsError::NotFound),
        }
        self.cache_attr(ino, &attr, None);
        Ok(attr)
    }
}

/// `set`'s changes made to `attr`, which moves its ctime.
pub(super) fn apply(attr: &mut Attr, set: &SetAttr) {
    if let Some(p) = set.perm {
        attr.perm = p & 0o7777;
    }
    if let Some(u) = set.uid {
        attr.uid = u;
    }
    if let Some(g) = set.gid {
        attr.gid = g;
    }
    if let Some(s) = set.size {
        attr.size = s;
    }
    if let Some(m) = set.mtime {
        attr.mtime = m;
    }
    if let Some(x) = &set.xattrs {
        attr.xattrs = x.clone();
    }
    attr.ctime = SystemTime::now();
}
