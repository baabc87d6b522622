use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;

fn cfg(dir: &Path, budget: Option<u64>) -> DiskCacheConfig {
    DiskCacheConfig {
        dir: dir.join("cache"),
        budget,
    }
}

fn as_fetched(cfg: &DiskCacheConfig) -> Result<Arc<DiskCache>, DiskCacheError> {
    DiskCache::open_waiting(cfg, "scope", |_| Ok(Contents::AsFetched), Duration::ZERO)
}

fn sealed(cfg: &DiskCacheConfig) -> Arc<DiskCache> {
    DiskCache::open(cfg, "scope", |k| {
        LocalKey::load_or_create(k).map(|k| Contents::Sealed(Box::new(k)))
    })
    .unwrap()
}

fn ok(_: usize, b: Vec<u8>) -> Result<Vec<u8>, String> {
    Ok(b)
}

fn files(c: &DiskCache) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(c.dir().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

// On the mount's kind of runtime, where entries are read in place (`block_in_place`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_reopen_and_another_version_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), None);
    let c = as_fetched(&cfg).unwrap();
    let ids: Vec<_> = (0..3).map(|i| c.id("dir/f", "\"e1\"", i)).collect();
    for (n, id) in ids.iter().enumerate() {
        c.write_entry(*id, &vec![n as u8; 1000]);
    }
    assert_eq!(c.bytes(), 3 * 4096);
    assert_eq!(files(&c).len(), 1, "one segment holds consecutive blocks");
    let mode = std::fs::metadata(&cfg.dir).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    drop(c);
    let c = as_fetched(&cfg).unwrap();
    assert_eq!(c.bytes(), 3 * 4096);
    let got = c.get_run(ids.clone(), ok).await;
    assert_eq!(got.len(), 3);
    assert_eq!(&got[2][..], &[2u8; 1000][..]);
    // Read into a buffer sized for the largest body, a short entry gives the rest back: the
    // memory cache counts a block's length, and must not hold 64 KiB for it.
    assert!(got[2].capacity() < 4096, "capacity {}", got[2].capacity());
    // A new ETag, another key, another mount's scope, the header entry: all misses.
    assert!(c
        .get_run(vec![c.id("dir/f", "\"e2\"", 0)], ok)
        .await
        .is_empty());
    assert!(c
        .get_run(vec![c.id("dir/g", "\"e1\"", 0)], ok)
        .await
        .is_empty());
    assert!(c
        .get_run(vec![c.id("dir/f", "\"e1\"", u64::MAX)], ok)
        .await
        .is_empty());
    drop(c);
    let other = DiskCache::open(&cfg, "other scope", |_| Ok(Contents::AsFetched)).unwrap();
    let same_name = other.id("dir/f", "\"e1\"", 0);
    assert_ne!(same_name, ids[0]);
    assert!(other.get_run(vec![same_name], ok).await.is_empty());
    // A run stops at the first miss.
    assert_eq!(other.get_run(vec![], ok).await.len(), 0);
}

#[tokio::test]
async fn torn_corrupt_and_renamed_entries_are_dropped_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let c = as_fetched(&cfg(tmp.path(), None)).unwrap();
    // Each in a segment of its own (block 0 of four files).
    let ids: Vec<_> = (0..4).map(|i| c.id(&format!("f{i}"), "e", 0)).collect();
    for id in &ids {
        c.write_entry(*id, &[7u8; 5000]);
    }
    let path = |id: &EntryId| c.path(&id.segment);
    // Torn: cut short.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path(&ids[0]))
        .unwrap();
    f.set_len(3000).unwrap();
    // A header byte flipped (its segment's name).
    let mut raw = std::fs::read(path(&ids[1])).unwrap();
    raw[20] ^= 1;
    std::fs::write(path(&ids[1]), &raw).unwrap();
    // Another segment's file under this one's name.
    std::fs::copy(path(&ids[3]), path(&ids[2])).unwrap();
    for id in &ids[..3] {
        assert!(
            c.get_run(vec![*id], ok).await.is_empty(),
            "bad entry served"
        );
        assert!(!path(id).exists(), "bad entry kept");
        assert!(!c.contains(id));
    }
    assert_eq!(c.get_run(vec![ids[3]], ok).await.len(), 1);
    assert_eq!(c.bytes(), 8192, "45 + 5000 bytes take two pages");
    // A reader that finds an entry's body fails authentication drops it the same way.
    c.drop_entry(&ids[3], "test");
    assert!(!path(&ids[3]).exists());
    assert_eq!(c.bytes(), 0);
    // The layout of earlier versions (a file per block, temporaries) goes at the next open.
    for old in ["blocks", "tmp"] {
        std::fs::create_dir_all(c.dir().join(old)).unwrap();
        std::fs::write(c.dir().join(old).join("x.1"), b"partial").unwrap();
    }
    let cfg = cfg(tmp.path(), None);
    drop(c);
    let c = as_fetched(&cfg).unwrap();
    assert!(!c.dir().join("blocks").exists() && !c.dir().join("tmp").exists());
}

