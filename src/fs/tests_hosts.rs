//! Several hosts on one prefix, over the in-memory store (which enforces conditional writes as
//! S3 does): two `Fs` on one store are two machines. Every race ends with each version either
//! at the name, in a conflict sibling, or in an error the losing application saw; and with no
//! multipart upload left behind. The real-server versions are in `tests/hosts.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{fs_on, new_fs, ME};
use super::*;
use crate::store::mem::MemStore;
use crate::store::probe::Enforced;
use crate::write::OnConflict;

/// Two hosts on one store; attributes cached for an hour, so each host keeps the view it had
/// (only conditions can tell it another host wrote).
fn two_hosts(mem: &Arc<MemStore>) -> (Fs, Fs) {
    let ttl = Duration::from_secs(3600);
    (fs_on(mem.clone(), ttl), fs_on(mem.clone(), ttl))
}

fn with(mem: &Arc<MemStore>, on_conflict: OnConflict, enforced: Enforced) -> Fs {
    let mut cfg = fs_on(mem.clone(), Duration::from_secs(3600)).cfg.clone();
    cfg.write.on_conflict = on_conflict;
    cfg.enforced = enforced;
    new_fs(mem.clone(), cfg)
}

async fn open_rw(fs: &Fs, name: &str) -> Fh {
    let e = fs.lookup(ROOT_INO, name).await.unwrap();
    fs.open(e.ino, libc::O_RDWR, ME.pid).await.unwrap()
}

async fn create(fs: &Fs, name: &str, flags: i32) -> Result<Fh> {
    Ok(fs
        .create(ROOT_INO, name, 0o644, libc_flags::O_WRONLY | flags, ME)
        .await?
        .1)
}

/// Write `data` at 0 and close; the close's outcome.
async fn write_close(fs: &Fs, fh: Fh, data: &[u8]) -> Result<()> {
    if !data.is_empty() {
        fs.write(fh, 0, data).await.unwrap();
    }
    let res = fs.flush(fh, ME.pid).await;
    fs.release(fh).await;
    res
}

/// Every object: key → bytes (plain mode: the bytes as stored).
fn objects(mem: &MemStore) -> Vec<(String, Vec<u8>)> {
    mem.keys()
        .into_iter()
        .map(|k| {
            let v = mem.raw(&k).unwrap().to_vec();
            (k, v)
        })
        .collect()
}

fn sibling_of<'a>(all: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let prefix = format!("{name}.conflict-");
    let found: Vec<_> = all.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
    assert!(found.len() <= 1, "{found:?}");
    found.first().map(|(_, v)| v.as_slice())
}

fn at<'a>(all: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    all.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

#[tokio::test(start_paused = true)]
async fn a_name_created_on_two_hosts_keeps_both_files() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    let fa = create(&a, "f", 0).await.unwrap();
    let fb = create(&b, "f", 0).await.unwrap();
    write_close(&a, fa, b"from a").await.unwrap();
    let lost = write_close(&b, fb, b"from b").await.unwrap_err();
    assert_eq!(lost.errno(), libc::ESTALE, "{lost}");
    let all = objects(&mem);
    assert_eq!(at(&all, "f"), Some(&b"from a"[..]));
    assert_eq!(sibling_of(&all, "f"), Some(&b"from b"[..]));
    // Host b now sees a's file and the sibling.
    let e = b.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!(e.attr.size, 6);
}

#[tokio::test(start_paused = true)]
async fn o_excl_is_exclusive_across_hosts() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    // b looks first: it caches "no such name", as a kernel would.
    assert!(b.lookup(ROOT_INO, "lock").await.is_err());
    let fa = create(&a, "lock", libc_flags::O_EXCL).await.unwrap();
    // The name is claimed on the server at create, before any write or close.
    assert_eq!(mem.raw("lock").unwrap().len(), 0);
    let err = create(&b, "lock", libc_flags::O_EXCL).await.unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
    write_close(&a, fa, b"pid 1").await.unwrap();
    assert_eq!(&mem.raw("lock").unwrap()[..], b"pid 1");
}

