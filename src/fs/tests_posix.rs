//! POSIX behaviours over the in-memory store, each in plain and in client (format 2) mode:
//! EFBIG before any upload, unlinked open files, special files, ctime, metadata other tools
//! own.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tests::{fs_on, new_fs, write_file, ME};
use super::*;
use crate::crypto::keys::{Keyring, Names};
use crate::store::mem::MemStore;

/// The two ways objects carry attributes: plain (s3fs keys) and sealed.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Plain,
    Sealed,
}

const MODES: [Mode; 2] = [Mode::Plain, Mode::Sealed];

/// A mount of `mem` in `mode` (the keyring is derived from a fixed key, so a second mount of
/// the same store in the same mode reads what the first wrote).
fn mount(mem: &Arc<MemStore>, mode: Mode, ring: &Arc<Keyring>) -> Fs {
    let mut cfg = fs_on(mem.clone(), Duration::ZERO).cfg.clone();
    if let Mode::Sealed = mode {
        cfg.keys = Some(ring.clone());
        // Client-mode parts are whole 64 KiB blocks.
        cfg.write.part_size = 2 * 65536;
        cfg.write.max_dirty = 4 * 65536;
    }
    new_fs(mem.clone(), cfg)
}

fn setup(mode: Mode) -> (Arc<MemStore>, Arc<Keyring>, Fs) {
    let mem = Arc::new(MemStore::new());
    let ring = Arc::new(Keyring::new_v2(Names::Encrypted));
    let fs = mount(&mem, mode, &ring);
    (mem, ring, fs)
}

async fn keys(mem: &MemStore) -> Vec<String> {
    let all = crate::store::list_all(mem, "").await.unwrap();
    all.into_iter().map(|o| o.key).collect()
}

/// Set the stored mtime and ctime of the object at `path` to `PAST`, as an older write would
/// have left them.
async fn backdate(fs: &Fs, mem: &MemStore, path: &str) {
    let key = fs.layout.file_key(path);
    let obj = mem.head(&key).await.unwrap().unwrap();
    let d = fs.decode(&obj, false).unwrap();
    let attr = Attr {
        mtime: PAST,
        ctime: PAST,
        ..d.attr
    };
    let m = fs.meta.encode(
        &key,
        &attr,
        meta::id_bytes(d.file_id.as_deref()),
        Some(&obj.user),
    );
    crate::store::copy_any_size(mem, &obj, &key, &m, 1 << 20, &Default::default())
        .await
        .unwrap();
}

const PAST: SystemTime = UNIX_EPOCH;

async fn read_at(fs: &Fs, fh: Fh, len: u32) -> Vec<u8> {
    fs.read(fh, 0, len).await.unwrap().to_vec()
}

