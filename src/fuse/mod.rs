//! The FUSE adapter: the only module that touches `fuser`. Each callback hands its arguments to
//! the async filesystem on the tokio runtime and replies from there, so a slow S3 request never
//! blocks the kernel's other requests. Errors become errnos through `FsError::errno`, the one
//! errno table.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags as FuseRenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::{Caller, Fh, Fs, FsError, Ino, RenameFlags, SetAttr, SetMode};
use crate::inode::{Attr, Kind};

mod session;
pub use session::{mount, MountOptions, Mounted, Unmounter};

/// Largest write the kernel may send in one request (its own ceiling is 1 MiB); large writes
/// mean fewer round trips through FUSE.
const MAX_WRITE: u32 = 1024 * 1024;

pub struct FuseFs {
    fs: Arc<Fs>,
    rt: Handle,
    ttl: Duration,
    /// Extended attributes are stored (`FsConfig::xattrs`); if not, ENOSYS tells the kernel to
    /// stop asking.
    xattrs: bool,
}

impl FuseFs {
    pub fn new(fs: Arc<Fs>, rt: Handle) -> Self {
        let ttl = fs.config().metadata_ttl;
        let xattrs = fs.config().xattrs;
        Self {
            fs,
            rt,
            ttl,
            xattrs,
        }
    }

    /// Run `f`, which owns the reply: first here, on the FUSE thread, and only if it must
    /// wait (for S3, a lock, another task) on the runtime. Most requests (a create, a write
    /// into the staging buffer, a read the cache holds) finish in that first poll; handing
    /// each to a runtime worker cost a thread wake-up per request, about a tenth of a
    /// millisecond on a busy machine, which `cp -r` of small files pays several times per file.
    /// The first poll uses a no-op waker: a future left pending is polled again by the
    /// runtime, which registers its own (every future must accept a new waker per poll).
    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<Fs>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut fut = Box::pin(f(self.fs.clone()));
        let _runtime = self.rt.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        match polled {
            Ok(std::task::Poll::Ready(())) => {}
            Ok(std::task::Poll::Pending) => drop(self.rt.spawn(fut)),
            // As a task's panic would: the reply, dropped, answers EIO; the mount stays up.
            Err(_) => tracing::error!("a request handler panicked"),
        }
    }
}

fn errno(op: &str, e: &FsError) -> Errno {
    if e.is_auth_failure() {
        crate::metrics::global().auth_failures.inc();
    }
    if !e.is_expected() {
        tracing::warn!(op, error = %e, "operation failed");
    }
    Errno::from_i32(e.errno())
}

fn entry_reply(reply: ReplyEntry, ttl: Duration, res: Result<crate::fs::Entry, FsError>) {
    match res {
        Ok(e) => reply.entry(&ttl, &file_attr(e.ino, &e.attr), Generation(0)),
        Err(FsError::NotFound) => {
            // A negative entry: the kernel remembers the miss for the TTL.
            let a = file_attr(Ino(0), &empty_attr());
            reply.entry(&ttl, &a, Generation(0))
        }
        Err(e) => reply.error(errno("lookup", &e)),
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(ino: Ino, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino.0),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        // The preferred I/O size (st_blksize): cp, cat and stdio size their buffers by it.
        // At 4 KiB, cp wrote in 128 KiB calls, each one FUSE round trip (8,192 per GiB);
        // at MAX_WRITE each call fills one FUSE request.
        blksize: MAX_WRITE,
        flags: 0,
    }
}

