//! The open-file table: handles by number (`Fh`), the state all handles of one inode share
//! (`OpenFile`, by `Ino`), and the listings directory handles read from. One small lock each,
//! never held across an await; `OpenFile` itself is behind an async mutex.
//!
//! Invariants:
//! - Every handle of an inode points at the same `OpenFile` (so two descriptors of a file see
//!   each other's writes, as POSIX requires); it is in `files` from the first open until the
//!   last release tears it down (`FileState::Closed`) under its own lock.
//! - Handle numbers are never reused within a mount.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;

use super::{DirEntry, Fh, FsError, Ino, Result};
use crate::crypto::codec::FileCodec;
use crate::inode::Attr;
use crate::read::{Reader, Version};
use crate::write::Writer;

/// Where an open file stands beyond its data (whose upload state is the writer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    /// The stored attributes are current (or go up with the data at the next upload).
    Clean,
    /// Attributes changed (chmod, utimens...) and not yet stored: the next flush stores them.
    MetaDirty,
    /// Unlinked or replaced while open: still usable through its handles, never uploaded.
    Unlinked,
    /// The last handle was released and the state torn down; an open that finds it retries
    /// with a fresh one.
    Closed,
}

pub(super) struct OpenFile {
    pub writer: Option<Writer>,
    /// The object version reads come from when nothing is pending.
    pub version: Option<Version>,
    pub attr: Attr,
    pub state: FileState,
    pub handles: usize,
    /// The file id the object's metadata names (client mode): a header with another id means
    /// the body was swapped in from another object.
    pub expect_id: Option<String>,
    /// How this file's bytes map to its object (loaded from the object's header on first use
    /// in client mode).
    pub codec: Option<FileCodec>,
    /// Once unlinked while open: the private key (`Layout::unlinked_key`) its object lives
    /// under and its uploads go to, deleted at the last release.
    pub detached: Option<String>,
}

impl OpenFile {
    pub fn new(attr: Attr, version: Option<Version>, writer: Option<Writer>) -> Self {
        Self {
            writer,
            version,
            attr,
            state: FileState::Clean,
            handles: 0,
            codec: None,
            expect_id: None,
            detached: None,
        }
    }

    /// Attributes as the application sees them (the writer's size).
    pub fn current_attr(&self) -> Attr {
        let mut a = self.attr.clone();
        if let Some(w) = &self.writer {
            a.size = w.size();
        }
        a
    }

    /// The data changed at `now`: mtime and ctime follow.
    pub fn touch(&mut self, now: std::time::SystemTime) {
        self.attr.mtime = now;
        self.attr.ctime = now;
    }

    pub fn is_closed(&self) -> bool {
        self.state == FileState::Closed
    }

    pub fn is_unlinked(&self) -> bool {
        self.state == FileState::Unlinked
    }

    pub fn meta_dirty(&self) -> bool {
        self.state == FileState::MetaDirty
    }

    /// Attributes changed: store them at the next flush (unless the file is gone).
    pub fn mark_meta_dirty(&mut self) {
        if self.state == FileState::Clean {
            self.state = FileState::MetaDirty;
        }
    }

    /// The stored attributes are current again.
    pub fn meta_stored(&mut self) {
        if self.state == FileState::MetaDirty {
            self.state = FileState::Clean;
        }
    }

    /// The name is gone (unlink, or replaced by a rename or create): never upload.
    pub fn mark_unlinked(&mut self) {
        if self.state != FileState::Closed {
            self.state = FileState::Unlinked;
        }
    }

    pub fn mark_closed(&mut self) {
        self.state = FileState::Closed;
    }
}

pub(super) struct Handle {
    pub ino: Ino,
    pub file: Arc<AsyncMutex<OpenFile>>,
    pub reader: AsyncMutex<Reader>,
    pub writable: bool,
    /// The process that opened the handle: only its close uploads (see `Fs::flush`).
    pub opener: u32,
}

pub(super) type SharedFile = Arc<AsyncMutex<OpenFile>>;

#[derive(Default)]
pub(super) struct OpenTable {
    files: Mutex<HashMap<Ino, SharedFile>>,
    handles: Mutex<HashMap<Fh, Arc<Handle>>>,
    /// Directory handles: the listing a reader started at offset 0.
    dirs: Mutex<HashMap<Fh, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
}

impl OpenTable {
    pub fn new() -> Self {
        Self {
            next_fh: AtomicU64::new(1),
            ..Default::default()
        }
    }

    pub fn new_fh(&self) -> Fh {
        Fh(self.next_fh.fetch_add(1, Ordering::Relaxed))
    }

    /// The shared state of `ino` if it is open.
    pub fn file(&self, ino: Ino) -> Option<SharedFile> {
        self.files.lock().get(&ino).cloned()
    }

    pub fn is_open(&self, ino: Ino) -> bool {
        self.files.lock().contains_key(&ino)
    }

    pub fn open_inos(&self) -> Vec<Ino> {
        self.files.lock().keys().copied().collect()
    }

    /// `file` as `ino`'s shared state, unless another open got there first (then that one).
    pub fn file_or_insert(&self, ino: Ino, file: SharedFile) -> SharedFile {
        self.files.lock().entry(ino).or_insert(file).clone()
    }

    /// `file` as `ino`'s shared state, returning the one it replaces (a create over a name
    /// whose old inode is still open).
    pub fn replace_file(&self, ino: Ino, file: SharedFile) -> Option<SharedFile> {
        self.files.lock().insert(ino, file)
    }

    pub fn remove_file(&self, ino: Ino) {
        self.files.lock().remove(&ino);
    }

    /// Register `handle` under a new number.
    pub fn add_handle(&self, handle: Handle) -> Fh {
        let fh = self.new_fh();
        self.handles.lock().insert(fh, Arc::new(handle));
        fh
    }

    pub fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    pub fn take_handle(&self, fh: Fh) -> Option<Arc<Handle>> {
        self.handles.lock().remove(&fh)
    }

    pub fn listing(&self, fh: Fh) -> Option<Arc<Vec<DirEntry>>> {
        self.dirs.lock().get(&fh).cloned()
    }

    pub fn keep_listing(&self, fh: Fh, list: Arc<Vec<DirEntry>>) {
        self.dirs.lock().insert(fh, list);
    }

    pub fn drop_listing(&self, fh: Fh) {
        self.dirs.lock().remove(&fh);
    }
}
