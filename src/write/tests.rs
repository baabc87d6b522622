//! Reference-model tests: random operation sequences on a `Writer` over the in-memory store,
//! checked byte for byte against a plain `Vec<u8>`.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::crypto::format::{Secret, BLOCK_PLAIN};
use crate::crypto::keys::Keyring;
use crate::store::fault::FaultStore;
use crate::store::mem::MemStore;

const KEY: &str = "f";

fn small_cfg() -> WriteConfig {
    // Tiny parts so that every path (streaming, pressure, checkpoints, copies) runs.
    WriteConfig {
        part_size: 16,
        max_inflight: 2,
        max_dirty: 40,
        min_copy_part: 0,
        ..WriteConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Read(u64, u64),
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..200, prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(o, d)| Op::Write(o, d)),
        1 => (0u64..220).prop_map(Op::Truncate),
        2 => (0u64..220, 0u64..60).prop_map(|(o, l)| Op::Read(o, l)),
        1 => Just(Op::Checkpoint),
    ]
}

async fn run(initial: Option<Vec<u8>>, ops: Vec<Op>) {
    let mem = Arc::new(MemStore::new());
    let meta = UserMeta::new();
    let base = match &initial {
        Some(data) => {
            let etag = mem
                .put(KEY, Bytes::from(data.clone()), &meta)
                .await
                .unwrap();
            Some(Base {
                key: KEY.into(),
                etag,
                size: data.len() as u64,
            })
        }
        None => None,
    };
    let mut model = initial.unwrap_or_default();
    let mut w = Writer::new(mem.clone(), small_cfg(), base, FileCodec::Plain);
    for op in ops {
        match op {
            Op::Write(off, data) => {
                w.write(KEY, &meta, off, &data).await.unwrap();
                let end = off as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            Op::Truncate(size) => {
                w.truncate(KEY, &meta, size).await.unwrap();
                model.resize(size as usize, 0);
            }
            Op::Read(off, len) => {
                let got = w.read(KEY, &meta, off, len).await.unwrap();
                let from = (off as usize).min(model.len());
                let to = ((off + len) as usize).min(model.len());
                assert_eq!(&got[..], &model[from..to], "read {off}+{len}");
            }
            Op::Checkpoint => {
                w.mark_changed();
                w.checkpoint(KEY, &meta).await.unwrap();
                assert_eq!(&mem.raw(KEY).unwrap()[..], &model[..]);
            }
        }
        assert_eq!(w.size(), model.len() as u64);
    }
    w.mark_changed();
    w.checkpoint(KEY, &meta).await.unwrap();
    assert_eq!(&mem.raw(KEY).unwrap()[..], &model[..]);
    assert_eq!(mem.pending_uploads(), 0, "no multipart upload left behind");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn writer_matches_model(
        initial in prop::option::of(prop::collection::vec(any::<u8>(), 0..150)),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(initial, ops));
    }
}

#[tokio::test]
async fn sequential_write_streams_parts_before_close() {
    let mem = Arc::new(MemStore::new());
    let mut w = Writer::new(mem.clone(), small_cfg(), None, FileCodec::Plain);
    let meta = UserMeta::new();
    for i in 0..10u8 {
        w.write(KEY, &meta, u64::from(i) * 8, &[i; 8])
            .await
            .unwrap();
    }
    assert_eq!(
        mem.pending_uploads(),
        1,
        "parts stream while the file is open"
    );
    assert!(mem.raw(KEY).is_none(), "nothing visible before close");
    assert!(w.dirty.bytes() <= 16, "full parts leave memory");
    w.checkpoint(KEY, &meta).await.unwrap();
    let want: Vec<u8> = (0..10u8).flat_map(|i| [i; 8]).collect();
    assert_eq!(&mem.raw(KEY).unwrap()[..], &want[..]);
}

/// Parts of 256 KiB, room for four of them dirty.
fn streaming_cfg() -> (u64, WriteConfig) {
    let p = 256 * 1024;
    let cfg = WriteConfig {
        part_size: p,
        max_dirty: 4 * p,
        ..small_cfg()
    };
    (p, cfg)
}

