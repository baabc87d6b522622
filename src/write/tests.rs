//! Reference-model tests: random operation sequences on a `Writer` over the in-memory store,
//! checked byte for byte against a plain `Vec<u8>`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
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
    let mut w = Writer::new(mem.clone(), small_cfg(), base);
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
    let mut w = Writer::new(mem.clone(), small_cfg(), None);
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
    assert!(w.dirty_bytes <= 16, "full parts leave memory");
    w.checkpoint(KEY, &meta).await.unwrap();
    let want: Vec<u8> = (0..10u8).flat_map(|i| [i; 8]).collect();
    assert_eq!(&mem.raw(KEY).unwrap()[..], &want[..]);
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
    let mut w = Writer::new(mem.clone(), small_cfg(), Some(base));
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
    let mut w = Writer::new(faulty.clone(), small_cfg(), None);
    w.write(KEY, &meta, 0, &[1; 20]).await.unwrap();
    faulty.fail_writes.store(true, Ordering::SeqCst);
    let err = w.write(KEY, &meta, 20, &[2; 30]).await;
    let err = match err {
        Err(e) => e,
        Ok(()) => w.checkpoint(KEY, &meta).await.unwrap_err(),
    };
    assert!(matches!(err, WriteError::Store(_)), "{err}");
    assert_eq!(mem.pending_uploads(), 0, "the multipart upload was aborted");
    assert!(mem.raw(KEY).is_none(), "no partial object");
    faulty.fail_writes.store(false, Ordering::SeqCst);
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
    let mut w = Writer::new(mem.clone(), small_cfg(), Some(base));
    w.write(KEY, &meta, 3, b"z").await.unwrap();
    mem.put(KEY, Bytes::from(vec![9; 64]), &meta).await.unwrap();
    let err = w.checkpoint(KEY, &meta).await.unwrap_err();
    assert!(matches!(err, WriteError::Changed(_)), "{err}");
}