#[tokio::test(start_paused = true)]
async fn sizes_past_the_largest_object_are_efbig_before_anything_is_sent() {
    for mode in MODES {
        let (mem, _, fs) = setup(mode);
        let ino = write_file(&fs, ROOT_INO, "f", b"abc").await;
        let before = keys(&mem).await;
        let huge = SetAttr {
            size: Some(999_999_999_999_999),
            ..Default::default()
        };
        let e = fs.setattr(ino, None, huge.clone()).await.unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{mode:?} truncate: {e}");
        let fh = fs.open(ino, libc_flags::O_WRONLY, ME.pid).await.unwrap();
        let e = fs.setattr(ino, Some(fh), huge).await.unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{mode:?} ftruncate");
        let e = fs.write(fh, 1 << 50, b"x").await.unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{mode:?} pwrite");
        let e = fs.write(fh, u64::MAX - 1, b"xyz").await.unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{mode:?} pwrite at the end of u64");
        let e = fs.fallocate(fh, 1 << 50, 1, false).await.unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{mode:?} fallocate");
        // The largest size that fits is accepted (64-byte parts here: 640,000 bytes).
        let max = fs.cfg.write.max_plain_size();
        fs.fallocate(fh, 0, max, true).await.unwrap();
        fs.fallocate(fh, 0, 10, false).await.unwrap();
        assert_eq!(fs.getattr(ino).await.unwrap().size, 10);
        fs.flush(fh, ME.pid).await.unwrap();
        fs.release(fh).await;
        assert_eq!(keys(&mem).await, before, "{mode:?}: nothing new was stored");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unlinked_open_file_stays_readable_and_writable_until_its_last_close() {
    for mode in MODES {
        let (mem, _, fs) = setup(mode);
        let before = keys(&mem).await;
        // A new file, made durable, then unlinked (an editor's swap file, sqlite's journal).
        let (e, fh) = fs
            .create(ROOT_INO, "new", 0o600, libc::O_RDWR, ME)
            .await
            .unwrap();
        fs.write(fh, 0, b"written before").await.unwrap();
        fs.fsync(fh).await.unwrap();
        fs.unlink(ROOT_INO, "new").await.unwrap();
        assert_eq!(
            fs.lookup(ROOT_INO, "new").await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(read_at(&fs, fh, 100).await, b"written before", "{mode:?}");
        fs.write(fh, 0, b"WRITTEN").await.unwrap();
        fs.fsync(fh).await.unwrap();
        assert_eq!(read_at(&fs, fh, 100).await, b"WRITTEN before", "{mode:?}");
        let a = fs.getattr(e.ino).await.unwrap();
        assert_eq!((a.nlink, a.size), (0, 14), "{mode:?}");
        // Created and unlinked at once, written after (sqlite's temporary files), past a part.
        let (_, tmp) = fs
            .create(ROOT_INO, "tmp", 0o600, libc::O_RDWR, ME)
            .await
            .unwrap();
        fs.unlink(ROOT_INO, "tmp").await.unwrap();
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        fs.write(tmp, 0, &big).await.unwrap();
        assert_eq!(fs.read(tmp, 0, 2000).await.unwrap().to_vec(), big);
        // An existing file opened for reading, then unlinked and replaced by a rename.
        write_file(&fs, ROOT_INO, "old", b"old contents").await;
        write_file(&fs, ROOT_INO, "other", b"replacement").await;
        let old = fs.lookup(ROOT_INO, "old").await.unwrap();
        let rd = fs
            .open(old.ino, libc_flags::O_RDONLY, ME.pid)
            .await
            .unwrap();
        fs.rename(ROOT_INO, "other", ROOT_INO, "old", RenameFlags::default())
            .await
            .unwrap();
        assert_eq!(read_at(&fs, rd, 100).await, b"old contents", "{mode:?}");
        let now = fs.lookup(ROOT_INO, "old").await.unwrap();
        let fh2 = fs
            .open(now.ino, libc_flags::O_RDONLY, ME.pid)
            .await
            .unwrap();
        assert_eq!(read_at(&fs, fh2, 100).await, b"replacement");
        fs.release(fh2).await;
        for h in [fh, tmp, rd] {
            fs.flush(h, ME.pid).await.unwrap();
            fs.release(h).await;
        }
        // Only the replacement is left: the unlinked files' bytes went at their last close.
        let mut left = keys(&mem).await;
        left.retain(|k| !before.contains(k));
        assert_eq!(left.len(), 1, "{mode:?}: {left:?}");
        assert_eq!(mem.pending_uploads(), 0);
        assert!(!left[0].contains(crate::layout::UNLINKED_DIR));
    }
}

#[tokio::test(start_paused = true)]
async fn special_files_keep_type_mode_and_device_across_a_remount() {
    for mode in MODES {
        let (mem, ring, fs) = setup(mode);
        let fifo = fs
            .mknod(ROOT_INO, "pipe", libc::S_IFIFO | 0o640, 0, ME)
            .await
            .unwrap();
        assert_eq!(fifo.attr.kind, Kind::Fifo);
        let dev = libc::makedev(8, 1) as u32;
        fs.mknod(ROOT_INO, "sda1", libc::S_IFBLK | 0o600, dev, ME)
            .await
            .unwrap();
        fs.mknod(ROOT_INO, "tty", libc::S_IFCHR | 0o620, 0x0501, ME)
            .await
            .unwrap();
        fs.mknod(ROOT_INO, "sock", libc::S_IFSOCK | 0o755, 0, ME)
            .await
            .unwrap();
        let reg = fs.mknod(ROOT_INO, "plain", 0o644, 0, ME).await.unwrap();
        assert_eq!(reg.attr.kind, Kind::File);
        let e = fs
            .mknod(ROOT_INO, "plain", libc::S_IFIFO | 0o644, 0, ME)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EEXIST);
        let again = mount(&mem, mode, &ring);
        let want = [
            ("pipe", Kind::Fifo, 0o640, 0),
            ("sda1", Kind::BlockDevice, 0o600, dev),
            ("tty", Kind::CharDevice, 0o620, 0x0501),
            ("sock", Kind::Socket, 0o755, 0),
            ("plain", Kind::File, 0o644, 0),
        ];
        for (name, kind, perm, rdev) in want {
            let a = again.lookup(ROOT_INO, name).await.unwrap().attr;
            assert_eq!(
                (a.kind, a.perm, a.rdev, a.size),
                (kind, perm, rdev, 0),
                "{name}"
            );
        }
        // Renamed and unlinked like any file.
        again
            .rename(ROOT_INO, "pipe", ROOT_INO, "pipe2", RenameFlags::default())
            .await
            .unwrap();
        assert_eq!(
            again.lookup(ROOT_INO, "pipe2").await.unwrap().attr.kind,
            Kind::Fifo
        );
        again.unlink(ROOT_INO, "pipe2").await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn ctime_is_stored_and_follows_every_change() {
    for mode in MODES {
        let (mem, ring, fs) = setup(mode);
        let later = |a: &Attr| a.ctime > PAST + Duration::from_secs(1);
        write_file(&fs, ROOT_INO, "f", b"data").await;
        // utimens: mtime goes where it is told, ctime to now, and both are stored.
        backdate(&fs, &mem, "f").await;
        let ino = mount(&mem, mode, &ring)
            .lookup(ROOT_INO, "f")
            .await
            .unwrap();
        assert_eq!((ino.attr.mtime, ino.attr.ctime), (PAST, PAST), "{mode:?}");
        let ino = fs.lookup(ROOT_INO, "f").await.unwrap().ino;
        let when = PAST + Duration::new(1_000_000_000, 5);
        let set = SetAttr {
            mtime: Some(when),
            ..Default::default()
        };
        let a = fs.setattr(ino, None, set).await.unwrap();
        assert!(a.mtime == when && later(&a), "{mode:?}");
        let stored = mount(&mem, mode, &ring)
            .lookup(ROOT_INO, "f")
            .await
            .unwrap();
        assert_eq!(
            (stored.attr.mtime, stored.attr.ctime),
            (when, a.ctime),
            "{mode:?}"
        );
        // A rename changes ctime, not mtime.
        backdate(&fs, &mem, "f").await;
        fs.rename(ROOT_INO, "f", ROOT_INO, "g", RenameFlags::default())
            .await
            .unwrap();
        let moved = mount(&mem, mode, &ring)
            .lookup(ROOT_INO, "g")
            .await
            .unwrap();
        assert!(moved.attr.mtime == PAST && later(&moved.attr), "{mode:?}");
        // chmod, chown, truncate and a write each change it.
        let changes = [
            SetAttr {
                perm: Some(0o600),
                ..Default::default()
            },
            SetAttr {
                uid: Some(7),
                ..Default::default()
            },
            SetAttr {
                size: Some(2),
                ..Default::default()
            },
        ];
        for set in changes {
            backdate(&fs, &mem, "g").await;
            let g = mount(&mem, mode, &ring);
            let e = g.lookup(ROOT_INO, "g").await.unwrap();
            g.setattr(e.ino, None, set.clone()).await.unwrap();
            let after = mount(&mem, mode, &ring)
                .lookup(ROOT_INO, "g")
                .await
                .unwrap();
            assert!(later(&after.attr), "{mode:?} {set:?}");
        }
        backdate(&fs, &mem, "g").await;
        let g = mount(&mem, mode, &ring);
        let e = g.lookup(ROOT_INO, "g").await.unwrap();
        let fh = g.open(e.ino, libc_flags::O_WRONLY, ME.pid).await.unwrap();
        g.write(fh, 0, b"x").await.unwrap();
        g.flush(fh, ME.pid).await.unwrap();
        g.release(fh).await;
        let after = mount(&mem, mode, &ring)
            .lookup(ROOT_INO, "g")
            .await
            .unwrap();
        assert!(
            later(&after.attr) && after.attr.mtime > PAST,
            "{mode:?} write"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn chmod_of_a_directory_keeps_metadata_sealfs_does_not_own() {
    let (mem, _, fs) = setup(Mode::Plain);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap();
    let mut m = mem.head("d/").await.unwrap().unwrap().user;
    m.insert("other-tool".into(), "keep me".into());
    mem.put("d/", bytes::Bytes::new(), &m).await.unwrap();
    let set = SetAttr {
        perm: Some(0o700),
        ..Default::default()
    };
    fs.setattr(d.ino, None, set).await.unwrap();
    let after = mem.head("d/").await.unwrap().unwrap().user;
    assert_eq!(after.get("other-tool").map(String::as_str), Some("keep me"));
    assert_eq!(after.get("mode").unwrap(), &(0o040700).to_string());
}

#[tokio::test(start_paused = true)]
async fn a_directory_shows_its_entries_changing_and_counts_its_subdirectories() {
    for mode in MODES {
        let (mem, ring, fs) = setup(mode);
        fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap();
        let marker = fs.layout.dir_prefix("d");
        let backdate_dir = || async {
            let obj = mem.head(&marker).await.unwrap().unwrap();
            let d = fs.decode(&obj, true).unwrap();
            let attr = Attr {
                mtime: PAST,
                ctime: PAST,
                ..d.attr
            };
            let m = fs.meta.encode(&marker, &attr, None, Some(&obj.user));
            mem.put(&marker, bytes::Bytes::new(), &m).await.unwrap();
        };
        let later = |a: &Attr| a.mtime > PAST + Duration::from_secs(1) && a.ctime >= a.mtime;
        // Each change runs on a fresh mount that read the marker's (old) times first.
        for step in 0..5 {
            backdate_dir().await;
            let m = mount(&mem, mode, &ring);
            let d = m.lookup(ROOT_INO, "d").await.unwrap();
            assert_eq!(d.attr.mtime, PAST, "{mode:?} step {step}");
            match step {
                0 => drop(write_file(&m, d.ino, "f", b"x").await),
                1 => drop(m.mkdir(d.ino, "sub", 0o755, ME).await.unwrap()),
                2 => m
                    .rename(d.ino, "f", d.ino, "g", RenameFlags::default())
                    .await
                    .unwrap(),
                3 => m.unlink(d.ino, "g").await.unwrap(),
                _ => m.rmdir(d.ino, "sub").await.unwrap(),
            }
            let a = m.getattr(d.ino).await.unwrap();
            assert!(later(&a), "{mode:?} step {step}: {a:?}");
        }
        // Link counts: 2 plus the subdirectories the listing shows.
        let m = mount(&mem, mode, &ring);
        let d = m.lookup(ROOT_INO, "d").await.unwrap();
        for name in ["a", "b", "c"] {
            m.mkdir(d.ino, name, 0o755, ME).await.unwrap();
        }
        write_file(&m, d.ino, "file", b"").await;
        let fresh = mount(&mem, mode, &ring);
        let d = fresh.lookup(ROOT_INO, "d").await.unwrap();
        let fh = fresh.opendir(d.ino);
        fresh.readdir(d.ino, fh, 0).await.unwrap();
        fresh.releasedir(fh);
        assert_eq!(fresh.getattr(d.ino).await.unwrap().nlink, 5, "{mode:?}");
        fresh.rmdir(d.ino, "c").await.unwrap();
        assert_eq!(fresh.getattr(d.ino).await.unwrap().nlink, 4, "{mode:?}");
        assert_eq!(fresh.getattr(ROOT_INO).await.unwrap().nlink, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn user_extended_attributes_are_stored_with_the_object_within_its_budget() {
    for mode in MODES {
        let (mem, ring, fs) = setup(mode);
        let ino = write_file(&fs, ROOT_INO, "f", b"data").await;
        let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.unwrap();
        fs.setxattr(ino, "user.origin", b"https://example.com", SetMode::Any)
            .await
            .unwrap();
        fs.setxattr(ino, "user.empty", b"", SetMode::Create)
            .await
            .unwrap();
        fs.setxattr(d.ino, "user.dir", &[0, 255, 1], SetMode::Any)
            .await
            .unwrap();
        let errno = |r: Result<()>| r.unwrap_err().errno();
        let e = fs.setxattr(ino, "user.empty", b"x", SetMode::Create).await;
        assert_eq!(errno(e), libc::EEXIST);
        let e = fs.setxattr(ino, "user.none", b"x", SetMode::Replace).await;
        assert_eq!(errno(e), libc::ENODATA);
        let e = fs.setxattr(ino, "trusted.x", b"x", SetMode::Any).await;
        assert_eq!(errno(e), libc::ENOTSUP);
        let e = fs.setxattr(ino, "user.big", &[7; 3000], SetMode::Any).await;
        assert_eq!(errno(e), libc::E2BIG, "{mode:?}");
        // A rename keeps them; a new mount reads them back.
        fs.rename(ROOT_INO, "f", ROOT_INO, "g", RenameFlags::default())
            .await
            .unwrap();
        let m = mount(&mem, mode, &ring);
        let g = m.lookup(ROOT_INO, "g").await.unwrap().ino;
        assert_eq!(
            m.getxattr(g, "user.origin").await.unwrap(),
            b"https://example.com"
        );
        assert_eq!(m.getxattr(g, "user.empty").await.unwrap(), b"");
        assert_eq!(m.listxattr(g).await.unwrap(), b"user.empty\0user.origin\0");
        let md = m.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(m.getxattr(md, "user.dir").await.unwrap(), [0, 255, 1]);
        // Set on an open file: stored at its close with its data.
        let fh = m.open(g, libc_flags::O_WRONLY, ME.pid).await.unwrap();
        m.write(fh, 0, b"DA").await.unwrap();
        m.setxattr(g, "user.origin", b"changed", SetMode::Replace)
            .await
            .unwrap();
        m.removexattr(g, "user.empty").await.unwrap();
        let e = m.removexattr(g, "user.empty").await.unwrap_err();
        assert_eq!(e.errno(), libc::ENODATA);
        m.flush(fh, ME.pid).await.unwrap();
        m.release(fh).await;
        let again = mount(&mem, mode, &ring);
        let g = again.lookup(ROOT_INO, "g").await.unwrap().ino;
        assert_eq!(again.listxattr(g).await.unwrap(), b"user.origin\0");
        assert_eq!(again.getxattr(g, "user.origin").await.unwrap(), b"changed");
        let e = again.getxattr(g, "user.empty").await.unwrap_err();
        assert_eq!(e.errno(), libc::ENODATA);
    }
}

#[tokio::test(start_paused = true)]
async fn extended_attributes_written_by_s3fs_are_read() {
    let (mem, _, fs) = setup(Mode::Plain);
    let mut m = crate::store::UserMeta::new();
    m.insert("mode".into(), "33188".into());
    // {"user.k":"dg=="} URL-encoded, as s3fs writes it ("dg==" is base64 of "v").
    m.insert("xattr".into(), "%7B%22user.k%22%3A%22dg%3D%3D%22%7D".into());
    mem.put("s", bytes::Bytes::from_static(b"x"), &m)
        .await
        .unwrap();
    let ino = fs.lookup(ROOT_INO, "s").await.unwrap().ino;
    assert_eq!(fs.getxattr(ino, "user.k").await.unwrap(), b"v");
}

#[tokio::test(start_paused = true)]
async fn s3fs_old_style_directory_objects_are_directories() {
    let (mem, _, fs) = setup(Mode::Plain);
    let dir = crate::store::UserMeta::new();
    mem.put_typed(
        "old",
        bytes::Bytes::new(),
        dir.clone(),
        "application/x-directory",
    );
    mem.put("old/inside", bytes::Bytes::from_static(b"x"), &dir)
        .await
        .unwrap();
    mem.put_typed("empty", bytes::Bytes::new(), dir, "application/x-directory");
    let old = fs.lookup(ROOT_INO, "old").await.unwrap();
    assert_eq!(old.attr.kind, Kind::Dir);
    assert_eq!(
        fs.lookup(old.ino, "inside").await.unwrap().attr.kind,
        Kind::File
    );
    let empty = fs.lookup(ROOT_INO, "empty").await.unwrap();
    assert_eq!(empty.attr.kind, Kind::Dir);
    // rmdir removes the object; a rename leaves a marker at the new name.
    fs.rmdir(ROOT_INO, "empty").await.unwrap();
    assert!(mem.raw("empty").is_none());
    fs.rename(ROOT_INO, "old", ROOT_INO, "new", RenameFlags::default())
        .await
        .unwrap();
    assert!(mem.raw("old").is_none() && mem.raw("new/").is_some());
    assert_eq!(&mem.raw("new/inside").unwrap()[..], b"x");
    let fresh = fs_on(mem.clone(), Duration::ZERO);
    assert_eq!(
        fresh.lookup(ROOT_INO, "new").await.unwrap().attr.kind,
        Kind::Dir
    );
    assert_eq!(
        fresh.lookup(ROOT_INO, "old").await.unwrap_err().errno(),
        libc::ENOENT
    );
}
