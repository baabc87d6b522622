//! The inode table: kernel inode numbers <-> paths inside the mount, and directory listings.
//!
//! Each inode stores its parent and its name, not its full path, so renaming a directory moves
//! one entry and every descendant (and every open handle on one) follows it. Paths are computed
//! on demand by walking up to the root.
//!
//! Invariants:
//! - Inode 1 is the root; it is never forgotten.
//! - `children` maps (parent, name) to the inode currently linked there; an unlinked inode may
//!   live on (open handles) but is reachable by number only.
//! - An inode is dropped when the kernel forgets its last lookup reference and nothing else
//!   (an open file) pins it; numbers are never reused within a mount.
//! - `Link::Pending` marks a file created here whose object does not exist yet (it is
//!   uploaded on close): lookups and listings answer it from this table.
//! - The table holds the namespace and the kernel's references only; what is known about
//!   each inode's object (attributes, version) is cached apart (`fs::known`).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

/// A kernel inode number of this mount. Numbers are allocated here, never reused within a
/// mount; listed entries the kernel has not looked up get synthetic numbers (top bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl std::fmt::Display for Ino {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub const ROOT_INO: Ino = Ino(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Special files (mknod): an empty object whose metadata carries the type and, for
    /// devices, the device number. The kernel implements them; sealfs only stores them.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    /// The link count of an object of this kind before anything else is known: a
    /// directory's entry in its parent plus its own `.`, or a file's one name.
    pub fn links(self) -> u32 {
        if self == Kind::Dir {
            2
        } else {
            1
        }
    }
}

/// Attributes as the filesystem sees them (no FUSE types here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only (no file type bits).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Device number (character and block devices; 0 otherwise).
    pub rdev: u32,
    /// Hard links as `stat` reports them: 1 for a file (0 once unlinked while open), 2 plus
    /// the subdirectories this mount knows of for a directory.
    pub nlink: u32,
    /// Extended attributes (`user.` names), stored with the object's metadata.
    pub xattrs: Xattrs,
}

/// Extended attributes by name; shared, since attributes are cloned into every cache.
pub type Xattrs = std::sync::Arc<std::collections::BTreeMap<String, Vec<u8>>>;

impl Attr {
    /// Attributes of a new object of `kind`, changed `now`.
    pub fn new(kind: Kind, perm: u16, uid: u32, gid: u32, now: SystemTime) -> Self {
        Self {
            kind,
            size: 0,
            perm,
            uid,
            gid,
            mtime: now,
            ctime: now,
            rdev: 0,
            nlink: kind.links(),
            xattrs: Xattrs::default(),
        }
    }
}

/// Where an inode stands in the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Linked at (parent, name), and its object is (or was, at the last look) in the bucket.
    Stored,
    /// Linked, but created here and not uploaded yet: lookups and listings answer it from
    /// this table until its first upload.
    Pending,
    /// No longer reachable by name (unlinked, replaced); alive while referenced.
    Unlinked,
}

#[derive(Debug)]
pub struct Inode {
    pub parent: Ino,
    pub name: String,
    pub kind: Kind,
    /// The kernel's lookup references.
    pub lookups: u64,
    /// Open files pin an inode past its last forget.
    pub open_count: u64,
    pub link: Link,
    /// A directory's complete contents as of a listing (or its creation here), kept up to date
    /// with this mount's own changes, so that within the TTL a missing name costs no request.
    pub listing: Option<Listing>,
    /// When this mount last created, removed or renamed an entry of this directory: its
    /// mtime and ctime as `stat` shows them are at least this.
    pub entries_changed: Option<std::time::SystemTime>,
}

#[derive(Debug, Clone)]
pub struct Listing {
    pub at: Instant,
    pub names: HashMap<String, Kind>,
}

impl Inode {
    /// A linked inode with one lookup reference and nothing cached.
    fn new(parent: Ino, name: &str, kind: Kind) -> Self {
        Self {
            parent,
            name: name.to_string(),
            kind,
            lookups: 1,
            open_count: 0,
            link: Link::Stored,
            listing: None,
            entries_changed: None,
        }
    }
}

