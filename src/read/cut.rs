//! Cutting a GET's body into blocks while it arrives: each block is checked (authenticated,
//! in client mode) and handed on as soon as its last byte is in, rather than after the whole
//! body. A reader waiting for the first block of an 8 MiB readahead GET then waits for
//! 64 KiB, not 8 MiB, and decryption runs while the rest of the body streams in.
//!
//! Invariants: blocks come out in order, each at most once, and only once `codec` accepted
//! them; after a block fails, nothing more comes out and `finish` returns its error. Bytes
//! are kept only until the block they belong to is out.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::body::Body;
use crate::crypto::codec::FileCodec;
use crate::crypto::format::{FormatError, BLOCK_PLAIN};

pub struct BlockCutter<'a> {
    codec: &'a FileCodec,
    /// File (plaintext) size.
    size: u64,
    /// Object offset of block `first`, where the body starts.
    cipher_base: u64,
    next: u64,
    end: u64,
    /// Segments not yet wholly handed on, and the body offset where the first one starts.
    held: VecDeque<Bytes>,
    held_at: usize,
    held_len: usize,
    error: Option<FormatError>,
}

impl<'a> BlockCutter<'a> {
    /// A cutter of blocks `first..end` of a file of `size` bytes, from a body holding
    /// exactly their object bytes (`codec.fetch_range` of their plaintext).
    pub fn new(codec: &'a FileCodec, size: u64, first: u64, end: u64) -> Self {
        let cipher_base = codec.fetch_range(&block_plain(first, size), size).start;
        Self {
            codec,
            size,
            cipher_base,
            next: first,
            end,
            held: VecDeque::new(),
            held_at: 0,
            held_len: 0,
            error: None,
        }
    }

    /// Take the body's next `segment`; give `out` each block it completes (index, plaintext).
    pub fn push(&mut self, segment: &Bytes, out: &mut dyn FnMut(u64, Bytes)) {
        if self.error.is_some() || self.next >= self.end {
            return;
        }
        self.held.push_back(segment.clone());
        self.held_len += segment.len();
        while self.next < self.end {
            let i = self.next;
            let r = self
                .codec
                .fetch_range(&block_plain(i, self.size), self.size);
            let (lo, hi) = (
                (r.start - self.cipher_base) as usize,
                (r.end - self.cipher_base) as usize,
            );
            if hi > self.held_at + self.held_len {
                return;
            }
            let held = Body::new(self.held.iter().cloned());
            let bytes = held.sub(lo - self.held_at..hi - self.held_at);
            match self.codec.decode_blocks(&bytes, i, i + 1, self.size) {
                Ok(mut plain) => out(i, plain.pop().unwrap_or_default()),
                Err(e) => {
                    self.error = Some(e);
                    self.held.clear();
                    return;
                }
            }
            self.next += 1;
            while let Some(front) = self.held.front() {
                if self.held_at + front.len() > hi {
                    break;
                }
                self.held_at += front.len();
                self.held_len -= front.len();
                self.held.pop_front();
            }
        }
    }

    /// Every block came out, or why not.
    pub fn finish(self) -> Result<(), FormatError> {
        match self.error {
            Some(e) => Err(e),
            None if self.next < self.end => Err(FormatError::BadBlock(self.next)),
            None => Ok(()),
        }
    }
}

/// Plaintext range of block `i` of a file of `size` bytes.
pub fn block_plain(i: u64, size: u64) -> std::ops::Range<u64> {
    i * BLOCK_PLAIN..((i + 1) * BLOCK_PLAIN).min(size)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::format::{FileKeys, Secret};

    /// What comes out of a body of blocks `first..end` cut into segments of `every` bytes.
    fn run(
        codec: &FileCodec,
        size: u64,
        (first, end): (u64, u64),
        fetched: &[u8],
        every: usize,
    ) -> (Vec<(u64, Bytes)>, Result<(), FormatError>) {
        let mut cutter = BlockCutter::new(codec, size, first, end);
        let mut out = Vec::new();
        for segment in fetched.chunks(every) {
            cutter.push(&Bytes::copy_from_slice(segment), &mut |i, b| {
                out.push((i, b))
            });
        }
        (out, cutter.finish())
    }

    #[test]
    fn blocks_come_out_as_soon_as_they_are_in_however_the_body_is_cut() {
        let client = FileCodec::Client(Arc::new(FileKeys::new_file(&Secret([5; 32]), 1)));
        let size = 4 * BLOCK_PLAIN + 10;
        let plain: Bytes = (0..size).map(|i| (i % 253) as u8).collect();
        for codec in [FileCodec::Plain, client] {
            let object = codec.encode(0, plain.clone(), size);
            let (first, end) = (1, 5);
            let f = codec.fetch_range(&(first * BLOCK_PLAIN..size), size);
            let fetched = &object[f.start as usize..f.end as usize];
            for every in [1, 7, 4096, 65_000, 65_564, 65_565, 70_000, fetched.len()] {
                let (out, done) = run(&codec, size, (first, end), fetched, every);
                assert!(done.is_ok(), "cut every {every}");
                let got: Vec<u64> = out.iter().map(|(i, _)| *i).collect();
                assert_eq!(got, vec![1, 2, 3, 4]);
                for (i, b) in &out {
                    assert_eq!(
                        b,
                        &plain.slice(
                            block_plain(*i, size).start as usize
                                ..block_plain(*i, size).end as usize
                        )
                    );
                }
            }
            // A block is out once its last byte is in, not before and not later.
            let mut cutter = BlockCutter::new(&codec, size, first, end);
            let r1 = codec.fetch_range(&block_plain(1, size), size);
            let one = (r1.end - f.start) as usize;
            let mut seen = Vec::new();
            cutter.push(&Bytes::copy_from_slice(&fetched[..one - 1]), &mut |i, _| {
                seen.push(i)
            });
            assert!(seen.is_empty());
            cutter.push(
                &Bytes::copy_from_slice(&fetched[one - 1..one]),
                &mut |i, _| seen.push(i),
            );
            assert_eq!(seen, vec![1]);
            assert!(
                matches!(cutter.finish(), Err(FormatError::BadBlock(2))),
                "body ended early"
            );
        }
    }

    #[test]
    fn nothing_comes_out_after_a_block_that_does_not_authenticate() {
        let codec = FileCodec::Client(Arc::new(FileKeys::new_file(&Secret([5; 32]), 1)));
        let size = 4 * BLOCK_PLAIN;
        let object = codec.encode(0, Bytes::from(vec![9; size as usize]), size);
        let f = codec.fetch_range(&(0..size), size);
        let mut bad = object[f.start as usize..f.end as usize].to_vec();
        let r2 = codec.fetch_range(&block_plain(2, size), size);
        bad[(r2.start - f.start) as usize + 20] ^= 1;
        for every in [1000, bad.len()] {
            let (out, done) = run(&codec, size, (0, 4), &bad, every);
            let got: Vec<u64> = out.iter().map(|(i, _)| *i).collect();
            assert_eq!(got, vec![0, 1], "cut every {every}");
            assert!(matches!(done, Err(FormatError::BadBlock(2))));
        }
    }
}
