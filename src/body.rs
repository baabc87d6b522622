//! An object body as the HTTP client delivered it: a list of segments, in order, never joined
//! unless a caller asks for one contiguous buffer.
//!
//! Why: a reader cuts a GET's body into 64 KiB blocks, each into its own buffer (the block
//! cache counts each block exactly). Joining the segments first and then copying each block
//! out copied every byte twice; copying each block straight out of the segments copies it
//! once. A leaf module: `store` makes bodies, `crypto::codec` reads blocks out of them.
//!
//! Invariant: `starts[k]` is the body offset of `segments[k]`; no segment is empty.

use std::ops::Range;

use bytes::Bytes;

#[derive(Debug, Clone, Default)]
pub struct Body {
    segments: Vec<Bytes>,
    starts: Vec<usize>,
    len: usize,
}

impl Body {
    pub fn new(segments: impl IntoIterator<Item = Bytes>) -> Self {
        let mut body = Body::default();
        for s in segments.into_iter().filter(|s| !s.is_empty()) {
            body.starts.push(body.len);
            body.len += s.len();
            body.segments.push(s);
        }
        body
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index of the segment holding offset `at` (< len).
    fn segment_of(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at) - 1
    }

    /// The parts of `range` (clamped to the body), in order: each segment it touches, with
    /// the range within that segment.
    fn spans(&self, range: Range<usize>) -> impl Iterator<Item = (&Bytes, Range<usize>)> {
        let (lo, hi) = (range.start.min(self.len), range.end.min(self.len));
        let first = match lo < hi {
            true => self.segment_of(lo),
            false => self.segments.len(),
        };
        self.segments[first..]
            .iter()
            .zip(&self.starts[first..])
            .take_while(move |(_, &start)| start < hi)
            .map(move |(seg, &start)| (seg, lo.saturating_sub(start)..(hi - start).min(seg.len())))
    }

    /// Bytes `range` (clamped to the body): a view of the segment when it lies in one, a
    /// copy otherwise.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        let (lo, hi) = (range.start.min(self.len), range.end.min(self.len));
        if lo >= hi {
            return Bytes::new();
        }
        let k = self.segment_of(lo);
        if hi <= self.starts[k] + self.segments[k].len() {
            return self.segments[k].slice(lo - self.starts[k]..hi - self.starts[k]);
        }
        let mut out = Vec::with_capacity(hi - lo);
        self.extend_into(lo..hi, &mut out);
        Bytes::from(out)
    }

    /// Bytes `range` (clamped to the body) as a body of their own; no copy.
    pub fn sub(&self, range: Range<usize>) -> Body {
        Body::new(self.spans(range).map(|(seg, r)| seg.slice(r)))
    }

    /// Append bytes `range` (clamped to the body) to `out`.
    pub fn extend_into(&self, range: Range<usize>, out: &mut Vec<u8>) {
        for (seg, r) in self.spans(range) {
            out.extend_from_slice(&seg[r]);
        }
    }

    /// All of it in one buffer: a copy only when it came in several segments.
    pub fn into_bytes(mut self) -> Bytes {
        match self.segments.len() {
            0 => Bytes::new(),
            1 => self.segments.pop().unwrap_or_default(),
            _ => {
                let mut out = Vec::with_capacity(self.len);
                self.extend_into(0..self.len, &mut out);
                Bytes::from(out)
            }
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::new([b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes 0..100 cut at the given offsets.
    fn cut(at: &[usize]) -> (Vec<u8>, Body) {
        let data: Vec<u8> = (0..100).collect();
        let mut bounds = vec![0];
        bounds.extend_from_slice(at);
        bounds.push(100);
        let body = Body::new(
            bounds
                .windows(2)
                .map(|w| Bytes::copy_from_slice(&data[w[0]..w[1]])),
        );
        (data, body)
    }

    #[test]
    fn every_range_reads_the_same_bytes_however_the_body_was_cut() {
        for at in [&[][..], &[1], &[50], &[10, 10, 11], &[3, 64, 65, 99]] {
            let (data, body) = cut(at);
            assert_eq!(body.len(), 100);
            for lo in 0..=101 {
                for hi in lo..=102 {
                    let want = &data[lo.min(100)..hi.min(100)];
                    assert_eq!(&body.slice(lo..hi)[..], want, "{at:?} {lo}..{hi}");
                    let mut out = vec![7];
                    body.extend_into(lo..hi, &mut out);
                    assert_eq!(&out[1..], want, "{at:?} {lo}..{hi}");
                    assert_eq!(
                        &body.sub(lo..hi).into_bytes()[..],
                        want,
                        "{at:?} {lo}..{hi}"
                    );
                }
            }
            assert_eq!(&body.into_bytes()[..], &data[..]);
        }
    }

    #[test]
    fn a_range_within_one_segment_is_a_view_not_a_copy() {
        let (_, body) = cut(&[40]);
        let whole = body.slice(0..40);
        let part = body.slice(10..30);
        assert_eq!(part.as_ptr(), whole[10..].as_ptr());
        assert!(Body::new([Bytes::new(), Bytes::new()]).is_empty());
    }
}
