//! `ls -l` without a HEAD per file: the directory index and the lookahead (`dirattrs`).

use std::sync::Arc;
use std::time::Duration;

use super::tests::{fs_on, ME};
use super::*;
use crate::store::counted::{Counted, Counters};
use crate::store::mem::MemStore;
use crate::store::Op;

fn count(c: &Counters, op: Op) -> u64 {
    c.count(op)
}

/// A fresh "mount" over `mem` with a long TTL, counting its requests.
fn mount(mem: &Arc<MemStore>) -> (Fs, Arc<Counters>) {
    let counted = Counted::new(mem.clone());
    let counters = counted.counters();
    let fs = fs_on(Arc::new(counted), Duration::from_secs(600));
    (fs, counters)
}

/// What `ls -l` does: list, then look every entry up.
async fn ls_l(fs: &Fs, dir: Ino) -> Vec<(String, Attr)> {
    let fh = fs.opendir(dir);
    let entries = fs.readdir(dir, fh, 0).await.unwrap();
    fs.releasedir(fh);
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.name != "." && e.name != "..") {
        out.push((e.name.clone(), fs.lookup(dir, &e.name).await.unwrap().attr));
    }
    out
}

/// A store holding f0..f9 at the root, as a mount writes them (just now).
async fn ten_files_at_the_root() -> Arc<MemStore> {
    let mem = Arc::new(MemStore::new());
    let (fs, _) = mount(&mem);
    for i in 0..10 {
        super::tests::write_file(&fs, ROOT_INO, &format!("f{i}"), b"x").await;
    }
    mem
}

/// Let the index writers' quiet period pass (the clock is paused: virtual time moves, and the
/// writer tasks run, without waiting), then return the index at `key`.
async fn index_after_quiet(mem: &MemStore, key: &str) -> Option<Vec<u8>> {
    tokio::time::sleep(super::dirattrs::WRITE_AFTER * 5).await;
    mem.raw(key).map(|b| b.to_vec())
}