/// `--exclusive-create local`: no claim at open (one PUT per new file, as without O_EXCL); a
/// racing create on another host is then caught at close, losing nothing.
#[tokio::test(start_paused = true)]
async fn local_exclusive_creates_claim_nothing_and_conflict_at_close() {
    let mem = Arc::new(MemStore::new());
    let mut cfg = fs_on(mem.clone(), Duration::from_secs(3600)).cfg.clone();
    cfg.exclusive_create = ExclusiveCreate::Local;
    let (a, b) = (new_fs(mem.clone(), cfg.clone()), new_fs(mem.clone(), cfg));
    let fa = create(&a, "f", libc_flags::O_EXCL).await.unwrap();
    assert!(mem.raw("f").is_none(), "nothing stored at open");
    let fb = create(&b, "f", libc_flags::O_EXCL).await.unwrap();
    write_close(&a, fa, b"a").await.unwrap();
    assert_eq!(
        write_close(&b, fb, b"b").await.unwrap_err().errno(),
        libc::ESTALE
    );
    let all = objects(&mem);
    assert_eq!(
        (at(&all, "f"), sibling_of(&all, "f")),
        (Some(&b"a"[..]), Some(&b"b"[..]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_small_overwrite_that_loses_is_kept_as_a_sibling() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    super::tests::write_file(&a, ROOT_INO, "doc", b"v0").await;
    let fa = open_rw(&a, "doc").await;
    let fb = open_rw(&b, "doc").await;
    write_close(&a, fa, b"a's edit").await.unwrap();
    let err = write_close(&b, fb, b"b's edit").await.unwrap_err();
    assert_eq!(err.errno(), libc::ESTALE);
    let all = objects(&mem);
    assert_eq!(at(&all, "doc"), Some(&b"a's edit"[..]));
    assert_eq!(sibling_of(&all, "doc"), Some(&b"b's edit"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_multipart_overwrite_that_loses_moves_the_other_version_aside() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    super::tests::write_file(&a, ROOT_INO, "big", b"v0").await;
    let fa = open_rw(&a, "big").await;
    let fb = open_rw(&b, "big").await;
    // Parts are 64 bytes here: 300 bytes is a multipart upload.
    let (va, vb) = (vec![b'a'; 300], vec![b'b'; 300]);
    write_close(&a, fa, &va).await.unwrap();
    write_close(&b, fb, &vb).await.unwrap();
    let all = objects(&mem);
    assert_eq!(at(&all, "big"), Some(&vb[..]));
    assert_eq!(sibling_of(&all, "big"), Some(&va[..]));
    assert_eq!(mem.pending_uploads(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_overwrite_racing_a_delete_loses_nothing() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    super::tests::write_file(&a, ROOT_INO, "x", b"v0").await;
    super::tests::write_file(&a, ROOT_INO, "y", b"v0").await;
    b.lookup(ROOT_INO, "x").await.unwrap();
    b.lookup(ROOT_INO, "y").await.unwrap();
    // x: a writes, then b deletes the version it saw: refused, a's version stays.
    let fa = open_rw(&a, "x").await;
    write_close(&a, fa, b"a's x").await.unwrap();
    let err = b.unlink(ROOT_INO, "x").await.unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY);
    assert_eq!(&mem.raw("x").unwrap()[..], b"a's x");
    // Told, b looks again and may delete what it now sees.
    b.unlink(ROOT_INO, "x").await.unwrap();
    assert!(mem.raw("x").is_none());
    // y: b deletes first, then a's upload finds nothing where v0 was: kept as a sibling.
    let fa = open_rw(&a, "y").await;
    b.unlink(ROOT_INO, "y").await.unwrap();
    let err = write_close(&a, fa, b"a's y").await.unwrap_err();
    assert_eq!(err.errno(), libc::ESTALE);
    let all = objects(&mem);
    assert_eq!(at(&all, "y"), None);
    assert_eq!(sibling_of(&all, "y"), Some(&b"a's y"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_rename_onto_a_file_changed_elsewhere_is_refused() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    super::tests::write_file(&a, ROOT_INO, "src", b"new").await;
    super::tests::write_file(&a, ROOT_INO, "dst", b"old").await;
    b.lookup(ROOT_INO, "dst").await.unwrap();
    let fa = open_rw(&a, "dst").await;
    write_close(&a, fa, b"a's dst").await.unwrap();
    let err = b
        .rename(ROOT_INO, "src", ROOT_INO, "dst", Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EBUSY);
    assert_eq!(&mem.raw("dst").unwrap()[..], b"a's dst");
    assert_eq!(&mem.raw("src").unwrap()[..], b"new");
}

#[tokio::test(start_paused = true)]
async fn a_chmod_does_not_undo_another_hosts_write() {
    let mem = Arc::new(MemStore::new());
    let (a, b) = two_hosts(&mem);
    let ino = super::tests::write_file(&a, ROOT_INO, "f", b"v0").await;
    let fb = open_rw(&b, "f").await;
    b.setattr(
        b.lookup(ROOT_INO, "f").await.unwrap().ino,
        None,
        SetAttr {
            perm: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // a writes meanwhile; b's metadata copy at close must not put v0 back.
    let fa = a.open(ino, libc::O_RDWR, ME.pid).await.unwrap();
    write_close(&a, fa, b"v1").await.unwrap();
    let err = b.flush(fb, ME.pid).await.unwrap_err();
    b.release(fb).await;
    assert_eq!(err.errno(), libc::ESTALE);
    assert_eq!(&mem.raw("f").unwrap()[..], b"v1");
}

#[tokio::test(start_paused = true)]
async fn overwrite_policy_and_servers_without_conditions_keep_last_writer_wins() {
    for (policy, enforced, ignore) in [
        (OnConflict::Overwrite, Enforced::ALL, false),
        (OnConflict::KeepBoth, Enforced::NONE, true),
    ] {
        let mem = Arc::new(MemStore::new());
        if ignore {
            mem.ignore_conditions();
        }
        let (a, b) = (with(&mem, policy, enforced), with(&mem, policy, enforced));
        let fa = create(&a, "f", 0).await.unwrap();
        let fb = create(&b, "f", libc_flags::O_EXCL).await.unwrap();
        write_close(&a, fa, b"from a").await.unwrap();
        write_close(&b, fb, b"from b").await.unwrap();
        let all = objects(&mem);
        assert_eq!(
            all,
            vec![("f".to_string(), b"from b".to_vec())],
            "{policy:?}"
        );
    }
}

/// Client mode: the sibling is sealed for its own name and reads back through a fresh mount
/// (small and multipart conflicts).
#[tokio::test(start_paused = true)]
async fn client_mode_conflict_siblings_read_back() {
    let mem = Arc::new(MemStore::new());
    let mut cfg = fs_on(mem.clone(), Duration::from_secs(3600)).cfg.clone();
    cfg.keys = Some(Arc::new(crate::crypto::keys::Keyring::new_single(
        crate::crypto::format::Secret([7; 32]),
    )));
    cfg.write.part_size = 2 * 65536;
    let host = || new_fs(mem.clone(), cfg.clone());
    let (a, b) = (host(), host());
    for (name, len) in [("small", 100usize), ("large", 5 * 65536)] {
        super::tests::write_file(&a, ROOT_INO, name, b"v0").await;
        let fa = open_rw(&a, name).await;
        let fb = open_rw(&b, name).await;
        let (va, vb) = (vec![b'a'; len], vec![b'b'; len]);
        // Both write before either closes (a writer needs the file's keys from the version it
        // opened: once that version is gone, a late first write is ESTALE, losing nothing).
        a.write(fa, 0, &va).await.unwrap();
        b.write(fb, 0, &vb).await.unwrap();
        write_close(&a, fa, &[]).await.unwrap();
        let res = write_close(&b, fb, &[]).await;
        // Small: b lost and was told. Large: b's multipart version took the name.
        let (at_name, in_sibling) = match res {
            Err(e) => {
                assert_eq!(e.errno(), libc::ESTALE);
                (va, vb)
            }
            Ok(()) => (vb, va),
        };
        assert_eq!(len > 65536, at_name[0] == b'b', "{name}");
        let fresh = host();
        let dir = fresh.opendir(ROOT_INO);
        let listed = fresh.readdir(ROOT_INO, dir, 0).await.unwrap();
        fresh.releasedir(dir);
        let sibling = listed
            .iter()
            .map(|e| e.name.clone())
            .find(|n| n.starts_with(&format!("{name}.conflict-")))
            .expect("a sibling is listed");
        for (n, want) in [(name.to_string(), at_name), (sibling, in_sibling)] {
            let e = fresh.lookup(ROOT_INO, &n).await.unwrap();
            let fh = fresh.open(e.ino, libc::O_RDONLY, ME.pid).await.unwrap();
            let got = fresh.read(fh, 0, 1 << 20).await.unwrap();
            fresh.release(fh).await;
            assert!(got[..] == want[..], "{n}");
        }
    }
    assert_eq!(mem.pending_uploads(), 0);
}
