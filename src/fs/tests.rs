//! Filesystem operations over the in-memory store: semantics and errnos without a kernel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::store::mem::MemStore;
use crate::store::UserMeta;

pub(super) const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
    pid: 4242,
};

fn fs_with(prefix: &str) -> (Arc<MemStore>, Fs) {
    let mem = Arc::new(MemStore::new());
    let cfg = FsConfig {
        prefix: prefix.into(),
        ..small_cfg(Duration::ZERO)
    };
    (mem.clone(), new_fs(mem, cfg))
}

/// An fs over `store` with small sizes (parts of 64 bytes) and the given metadata TTL.
pub(super) fn fs_on(store: Arc<dyn crate::store::ObjectStore>, metadata_ttl: Duration) -> Fs {
    new_fs(store, small_cfg(metadata_ttl))
}

/// Small sizes (parts of 64 bytes) and the given metadata TTL, at the bucket's root.
fn small_cfg(metadata_ttl: Duration) -> FsConfig {
    FsConfig {
        prefix: String::new(),
        defaults: Defaults {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
        },
        metadata_ttl,
        read_only: false,
        write: WriteConfig {
            part_size: 64,
            max_inflight: 2,
            max_dirty: 128,
            min_copy_part: 0,
            ..WriteConfig::default()
        },
        read: ReadConfig {
            min_window: 16,
            max_window: 64,
            chunk: 128 * 1024,
            max_gets: 2,
            cache_bytes: 1 << 20,
            disk: None,
        },
        keys: None,
        xattrs: true,
        enforced: crate::store::probe::Enforced::ALL,
        exclusive_create: ExclusiveCreate::Server,
        unlinked_names: String::new(),
    }
}

/// A filesystem with its own block cache, as a mount builds one.
pub(super) fn new_fs(store: Arc<dyn crate::store::ObjectStore>, cfg: FsConfig) -> Fs {
    let fetcher = crate::read::Fetcher::new(store.clone(), cfg.read.clone());
    Fs::new(store, fetcher, cfg)
}

pub(super) async fn write_file(fs: &Fs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (e, fh) = fs
        .create(parent, name, 0o640, libc_flags::O_WRONLY, ME)
        .await
        .unwrap();
    fs.write(fh, 0, data).await.unwrap();
    fs.flush(fh, ME.pid).await.unwrap();
    fs.release(fh).await;
    e.ino
}

