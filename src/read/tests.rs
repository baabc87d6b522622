//! The reader against the in-memory store: GET counts, readahead shape, cache reuse.

use super::*;
use crate::store::counted::Counted;
use crate::store::mem::MemStore;
use crate::store::UserMeta;

fn setup(
    size: usize,
) -> (
    Arc<Fetcher>,
    Arc<crate::store::counted::Counters>,
    Version,
    Vec<u8>,
    Arc<MemStore>,
) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mem = Arc::new(MemStore::new());
    let counted = Counted::new(mem.clone());
    let counters = counted.counters();
    let store: Arc<dyn ObjectStore> = Arc::new(counted);
    let etag = tokio::runtime::Handle::current().block_on(async {
        store
            .put("f", Bytes::from(data.clone()), &UserMeta::new())
            .await
            .unwrap()
    });
    let cfg = ReadConfig {
        min_window: 256 * 1024,
        max_window: 2 * 1024 * 1024,
        chunk: 512 * 1024,
        max_gets: 4,
        cache_bytes: 64 * 1024 * 1024,
        disk: None,
    };
    let v = Version {
        key: "f".into(),
        etag,
        size: size as u64,
    };
    (Fetcher::new(store, cfg), counters, v, data, mem)
}

fn gets(c: &crate::store::counted::Counters) -> u64 {
    c.count(crate::store::Op::Get)
}

/// Read all of `v` in 128 KiB reads, as one sequential reader; `after` sees the reader and
/// the offset reached after each read.
async fn read_through(
    f: &Arc<Fetcher>,
    v: &Version,
    mut after: impl FnMut(&Reader, u64),
) -> Vec<u8> {
    let mut r = Reader::new(f.config());
    let mut out = Vec::new();
    while (out.len() as u64) < v.size {
        let b = r
            .read(f, v, &FileCodec::Plain, out.len() as u64, 128 * 1024)
            .await
            .unwrap();
        out.extend_from_slice(&b);
        after(&r, out.len() as u64);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_reads_stream_in_few_gets_and_rereads_hit_the_cache() {
    let size = 10 * 1024 * 1024 + 123;
    let (f, counters, v, data, _) = tokio::task::block_in_place(|| setup(size));
    assert_eq!(read_through(&f, &v, |_, _| {}).await, data);
    let streamed = gets(&counters);
    assert!(streamed <= 30, "{streamed} GETs for 10 MiB");
    // A second reader of the same version: all from the cache.
    let mut r2 = Reader::new(f.config());
    let again = r2
        .read(&f, &v, &FileCodec::Plain, 0, size as u64)
        .await
        .unwrap();
    assert_eq!(&again[..], &data[..]);
    assert_eq!(gets(&counters), streamed);
    // A random read of 4 KiB in a new version costs one GET, of one block.
    let new: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
    let etag = f
        .store
        .put("f", Bytes::from(new.clone()), &UserMeta::new())
        .await
        .unwrap();
    let v2 = Version { etag, ..v.clone() };
    let before = (gets(&counters), counters.snapshot().1);
    let mut r3 = Reader::new(f.config());
    let got = r3
        .read(&f, &v2, &FileCodec::Plain, 5_000_000, 4096)
        .await
        .unwrap();
    assert_eq!(&got[..], &new[5_000_000..5_004_096]);
    assert_eq!(gets(&counters), before.0 + 1);
    assert_eq!(counters.snapshot().1 - before.1, BLOCK_PLAIN);
    // A version the bucket no longer has (and the cache never saw): one GET, which the
    // server refuses, and an error, never bytes of another version.
    let gone = Version {
        etag: "\"gone\"".into(),
        ..v.clone()
    };
    let mut r4 = Reader::new(f.config());
    let stale = r4.read(&f, &gone, &FileCodec::Plain, 9_000_000, 4096).await;
    assert!(matches!(stale, Err(ReadError::Changed(_))), "not Changed");
    assert_eq!(gets(&counters), before.0 + 2);
}

/// Readahead GETs follow the object's parts (chunk-aligned, as the writer cuts them: a
/// range across a part boundary made Garage read one of its blocks twice) and are issued a
/// chunk at a time as the reader advances, so that they do not all end together.
#[tokio::test(flavor = "multi_thread")]
async fn readahead_gets_are_chunk_aligned_and_keep_the_window_full() {
    let size = 10 * 1024 * 1024 + 123;
    let (f, _, v, data, mem) = tokio::task::block_in_place(|| setup(size));
    let (chunk, window) = (f.config().chunk, f.config().max_window);
    let out = read_through(&f, &v, |r, off| {
        let ahead = (r.ahead_until * BLOCK_PLAIN).saturating_sub(off);
        if r.window == window && r.ahead_until * BLOCK_PLAIN < size as u64 {
            assert!(ahead >= window - chunk, "{ahead} bytes ahead at {off}");
        }
    })
    .await;
    assert_eq!(out, data);
    let reads = mem.ranges_read();
    assert!(reads.len() > 10, "{reads:?}");
    for g in &reads {
        assert_eq!(
            g.start / chunk,
            (g.end - 1) / chunk,
            "GET {g:?} spans a boundary"
        );
    }
}

/// A 64 KiB random read that the kernel splits around a page it already holds arrives as
/// two pieces that look contiguous: they must fetch their own blocks and nothing ahead (they
/// made every such read pull in up to a chunk). A run that goes on past `STREAM_AFTER`, or
/// one from offset 0, is a stream and reads ahead.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_stream_reads_ahead() {
    let size = 10 * 1024 * 1024;
    let (f, counters, v, data, _) = tokio::task::block_in_place(|| setup(size));
    let fetched = || counters.snapshot().1;
    let mut r = Reader::new(f.config());
    let at = 5 * BLOCK_PLAIN;
    for (off, len) in [(at, 12 * 1024), (at + 16 * 1024, 48 * 1024)] {
        let got = r.read(&f, &v, &FileCodec::Plain, off, len).await.unwrap();
        assert_eq!(&got[..], &data[off as usize..(off + len) as usize]);
    }
    assert_eq!(fetched(), BLOCK_PLAIN, "a split random read fetched ahead");
    assert_eq!(r.ahead_until, 0);
    // The same run goes on to STREAM_AFTER: now it reads ahead.
    let mut off = at + BLOCK_PLAIN;
    while off < at + STREAM_AFTER {
        r.read(&f, &v, &FileCodec::Plain, off, BLOCK_PLAIN)
            .await
            .unwrap();
        off += BLOCK_PLAIN;
    }
    assert!(
        r.ahead_until * BLOCK_PLAIN > off,
        "no readahead after {off}"
    );
    // A new handle reading from offset 0 streams from its first read.
    let mut r0 = Reader::new(f.config());
    r0.read(&f, &v, &FileCodec::Plain, 0, 4096).await.unwrap();
    assert!(r0.ahead_until > 1, "no readahead from offset 0");
}
