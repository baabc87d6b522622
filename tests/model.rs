//! Property test through a real mount: random operation sequences run against the mount and
//! against a local directory must give the same results, errors and final contents.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use proptest::prelude::*;

const NAMES: [&str; 3] = ["a", "b", "sub/c"];

#[derive(Debug, Clone)]
enum Op {
    WriteAt(usize, u64, usize, u8),
    Append(usize, usize, u8),
    Truncate(usize, u64),
    Rename(usize, usize),
    Unlink(usize),
    CreateTrunc(usize, usize, u8),
    Read(usize),
    /// Several writes and truncates through one descriptor, then a read through it.
    Session(usize, Vec<(bool, u64, usize, u8)>),
}

fn offset() -> impl Strategy<Value = u64> {
    const MIB: u64 = 1024 * 1024;
    prop_oneof![
        0u64..70_000,
        (5 * MIB - 40_000)..(5 * MIB + 40_000), // across the first part boundary
        (10 * MIB - 100)..(11 * MIB),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        4 => (n.clone(), offset(), 1usize..100_000, any::<u8>()).prop_map(|(f, o, l, s)| Op::WriteAt(f, o, l, s)),
        2 => (n.clone(), 1usize..50_000, any::<u8>()).prop_map(|(f, l, s)| Op::Append(f, l, s)),
        2 => (n.clone(), offset()).prop_map(|(f, s)| Op::Truncate(f, s)),
        1 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => n.clone().prop_map(Op::Unlink),
        1 => (n.clone(), 0usize..20_000, any::<u8>()).prop_map(|(f, l, s)| Op::CreateTrunc(f, l, s)),
        2 => n.clone().prop_map(Op::Read),
        3 => (n, prop::collection::vec((any::<bool>(), offset(), 1usize..60_000, any::<u8>()), 1..6))
            .prop_map(|(f, steps)| Op::Session(f, steps)),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Apply `op` under `root`; the outcome is the data read or the errno.
fn apply(root: &Path, op: &Op) -> Result<Vec<u8>, i32> {
    let p = |i: usize| root.join(NAMES[i]);
    let err = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    match op {
        Op::WriteAt(f, off, len, seed) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(p(*f))
                .map_err(err)?;
            file.write_all_at(&bytes(*len, *seed), *off).map_err(err)?;
            file.sync_all().map_err(err)?;
            Ok(vec![])
        }
        Op::Append(f, len, seed) => {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(p(*f))
                .map_err(err)?;
            file.write_all(&bytes(*len, *seed)).map_err(err)?;
            Ok(vec![])
        }
        Op::Truncate(f, size) => {
            let file = OpenOptions::new().write(true).open(p(*f)).map_err(err)?;
            file.set_len(*size).map_err(err)?;
            Ok(vec![])
        }
        Op::Rename(a, b) => fs::rename(p(*a), p(*b)).map(|_| vec![]).map_err(err),
        Op::Unlink(f) => fs::remove_file(p(*f)).map(|_| vec![]).map_err(err),
        Op::CreateTrunc(f, len, seed) => fs::write(p(*f), bytes(*len, *seed))
            .map(|_| vec![])
            .map_err(err),
        Op::Read(f) => fs::read(p(*f)).map_err(err),
        Op::Session(f, steps) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p(*f))
                .map_err(err)?;
            for (truncate, off, len, seed) in steps {
                if *truncate {
                    file.set_len(*off).map_err(err)?;
                } else {
                    file.write_all_at(&bytes(*len, *seed), *off).map_err(err)?;
                }
            }
            let size = file.metadata().map_err(err)?.len();
            let mut buf = vec![0; size as usize];
            file.read_exact_at(&mut buf, 0).map_err(err)?;
            Ok(buf)
        }
    }
}

fn snapshot(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    NAMES
        .iter()
        .map(|n| (n.to_string(), fs::read(root.join(n)).ok()))
        .collect()
}

#[test]
fn random_operation_sequences_match_a_local_directory() {
    let m = Mount::new(&unique("model"), &["--part-size-mib", "5"]);
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..20), |ops| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let local = tempfile::tempdir().unwrap();
            let remote = m.p(&format!("case{case}"));
            for root in [local.path(), remote.as_path()] {
                fs::create_dir_all(root.join("sub")).unwrap();
            }
            for op in &ops {
                let want = apply(local.path(), op);
                let got = apply(&remote, op);
                prop_assert_eq!(
                    got.as_ref().map(Vec::len),
                    want.as_ref().map(Vec::len),
                    "{:?}",
                    op
                );
                prop_assert!(got == want, "content differs after {:?}", op);
            }
            prop_assert!(
                snapshot(&remote) == snapshot(local.path()),
                "final state differs"
            );
            Ok(())
        })
        .unwrap();
    // And everything survives a remount.
    let m = m.remount(&[]);
    assert!(fs::read_dir(m.path()).unwrap().count() >= 24);
}