#[tokio::test]
async fn a_sequential_writer_fills_one_buffer_per_part_and_never_regrows_it() {
    let (p, cfg) = streaming_cfg();
    let meta = UserMeta::new();
    let total = 5 * p + 12_345;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    // 100,000 crosses part ends at varying points; p / 4 ends exactly on them, as 1 MiB FUSE
    // writes do with 8 MiB parts.
    for chunk in [100_000u64, p / 4] {
        let mem = Arc::new(MemStore::new());
        let mut w = Writer::new(mem.clone(), cfg.clone(), None, FileCodec::Plain);
        for at in (0..total).step_by(chunk as usize) {
            let end = (at + chunk).min(total);
            w.write(KEY, &meta, at, &data[at as usize..end as usize])
                .await
                .unwrap();
            let extents = w.dirty.shape();
            for &(start, len, cap) in &extents {
                assert_eq!(start % p, 0, "extents start at part boundaries");
                assert!(len <= p, "an extent never spans two parts");
                // Doubling past the part (what a growing Vec does) would copy it all again.
                assert!(cap <= cfg.part_buffer(), "capacity {cap} > a part buffer");
            }
            assert!(extents.len() <= 2);
        }
        w.checkpoint(KEY, &meta).await.unwrap();
        assert_eq!(&mem.raw(KEY).unwrap()[..], &data[..]);
    }
    // Without the pump taking parts between writes: a write that starts right after a full
    // part starts the next part's buffer, rather than growing the full one past the part.
    let mut w = Writer::new(
        Arc::new(MemStore::new()),
        cfg.clone(),
        None,
        FileCodec::Plain,
    );
    for at in (0..2 * p).step_by(p as usize / 4) {
        w.insert_dirty(at, &data[at as usize..(at + p / 4) as usize]);
    }
    let extents = w.dirty.shape();
    let b = cfg.part_buffer();
    assert_eq!(extents, [(0, p, b), (p, p, b)]);
}

#[tokio::test]
async fn part_buffers_go_back_to_the_mounts_pool_in_both_modes() {
    let (p, cfg) = streaming_cfg();
    let meta = UserMeta::new();
    let data: Vec<u8> = (0..5 * p + 7).map(|i| (i % 251) as u8).collect();
    let ring = Keyring::new_single(Secret([9; 32]));
    for codec in [FileCodec::Plain, ring.new_file()] {
        let pool = cfg.pool();
        let mem = Arc::new(MemStore::new());
        let mut w = Writer::new(mem.clone(), cfg.clone(), None, codec).with_pool(pool.clone());
        for (i, chunk) in data.chunks(p as usize / 4).enumerate() {
            w.write(KEY, &meta, (i as u64) * p / 4, chunk)
                .await
                .unwrap();
        }
        w.checkpoint(KEY, &meta).await.unwrap();
        // Staging buffers (and, sealed, the bodies) of the uploaded parts came back.
        assert!(pool.spares() >= 2, "{} spares", pool.spares());
        assert!(pool.spares() <= cfg.max_inflight + 2);
        let stored = mem.raw(KEY).unwrap();
        let plain = match stored.len() == data.len() {
            true => stored.to_vec(),
            false => ring.open_object(&stored).unwrap(),
        };
        assert_eq!(plain, data);
    }
    // A pool for another part size is not used (its buffers would be too small).
    let other = WriteConfig {
        part_size: 2 * p,
        ..cfg.clone()
    }
    .pool();
    let w = Writer::new(
        Arc::new(MemStore::new()),
        cfg.clone(),
        None,
        FileCodec::Plain,
    )
    .with_pool(other.clone());
    assert!(!Arc::ptr_eq(&w.pool, &other));
    assert_eq!(w.pool.capacity(), cfg.part_buffer());
}

#[tokio::test]
async fn unchanged_parts_of_a_large_object_are_copied_not_resent() {
    let mem = Arc::new(MemStore::new());
    let meta = UserMeta::new();
    let data: Vec<u8> = (0..160u8).collect();
    let etag = mem
        .put(KEY, Bytes::from(data.clone()), &meta)
        .await
        .unwrap();
    let base = Base {
        key: KEY.into(),
        etag,
        size: 160,
    };
    let mut w = Writer::new(mem.clone(), small_cfg(), Some(base), FileCodec::Plain);
    w.write(KEY, &meta, 100, b"XY").await.unwrap();
    w.checkpoint(KEY, &meta).await.unwrap();
    let mut want = data;
    want[100..102].copy_from_slice(b"XY");
    assert_eq!(&mem.raw(KEY).unwrap()[..], &want[..]);
}

#[tokio::test]
async fn failed_upload_aborts_and_poisons_the_writer() {
    let mem = Arc::new(MemStore::new());
    let faulty = Arc::new(FaultStore::new(mem.clone()));
    let meta = UserMeta::new();
    let mut w = Writer::new(faulty.clone(), small_cfg(), None, FileCodec::Plain);
    w.write(KEY, &meta, 0, &[1; 20]).await.unwrap();
    faulty.fail_writes_after(0);
    let err = w.write(KEY, &meta, 20, &[2; 30]).await;
    let err = match err {
        Err(e) => e,
        Ok(()) => w.checkpoint(KEY, &meta).await.unwrap_err(),
    };
    assert!(matches!(err, WriteError::Store(_)), "{err}");
    assert_eq!(mem.pending_uploads(), 0, "the multipart upload was aborted");
    assert!(mem.raw(KEY).is_none(), "no partial object");
    faulty.heal();
    assert!(matches!(
        w.checkpoint(KEY, &meta).await,
        Err(WriteError::Failed)
    ));
    assert!(matches!(
        w.write(KEY, &meta, 0, b"x").await,
        Err(WriteError::Failed)
    ));
}

