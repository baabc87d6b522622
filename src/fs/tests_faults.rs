//! The filesystem over a store that fails: every failure reaches the application as an error
//! from the call that needed the request (or from close/fsync for uploads), and the bucket
//! keeps what it held before: no partial object, no lost earlier version, no upload left open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{fs_on, ME};
use super::*;
use crate::store::fault::FaultStore;
use crate::store::mem::MemStore;
use crate::store::Op;

fn faulty() -> (Arc<MemStore>, Arc<FaultStore<MemStore>>, Fs) {
    let mem = Arc::new(MemStore::new());
    let faults = Arc::new(FaultStore::new(mem.clone()));
    let fs = fs_on(faults.clone(), Duration::ZERO);
    (mem, faults, fs)
}

/// Create or open `name` at the root, write `data` at `offset`, close. The first error.
async fn write_at(fs: &Fs, name: &str, offset: u64, data: &[u8]) -> Result<()> {
    let fh = match fs.lookup(ROOT_INO, name).await {
        Ok(e) => fs.open(e.ino, libc_flags::O_WRONLY, ME.pid).await?,
        Err(FsError::NotFound) => {
            fs.create(ROOT_INO, name, 0o644, libc_flags::O_WRONLY, ME)
                .await?
                .1
        }
        Err(e) => return Err(e),
    };
    let res = async {
        fs.write(fh, offset, data).await?;
        fs.flush(fh, ME.pid).await
    }
    .await;
    fs.release(fh).await;
    res
}

fn stored(mem: &MemStore, key: &str) -> Option<Vec<u8>> {
    mem.raw(key).map(|b| b.to_vec())
}

#[tokio::test(start_paused = true)]
async fn a_failed_upload_is_an_error_at_close_and_the_old_version_stays() {
    let (mem, faults, fs) = faulty();
    write_at(&fs, "f", 0, &[1; 300]).await.unwrap();
    // Multipart (parts of 64 bytes): the third part fails.
    faults.fail_writes_after(2);
    let err = write_at(&fs, "f", 0, &[2; 300]).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(stored(&mem, "f").unwrap(), vec![1; 300]);
    assert_eq!(mem.pending_uploads(), 0, "the failed upload was aborted");
    faults.heal();
    write_at(&fs, "f", 0, &[3; 10]).await.unwrap();
    let mut want = vec![1; 300];
    want[..10].fill(3);
    assert_eq!(stored(&mem, "f").unwrap(), want);
}

#[tokio::test(start_paused = true)]
async fn failed_reads_and_namespace_calls_change_nothing() {
    let (mem, faults, fs) = faulty();
    write_at(&fs, "f", 0, b"hello").await.unwrap();
    let ino = fs.lookup(ROOT_INO, "f").await.unwrap().ino;
    faults.fail_when(|op, _| op == Op::Get);
    let fh = fs.open(ino, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    assert_eq!(fs.read(fh, 0, 5).await.unwrap_err().errno(), libc::EIO);
    fs.release(fh).await;
    faults.fail_when(|op, _| op == Op::Copy);
    let chmod = SetAttr {
        perm: Some(0o600),
        ..Default::default()
    };
    assert!(fs.setattr(ino, None, chmod).await.is_err());
    faults.fail_when(|op, _| op == Op::Delete);
    assert!(fs.unlink(ROOT_INO, "f").await.is_err());
    faults.fail_when(|op, _| op == Op::Put);
    assert!(fs.mkdir(ROOT_INO, "d", 0o755, ME).await.is_err());
    faults.heal();
    let head = mem.head("f").await.unwrap().expect("still there");
    assert_eq!(head.user.get("mode").unwrap(), &(0o100644).to_string());
    assert_eq!(stored(&mem, "f").unwrap(), b"hello");
    assert!(mem.head("d/").await.unwrap().is_none());
}

#[derive(Debug, Clone)]
enum Step {
    Write {
        name: u8,
        offset: u16,
        len: u16,
        byte: u8,
    },
    Truncate {
        name: u8,
        size: u16,
    },
    Unlink {
        name: u8,
    },
    /// From now on, fail write-side requests after this many succeed.
    Fail {
        after: u8,
    },
    Heal,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3u8, 0..400u16, 1..300u16, any::<u8>())
            .prop_map(|(name, offset, len, byte)| Step::Write { name, offset, len, byte }),
        1 => (0..3u8, 0..500u16).prop_map(|(name, size)| Step::Truncate { name, size }),
        1 => (0..3u8).prop_map(|name| Step::Unlink { name }),
        1 => (0..6u8).prop_map(|after| Step::Fail { after }),
        1 => Just(Step::Heal),
    ]
}

/// What the bucket must hold after `steps`: each operation either took effect whole or not at
/// all, whatever failed underneath.
async fn run_model(steps: Vec<Step>) {
    let (mem, faults, fs) = faulty();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for s in steps {
        match s {
            Step::Write {
                name,
                offset,
                len,
                byte,
            } => {
                let name = format!("f{name}");
                let data = vec![byte; len as usize];
                if write_at(&fs, &name, offset.into(), &data).await.is_ok() {
                    let f = model.entry(name).or_default();
                    let end = offset as usize + data.len();
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[offset as usize..end].copy_from_slice(&data);
                }
            }
            Step::Truncate { name, size } => {
                let name = format!("f{name}");
                let Ok(e) = fs.lookup(ROOT_INO, &name).await else {
                    continue;
                };
                let set = SetAttr {
                    size: Some(size.into()),
                    ..Default::default()
                };
                if fs.setattr(e.ino, None, set).await.is_ok() {
                    model
                        .get_mut(&name)
                        .expect("a file the model has")
                        .resize(size.into(), 0);
                }
            }
            Step::Unlink { name } => {
                let name = format!("f{name}");
                if fs.unlink(ROOT_INO, &name).await.is_ok() {
                    model.remove(&name);
                }
            }
            Step::Fail { after } => faults.fail_writes_after(after.into()),
            Step::Heal => faults.heal(),
        }
        for name in ["f0", "f1", "f2"] {
            assert_eq!(
                stored(&mem, name),
                model.get(name).cloned(),
                "{name} after a step"
            );
        }
        assert_eq!(mem.pending_uploads(), 0, "an upload was left open");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn operations_take_effect_whole_or_not_at_all_under_failures(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run_model(steps));
    }
}