#[tokio::test]
async fn a_reopen_lists_slots_from_the_hole_map_and_bad_ones_go_when_read() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), None);
    let c = as_fetched(&cfg).unwrap();
    let ids: Vec<_> = (0..4).map(|i| c.id("f", "e", i)).collect();
    for id in &ids {
        c.write_entry(*id, &[5u8; 100]);
    }
    let path = c.path(&ids[0].segment);
    drop(c);
    // While unmounted: slot 1's header damaged (a stray write), slot 2 punched out.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"junk", segment::offset(1)).unwrap();
    segment::punch(&f, 2).unwrap();
    let c = as_fetched(&cfg).unwrap();
    assert!(c.contains(&ids[0]) && c.contains(&ids[1]) && c.contains(&ids[3]));
    assert!(!c.contains(&ids[2]), "a hole is no entry");
    assert_eq!(c.bytes(), 3 * 4096);
    // The damaged one is found when read, dropped, and its pages freed.
    let blocks = || std::fs::metadata(&path).unwrap().blocks();
    let before = blocks();
    assert!(c.get_run(vec![ids[1]], ok).await.is_empty());
    assert!(!c.contains(&ids[1]));
    assert!(blocks() < before, "the bad slot's pages are freed");
    assert_eq!(c.bytes(), 2 * 4096);
    // A slot that went missing under the index (punched out) is a quiet miss, not a bad entry.
    segment::punch(&c.file(&ids[3].segment, false).unwrap(), ids[3].slot).unwrap();
    assert!(matches!(c.read_entry(&ids[3], false), Read::Absent));
    assert!(c.get_run(vec![ids[3]], ok).await.is_empty());
    assert!(!c.contains(&ids[3]));
    assert_eq!(c.bytes(), 4096);
    let got = c.get_run(vec![ids[0]], ok).await;
    assert_eq!(&got[0][..], &[5u8; 100][..]);
}

#[tokio::test]
async fn the_budget_holds_and_least_recently_used_go_first_across_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), Some(3 * 4096));
    let c = as_fetched(&cfg).unwrap();
    // Recency is kept per segment: one entry in each.
    let ids: Vec<_> = (0..5).map(|i| c.id(&format!("f{i}"), "e", 0)).collect();
    for id in &ids[..3] {
        c.write_entry(*id, &[1u8; 100]);
    }
    // Using 0 makes 1 the least recent.
    assert_eq!(c.get_run(vec![ids[0]], ok).await.len(), 1);
    c.write_entry(ids[3], &[1u8; 100]);
    assert!(!c.contains(&ids[1]) && c.contains(&ids[0]));
    assert_eq!(files(&c).len(), 3);
    assert_eq!(c.bytes(), 3 * 4096);
    // The order a reopen rebuilds is the files' times (set here, instead of waiting).
    let base = SystemTime::now() - Duration::from_secs(100);
    for (id, age) in [(ids[0], 3), (ids[2], 1), (ids[3], 2)] {
        let f = std::fs::File::options()
            .write(true)
            .open(c.path(&id.segment))
            .unwrap();
        f.set_modified(base + Duration::from_secs(age)).unwrap();
    }
    drop(c);
    let smaller = DiskCacheConfig {
        budget: Some(2 * 4096),
        ..cfg.clone()
    };
    let c = as_fetched(&smaller).unwrap();
    assert!(
        !c.contains(&ids[2]),
        "the oldest goes when the budget shrinks"
    );
    assert!(c.contains(&ids[0]) && c.contains(&ids[3]));
    assert_eq!(files(&c).len(), 2);
}

#[test]
fn one_mount_per_directory_and_private_directories_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), None);
    let first = as_fetched(&cfg).unwrap();
    let err = as_fetched(&cfg).err().expect("second user refused");
    let msg = err.to_string();
    assert!(msg.contains("in use by another sealfs mount"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(first);
    as_fetched(&cfg).expect("free again once the first is gone");
    std::fs::set_permissions(&cfg.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let msg = as_fetched(&cfg).err().expect("loose").to_string();
    assert!(msg.contains("chmod 700"), "{msg}");
    let huge = DiskCacheConfig {
        budget: Some(1 << 60),
        dir: tmp.path().join("other"),
    };
    let msg = as_fetched(&huge).err().expect("too large").to_string();
    assert!(msg.contains("larger than the file system"), "{msg}");
}

#[tokio::test]
async fn sealed_entries_hold_no_plaintext_and_need_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path(), None);
    let c = sealed(&cfg);
    let id = c.id("f", "e", 0);
    let body = b"MARKER-plaintext-MARKER".repeat(100);
    c.write_entry(id, &body);
    let raw = std::fs::read(c.path(&id.segment)).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"MARKER"), "plaintext on disk");
    assert_eq!(&c.get_run(vec![id], ok).await[0][..], &body[..]);
    drop(c);
    // The same directory with a kept-as-fetched cache refuses a sealed entry...
    let plain = as_fetched(&cfg).unwrap();
    assert!(plain.get_run(vec![id], ok).await.is_empty());
    drop(plain);
    // ...and a new local key cannot open the old entries.
    let c = sealed(&cfg);
    c.write_entry(id, &body);
    drop(c);
    std::fs::remove_file(cfg.dir.join("local.key")).unwrap();
    let c = sealed(&cfg);
    assert!(c.get_run(vec![id], ok).await.is_empty());
    assert!(!c.path(&id.segment).exists());
}

/// The entry name in docs/FORMAT.md, "The disk cache's files".
#[test]
fn documented_entry_name_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let scope = "http://127.0.0.1:3900\nbucket\nprefix/";
    let contents = |_: &Path| Ok(Contents::AsFetched);
    let c = DiskCache::open_waiting(&cfg(tmp.path(), None), scope, contents, Duration::ZERO);
    let c = c.unwrap();
    let id = c.id("prefix/f", "\"e\"", 0);
    let doc = include_str!("../../docs/FORMAT.md");
    let name = id.segment.file_name();
    assert!(doc.contains(&name), "{name}");
}