#[tokio::test]
async fn object_replaced_underneath_is_detected() {
    let mem = Arc::new(MemStore::new());
    let meta = UserMeta::new();
    let etag = mem.put(KEY, Bytes::from(vec![7; 64]), &meta).await.unwrap();
    let base = Base {
        key: KEY.into(),
        etag,
        size: 64,
    };
    let mut w = Writer::new(mem.clone(), small_cfg(), Some(base), FileCodec::Plain);
    w.write(KEY, &meta, 3, b"z").await.unwrap();
    mem.put(KEY, Bytes::from(vec![9; 64]), &meta).await.unwrap();
    let err = w.checkpoint(KEY, &meta).await.unwrap_err();
    assert!(matches!(err, WriteError::Changed(_)), "{err}");
}

/// The same model in client mode: parts of two 64 KiB blocks, offsets across several parts,
/// and every stored object must open (all blocks authentic, last block marked) to the model.
async fn run_client(initial: Option<Vec<u8>>, ops: Vec<Op>) {
    let mem = Arc::new(MemStore::new());
    let ring = Keyring::new_single(Secret([7; 32]));
    let meta = UserMeta::new();
    let cfg = WriteConfig {
        part_size: 2 * BLOCK_PLAIN,
        max_inflight: 2,
        max_dirty: 5 * BLOCK_PLAIN,
        min_copy_part: 0,
        ..WriteConfig::default()
    };
    let codec = ring.new_file();
    let base = match &initial {
        Some(data) => {
            let body = codec.encode(0, Bytes::copy_from_slice(data), data.len() as u64);
            let etag = mem.put(KEY, body, &meta).await.unwrap();
            Some(Base {
                key: KEY.into(),
                etag,
                size: data.len() as u64,
            })
        }
        None => None,
    };
    let mut model = initial.unwrap_or_default();
    let mut w = Writer::new(mem.clone(), cfg, base, codec);
    let check = |mem: &MemStore, model: &[u8]| {
        let raw = mem.raw(KEY).unwrap();
        assert_eq!(
            ring.open_object(&raw).expect("stored object authenticates"),
            model
        );
    };
    for op in ops {
        match op {
            Op::Write(off, data) => {
                // Writes long enough to fill parts, so streaming runs too.
                let (off, data) = (off * 3000, data.repeat(1 + (off as usize % 5) * 1200));
                w.write(KEY, &meta, off, &data).await.unwrap();
                let end = off as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            Op::Truncate(size) => {
                let size = size * 3000;
                w.truncate(KEY, &meta, size).await.unwrap();
                model.resize(size as usize, 0);
            }
            Op::Read(off, len) => {
                let (off, len) = (off * 3000, len * 3000);
                let got = w.read(KEY, &meta, off, len).await.unwrap();
                let from = (off as usize).min(model.len());
                let to = ((off + len) as usize).min(model.len());
                assert_eq!(&got[..], &model[from..to]);
            }
            Op::Checkpoint => {
                w.mark_changed();
                w.checkpoint(KEY, &meta).await.unwrap();
                check(&mem, &model);
            }
        }
    }
    w.mark_changed();
    w.checkpoint(KEY, &meta).await.unwrap();
    check(&mem, &model);
    assert_eq!(mem.pending_uploads(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    #[test]
    fn client_mode_writer_matches_model(
        initial in prop::option::of(prop::collection::vec(any::<u8>(), 0..150).prop_map(|v| v.repeat(2000))),
        ops in prop::collection::vec(op(), 1..25),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_client(initial, ops));
    }
}

/// The edges of the last-block rule in client mode: a file ending exactly on a part
/// boundary, and a truncate down to the boundary of what was already uploaded.
#[tokio::test]
async fn client_mode_part_boundaries_seal_the_right_last_block() {
    let ring = Keyring::new_single(Secret([8; 32]));
    let meta = UserMeta::new();
    let p = 2 * BLOCK_PLAIN;
    let cfg = WriteConfig {
        part_size: p,
        max_inflight: 2,
        max_dirty: 8 * BLOCK_PLAIN,
        min_copy_part: 0,
        ..WriteConfig::default()
    };
    for (write_len, truncate_to) in [
        (2 * p, None),
        (p, None),
        (2 * p + 10, Some(p)),
        (3 * p, Some(2 * p)),
    ] {
        let mem = Arc::new(MemStore::new());
        let mut w = Writer::new(mem.clone(), cfg.clone(), None, ring.new_file());
        let data: Vec<u8> = (0..write_len).map(|i| (i % 241) as u8).collect();
        for chunk in data.chunks(4096) {
            let off = (chunk.as_ptr() as usize - data.as_ptr() as usize) as u64;
            w.write(KEY, &meta, off, chunk).await.unwrap();
        }
        let mut want = data.clone();
        if let Some(t) = truncate_to {
            w.truncate(KEY, &meta, t).await.unwrap();
            want.truncate(t as usize);
        }
        w.checkpoint(KEY, &meta).await.unwrap();
        let got = ring.open_object(&mem.raw(KEY).unwrap());
        assert_eq!(
            got.as_deref(),
            Ok(&want[..]),
            "len {write_len} truncate {truncate_to:?}"
        );
    }
}
