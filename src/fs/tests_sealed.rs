//! Client mode, format 2, over the in-memory store: encrypted names and sealed attributes
//! against a bucket adversary who lists, copies and rewrites objects and their metadata.

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{new_fs, write_file, ME};
use super::*;
use crate::crypto::keys::{Keyring, Names};
use crate::store::mem::MemStore;
use crate::store::UserMeta;

fn sealed_fs(mem: &Arc<MemStore>, ring: &Arc<Keyring>) -> Fs {
    let mut cfg = super::tests::fs_on(mem.clone(), Duration::ZERO).cfg.clone();
    cfg.keys = Some(ring.clone());
    new_fs(mem.clone(), cfg)
}

fn setup() -> (Arc<MemStore>, Arc<Keyring>, Fs) {
    let mem = Arc::new(MemStore::new());
    let ring = Arc::new(Keyring::new_v2(Names::Encrypted));
    let fs = sealed_fs(&mem, &ring);
    (mem, ring, fs)
}

async fn all_keys(mem: &MemStore) -> Vec<String> {
    crate::store::list_all(mem, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn read_all(fs: &Fs, ino: Ino) -> Result<Vec<u8>> {
    let fh = fs.open(ino, libc_flags::O_RDONLY, ME.pid).await?;
    let data = fs.read(fh, 0, 1 << 20).await;
    fs.release(fh).await;
    Ok(data?.to_vec())
}

async fn entry_names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino);
    let list = fs.readdir(ino, fh, 0).await.unwrap();
    fs.releasedir(fh);
    list.iter()
        .map(|e| e.name.clone())
        .filter(|n| n != "." && n != "..")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_bucket_sees_no_name_and_no_attribute_and_a_new_mount_reads_everything() {
    let (mem, ring, fs) = setup();
    let d = fs.mkdir(ROOT_INO, "taxes-2024", 0o750, ME).await.unwrap();
    write_file(&fs, d.ino, "salary.pdf", b"confidential").await;
    fs.symlink(d.ino, "latest", "salary.pdf", ME).await.unwrap();
    for key in all_keys(&mem).await {
        for name in ["taxes", "salary", "latest", "pdf"] {
            assert!(!key.contains(name), "{key} shows {name}");
        }
        let user = mem.head(&key).await.unwrap().unwrap().user;
        assert_eq!(user.keys().collect::<Vec<_>>(), ["sealfs-attr"], "{key}");
    }
    let fs2 = sealed_fs(&mem, &ring);
    assert_eq!(entry_names(&fs2, ROOT_INO).await, ["taxes-2024"]);
    let d2 = fs2.lookup(ROOT_INO, "taxes-2024").await.unwrap();
    assert_eq!(
        (d2.attr.kind, d2.attr.perm, d2.attr.uid),
        (Kind::Dir, 0o750, 1000)
    );
    assert_eq!(entry_names(&fs2, d2.ino).await, ["latest", "salary.pdf"]);
    let f = fs2.lookup(d2.ino, "salary.pdf").await.unwrap();
    assert_eq!((f.attr.perm, f.attr.uid, f.attr.gid), (0o640, 1000, 1000));
    assert_eq!(read_all(&fs2, f.ino).await.unwrap(), b"confidential");
    let l = fs2.lookup(d2.ino, "latest").await.unwrap();
    assert_eq!(l.attr.kind, Kind::Symlink);
    assert_eq!(fs2.readlink(l.ino).await.unwrap(), "salary.pdf");

    // A directory rename re-encrypts every name below it and reseals every attribute.
    fs2.rename(
        ROOT_INO,
        "taxes-2024",
        ROOT_INO,
        "archive",
        RenameFlags::default(),
    )
    .await
    .unwrap();
    let fs3 = sealed_fs(&mem, &ring);
    assert_eq!(entry_names(&fs3, ROOT_INO).await, ["archive"]);
    let a = fs3.lookup(ROOT_INO, "archive").await.unwrap();
    assert_eq!(a.attr.perm, 0o750);
    let f = fs3.lookup(a.ino, "salary.pdf").await.unwrap();
    assert_eq!(read_all(&fs3, f.ino).await.unwrap(), b"confidential");
    // A file rename too, and chmod keeps the file id (the file stays readable).
    fs3.rename(
        a.ino,
        "salary.pdf",
        ROOT_INO,
        "s.pdf",
        RenameFlags::default(),
    )
    .await
    .unwrap();
    let s = fs3.lookup(ROOT_INO, "s.pdf").await.unwrap();
    let set = SetAttr {
        perm: Some(0o600),
        ..Default::default()
    };
    fs3.setattr(s.ino, None, set).await.unwrap();
    let fs4 = sealed_fs(&mem, &ring);
    let s = fs4.lookup(ROOT_INO, "s.pdf").await.unwrap();
    assert_eq!(s.attr.perm, 0o600);
    assert_eq!(read_all(&fs4, s.ino).await.unwrap(), b"confidential");
}

#[tokio::test(start_paused = true)]
async fn copied_stripped_or_edited_attributes_are_eio_never_shown() {
    let (mem, ring, fs) = setup();
    write_file(&fs, ROOT_INO, "a", b"contents of a").await;
    write_file(&fs, ROOT_INO, "b", b"contents of b").await;
    fs.mkdir(ROOT_INO, "d", 0o700, ME).await.unwrap();
    let layout = crate::layout::Layout::with_names("", ring.name_cipher());
    let (ka, kb) = (layout.file_key("a"), layout.file_key("b"));
    let a_meta = mem.head(&ka).await.unwrap().unwrap().user;
    // b's body under a's metadata, a's metadata on b, b stripped, a marker's on a file.
    mem.put(&kb, mem.raw(&kb).unwrap(), &a_meta).await.unwrap();
    let fresh = sealed_fs(&mem, &ring);
    let err = fresh.lookup(ROOT_INO, "b").await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(err.to_string().contains(&kb), "{err}");
    mem.put(&kb, mem.raw(&kb).unwrap(), &UserMeta::new())
        .await
        .unwrap();
    let fresh = sealed_fs(&mem, &ring);
    assert_eq!(
        fresh.lookup(ROOT_INO, "b").await.unwrap_err().errno(),
        libc::EIO
    );
    let marker_meta = mem
        .head(&layout.dir_prefix("d"))
        .await
        .unwrap()
        .unwrap()
        .user;
    mem.put(&ka, mem.raw(&ka).unwrap(), &marker_meta)
        .await
        .unwrap();
    let fresh = sealed_fs(&mem, &ring);
    assert_eq!(
        fresh.lookup(ROOT_INO, "a").await.unwrap_err().errno(),
        libc::EIO
    );
    // Attributes sealed under another prefix key do not open either.
    let other = Arc::new(Keyring::new_v2(Names::Encrypted));
    let fs_other = sealed_fs(&Arc::new(MemStore::new()), &other);
    let sealed = fs_other
        .meta
        .encode(&ka, &fs.new_attr(Kind::File, 0o777, ME), None, None);
    mem.put(&ka, mem.raw(&ka).unwrap(), &sealed).await.unwrap();
    let fresh = sealed_fs(&mem, &ring);
    assert_eq!(
        fresh.lookup(ROOT_INO, "a").await.unwrap_err().errno(),
        libc::EIO
    );
}

#[tokio::test(start_paused = true)]
async fn names_that_are_not_this_directorys_are_skipped_not_shown() {
    let (mem, ring, fs) = setup();
    let d = fs.mkdir(ROOT_INO, "d", 0o700, ME).await.unwrap();
    write_file(&fs, d.ino, "inner", b"x").await;
    write_file(&fs, ROOT_INO, "top", b"y").await;
    let layout = crate::layout::Layout::with_names("", ring.name_cipher());
    // Another tool's object, and `inner`'s encrypted name copied to the root.
    mem.put("plain-name.txt", Bytes::from_static(b"z"), &UserMeta::new())
        .await
        .unwrap();
    let inner = layout.file_key("d/inner");
    let stray = inner.rsplit('/').next().unwrap().to_string();
    let meta = mem.head(&inner).await.unwrap().unwrap().user;
    mem.put(&stray, mem.raw(&inner).unwrap(), &meta)
        .await
        .unwrap();
    let fresh = sealed_fs(&mem, &ring);
    assert_eq!(entry_names(&fresh, ROOT_INO).await, ["d", "top"]);
    assert_eq!(
        fresh
            .lookup(ROOT_INO, "plain-name.txt")
            .await
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
}

#[tokio::test(start_paused = true)]
async fn paths_whose_keys_would_pass_1024_bytes_are_enametoolong() {
    let (_mem, _ring, fs) = setup();
    // Each 200-byte name takes 299 bytes once encrypted: three fit in 1,024, four do not.
    let name = "n".repeat(200);
    let mut dir = ROOT_INO;
    for _ in 0..3 {
        dir = fs.mkdir(dir, &name, 0o755, ME).await.unwrap().ino;
    }
    let err = fs.mkdir(dir, &name, 0o755, ME).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
    let err = fs.create(dir, &name, 0o644, libc_flags::O_WRONLY, ME).await;
    assert_eq!(err.unwrap_err().errno(), libc::ENAMETOOLONG);
    write_file(&fs, dir, "short", b"fits").await;
}
