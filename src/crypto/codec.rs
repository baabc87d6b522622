//! How a file's bytes map to its object's bytes: `FileCodec::Plain` (identity) or
//! `FileCodec::Client` (the sealfs format under one file's keys). The read and write paths
//! work in plaintext offsets and ask the codec which object bytes to fetch or send.
//!
//! Invariants:
//! - `decode` returns bytes only from blocks whose tags verified; any failure is an error
//!   naming the block, never partial or unverified plaintext.
//! - `encode` seals a part that starts on a block boundary; the block holding the file's last
//!   byte (or the empty block of an empty file) is sealed as last, using the file's final size.
//! - `copy_safe` allows a server-side copy of a part only when every block in it would be
//!   sealed identically in the new object (same keys, same index, same last flag).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::body::Body;

use super::format::{
    block_count, block_range, cipher_size, plain_size, FileKeys, FormatError, BLOCK_PLAIN,
    NONCE_LEN,
};

#[derive(Clone)]
pub enum FileCodec {
    Plain,
    Client(Arc<FileKeys>),
}

impl std::fmt::Debug for FileCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileCodec::Plain => f.write_str("Plain"),
            FileCodec::Client(_) => f.write_str("Client(..)"),
        }
    }
}

impl FileCodec {
    pub fn is_plain(&self) -> bool {
        matches!(self, FileCodec::Plain)
    }

    /// Object size of a file of `plain` bytes.
    pub fn object_size(&self, plain: u64) -> u64 {
        match self {
            FileCodec::Plain => plain,
            FileCodec::Client(_) => cipher_size(plain),
        }
    }

    /// Object bytes holding plaintext `range` of a file of `size` bytes (`range` non-empty).
    pub fn fetch_range(&self, range: &Range<u64>, size: u64) -> Range<u64> {
        match self {
            FileCodec::Plain => range.clone(),
            FileCodec::Client(_) => {
                let first = range.start / BLOCK_PLAIN;
                let last = (range.end - 1) / BLOCK_PLAIN;
                block_range(first, size).start..block_range(last, size).end
            }
        }
    }

    /// The plaintext of `range` from the object bytes `fetched` (as given by `fetch_range`).
    pub fn decode(
        &self,
        fetched: Body,
        range: &Range<u64>,
        size: u64,
    ) -> Result<Bytes, FormatError> {
        if let FileCodec::Plain = self {
            return Ok(fetched.into_bytes());
        }
        let first = range.start / BLOCK_PLAIN;
        let end = (range.end - 1) / BLOCK_PLAIN + 1;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (i, plain) in (first..end).zip(self.decode_blocks(&fetched, first, end, size)?) {
            let lo = range.start.saturating_sub(i * BLOCK_PLAIN) as usize;
            let hi = ((range.end - i * BLOCK_PLAIN) as usize).min(plain.len());
            out.extend_from_slice(&plain[lo.min(hi)..hi]);
        }
        Ok(Bytes::from(out))
    }

    /// Blocks `first..end` (end exclusive, within the file) as separate buffers, each holding
    /// its whole block's plaintext, from the object bytes of exactly those blocks. Every block
    /// is authenticated (client mode) before any is returned. Each block is copied once, from
    /// `fetched`'s segments into its own buffer (decrypted there in client mode): the cache
    /// then holds exactly what it counts.
    pub fn decode_blocks(
        &self,
        fetched: &Body,
        first: u64,
        end: u64,
        size: u64,
    ) -> Result<Vec<Bytes>, FormatError> {
        let plain_start = first * BLOCK_PLAIN;
        let mut out = Vec::with_capacity((end - first) as usize);
        match self {
            FileCodec::Plain => {
                for i in first..end {
                    let lo = (i * BLOCK_PLAIN - plain_start) as usize;
                    let hi = (((i + 1) * BLOCK_PLAIN).min(size) - plain_start) as usize;
                    if hi > fetched.len() {
                        return Err(FormatError::BadBlock(i));
                    }
                    let mut block = Vec::with_capacity(hi - lo);
                    fetched.extend_into(lo..hi, &mut block);
                    out.push(Bytes::from(block));
                }
            }
            FileCodec::Client(keys) => {
                let n = block_count(size);
                let base = block_range(first, size).start;
                for i in first..end {
                    let r = block_range(i, size);
                    let (from, to) = ((r.start - base) as usize, (r.end - base) as usize);
                    if to > fetched.len() {
                        return Err(FormatError::BadBlock(i));
                    }
                    let at = from + NONCE_LEN as usize;
                    if to < at {
                        return Err(FormatError::BadBlock(i));
                    }
                    let nonce = fetched.slice(from..at);
                    let mut sealed = Vec::with_capacity(to - at);
                    fetched.extend_into(at..to, &mut sealed);
                    let plain = keys.open_block_in(i, i + 1 == n, &nonce, sealed)?;
                    out.push(Bytes::from(plain));
                }
            }
        }
        Ok(out)
    }