async fn read_all(fs: &Fs, ino: Ino) -> Vec<u8> {
    let fh = fs.open(ino, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    let data = fs.read(fh, 0, 1 << 20).await.unwrap();
    fs.release(fh).await;
    data.to_vec()
}

async fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino);
    let list = fs.readdir(ino, fh, 0).await.unwrap();
    fs.releasedir(fh);
    list.iter().skip(2).map(|e| e.name.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn files_land_under_the_prefix_with_s3fs_metadata() {
    let (mem, fs) = fs_with("p/");
    write_file(&fs, ROOT_INO, "a.txt", b"hello").await;
    assert_eq!(&mem.raw("p/a.txt").unwrap()[..], b"hello");
    let head = mem.head("p/a.txt").await.unwrap().unwrap();
    assert_eq!(head.user.get("mode").unwrap(), &(0o100640).to_string());
    assert_eq!(head.user.get("uid").unwrap(), "1000");
    let e = fs.lookup(ROOT_INO, "a.txt").await.unwrap();
    assert_eq!((e.attr.size, e.attr.perm, e.attr.uid), (5, 0o640, 1000));
}

#[tokio::test(start_paused = true)]
async fn a_new_file_is_visible_before_its_upload() {
    let (mem, fs) = fs_with("");
    let (e, fh) = fs
        .create(ROOT_INO, "new", 0o644, libc_flags::O_WRONLY, ME)
        .await
        .unwrap();
    fs.write(fh, 0, b"abc").await.unwrap();
    assert!(mem.raw("new").is_none());
    assert_eq!(fs.lookup(ROOT_INO, "new").await.unwrap().ino, e.ino);
    assert_eq!(names(&fs, ROOT_INO).await, vec!["new"]);
    assert_eq!(fs.getattr(e.ino).await.unwrap().size, 3);
    fs.release(fh).await;
    assert_eq!(&mem.raw("new").unwrap()[..], b"abc");
}

#[tokio::test(start_paused = true)]
async fn foreign_objects_show_as_files_and_directories() {
    let (mem, fs) = fs_with("");
    let m = UserMeta::new();
    mem.put("top.bin", Bytes::from_static(b"1234"), &m)
        .await
        .unwrap();
    mem.put("dir/sub/deep.txt", Bytes::from_static(b"x"), &m)
        .await
        .unwrap();
    mem.put("old_$folder$", Bytes::new(), &m).await.unwrap();
    assert_eq!(names(&fs, ROOT_INO).await, vec!["dir", "old", "top.bin"]);
    let dir = fs.lookup(ROOT_INO, "dir").await.unwrap();
    assert_eq!(dir.attr.kind, Kind::Dir);
    let sub = fs.lookup(dir.ino, "sub").await.unwrap();
    let f = fs.lookup(sub.ino, "deep.txt").await.unwrap();
    assert_eq!(
        (f.attr.kind, f.attr.perm, f.attr.uid),
        (Kind::File, 0o644, 0)
    );
    assert_eq!(read_all(&fs, f.ino).await, b"x");
}

#[tokio::test(start_paused = true)]
async fn directories_with_thousands_of_entries_list_across_pages() {
    let (mem, fs) = fs_with("");
    let m = UserMeta::new();
    for i in 0..2500 {
        mem.put(&format!("big/f{i:05}"), Bytes::new(), &m)
            .await
            .unwrap();
    }
    let d = fs.lookup(ROOT_INO, "big").await.unwrap();
    let listed = names(&fs, d.ino).await;
    assert_eq!(listed.len(), 2500);
    assert_eq!(listed[2499], "f02499");
}

#[tokio::test(start_paused = true)]
async fn namespace_errors_have_posix_errnos() {
    let (_mem, fs) = fs_with("");
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap();
    write_file(&fs, d.ino, "f", b"1").await;
    assert_eq!(
        fs.lookup(ROOT_INO, "nope").await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, "d", 0o755, ME)
            .await
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    assert_eq!(
        fs.rmdir(ROOT_INO, "d").await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        fs.unlink(ROOT_INO, "d").await.unwrap_err().errno(),
        libc::EISDIR
    );
    assert_eq!(
        fs.rmdir(d.ino, "f").await.unwrap_err().errno(),
        libc::ENOTDIR
    );
    let f = fs.lookup(d.ino, "f").await.unwrap();
    assert_eq!(
        fs.lookup(f.ino, "x").await.unwrap_err().errno(),
        libc::ENOTDIR
    );
    let flags = RenameFlags {
        exchange: true,
        ..Default::default()
    };
    assert_eq!(
        fs.rename(d.ino, "f", ROOT_INO, "g", flags)
            .await
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    let flags = RenameFlags {
        noreplace: true,
        ..Default::default()
    };
    write_file(&fs, ROOT_INO, "g", b"2").await;
    assert_eq!(
        fs.rename(d.ino, "f", ROOT_INO, "g", flags)
            .await
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    assert_eq!(
        fs.rename(ROOT_INO, "g", ROOT_INO, "d", RenameFlags::default())
            .await
            .unwrap_err()
            .errno(),
        libc::EISDIR
    );
    assert_eq!(
        fs.rename(ROOT_INO, "d", d.ino, "inner", RenameFlags::default())
            .await
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    fs.unlink(d.ino, "f").await.unwrap();
    fs.rmdir(ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&fs, ROOT_INO).await, vec!["g"]);
}

#[tokio::test(start_paused = true)]
async fn renaming_a_directory_moves_every_object_and_open_paths_follow() {
    let (mem, fs) = fs_with("");
    let a = fs.mkdir(ROOT_INO, "a", 0o755, ME).await.unwrap();
    let b = fs.mkdir(a.ino, "b", 0o700, ME).await.unwrap();
    let f = write_file(&fs, b.ino, "f", b"data").await;
    fs.rename(ROOT_INO, "a", ROOT_INO, "z", RenameFlags::default())
        .await
        .unwrap();
    assert!(mem.raw("a/b/f").is_none() && mem.raw("a/").is_none());
    assert_eq!(&mem.raw("z/b/f").unwrap()[..], b"data");
    assert!(mem.raw("z/b/").is_some());
    assert_eq!(read_all(&fs, f).await, b"data");
    let zb = fs
        .lookup(fs.lookup(ROOT_INO, "z").await.unwrap().ino, "b")
        .await
        .unwrap();
    assert_eq!(
        zb.attr.perm, 0o700,
        "directory attributes moved with the marker"
    );
}

#[tokio::test(start_paused = true)]
async fn rename_replaces_the_target_file_and_keeps_attributes() {
    let (mem, fs) = fs_with("");
    write_file(&fs, ROOT_INO, "tmp", b"new").await;
    write_file(&fs, ROOT_INO, "orig", b"old").await;
    fs.rename(ROOT_INO, "tmp", ROOT_INO, "orig", RenameFlags::default())
        .await
        .unwrap();
    assert!(mem.raw("tmp").is_none());
    assert_eq!(&mem.raw("orig").unwrap()[..], b"new");
    let e = fs.lookup(ROOT_INO, "orig").await.unwrap();
    assert_eq!((e.attr.perm, e.attr.uid), (0o640, 1000));
}

#[tokio::test(start_paused = true)]
async fn a_file_renamed_before_close_uploads_under_its_new_name() {
    let (mem, fs) = fs_with("");
    let (_, fh) = fs
        .create(ROOT_INO, "a", 0o644, libc_flags::O_WRONLY, ME)
        .await
        .unwrap();
    fs.write(fh, 0, b"payload").await.unwrap();
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", RenameFlags::default())
        .await
        .unwrap();
    fs.release(fh).await;
    assert!(mem.raw("a").is_none());
    assert_eq!(&mem.raw("b").unwrap()[..], b"payload");
}

#[tokio::test(start_paused = true)]
async fn an_unlinked_open_file_is_never_uploaded() {
    let (mem, fs) = fs_with("");
    let (_, fh) = fs
        .create(ROOT_INO, "t", 0o644, libc_flags::O_WRONLY, ME)
        .await
        .unwrap();
    fs.write(fh, 0, &[1; 300]).await.unwrap();
    fs.unlink(ROOT_INO, "t").await.unwrap();
    fs.flush(fh, ME.pid).await.unwrap();
    fs.release(fh).await;
    assert!(mem.raw("t").is_none());
    assert_eq!(mem.pending_uploads(), 0);
}

#[tokio::test(start_paused = true)]
async fn chmod_chown_utimens_persist_and_truncate_works_on_closed_files() {
    let (mem, fs) = fs_with("");
    let ino = write_file(&fs, ROOT_INO, "f", b"0123456789").await;
    let t = std::time::UNIX_EPOCH + Duration::new(1_600_000_000, 123);
    let set = SetAttr {
        perm: Some(0o600),
        uid: Some(5),
        gid: Some(6),
        mtime: Some(t),
        ..Default::default()
    };
    fs.setattr(ino, None, set).await.unwrap();
    let head = mem.head("f").await.unwrap().unwrap();
    assert_eq!(head.user.get("mtime").unwrap(), "1600000000.000000123");
    let a = fs
        .setattr(
            ino,
            None,
            SetAttr {
                size: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.size, 4);
    assert_eq!(&mem.raw("f").unwrap()[..], b"0123");
    let e = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!((e.attr.perm, e.attr.uid, e.attr.gid), (0o600, 5, 6));
}

#[tokio::test(start_paused = true)]
async fn two_handles_share_writes_and_o_trunc_empties() {
    let (mem, fs) = fs_with("");
    let ino = write_file(&fs, ROOT_INO, "f", b"abcdef").await;
    let h1 = fs.open(ino, libc::O_RDWR, ME.pid).await.unwrap();
    let h2 = fs.open(ino, libc::O_RDONLY, ME.pid).await.unwrap();
    fs.write(h1, 2, b"ZZ").await.unwrap();
    assert_eq!(&fs.read(h2, 0, 100).await.unwrap()[..], b"abZZef");
    fs.release(h1).await;
    fs.release(h2).await;
    assert_eq!(&mem.raw("f").unwrap()[..], b"abZZef");
    let h = fs
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, ME.pid)
        .await
        .unwrap();
    fs.release(h).await;
    assert_eq!(mem.raw("f").unwrap().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn symlinks_round_trip() {
    let (mem, fs) = fs_with("");
    let e = fs.symlink(ROOT_INO, "l", "../target", ME).await.unwrap();
    assert_eq!(fs.readlink(e.ino).await.unwrap(), "../target");
    assert_eq!(&mem.raw("l").unwrap()[..], b"../target");
    let (_mem2, fs2) = (mem.clone(), new_fs(mem.clone(), fs.cfg.clone()));
    let e2 = fs2.lookup(ROOT_INO, "l").await.unwrap();
    assert_eq!(e2.attr.kind, Kind::Symlink);
    assert_eq!(fs2.readlink(e2.ino).await.unwrap(), "../target");
}

#[tokio::test(start_paused = true)]
async fn read_only_mounts_refuse_changes() {
    let (mem, mut fs) = fs_with("");
    mem.put("f", Bytes::from_static(b"x"), &UserMeta::new())
        .await
        .unwrap();
    fs.cfg.read_only = true;
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!(
        fs.open(f.ino, libc::O_RDWR, ME.pid)
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, "d", 0o755, ME)
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
    assert_eq!(
        fs.unlink(ROOT_INO, "f").await.unwrap_err().errno(),
        libc::EROFS
    );
    assert_eq!(read_all(&fs, f.ino).await, b"x");
}

fn client_fs() -> (Arc<MemStore>, Fs) {
    let (mem, fs) = fs_with("");
    let mut cfg = fs.cfg.clone();
    cfg.keys = Some(Arc::new(crate::crypto::keys::Keyring::new_single(
        crate::crypto::format::Secret([9; 32]),
    )));
    cfg.write = WriteConfig {
        part_size: 2 * 65536,
        max_inflight: 2,
        max_dirty: 4 * 65536,
        min_copy_part: 0,
        ..WriteConfig::default()
    };
    (mem.clone(), new_fs(mem, cfg))
}

#[tokio::test(start_paused = true)]
async fn client_mode_stores_only_ciphertext_and_reads_back() {
    let (mem, fs) = client_fs();
    let secret = b"attack at dawn, attack at dawn, attack at dawn".repeat(5000);
    let ino = write_file(&fs, ROOT_INO, "plan.txt", &secret).await;
    let raw = mem.raw("plan.txt").unwrap();
    assert!(
        !raw.windows(14).any(|w| w == b"attack at dawn"),
        "plaintext in the object"
    );
    assert_eq!(
        raw.len() as u64,
        crate::crypto::format::cipher_size(secret.len() as u64)
    );
    let e = fs.lookup(ROOT_INO, "plan.txt").await.unwrap();
    assert_eq!(
        e.attr.size,
        secret.len() as u64,
        "sizes are plaintext sizes"
    );
    assert_eq!(read_all(&fs, ino).await, secret);
    let l = fs
        .symlink(ROOT_INO, "link", "secret-target-name", ME)
        .await
        .unwrap();
    assert!(!mem.raw("link").unwrap().windows(6).any(|w| w == b"secret"));
    assert_eq!(fs.readlink(l.ino).await.unwrap(), "secret-target-name");
}

#[tokio::test(start_paused = true)]
async fn client_mode_tampering_is_eio_never_wrong_bytes() {
    let (mem, fs) = client_fs();
    let data = vec![42u8; 300_000];
    write_file(&fs, ROOT_INO, "f", &data).await;
    let mut raw = mem.raw("f").unwrap().to_vec();
    raw[100_000] ^= 1;
    let user = mem.head("f").await.unwrap().unwrap().user;
    mem.put("f", Bytes::from(raw), &user).await.unwrap();
    let e = fs.lookup(ROOT_INO, "f").await.unwrap();
    let fh = fs.open(e.ino, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    assert_eq!(
        &fs.read(fh, 0, 4096).await.unwrap()[..],
        &data[..4096],
        "untouched blocks still read"
    );
    let err = fs.read(fh, 65536, 65536).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(err.to_string().contains("block 1"), "{err}");
    fs.release(fh).await;
    // A foreign object: listed, unreadable, replaceable.
    mem.put(
        "foreign",
        Bytes::from_static(b"written by another tool"),
        &UserMeta::new(),
    )
    .await
    .unwrap();
    let e = fs.lookup(ROOT_INO, "foreign").await.unwrap();
    let fh = fs.open(e.ino, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    assert_eq!(fs.read(fh, 0, 10).await.unwrap_err().errno(), libc::EIO);
    fs.release(fh).await;
    let fh = fs
        .open(e.ino, libc::O_WRONLY | libc::O_TRUNC, ME.pid)
        .await
        .unwrap();
    fs.write(fh, 0, b"mine now").await.unwrap();
    fs.release(fh).await;
    assert_eq!(read_all(&fs, e.ino).await, b"mine now");
    assert_eq!(
        fs.lookup(ROOT_INO, ".sealfs").await.unwrap_err().errno(),
        libc::EACCES
    );
}

#[tokio::test(start_paused = true)]
async fn client_mode_detects_a_body_swapped_from_another_object() {
    let (mem, fs) = client_fs();
    write_file(&fs, ROOT_INO, "a", b"contents of a").await;
    write_file(&fs, ROOT_INO, "b", b"contents of b").await;
    let a_meta = mem.head("a").await.unwrap().unwrap().user;
    assert!(a_meta.contains_key("sealfs-id"));
    mem.put("a", mem.raw("b").unwrap(), &a_meta).await.unwrap();
    let fs2 = new_fs(mem.clone(), fs.cfg.clone());
    let e = fs2.lookup(ROOT_INO, "a").await.unwrap();
    let fh = fs2.open(e.ino, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    let err = fs2.read(fh, 0, 100).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains("belongs to another file"), "{err}");
    // A rename (copy with metadata) stays readable.
    fs2.rename(ROOT_INO, "b", ROOT_INO, "c", RenameFlags::default())
        .await
        .unwrap();
    let c = fs2.lookup(ROOT_INO, "c").await.unwrap();
    assert_eq!(read_all(&fs2, c.ino).await, b"contents of b");
    // chmod keeps the id, so the file stays readable.
    fs2.setattr(
        c.ino,
        None,
        SetAttr {
            perm: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fs3 = new_fs(mem.clone(), fs.cfg.clone());
    let c = fs3.lookup(ROOT_INO, "c").await.unwrap();
    assert_eq!(read_all(&fs3, c.ino).await, b"contents of b");
}

#[tokio::test(start_paused = true)]
async fn files_under_a_renamed_directory_read_with_fresh_caches() {
    // With a long TTL the inode's cached version would be the pre-rename object (the copy has
    // a new ETag), so a read pinned to it would fail with ESTALE.
    let (mem, fs) = fs_with("");
    let mut cfg = fs.cfg.clone();
    cfg.metadata_ttl = Duration::from_secs(600);
    let fs = new_fs(mem.clone(), cfg);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap();
    let f = write_file(&fs, d.ino, "f", b"payload").await;
    let g = write_file(&fs, d.ino, "g", b"open").await;
    let fh = fs.open(g, libc_flags::O_RDONLY, ME.pid).await.unwrap();
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", RenameFlags::default())
        .await
        .unwrap();
    assert_eq!(read_all(&fs, f).await, b"payload");
    assert_eq!(
        &fs.read(fh, 0, 100).await.unwrap()[..],
        b"open",
        "open handles follow"
    );
    fs.release(fh).await;
}

#[tokio::test(start_paused = true)]
async fn only_the_openers_close_uploads_a_forked_childs_close_does_not() {
    let (mem, fs) = fs_with("");
    let (_, fh) = fs
        .create(ROOT_INO, "f", 0o644, libc_flags::O_WRONLY, ME)
        .await
        .unwrap();
    fs.write(fh, 0, b"first half").await.unwrap();
    // A child that inherited the descriptor closes it (at exec or exit): nothing is uploaded,
    // so no partial file appears.
    fs.flush(fh, ME.pid + 1).await.unwrap();
    assert!(mem.head("f").await.unwrap().is_none());
    fs.write(fh, 10, b", second half").await.unwrap();
    fs.flush(fh, ME.pid).await.unwrap();
    assert_eq!(&sealfs_get(&mem, "f").await[..], b"first half, second half");
    fs.release(fh).await;
}

async fn sealfs_get(mem: &MemStore, key: &str) -> Vec<u8> {
    crate::store::get_all(mem, key)
        .await
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(start_paused = true)]
async fn names_missing_from_a_fresh_listing_cost_no_request_within_the_ttl() {
    use crate::store::counted::Counted;
    let mem = Arc::new(MemStore::new());
    let counted = Counted::new(mem.clone());
    let counters = counted.counters();
    let (_, base) = fs_with("");
    let cfg = FsConfig {
        metadata_ttl: Duration::from_millis(300),
        ..base.config().clone()
    };
    let fs = new_fs(Arc::new(counted), cfg);
    let total = || counters.snapshot().0.iter().map(|(_, n)| n).sum::<u64>();
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap().ino;
    let before = total();
    for i in 0..20 {
        let name = format!("f{i}");
        assert!(matches!(fs.lookup(d, &name).await, Err(FsError::NotFound)));
        write_file(&fs, d, &name, b"x").await;
    }
    // The clock is paused: all 20 cycles happen within the TTL of the first listing, whatever
    // the machine's speed.
    assert_eq!(total() - before, 20, "one PUT per file, no HEAD or LIST");
    // What this mount created is found (even once forgotten), what it removed is gone.
    fs.forget(fs.lookup(d, "f3").await.unwrap().ino, 2);
    assert!(fs.lookup(d, "f3").await.is_ok());
    fs.unlink(d, "f4").await.unwrap();
    assert!(matches!(fs.lookup(d, "f4").await, Err(FsError::NotFound)));
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", RenameFlags::default())
        .await
        .unwrap();
    let e = fs.lookup(ROOT_INO, "e").await.unwrap().ino;
    assert!(fs.lookup(e, "f5").await.is_ok());
    // Another writer's new object shows up once the listing is older than the TTL.
    mem.put("e/other", Bytes::from_static(b"o"), &UserMeta::new())
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(300)).await;
    assert!(fs.lookup(e, "other").await.is_ok());
}
