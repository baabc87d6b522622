//! Open files: handles, reads, writes, flush/fsync/close.
//!
//! All handles of one inode share one `OpenFile` (so two descriptors of a file see each other's
//! writes, as POSIX requires); each handle has its own readahead state. The shared state is
//! created by the first open and torn down by the last release, which uploads what is pending.
//!
//! Errors of an upload reach the application on `close` (flush) or `fsync`; after a failure the
//! file's writer stays failed, so every later write, flush and fsync on it reports EIO too.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Mutex as AsyncMutex;

use super::handles::{Handle, OpenFile};
use super::{libc_flags, Fh, Fs, FsError, Ino, Result, SetAttr};
use crate::crypto::codec::FileCodec;
use crate::inode::{Attr, Kind};
use crate::meta;
use crate::read::{Reader, Version};
use crate::store::{self, Expect, ObjectMeta};
use crate::write::{Base, WriteError, Writer};

/// Client-mode objects up to this size are read whole when opened (header and blocks).
const SMALL_OBJECT: u64 = 256 * 1024;

impl Fs {
    /// Metadata to store with `of`'s object at `key`: attributes, and in client mode the
    /// file id.
    fn write_meta(&self, key: &str, of: &OpenFile) -> crate::store::UserMeta {
        let id = meta::file_id_of(of.codec.as_ref());
        self.meta.encode(key, &of.attr, id, None)
    }

    pub(super) async fn open_attr(&self, ino: Ino) -> Option<Attr> {
        let file = self.open.file(ino)?;
        let of = file.lock().await;
        (!of.is_closed()).then(|| of.current_attr())
    }

    fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.open.handle(fh)
    }

    pub(super) fn new_writer(&self, version: Option<&Version>, codec: FileCodec) -> Writer {
        let base = version.map(|v| Base {
            key: v.key.clone(),
            etag: v.etag.clone(),
            size: v.size,
        });
        Writer::new(self.store.clone(), self.cfg.write.clone(), base, codec)
            .with_pool(self.parts.clone())
    }

    /// Codec for a new file in this mount's mode.
    pub(super) fn new_codec(&self) -> FileCodec {
        match &self.cfg.keys {
            Some(ring) => ring.new_file(),
            None => FileCodec::Plain,
        }
    }

    /// The codec of an open file: plain, or (client mode) read from its object's header, whose
    /// key commitment is checked here, before any block is used.
    async fn file_codec(&self, of: &mut OpenFile) -> Result<FileCodec> {
        if let Some(c) = &of.codec {
            return Ok(c.clone());
        }
        let codec = match (&self.cfg.keys, &of.version) {
            (None, _) => FileCodec::Plain,
            (Some(_), None) => self.new_codec(),
            (Some(ring), Some(v)) => {
                let opened = self
                    .fetcher
                    .open(ring, v, of.expect_id.as_deref(), SMALL_OBJECT)
                    .await?;
                if let Some(blocks) = opened.blocks {
                    self.fetcher.seed(v, blocks);
                }
                opened.codec
            }
        };
        of.codec = Some(codec.clone());
        Ok(codec)
    }

    /// Make sure `of` has a writer (over its current version, with its own codec).
    async fn ensure_writer(&self, of: &mut OpenFile) -> Result<()> {
        if of.writer.is_none() {
            let codec = self.file_codec(of).await?;
            of.writer = Some(self.new_writer(of.version.as_ref(), codec));
        }
        Ok(())
    }

    /// Where an open inode's object goes: its name's key, or once unlinked its private key
    /// (`OpenFile::detached`).
    fn key_of(&self, ino: Ino, of: &OpenFile) -> String {
        if let Some(k) = &of.detached {
            return k.clone();
        }
        self.path(ino)
            .map(|p| self.layout.file_key(&p))
            .unwrap_or_default()
    }

    /// Register a handle on `file` (which must already be in `files`).
    pub(super) fn add_handle(
        &self,
        ino: Ino,
        file: Arc<AsyncMutex<OpenFile>>,
        writable: bool,
        opener: u32,
    ) -> Fh {
        let fh = self.open.add_handle(Handle {
            ino,
            file,
            reader: AsyncMutex::new(Reader::new(&self.cfg.read)),
            writable,
            opener,
        });
        self.inodes.lock().open(ino);
        fh
    }

    /// The shared state of `ino`, loading (and revalidating) it when nobody has it open.
    async fn load_open_file(&self, ino: Ino) -> Result<Arc<AsyncMutex<OpenFile>>> {
        if let Some(f) = self.open.file(ino) {
            return Ok(f);
        }
        let path = self.path(ino)?;
        let key = self.layout.file_key(&path);
        let cached = self.known.fresh_version(ino, self.cfg.metadata_ttl);
        let (attr, etag) = match cached {
            Some(c) => c,
            None => {
                let obj = self.store.head(&key).await?.ok_or(FsError::NotFound)?;
                let attr = self.object_attr(&obj)?;
                self.cache_object(ino, &obj)?;
                self.cache_attr(ino, &attr, Some(obj.etag.clone()));
                (attr, obj.etag)
            }
        };
        let expect_id = self.known.file_id(ino);
        if attr.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let version = Version {
            key,
            etag,
            size: attr.size,
        };
        let mut of = OpenFile::new(attr, Some(version), None);
        of.expect_id = expect_id;
        let file = Arc::new(AsyncMutex::new(of));
        Ok(self.open.file_or_insert(ino, file))
    }

    pub async fn open(&self, ino: Ino, flags: i32, pid: u32) -> Result<Fh> {
        Ok(self.open_keep(ino, flags, pid).await?.0)
    }

    /// `open`, also saying whether the kernel may keep the file's cached pages: only when
    /// this is the version it cached them from (an unchanged object, no writer here).
    pub async fn open_keep(&self, ino: Ino, flags: i32, pid: u32) -> Result<(Fh, bool)> {
        let writable = flags & libc_flags::O_ACCMODE != libc_flags::O_RDONLY;
        if writable || flags & libc_flags::O_TRUNC != 0 {
            self.check_writable()?;
        }
        loop {
            let file = self.load_open_file(ino).await?;
            let mut of = file.lock().await;
            if of.is_closed() {
                continue;
            }
            if writable && flags & libc_flags::O_TRUNC != 0 {
                let key = self.key_of(ino, &of);
                if of.writer.is_none() {
                    // Nothing of the old object survives, so new keys (and a foreign object
                    // in a client prefix can be overwritten).
                    let codec = self.new_codec();
                    of.codec = Some(codec.clone());
                    of.writer = Some(self.new_writer(of.version.as_ref(), codec));
                }
                of.touch(SystemTime::now());
                let m = self.write_meta(&key, &of);
                let w = of.writer.as_mut().expect("set above");
                if let Err(e) = w.truncate(&key, &m, 0).await {
                    return Err(self.write_failed(ino, &mut of, e).await);
                }
                of.attr.size = 0;
            }
            // The kernel never reads an empty file (it knows the size): its one block is
            // authenticated here, so a forged empty object fails at open.
            let empty = of.version.as_ref().is_some_and(|v| v.size == 0);
            if empty && of.writer.is_none() && self.cfg.keys.is_some() {
                self.file_codec(&mut of).await?;
            }
            of.handles += 1;
            let current = match (&of.writer, &of.version) {
                (None, Some(v)) => Some(v.etag.clone()),
                _ => None,
            };
            drop(of);
            let keep = self.known.keep_page_cache(ino, current);
            return Ok((self.add_handle(ino, file, writable, pid), keep));
        }
    }

    pub async fn read(&self, fh: Fh, offset: u64, len: u32) -> Result<Bytes> {
        let h = self.handle(fh)?;
        let mut of = h.file.lock().await;
        if of.writer.as_ref().is_some_and(|w| w.is_pending()) {
            let key = self.key_of(h.ino, &of);
            let m = self.write_meta(&key, &of);
            let w = of.writer.as_mut().expect("checked above");
            return match w.read(&key, &m, offset, u64::from(len)).await {
                Ok(b) => Ok(b),
                Err(e) => Err(self.write_failed(h.ino, &mut of, e).await),
            };
        }
        let version = of.version.clone().ok_or(FsError::BadHandle)?;
        // The codec first, even at the end of the file: opening an empty object authenticates
        // its one block, which no read would otherwise touch.
        let codec = self.file_codec(&mut of).await?;
        drop(of);
        if offset >= version.size {
            return Ok(Bytes::new());
        }
        let mut reader = h.reader.lock().await;
        Ok(reader
            .read(&self.fetcher, &version, &codec, offset, u64::from(len))
            .await?)
    }

    pub async fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let mut of = h.file.lock().await;
        self.ensure_writer(&mut of).await?;
        of.touch(SystemTime::now());
        let key = self.key_of(h.ino, &of);
        let m = self.write_meta(&key, &of);
        let w = of.writer.as_mut().expect("set above");
        if let Err(e) = w.write(&key, &m, offset, data).await {
            return Err(self.write_failed(h.ino, &mut of, e).await);
        }
        of.attr.size = of.writer.as_ref().map_or(of.attr.size, |w| w.size());
        Ok(data.len() as u32)
    }

    /// fallocate(2): S3 objects have no preallocated space, so mode 0 (and
    /// `FALLOC_FL_KEEP_SIZE`) only makes sure the range fits (EFBIG if it cannot) and, for
    /// mode 0, extends the file to cover it (the zeros go up with the next upload). Punching
    /// holes, zeroing, collapsing and inserting ranges are `EOPNOTSUPP`, as on filesystems
    /// without them.
    pub async fn fallocate(&self, fh: Fh, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let end = offset.saturating_add(len);
        self.cfg.write.check_size(end)?;
        let size = self.open_attr(h.ino).await.map_or(0, |a| a.size);
        if keep_size || end <= size {
            return Ok(());
        }
        let set = SetAttr {
            size: Some(end),
            ..Default::default()
        };
        self.setattr_open(h.ino, Some(fh), &set).await?;
        Ok(())
    }

    /// close(2) of one descriptor: upload what is pending, report its outcome.
    /// close(2) of a descriptor: uploads, so that close reports a failed upload, when the
    /// closing process is the one that opened the handle. Closes by other processes (a forked
    /// child's copy of the descriptor, closed at exec or exit) upload nothing: they would make
    /// a partial file visible, and the upload completes at the opener's close or at release.
    pub async fn flush(&self, fh: Fh, pid: u32) -> Result<()> {
        let h = self.handle(fh)?;
        if pid != h.opener {
            tracing::debug!(
                ino = %h.ino,
                pid,
                opener = h.opener,
                "close by another process: no upload"
            );
            return Ok(());
        }
        self.flush_ino(h.ino).await
    }

    pub async fn fsync(&self, fh: Fh) -> Result<()> {
        let h = self.handle(fh)?;
        self.flush_ino(h.ino).await
    }

    pub(super) async fn flush_ino(&self, ino: Ino) -> Result<()> {
        let Some(file) = self.open.file(ino) else {
            return Ok(());
        };
        let mut of = file.lock().await;
        self.flush_locked(ino, &mut of).await
    }

    /// Upload what `of` has pending. Runs under the file's lock, so nothing can slip in
    /// between this flush and whatever the caller does next (release tears down under the
    /// same lock, or a chmod racing with an asynchronous release would be lost).
    pub(super) async fn flush_locked(&self, ino: Ino, of: &mut OpenFile) -> Result<()> {
        // An unlinked file has nothing to publish: its bytes stay with its writer (and its
        // private object) until the last release.
        if of.is_unlinked() {
            return Ok(());
        }
        let path = self.path(ino);
        if path.is_err() {
            if let Some(w) = of.writer.as_mut() {
                w.abort().await;
            }
            of.writer = None;
            return Ok(());
        }
        let key = self.layout.file_key(&path.expect("checked above"));
        if of.meta_dirty() && of.version.is_some() {
            // A metadata-only update must keep the object's file id.
            self.file_codec(of).await?;
        }
        let m = self.write_meta(&key, of);
        let checkpoint = match of.writer.as_mut() {
            Some(w) => w.checkpoint(&key, &m).await,
            None => Ok(None),
        };
        let stored = match checkpoint {
            Err(WriteError::Conflict(lost)) => Some(self.keep_both_open(ino, of, *lost).await?),
            other => other?,
        };
        if let Some(base) = stored {
            self.stored(ino, of, base);
        }
        if of.meta_dirty() {
            let v = of.version.clone().ok_or(FsError::NotFound)?;
            let src = ObjectMeta {
                key: v.key.clone(),
                size: self.object_size(v.size),
                etag: v.etag.clone(),
                last_modified: SystemTime::now(),
                user: m.clone(),
                sse: None,
                sse_c_key_md5: None,
                content_type: None,
            };
            tracing::debug!(key, ?m, "metadata update of an open file");
            let expected = match v.key == key {
                true => self.expect(Expect::Version(v.etag.clone())),
                false => Expect::Anything,
            };
            let part = self.cfg.write.part_size;
            let etag = store::copy_any_size(&*self.store, &src, &key, &m, part, &expected).await?;
            of.version = Some(Version {
                key,
                etag: etag.clone(),
                ..v
            });
            of.meta_stored();
            let attr = of.current_attr();
            self.ino_changed(ino);
            self.cache_attr(ino, &attr, Some(etag));
        }
        Ok(())
    }

    /// `of`'s writer made `base` the object at its name: reads come from it now.
    pub(super) fn stored(&self, ino: Ino, of: &mut OpenFile, base: Base) {
        of.version = Some(Version {
            key: base.key,
            etag: base.etag.clone(),
            size: base.size,
        });
        of.meta_stored();
        of.expect_id = meta::id_hex(meta::file_id_of(of.codec.as_ref()));
        let attr = of.current_attr();
        self.inodes.lock().set_pending(ino, false);
        self.known.set_file_id(ino, of.expect_id.clone());
        self.ino_changed(ino);
        self.cache_attr(ino, &attr, Some(base.etag));
    }

    /// The error of a writer call (write, read, truncate) made on behalf of the application.
    /// A conflict met by the checkpoint inside it is settled here (nothing lost, see
    /// `keep_both`) and reported as ESTALE: the call itself did not happen.
    pub(super) async fn write_failed(&self, ino: Ino, of: &mut OpenFile, e: WriteError) -> FsError {
        let WriteError::Conflict(lost) = e else {
            return e.into();
        };
        let key = lost.key.clone();
        match self.keep_both_open(ino, of, *lost).await {
            Ok(base) => {
                self.stored(ino, of, base);
                FsError::Stale(format!(
                    "{key}: changed by another writer; what was written before is stored"
                ))
            }
            Err(e) => e,
        }
    }

    /// `keep_both` for an open file: a writer whose bytes took the name is done (the next
    /// write starts a new one over the new version); one whose bytes went to a sibling stays
    /// failed, so every later call reports the conflict too.
    async fn keep_both_open(
        &self,
        ino: Ino,
        of: &mut OpenFile,
        lost: crate::write::Lost,
    ) -> Result<Base> {
        let base = self.keep_both(ino, of, lost).await?;
        of.writer = None;
        Ok(base)
    }

    /// The last close of a handle. Errors here cannot reach the application (close already
    /// returned), so they are logged; `flush` is where they are reported.
    pub async fn release(&self, fh: Fh) {
        let Some(h) = self.open.take_handle(fh) else {
            return;
        };
        let mut of = h.file.lock().await;
        of.handles -= 1;
        if of.handles == 0 && !of.is_closed() {
            if let Err(e) = self.flush_locked(h.ino, &mut of).await {
                tracing::error!(ino = %h.ino, error = %e, "upload at release failed");
            }
            let unlinked = of.is_unlinked();
            of.mark_closed();
            if let Some(w) = of.writer.as_mut() {
                if w.is_pending() || unlinked {
                    w.abort().await;
                }
            }
            if let Some(private) = of.detached.take() {
                // The last close of an unlinked file: its bytes go now.
                if let Err(e) = self.store.delete(&private).await {
                    tracing::warn!(key = %private, error = %e, "could not delete an unlinked file's object");
                }
            }
            self.open.remove_file(h.ino);
            let mut inodes = self.inodes.lock();
            // A new file whose upload failed does not exist: take it out of the namespace.
            let orphan = inodes
                .get(h.ino)
                .filter(|_| inodes.is_pending(h.ino))
                .map(|n| (n.parent, n.name.clone()));
            if let Some((parent, name)) = orphan {
                inodes.unlink(parent, &name);
            }
        }
        drop(of);
        self.inodes.lock().close(h.ino);
        self.forget_if_gone(h.ino);
    }

    /// setattr on an inode that is open: applied to the shared state, stored on flush.
    pub(super) async fn setattr_open(
        &self,
        ino: Ino,
        _fh: Option<Fh>,
        set: &SetAttr,
    ) -> Result<Option<Attr>> {
        let Some(file) = self.open.file(ino) else {
            return Ok(None);
        };
        let mut of = file.lock().await;
        if of.is_closed() {
            return Ok(None);
        }
        if let Some(size) = set.size {
            if size == 0 && of.writer.is_none() {
                // open(O_TRUNC) arrives as open + truncate to 0: as in `open_keep`, nothing of
                // the old object survives, so new keys and no read of its header (which
                // another host may have replaced since: that is the upload's business).
                let codec = self.new_codec();
                of.codec = Some(codec.clone());
                of.writer = Some(self.new_writer(of.version.as_ref(), codec));
            }
            self.ensure_writer(&mut of).await?;
            of.touch(SystemTime::now());
            let key = self.key_of(ino, &of);
            let m = self.write_meta(&key, &of);
            let w = of.writer.as_mut().expect("set above");
            if let Err(e) = w.truncate(&key, &m, size).await {
                return Err(self.write_failed(ino, &mut of, e).await);
            }
            of.attr.size = size;
        }
        let only_size = SetAttr {
            size: None,
            ..set.clone()
        };
        if only_size.perm.is_some()
            || only_size.uid.is_some()
            || only_size.gid.is_some()
            || only_size.mtime.is_some()
            || only_size.xattrs.is_some()
        {
            super::setattr::apply(&mut of.attr, &only_size);
            of.mark_meta_dirty();
            tracing::debug!(%ino, ?set, "attributes of an open file changed");
        }
        Ok(Some(of.current_attr()))
    }

    /// Upload pending data of every open file under directory `path` (before a rename moves
    /// their objects).
    pub(super) async fn flush_under(&self, path: &str) -> Result<()> {
        let inos = self.open.open_inos();
        let prefix = format!("{path}/");
        for ino in inos {
            let under = self.path(ino).is_ok_and(|p| p.starts_with(&prefix));
            if under {
                self.flush_ino(ino).await?;
            }
        }
        Ok(())
    }
}
