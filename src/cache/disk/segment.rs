//! A segment file of the disk cache: the entries of up to `SLOTS` consecutive blocks of one
//! object version, entry `n` in slot `n` at `n * SLOT`, each a header and a body
//! (`docs/FORMAT.md`, "The disk cache's files"). A slot never written, or punched out, is a
//! hole and reads as zeros: absent. This module knows the bytes; `disk` decides what is kept.

use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use super::EntryId;
use crate::crypto::format::BLOCK_CIPHER;
use crate::crypto::local::LocalKey;

/// Blocks per segment: 128 x 64 KiB = 8 MiB of a file, one part of the default size.
pub const SLOTS: u64 = 128;
const MAGIC: &[u8; 8] = b"sealfsc2";
/// Magic, kind, segment name, slot number, body length.
pub const HEADER: usize = 8 + 1 + 32 + 1 + 4;
pub const KIND_AS_FETCHED: u8 = 1;
pub const KIND_SEALED: u8 = 2;
/// The largest body: a block as the bucket holds it, or sealed under the local key.
const MAX_BODY: usize = BLOCK_CIPHER as usize + LocalKey::OVERHEAD;
/// Bytes between slots: the largest entry rounded up to 4 KiB, so that each slot has pages
/// of its own and punching one frees exactly those.
const SLOT: u64 = on_disk(HEADER + MAX_BODY);

/// Bytes an entry of `len` bytes takes on disk: whole 4 KiB pages from its slot's start.
pub const fn on_disk(len: usize) -> u64 {
    (len as u64).div_ceil(4096) * 4096
}

/// Names a segment: a hash of scope, key, ETag and block index / `SLOTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentId(pub [u8; 32]);

impl SegmentId {
    pub fn file_name(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(name: &str) -> Option<Self> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(name, &mut id).ok()?;
        Some(Self(id))
    }
}

/// Which slots of a segment hold an entry, and the bytes each takes on disk (0: none).
pub struct Segment {
    sizes: [u32; SLOTS as usize],
}

impl Default for Segment {
    fn default() -> Self {
        Self {
            sizes: [0; SLOTS as usize],
        }
    }
}

impl Segment {
    pub fn has(&self, slot: u8) -> bool {
        self.sizes[slot as usize] != 0
    }

    /// Record an entry of `len` bytes in `slot`; the bytes on disk of the one it replaced.
    pub fn put(&mut self, slot: u8, len: usize) -> u64 {
        std::mem::replace(&mut self.sizes[slot as usize], on_disk(len) as u32) as u64
    }

    /// Unlist `slot`; the bytes on disk it took.
    pub fn take(&mut self, slot: u8) -> u64 {
        std::mem::take(&mut self.sizes[slot as usize]) as u64
    }

    /// The lowest slot holding an entry.
    pub fn first(&self) -> Option<u8> {
        self.sizes.iter().position(|&s| s != 0).map(|i| i as u8)
    }

    pub fn is_empty(&self) -> bool {
        self.first().is_none()
    }

    pub fn bytes(&self) -> u64 {
        self.sizes.iter().map(|&s| s as u64).sum()
    }
}