    /// Block `i` of a file of `size` bytes from exactly its object bytes, owned (as the disk
    /// cache reads them): authenticated and decrypted in that buffer in client mode, which
    /// then is the block, so a hit copies nothing more.
    pub fn decode_block(&self, i: u64, size: u64, object: Vec<u8>) -> Result<Bytes, FormatError> {
        let want = match self {
            FileCodec::Plain => ((i + 1) * BLOCK_PLAIN)
                .min(size)
                .saturating_sub(i * BLOCK_PLAIN),
            FileCodec::Client(_) => {
                let r = block_range(i, size);
                r.end - r.start
            }
        };
        if object.len() as u64 != want {
            return Err(FormatError::BadBlock(i));
        }
        match self {
            FileCodec::Plain => Ok(Bytes::from(object)),
            FileCodec::Client(keys) => keys
                .open_block_within(i, i + 1 == block_count(size), object)
                .map(Bytes::from),
        }
    }

    /// Object bytes of the part that holds plaintext `[start, start + plain.len())` of a file
    /// whose final size is `size`; `start` is a multiple of the block size. Owned, so that a
    /// plain-mode part (8 MiB by default) goes out as it is rather than copied once more.
    pub fn encode(&self, start: u64, plain: Bytes, size: u64) -> Bytes {
        let keys = match self {
            FileCodec::Plain => return plain,
            FileCodec::Client(k) => k,
        };
        let mut out = Vec::with_capacity(cipher_size(plain.len() as u64) as usize);
        seal_part(keys, start, &plain, size, &mut out);
        Bytes::from(out)
    }

    /// Object bytes of plaintext part `range` in an object of a file of `size` bytes.
    pub fn object_range(&self, range: &Range<u64>, size: u64) -> Range<u64> {
        match self {
            FileCodec::Plain => range.clone(),
            FileCodec::Client(_) => {
                let start = if range.start == 0 {
                    0
                } else {
                    block_range(range.start / BLOCK_PLAIN, size).start
                };
                start..block_range((range.end.max(1) - 1) / BLOCK_PLAIN, size).end
            }
        }
    }

    /// Whether part `range` of the old object (file size `old`) can be copied as part of the
    /// new one (file size `new`): always in plain mode; in client mode unless the part holds
    /// the old or the new last block and the size changed (its last flag would differ).
    pub fn copy_safe(&self, range: &Range<u64>, old: u64, new: u64) -> bool {
        match self {
            FileCodec::Plain => true,
            FileCodec::Client(_) => {
                let holds = |size: u64| {
                    let last_start = (block_count(size) - 1) * BLOCK_PLAIN;
                    range.start <= last_start && last_start < range.end
                };
                old == new || (!holds(old) && !holds(new))
            }
        }
    }
}

/// Object size of a file of `plain` bytes under a mount's mode.
pub fn object_size_of(client: bool, plain: u64) -> u64 {
    if client {
        cipher_size(plain)
    } else {
        plain
    }
}