pub struct InodeTable {
    inodes: HashMap<Ino, Inode>,
    children: HashMap<Ino, BTreeMap<String, Ino>>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> Self {
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, Inode::new(ROOT_INO, "", Kind::Dir));
        Self {
            inodes,
            children: HashMap::new(),
            next: ROOT_INO.0 + 1,
        }
    }

    pub fn get(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino)
    }

    /// Path relative to the mount root ("" for the root), or `None` for an unknown or unlinked
    /// inode.
    pub fn path(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let node = self.inodes.get(&cur)?;
            if node.link == Link::Unlinked {
                return None;
            }
            parts.push(node.name.as_str());
            cur = node.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.children.get(&parent)?.get(name).copied()
    }

    /// Inodes linked under `parent` that exist only locally (created, not yet uploaded).
    pub fn pending_children(&self, parent: Ino) -> Vec<(String, Ino)> {
        self.children
            .get(&parent)
            .map(|m| {
                m.iter()
                    .filter(|(_, ino)| {
                        self.inodes
                            .get(ino)
                            .is_some_and(|i| i.link == Link::Pending)
                    })
                    .map(|(n, i)| (n.clone(), *i))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Link (or find) `name` under `parent` with `kind`, taking one lookup reference.
    /// A kind change (another writer replaced a file with a directory) makes a new inode.
    pub fn link(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        if let Some(ino) = self.child(parent, name) {
            let node = self
                .inodes
                .get_mut(&ino)
                .expect("child points to a live inode");
            if node.kind == kind {
                node.lookups += 1;
                return ino;
            }
            self.unlink(parent, name);
        }
        let ino = Ino(self.next);
        self.next += 1;
        self.inodes.insert(ino, Inode::new(parent, name, kind));
        self.children
            .entry(parent)
            .or_default()
            .insert(name.to_string(), ino);
        self.note(parent, name, Some(kind));
        ino
    }

    /// Keep `parent`'s listing (if any) in step with a name created (`Some`) or removed.
    fn note(&mut self, parent: Ino, name: &str, kind: Option<Kind>) {
        if let Some(l) = self
            .inodes
            .get_mut(&parent)
            .and_then(|p| p.listing.as_mut())
        {
            match kind {
                Some(k) => l.names.insert(name.to_string(), k),
                None => l.names.remove(name),
            };
        }
    }

    /// This mount created, removed or renamed an entry of directory `ino` at `now` (`None`:
    /// its times were just set explicitly, and those are what it shows).
    pub fn entries_changed(&mut self, ino: Ino, now: Option<std::time::SystemTime>) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.entries_changed = now;
        }
    }

    /// What this table adds to directory `ino`'s attributes: when this mount last changed its
    /// entries, and how many subdirectories its listing (of any age) holds.
    pub fn dir_shown(&self, ino: Ino) -> (Option<std::time::SystemTime>, Option<usize>) {
        let Some(n) = self.inodes.get(&ino) else {
            return (None, None);
        };
        let subdirs = n
            .listing
            .as_ref()
            .map(|l| l.names.values().filter(|k| **k == Kind::Dir).count());
        (n.entries_changed, subdirs)
    }

    /// Record the complete contents of directory `ino` (just listed, or just created empty).
    pub fn set_listing(&mut self, ino: Ino, names: HashMap<String, Kind>) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.listing = Some(Listing {
                at: Instant::now(),
                names,
            });
        }
    }

    /// What a listing of `parent` younger than `ttl` says of `name`: `Some(None)` when it is
    /// absent, `Some(Some(kind))` when present, `None` when there is no such listing.
    pub fn listed(
        &self,
        parent: Ino,
        name: &str,
        ttl: std::time::Duration,
    ) -> Option<Option<Kind>> {
        let l = self.inodes.get(&parent)?.listing.as_ref()?;
        (l.at.elapsed() < ttl).then(|| l.names.get(name).copied())
    }

    /// Whether `ino` is a pending file (created here, not uploaded yet).
    pub fn is_pending(&self, ino: Ino) -> bool {
        self.inodes
            .get(&ino)
            .is_some_and(|n| n.link == Link::Pending)
    }

    /// Mark `ino` pending (`true`: just created here) or stored (`false`: just uploaded).
    pub fn set_pending(&mut self, ino: Ino, pending: bool) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            if n.link != Link::Unlinked {
                n.link = if pending { Link::Pending } else { Link::Stored };
            }
        }
    }

    /// What a listing of `parent` younger than `ttl` says of `name` (as `listed`), and
    /// whether the listing (of any age) is small enough to take again instead of probing.
    pub fn listed_or_small(
        &self,
        parent: Ino,
        name: &str,
        ttl: std::time::Duration,
        small: usize,
    ) -> (Option<Option<Kind>>, bool) {
        let listed = self.listed(parent, name, ttl);
        let is_small = self.listing_len(parent).is_some_and(|n| n < small);
        (listed, is_small)
    }

    /// Entries in `parent`'s listing, whatever its age (to decide whether re-listing is cheap).
    pub fn listing_len(&self, parent: Ino) -> Option<usize> {
        Some(self.inodes.get(&parent)?.listing.as_ref()?.names.len())
    }

    /// Detach `name` from `parent`; the inode stays while referenced.
    pub fn unlink(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        self.note(parent, name, None);
        let ino = self.children.get_mut(&parent)?.remove(name)?;
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.link = Link::Unlinked;
        }
        self.maybe_drop(ino);
        Some(ino)
    }

    /// Move `ino` to `(new_parent, new_name)`, replacing whatever was linked there.
    pub fn rename(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        self.note(parent, name, None);
        let Some(ino) = self.children.get_mut(&parent).and_then(|m| m.remove(name)) else {
            // The moved entry's kind is unknown here: forget what the target directory held.
            if let Some(p) = self.inodes.get_mut(&new_parent) {
                p.listing = None;
            }
            return;
        };
        self.unlink(new_parent, new_name);
        let kind = self.inodes.get(&ino).map(|n| n.kind);
        self.note(new_parent, new_name, kind);
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.to_string();
        }
        self.children
            .entry(new_parent)
            .or_default()
            .insert(new_name.to_string(), ino);
    }

    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    pub fn open(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.open_count += 1;
        }
    }

    pub fn close(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.open_count = node.open_count.saturating_sub(1);
        }
        self.maybe_drop(ino);
    }

    fn maybe_drop(&mut self, ino: Ino) {
        let Some(node) = self.inodes.get(&ino) else {
            return;
        };
        if ino == ROOT_INO || node.lookups > 0 || node.open_count > 0 {
            return;
        }
        // A forgotten but still linked inode leaves the table entirely; the next lookup makes
        // a fresh one. Its children (if a directory) keep pointing at a dead parent number,
        // which is harmless: the kernel forgets children before their parent.
        if node.link != Link::Unlinked {
            let (parent, name) = (node.parent, node.name.clone());
            if let Some(m) = self.children.get_mut(&parent) {
                if m.get(&name) == Some(&ino) {
                    m.remove(&name);
                }
            }
        }
        self.inodes.remove(&ino);
        self.children.remove(&ino);
    }

    /// Inodes whose path lies under directory path `dir` (not `dir` itself).
    pub fn under(&self, dir: &str) -> Vec<Ino> {
        let prefix = format!("{dir}/");
        self.inodes
            .keys()
            .copied()
            .filter(|&i| self.path(i).is_some_and(|p| p.starts_with(&prefix)))
            .collect()
    }

    /// Number of live inodes (for tests and stats).
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_directory_renames() {
        let mut t = InodeTable::new();
        let a = t.link(ROOT_INO, "a", Kind::Dir);
        let b = t.link(a, "b", Kind::Dir);
        let f = t.link(b, "f", Kind::File);
        assert_eq!(t.path(f).unwrap(), "a/b/f");
        t.rename(ROOT_INO, "a", ROOT_INO, "z");
        assert_eq!(t.path(f).unwrap(), "z/b/f");
        assert_eq!(t.child(ROOT_INO, "a"), None);
    }

    #[test]
    fn unlinked_open_inode_survives_until_closed() {
        let mut t = InodeTable::new();
        let f = t.link(ROOT_INO, "f", Kind::File);
        t.open(f);
        t.unlink(ROOT_INO, "f");
        t.forget(f, 1);
        assert!(t.get(f).is_some());
        assert_eq!(t.path(f), None);
        t.close(f);
        assert!(t.get(f).is_none());
    }

    #[test]
    fn kind_change_makes_new_inode() {
        let mut t = InodeTable::new();
        let f = t.link(ROOT_INO, "x", Kind::File);
        let d = t.link(ROOT_INO, "x", Kind::Dir);
        assert_ne!(f, d);
        assert_eq!(t.child(ROOT_INO, "x"), Some(d));
    }

    #[test]
    fn forget_drops_unreferenced_inodes() {
        let mut t = InodeTable::new();
        let f = t.link(ROOT_INO, "f", Kind::File);
        t.link(ROOT_INO, "f", Kind::File);
        t.forget(f, 1);
        assert!(t.get(f).is_some());
        t.forget(f, 1);
        assert!(t.get(f).is_none());
        assert_eq!(t.child(ROOT_INO, "f"), None);
        assert_eq!(t.len(), 1);
    }
}