/// What reading a slot found.
pub enum Read {
    /// A hole, or a file that is gone: never written, punched out, or evicted.
    Absent,
    /// Something that must not be served, and why.
    Bad(&'static str),
    Entry(Vec<u8>),
}

/// Where `slot` starts in its segment file.
pub fn offset(slot: u8) -> u64 {
    slot as u64 * SLOT
}

/// The header of an entry of `kind` with a body of `len` bytes (a sealed body's associated data).
pub fn header(kind: u8, id: &EntryId, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8] = kind;
    h[9..41].copy_from_slice(&id.segment.0);
    h[41] = id.slot;
    h[42..46].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// The body length a header states, if it is a header of entry `id` (any kind).
fn parse(h: &[u8], id: &EntryId) -> Option<usize> {
    let len = u32::from_le_bytes(h[42..46].try_into().ok()?) as usize;
    let ours = &h[..8] == MAGIC && h[9..41] == id.segment.0 && h[41] == id.slot;
    (ours && len <= MAX_BODY).then_some(len)
}

/// Read entry `id` from its segment `f` in one `preadv`: its header onto the stack, its body
/// into a buffer of its own, which `open` (given the kind and the header, a sealed body's
/// associated data) turns into what the cache serves, in place: a hit copies the block once,
/// from the page cache, and never zeroes a buffer.
pub fn read(
    f: &File,
    id: &EntryId,
    open: impl FnOnce(u8, &[u8], Vec<u8>) -> Result<Vec<u8>, &'static str>,
) -> Read {
    let mut head = [0u8; HEADER];
    let mut body = Vec::with_capacity(MAX_BODY);
    let n = match crate::sys::read_split_at(f, offset(id.slot), &mut head, &mut body) {
        Ok(n) => n,
        Err(_) => return Read::Bad("unreadable"),
    };
    if head[..HEADER.min(n)].iter().all(|&b| b == 0) {
        return Read::Absent;
    }
    let Some(len) = (n >= HEADER).then(|| parse(&head, id)).flatten() else {
        return Read::Bad("not an entry of this name (torn or foreign)");
    };
    if body.len() < len {
        return Read::Bad("length does not match (torn write)");
    }
    body.truncate(len);
    // The buffer was sized for the largest body: a short one (a file's last block, a header)
    // gives the rest back, or every cache that keeps it would hold 64 KiB and count a few bytes.
    if body.capacity() - len >= 4096 {
        body.shrink_to_fit();
    }
    match open(head[8], &head, body) {
        Ok(body) => Read::Entry(body),
        Err(why) => Read::Bad(why),
    }
}

/// Whether an entry with a body of `len` bytes fits a slot.
pub fn fits(len: usize) -> bool {
    len <= MAX_BODY
}

/// Write the entry of `kind` holding `body` into slot `id.slot` of `f` (header and body in
/// one `pwritev`); returns its length. A body that does not fit is refused, never written
/// over the next slot.
pub fn write(f: &File, kind: u8, id: &EntryId, body: &[u8]) -> std::io::Result<usize> {
    if !fits(body.len()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "entry larger than a slot",
        ));
    }
    let head = header(kind, id, body.len());
    crate::sys::write_split_at(f, offset(id.slot), &head, body)?;
    Ok(HEADER + body.len())
}

/// Free `slot` of `f`: it reads as a hole afterwards.
pub fn punch(f: &File, slot: u8) -> std::io::Result<()> {
    crate::sys::punch_hole(f, offset(slot), SLOT)
}

/// The slots of segment file `path` that hold bytes, and what they take, from the file's
/// map of holes (no entry is read: a mount with a large cache starts at once); and its
/// modification time. `None`: nothing kept (the file can go). Entries are checked when read.
pub fn scan(path: &Path) -> std::io::Result<Option<(Segment, SystemTime)>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let md = f.metadata()?;
    if md.len() > SLOTS * SLOT {
        f.set_len(SLOTS * SLOT)?;
    }
    let end = md.len().min(SLOTS * SLOT);
    let used = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut seg = Segment::default();
    let mut at = 0;
    while let Some(data) = crate::sys::next_data(&f, at)?.filter(|&d| d < end) {
        let hole = crate::sys::next_hole(&f, data)?.min(end);
        for slot in data / SLOT..hole.div_ceil(SLOT) {
            let slot = slot as u8;
            let (lo, hi) = (data.max(offset(slot)), hole.min(offset(slot) + SLOT));
            let size = &mut seg.sizes[slot as usize];
            *size += on_disk((hi - lo) as usize) as u32;
        }
        at = hole.max(data + 1);
    }
    Ok((!seg.is_empty()).then_some((seg, used)))
}
