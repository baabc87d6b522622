//! The bytes a writer holds that are not in an upload yet: extents keyed by their start
//! offset, with their total kept by the same type, so the count the memory bound is checked
//! against cannot drift from the extents.
//!
//! Invariants: extents never overlap; `bytes` is the sum of their lengths. Two extents may
//! touch (the sequential writer keeps one per part, see `insert`).

use std::collections::BTreeMap;
use std::ops::Range;

use super::pool::PartPool;

/// A sequential writer's extent smaller than this grows as a `Vec` does; past it, it gets its
/// whole part's capacity (so a small file never reserves a part).
const STREAM_MIN: usize = 64 * 1024;

#[derive(Default)]
pub struct Dirty {
    extents: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

/// What a sequential write needs to know to keep one extent per part.
pub struct Parts<'a> {
    pub size: u64,
    /// Bytes below this are in the upload: a new part extent never starts there.
    pub committed_end: u64,
    /// Where a part's buffer comes from once an extent outgrows `STREAM_MIN`.
    pub pool: &'a PartPool,
}

impl Dirty {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.extents.clear();
        self.bytes = 0;
    }

    /// Whether an extent starts at `start` and holds at least `len` bytes.
    pub fn holds(&self, start: u64, len: u64) -> bool {
        self.extents
            .get(&start)
            .is_some_and(|v| v.len() as u64 >= len)
    }

    /// Where the last extent ends (0 when there is none).
    pub fn end(&self) -> u64 {
        self.extents
            .iter()
            .next_back()
            .map_or(0, |(s, v)| s + v.len() as u64)
    }

    /// The bytes of `range`, taken without copying, when one extent starts there and covers
    /// it (the sequential case); what it held past the range stays.
    pub fn take(&mut self, range: Range<u64>) -> Option<Vec<u8>> {
        let len = (range.end - range.start) as usize;
        if self.extents.get(&range.start)?.len() < len {
            return None;
        }
        let mut v = self.extents.remove(&range.start)?;
        let rest = v.split_off(len);
        self.bytes -= len as u64;
        if !rest.is_empty() {
            self.extents.insert(range.end, rest);
        }
        Some(v)
    }

    /// Copy the bytes held within `range` over `buf`, which holds `range`.
    pub fn overlay(&self, range: Range<u64>, buf: &mut [u8]) {
        for (&start, v) in self.extents.range(..range.end).rev() {
            let end = start + v.len() as u64;
            if end <= range.start {
                break;
            }
            let from = start.max(range.start);
            let to = end.min(range.end);
            buf[(from - range.start) as usize..(to - range.start) as usize]
                .copy_from_slice(&v[(from - start) as usize..(to - start) as usize]);
        }
    }

    /// Sub-ranges of `range` no extent covers.
    pub fn uncovered(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut gaps = Vec::new();
        let mut pos = range.start;
        let first = self
            .extents
            .range(..=range.start)
            .next_back()
            .map(|(s, v)| (*s, v.len() as u64));
        let iter = first.into_iter().chain(
            self.extents
                .range(range.start + 1..range.end)
                .map(|(s, v)| (*s, v.len() as u64)),
        );
        for (s, len) in iter {
            let e = s + len;
            if e <= pos {
                continue;
            }
            if s > pos {
                gaps.push(pos..s.min(range.end));
            }
            pos = pos.max(e);
            if pos >= range.end {
                break;
            }
        }
        if pos < range.end {
            gaps.push(pos..range.end);
        }
        gaps
    }

    /// Whether any byte of `range` is held.
    pub fn touches(&self, range: Range<u64>) -> bool {
        self.uncovered(range.clone()) != vec![range]
    }

    /// Hold `data` at `offset`, over whatever was held there.
    pub fn insert(&mut self, offset: u64, data: &[u8], parts: &Parts) {
        if data.is_empty() || self.append_streaming(offset, data, parts) {
            return;
        }
        let end = offset + data.len() as u64;
        let nothing_after = self.extents.range(offset..=end).next().is_none();
        if let Some((&s, v)) = self.extents.range_mut(..offset).next_back() {
            let e = s + v.len() as u64;
            // Fast paths: append to the extent that ends here, or overwrite inside one extent.
            if e == offset && nothing_after {
                v.extend_from_slice(data);
                self.bytes += data.len() as u64;
                return;
            }
            if end <= e {
                let at = (offset - s) as usize;
                v[at..at + data.len()].copy_from_slice(data);
                return;
            }
        }
        let mut start = offset;
        let mut new_end = end;
        let mut olds = Vec::new();
        if let Some((&s, v)) = self.extents.range(..offset).next_back() {
            if s + v.len() as u64 >= offset {
                start = s;
                olds.push(s);
            }
        }
        for (&s, v) in self.extents.range(offset..=end) {
            new_end = new_end.max(s + v.len() as u64);
            olds.push(s);
        }
        let mut merged = vec![0u8; (new_end - start) as usize];
        for s in olds {
            let v = self.extents.remove(&s).expect("listed above");
            self.bytes -= v.len() as u64;
            let at = (s - start) as usize;
            merged[at..at + v.len()].copy_from_slice(&v);
        }
        let at = (offset - start) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
        self.bytes += merged.len() as u64;
        self.extents.insert(start, merged);
    }

    /// The sequential writer's path: `data` continues the last extent, which starts at a part
    /// boundary at or after `committed_end` (or starts one there). Extents are then kept one
    /// per part: filled to the part's end, the rest starting the next part's extent, each
    /// given the part's capacity once it outgrows `STREAM_MIN`, so no reallocation copies
    /// what was written (doubling copied each byte about twice) and a part is taken whole.
    /// False, having done nothing, for any other write.
    fn append_streaming(&mut self, offset: u64, data: &[u8], parts: &Parts) -> bool {
        let p = parts.size;
        let start = match self.extents.iter().next_back() {
            // A full last extent (a write ended exactly on the part's end, as 1 MiB writes do
            // with 8 MiB parts) is left whole: this write starts the next part's.
            Some((&s, v)) if s + v.len() as u64 == offset && (v.len() as u64) < p => s,
            Some((&s, v)) if s + v.len() as u64 == offset => offset,
            None => offset,
            Some(_) => return false,
        };
        if start % p != 0 || start < parts.committed_end {
            return false;
        }
        let (mut at, mut rest) = (start, data);
        while !rest.is_empty() {
            let v = self.extents.entry(at).or_default();
            let n = rest.len().min((p as usize).saturating_sub(v.len()));
            if v.capacity() < v.len() + n && v.len() + n > STREAM_MIN {
                let mut part = parts.pool.take();
                part.reserve_exact(p as usize);
                part.extend_from_slice(v);
                *v = part;
            }
            v.extend_from_slice(&rest[..n]);
            self.bytes += n as u64;
            rest = &rest[n..];
            at += p;
        }
        true
    }

    /// Forget the bytes at or past `size` (a truncate).
    pub fn trim(&mut self, size: u64) {
        let after: Vec<u64> = self.extents.range(size..).map(|(s, _)| *s).collect();
        for s in after {
            let v = self.extents.remove(&s).expect("listed above");
            self.bytes -= v.len() as u64;
        }
        if let Some((&s, v)) = self.extents.range_mut(..size).next_back() {
            let keep = (size - s) as usize;
            if v.len() > keep {
                self.bytes -= (v.len() - keep) as u64;
                v.truncate(keep);
            }
        }
    }

    /// Forget the bytes below `end` (they are in a part now).
    pub fn drop_below(&mut self, end: u64) {
        let below: Vec<u64> = self.extents.range(..end).map(|(s, _)| *s).collect();
        for s in below {
            let mut v = self.extents.remove(&s).expect("listed above");
            self.bytes -= v.len() as u64;
            let e = s + v.len() as u64;
            if e > end {
                let rest = v.split_off((end - s) as usize);
                self.bytes += rest.len() as u64;
                self.extents.insert(end, rest);
            }
        }
    }

    /// Each extent's start, length and capacity, in order (for tests of the buffering).
    #[cfg(test)]
    pub fn shape(&self) -> Vec<(u64, u64, usize)> {
        self.extents
            .iter()
            .map(|(&s, v)| (s, v.len() as u64, v.capacity()))
            .collect()
    }
}