fn name_str(name: &OsStr) -> Result<String, Errno> {
    name.to_str()
        .map(str::to_string)
        .ok_or(Errno::from_i32(libc::EINVAL))
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        let fs = self.fs.clone();
        let failed = self.rt.block_on(async move { fs.flush_all().await });
        if failed > 0 {
            tracing::error!(failed, "files could not be uploaded at unmount");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let ttl = self.ttl;
        // Most lookups of a listed directory's entries are answered from memory: without the
        // hop to the runtime, `ls -l` of 10,000 files saves a few hundred milliseconds.
        if let Some(res) = self.fs.lookup_cached(Ino(parent.0), &name) {
            return entry_reply(reply, ttl, res);
        }
        self.spawn(move |fs| async move {
            entry_reply(reply, ttl, fs.lookup(Ino(parent.0), &name).await);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.ttl;
        self.spawn(move |fs| async move {
            match fs.getattr(Ino(ino.0)).await {
                Ok(a) => reply.attr(&ttl, &file_attr(Ino(ino.0), &a)),
                Err(e) => reply.error(errno("getattr", &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            mtime: mtime.map(time),
            xattrs: None,
        };
        let ttl = self.ttl;
        self.spawn(move |fs| async move {
            match fs.setattr(Ino(ino.0), fh.map(|f| Fh(f.0)), set).await {
                Ok(a) => reply.attr(&ttl, &file_attr(Ino(ino.0), &a)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(move |fs| async move {
            match fs.readlink(Ino(ino.0)).await {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(errno("readlink", &e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (who, ttl) = (caller(req), self.ttl);
        self.spawn(move |fs| async move {
            match fs.mkdir(Ino(parent.0), &name, mode, who).await {
                Ok(e) => reply.entry(&ttl, &file_attr(e.ino, &e.attr), Generation(0)),
                Err(e) => reply.error(errno("mkdir", &e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(move |fs| async move {
            match fs.unlink(Ino(parent.0), &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(move |fs| async move {
            match fs.rmdir(Ino(parent.0), &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", &e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // S3 objects have one name each; link(2) says EPERM for filesystems without links.
        reply.error(Errno::from_i32(libc::EPERM));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (who, ttl) = (caller(req), self.ttl);
        self.spawn(move |fs| async move {
            match fs.mknod(Ino(parent.0), &name, mode, rdev, who).await {
                Ok(e) => reply.entry(&ttl, &file_attr(e.ino, &e.attr), Generation(0)),
                Err(e) => reply.error(errno("mknod", &e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target) = match (name_str(link_name), name_str(target.as_os_str())) {
            (Ok(n), Ok(t)) => (n, t),
            _ => return reply.error(Errno::from_i32(libc::EINVAL)),
        };
        let (who, ttl) = (caller(req), self.ttl);
        self.spawn(move |fs| async move {
            match fs.symlink(Ino(parent.0), &name, &target, who).await {
                Ok(e) => reply.entry(&ttl, &file_attr(e.ino, &e.attr), Generation(0)),
                Err(e) => reply.error(errno("symlink", &e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: FuseRenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::from_i32(libc::EINVAL)),
        };
        let flags = RenameFlags {
            noreplace: flags.contains(FuseRenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(FuseRenameFlags::RENAME_EXCHANGE),
            whiteout: flags.contains(FuseRenameFlags::RENAME_WHITEOUT),
        };
        self.spawn(move |fs| async move {
            match fs
                .rename(Ino(parent.0), &name, Ino(newparent.0), &newname, flags)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", &e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let pid = req.pid();
        self.spawn(move |fs| async move {
            match fs.open_keep(Ino(ino.0), flags.0, pid).await {
                Ok((fh, keep)) => reply.opened(
                    FileHandle(fh.0),
                    if keep {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    },
                ),
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(move |fs| async move {
            match fs.read(Fh(fh.0), offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(move |fs| async move {
            match fs.write(Fh(fh.0), offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            // Holes, zeroed and collapsed ranges have no S3 counterpart.
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        self.spawn(move |fs| async move {
            match fs.fallocate(Fh(fh.0), offset, length, keep_size).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fallocate", &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = req.pid();
        self.spawn(move |fs| async move {
            match fs.flush(Fh(fh.0), pid).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("flush", &e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| async move {
            fs.release(Fh(fh.0)).await;
            reply.ok();
        });
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        self.spawn(move |fs| async move {
            match fs.fsync(Fh(fh.0)).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsync", &e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(
            FileHandle(self.fs.opendir(Ino(ino.0)).0),
            FopenFlags::empty(),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(move |fs| async move {
            match fs.readdir(Ino(ino.0), Fh(fh.0), offset).await {
                Ok(list) => {
                    for (i, e) in list.iter().enumerate().skip(offset as usize) {
                        // The offset given with an entry is where the next read resumes.
                        if reply.add(INodeNo(e.ino.0), i as u64 + 1, kind(e.kind), &e.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno("readdir", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(Fh(fh.0));
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        // Directory operations are synchronous with S3 already.
        reply.ok();
    }

    // Extended attributes: `user.` names are stored with the object (`fs::xattr`). Other
    // namespaces are answered here, without a hop to the runtime: the kernel asks for
    // `security.capability` before every write and `ls` for ACLs and labels of every file.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(libc::ENOSYS));
        }
        let name = match name_str(name) {
            Ok(n) if crate::fs::xattr_supported(&n) => n,
            Ok(_) => return reply.error(Errno::from_i32(libc::ENODATA)),
            Err(e) => return reply.error(e),
        };
        self.spawn(move |fs| async move {
            match fs.getxattr(Ino(ino.0), &name).await {
                Ok(v) => sized_reply(reply, size, &v),
                Err(e) => reply.error(errno("getxattr", &e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(libc::ENOSYS));
        }
        self.spawn(move |fs| async move {
            match fs.listxattr(Ino(ino.0)).await {
                Ok(v) => sized_reply(reply, size, &v),
                Err(e) => reply.error(errno("listxattr", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(libc::ENOSYS));
        }
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let how = if flags & libc::XATTR_CREATE != 0 {
            SetMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            SetMode::Replace
        } else {
            SetMode::Any
        };
        let value = value.to_vec();
        self.spawn(move |fs| async move {
            match fs.setxattr(Ino(ino.0), &name, &value, how).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("setxattr", &e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(libc::ENOSYS));
        }
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(move |fs| async move {
            match fs.removexattr(Ino(ino.0), &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("removexattr", &e)),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (who, ttl) = (caller(req), self.ttl);
        self.spawn(move |fs| async move {
            match fs.create(Ino(parent.0), &name, mode, flags, who).await {
                Ok((e, fh)) => reply.created(
                    &ttl,
                    &file_attr(e.ino, &e.attr),
                    Generation(0),
                    FileHandle(fh.0),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno("create", &e)),
            }
        });
    }
}

/// getxattr/listxattr's reply: the size when asked for it (`size` 0), the bytes when they
/// fit, ERANGE when they do not.
fn sized_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

fn empty_attr() -> Attr {
    Attr::new(Kind::File, 0, 0, 0, UNIX_EPOCH)
}