async fn wait_for_index(mem: &MemStore, key: &str) {
    assert!(
        index_after_quiet(mem, key).await.is_some(),
        "no index written at {key}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_ls_l_costs_no_head_and_sees_the_same_attributes() {
    let mem = Arc::new(MemStore::new());
    {
        let (fs, _) = mount(&mem);
        let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap().ino;
        for i in 0..20 {
            let ino = super::tests::write_file(&fs, d, &format!("f{i:02}"), b"data").await;
            let set = SetAttr {
                perm: Some(0o600 + i as u16),
                ..Default::default()
            };
            fs.setattr(ino, None, set).await.unwrap();
        }
        fs.symlink(d, "link", "f00", ME).await.unwrap();
    }
    // Older than the settle time, as objects written by an earlier session are.
    mem.age(Duration::from_secs(60));

    let (fs, counters) = mount(&mem);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    let before = count(&counters, Op::Head);
    let first = ls_l(&fs, d).await;
    assert_eq!(
        count(&counters, Op::Head) - before,
        21,
        "one HEAD per file without an index"
    );
    let index = crate::layout::Layout::new("").index_key("d");
    wait_for_index(&mem, &index).await;
    assert_eq!(first.len(), 21);
    assert_eq!(first[0].1.perm, 0o600);
    assert_eq!(first[20].0, "link");
    assert_eq!(first[20].1.kind, Kind::Symlink);

    let (fs, counters) = mount(&mem);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    let before = count(&counters, Op::Head);
    let second = ls_l(&fs, d).await;
    assert_eq!(
        count(&counters, Op::Head),
        before,
        "the index answers every file"
    );
    assert_eq!(count(&counters, Op::Get), 1);
    assert_eq!(second, first);
    let link = fs.lookup(d, "link").await.unwrap().ino;
    assert_eq!(fs.readlink(link).await.unwrap(), "f00");

    // A chmod elsewhere changes the object's version: that entry is not trusted any more.
    {
        let (other, _) = mount(&mem);
        let d = other.lookup(ROOT_INO, "d").await.unwrap().ino;
        let ino = other.lookup(d, "f03").await.unwrap().ino;
        let set = SetAttr {
            perm: Some(0o444),
            ..Default::default()
        };
        other.setattr(ino, None, set).await.unwrap();
    }
    let (fs, counters) = mount(&mem);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    let before = count(&counters, Op::Head);
    let third = ls_l(&fs, d).await;
    assert_eq!(count(&counters, Op::Head), before + 1);
    assert_eq!(third[3].1.perm, 0o444);
    assert_eq!(third[4], first[4]);
}

#[tokio::test(start_paused = true)]
async fn recent_objects_and_foreign_indexes_are_not_trusted() {
    let mem = ten_files_at_the_root().await;
    // Just written: a HEAD each, and nothing is learned (no index appears).
    let (fs, counters) = mount(&mem);
    ls_l(&fs, ROOT_INO).await;
    assert_eq!(count(&counters, Op::Head), 10);
    let index = crate::layout::Layout::new("").index_key("");
    assert!(index_after_quiet(&mem, &index).await.is_none());

    // Garbage at the index key is ignored; the next lister replaces it.
    mem.put(
        &index,
        bytes::Bytes::from_static(b"not an index"),
        &Default::default(),
    )
    .await
    .unwrap();
    mem.age(Duration::from_secs(60));
    let (fs, counters) = mount(&mem);
    let names: Vec<String> = ls_l(&fs, ROOT_INO).await.into_iter().map(|e| e.0).collect();
    assert_eq!(names.len(), 10, "the index is hidden: {names:?}");
    assert_eq!(count(&counters, Op::Head), 10);
    let written = index_after_quiet(&mem, &index).await.expect("an index");
    assert!(
        crate::dirindex::decode(&written).is_some(),
        "the garbage was replaced by an index"
    );
    let (fs, counters) = mount(&mem);
    ls_l(&fs, ROOT_INO).await;
    assert_eq!(count(&counters, Op::Head), 0);
    assert!(matches!(
        fs.create(
            ROOT_INO,
            crate::layout::INDEX_DIR,
            0o644,
            libc_flags::O_WRONLY,
            ME
        )
        .await,
        Err(FsError::Reserved)
    ));
}

#[tokio::test(start_paused = true)]
async fn changes_made_here_are_not_answered_from_the_listing() {
    let mem = ten_files_at_the_root().await;
    mem.age(Duration::from_secs(60));
    let (fs, _) = mount(&mem);
    let listed = ls_l(&fs, ROOT_INO).await;
    let ino = fs.lookup(ROOT_INO, "f1").await.unwrap().ino;
    let set = SetAttr {
        perm: Some(0o400),
        ..Default::default()
    };
    fs.setattr(ino, None, set).await.unwrap();
    fs.forget(ino, u64::MAX);
    // Same listing, but the name changed here: a HEAD tells the truth.
    assert_eq!(fs.lookup(ROOT_INO, "f1").await.unwrap().attr.perm, 0o400);
    assert_eq!(listed[1].1.perm, 0o640);
}

/// In client mode the stored names are ciphertext: their order is not the plaintext order
/// `ls` stats in. Lookahead must follow the listing's plaintext order, found by name, not by
/// searching the stored names as if they were sorted.
#[tokio::test(start_paused = true)]
async fn lookahead_follows_plaintext_order_when_stored_names_are_not_sorted() {
    use super::dirattrs::{DirAttrs, Listed, LOOKAHEAD};
    use crate::store::UserMeta;
    let mem = Arc::new(MemStore::new());
    let counted = Counted::new(mem.clone());
    let counters = counted.counters();
    let store: Arc<dyn ObjectStore> = Arc::new(counted);
    // Plaintext order as the listing sorted it: stored names descending.
    let order: Vec<String> = (0..40).rev().map(|i| format!("k{i:02}")).collect();
    let mut files = Vec::new();
    for name in &order {
        let etag = store
            .put(
                &format!("d/{name}"),
                bytes::Bytes::from_static(b"x"),
                &UserMeta::default(),
            )
            .await
            .unwrap();
        let listed = Listed {
            etag,
            size: 1,
            modified: std::time::SystemTime::now(),
        };
        files.push((name.clone(), listed));
    }
    let attrs = Arc::new(DirAttrs::new(
        store,
        "d/".into(),
        "d/.index".into(),
        false,
        files,
        Default::default(),
        Default::default(),
    ));
    // Two HEADs by hand, then the third lookup starts the lookahead after itself.
    for name in &order[..3] {
        assert!(attrs.resolve(name).await.unwrap().unwrap().is_some());
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    for name in &order[3..3 + LOOKAHEAD] {
        assert!(
            attrs.resolved_now(name).is_some(),
            "{name} was not looked ahead"
        );
    }
    assert_eq!(count(&counters, Op::Head), 3 + LOOKAHEAD as u64);
}