/// File size of an object of `object` bytes under a mount's mode (`None`: not a valid
/// ciphertext size, a foreign object).
pub fn plain_size_of(client: bool, object: u64) -> Option<u64> {
    if client {
        plain_size(object).ok()
    } else {
        Some(object)
    }
}

/// A client-mode part, sealed and appended to `out` (`FileCodec::encode` without its buffer:
/// for callers that reuse theirs). Plain mode has nothing to seal: its part goes out as is.
pub fn seal_part(keys: &FileKeys, start: u64, plain: &[u8], size: u64, out: &mut Vec<u8>) {
    debug_assert_eq!(start % BLOCK_PLAIN, 0);
    let n = block_count(size);
    if start == 0 {
        out.extend_from_slice(keys.header_bytes());
    }
    let first = start / BLOCK_PLAIN;
    let mut chunks: Vec<&[u8]> = plain.chunks(BLOCK_PLAIN as usize).collect();
    if chunks.is_empty() {
        chunks.push(&[]); // an empty file still has its (empty) last block
    }
    for (k, chunk) in chunks.into_iter().enumerate() {
        let i = first + k as u64;
        keys.seal(i, i + 1 == n, chunk, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::{open_all, Secret};

    fn client() -> (Secret, FileCodec) {
        let k = Secret([5; 32]);
        let keys = FileKeys::new_file(&k, 1);
        (k, FileCodec::Client(Arc::new(keys)))
    }

    #[test]
    fn parts_encode_to_a_valid_object_and_ranges_decode() {
        let (k, c) = client();
        let size = 3 * BLOCK_PLAIN + 10;
        let plain: Bytes = (0..size).map(|i| (i % 253) as u8).collect();
        let p = 2 * BLOCK_PLAIN;
        let mut obj = c.encode(0, plain.slice(..p as usize), size).to_vec();
        obj.extend_from_slice(&c.encode(p, plain.slice(p as usize..), size));
        assert_eq!(obj.len() as u64, c.object_size(size));
        assert_eq!(open_all(&k, &obj).unwrap(), plain);
        // However the server cut the body into segments (inside a nonce, a tag, a byte at a
        // time), the same bytes come out, and a flipped byte is still refused.
        let cut =
            |bytes: &[u8], every: usize| Body::new(bytes.chunks(every).map(Bytes::copy_from_slice));
        for r in [0..1, 5..70000, 65536..65537, size - 3..size, 0..size] {
            let f = c.fetch_range(&r, size);
            let fetched = &obj[f.start as usize..f.end as usize];
            for every in [fetched.len(), 5, 65_000, 65_571] {
                let got = c.decode(cut(fetched, every), &r, size).unwrap();
                assert_eq!(&got[..], &plain[r.start as usize..r.end as usize]);
                let mut bad = fetched.to_vec();
                bad[fetched.len() / 2] ^= 1;
                assert!(c.decode(cut(&bad, every), &r, size).is_err());
            }
        }
        let part2 = c.object_range(&(p..size), size);
        assert_eq!(part2.end, obj.len() as u64);
        assert_eq!(
            part2.start,
            c.object_range(&(0..p), size).end,
            "parts tile the object"
        );
    }

    #[test]
    fn copy_safety_follows_the_last_block() {
        let (_, c) = client();
        let b = BLOCK_PLAIN;
        assert!(c.copy_safe(&(0..2 * b), 5 * b, 5 * b + 1));
        assert!(
            !c.copy_safe(&(4 * b..5 * b), 5 * b, 6 * b),
            "old last block"
        );
        assert!(!c.copy_safe(&(0..2 * b), 10 * b, b + 3), "new last block");
        assert!(c.copy_safe(&(4 * b..5 * b), 5 * b, 5 * b), "same size");
        assert!(FileCodec::Plain.copy_safe(&(0..1), 1, 2));
    }

    #[test]
    fn an_empty_file_is_one_empty_last_block() {
        let (k, c) = client();
        let obj = c.encode(0, Bytes::new(), 0);
        assert_eq!(obj.len() as u64, c.object_size(0));
        assert_eq!(open_all(&k, &obj).unwrap(), Vec::<u8>::new());
    }
}
