//! Unmodified tools through a real mount, in the suite's mode (scripts/test.sh runs this file
//! in `none` and `client`): cp -a, tar, rsync, git, sqlite3, restic and editors' save patterns
//! on a generated tree of about two thousand entries (nested directories, symlinks, empty files
//! and directories, exact nanosecond mtimes, assorted modes, one file over 100 MiB). Each tool
//! must reproduce the tree exactly (contents, modes, mtimes, symlink targets).

mod common;

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::Hasher;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use common::*;

const BIG: u64 = 101 * 1024 * 1024;

/// Deterministic bytes (xorshift), so the tree is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let t = UNIX_EPOCH + Duration::new(secs, nanos);
    fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// The source tree, made once per test process: 10 x 10 directories of 18 files (sizes from
/// empty to 300 KB, modes 600/640/644/755), a file symlink and a directory symlink in each,
/// an empty directory, and one 101 MiB file. Every mtime has a nanosecond part.
fn tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let root = tree_dir().join("src");
        let mut rng = Rng(0x5ea1f5);
        let sizes = [0usize, 1, 100, 1000, 1500, 2000, 70_000, 300_000];
        let modes = [0o600, 0o640, 0o644, 0o755];
        let mut dirs = Vec::new();
        for a in 0..10 {
            for b in 0..10 {
                let d = root.join(format!("d{a}/s{b}"));
                fs::create_dir_all(&d).unwrap();
                for f in 0..18 {
                    let p = d.join(format!("f{f}.dat"));
                    let n = sizes[(rng.next() % sizes.len() as u64) as usize];
                    fs::write(&p, rng.bytes(n)).unwrap();
                    let mode = modes[(rng.next() % 4) as usize];
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                    set_mtime(&p, 1_500_000_000 + rng.next() % 100_000_000, 123_456_789);
                }
                std::os::unix::fs::symlink("f0.dat", d.join("link")).unwrap();
                std::os::unix::fs::symlink("../../d0", d.join("dirlink")).unwrap();
                dirs.push(d);
            }
            dirs.push(root.join(format!("d{a}")));
        }
        fs::create_dir_all(root.join("empty/inner")).unwrap();
        let big = root.join("big.bin");
        let mut f = fs::File::create(&big).unwrap();
        let chunk = rng.bytes(1 << 20);
        for i in 0..BIG >> 20 {
            let mut c = chunk.clone();
            c[0] = i as u8;
            std::io::Write::write_all(&mut f, &c).unwrap();
        }
        drop(f);
        set_mtime(&big, 1_700_000_000, 1);
        dirs.extend([root.join("empty/inner"), root.join("empty"), root.clone()]);
        // Directory mtimes last: creating entries changes them.
        for (i, d) in dirs.iter().enumerate() {
            set_mtime(d, 1_600_000_000 + i as u64, 987_654_321);
        }
        root
    })
}

/// Where this process makes the tree (~200 MB). A static is never dropped, so a temporary
/// directory would outlive the process: each process removes the trees of test processes
/// that are gone, and at most the last one's stays behind.
fn tree_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    const NAME: &str = "sealfs-tools-tree-";
    for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(NAME) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("{NAME}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    dir
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        size: u64,
        hash: u64,
    },
    Link(PathBuf),
}

/// Everything the tools must preserve, by relative path (symlinks not followed).
fn snapshot(root: &Path) -> Vec<(PathBuf, Entry)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Entry)>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mtime = (md.mtime(), md.mtime_nsec());
            let mode = md.mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.push((rel, Entry::Link(fs::read_link(&p).unwrap())));
            } else if md.is_dir() {
                out.push((rel, Entry::Dir { mode, mtime }));
                walk(root, &p, out);
            } else {
                let mut h = DefaultHasher::new();
                h.write(&fs::read(&p).unwrap());
                let (size, hash) = (md.len(), h.finish());
                out.push((
                    rel,
                    Entry::File {
                        mode,
                        mtime,
                        size,
                        hash,
                    },
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(expected: &Path, actual: &Path) {
    assert_same_tree_but_dir_times(expected, actual, &[]);
}

/// `assert_same_tree`, except the mtimes of the directories `dirs` (relative paths).
fn assert_same_tree_but_dir_times(expected: &Path, actual: &Path, dirs: &[&str]) {
    let masked = |root: &Path| {
        let mut v = snapshot(root);
        for (p, e) in v.iter_mut() {
            if let Entry::Dir { mtime, .. } = e {
                if dirs.iter().any(|d| p == Path::new(d)) {
                    *mtime = (0, 0);
                }
            }
        }
        v
    };
    let (a, b) = (masked(expected), masked(actual));
    assert_eq!(
        a.len(),
        b.len(),
        "entry count: {} vs {}",
        expected.display(),
        actual.display()
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{} vs {}", expected.display(), actual.display());
    }
}

fn sh(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

#[test]
fn cp_a_and_tar_reproduce_the_tree_exactly() {
    let src = tree();
    let m = Mount::new(&unique("tools-cp"), &[]);
    sh(Command::new("cp").arg("-a").arg(src).arg(m.p("cp")));
    assert_same_tree(src, &m.p("cp"));

    // tar: extract onto the mount (modes and mtimes kept), then create an archive on the mount
    // from the mount and extract it elsewhere.
    let local = tempfile::tempdir().unwrap();
    let archive = local.path().join("src.tar");
    sh(Command::new("tar")
        .args(["--format=posix", "-cf"])
        .arg(&archive)
        .arg("-C")
        .arg(src.parent().unwrap())
        .arg("src"));
    fs::create_dir(m.p("tar")).unwrap();
    sh(Command::new("tar")
        .arg("-xpf")
        .arg(&archive)
        .arg("-C")
        .arg(m.p("tar")));
    assert_same_tree(src, &m.p("tar/src"));
    sh(Command::new("tar")
        .args(["--format=posix", "-cf"])
        .arg(m.p("back.tar"))
        .arg("-C")
        .arg(m.p("tar"))
        .arg("src"));
    let out = local.path().join("out");
    fs::create_dir(&out).unwrap();
    sh(Command::new("tar")
        .arg("-xpf")
        .arg(m.p("back.tar"))
        .arg("-C")
        .arg(&out));
    assert_same_tree(src, &out.join("src"));
}

#[test]
fn rsync_persists_sizes_and_mtimes_so_a_second_run_transfers_nothing() {
    let src = tree();
    let m = Mount::new(&unique("tools-rsync"), &[]);
    let dst = format!("{}/", m.p("rs").display());
    let rsync = |extra: &[&str], from: &Path| {
        sh(Command::new("rsync")
            .args(["-a", "--stats"])
            .args(extra)
            .arg(format!("{}/", from.display()))
            .arg(&dst))
    };
    rsync(&[], src);
    assert_same_tree(src, &m.p("rs"));
    let stats = rsync(&[], src);
    assert!(
        stats.contains("Number of regular files transferred: 0"),
        "{stats}"
    );

    // A working copy of part of the tree, changed in the ways rsync's modes are for.
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path().join("w");
    sh(Command::new("cp").arg("-a").arg(src.join("d3")).arg(&work));
    let dst = format!("{}/", m.p("w").display());
    let rsync = |extra: &[&str]| {
        sh(Command::new("rsync")
            .args(["-a", "--stats"])
            .args(extra)
            .arg(format!("{}/", work.display()))
            .arg(&dst))
    };
    rsync(&[]);
    fs::remove_file(work.join("s1/f1.dat")).unwrap();
    fs::write(work.join("s2/new.dat"), b"new file").unwrap();
    let stats = rsync(&["--delete"]);
    assert!(stats.contains("Number of deleted files: 1"), "{stats}");
    // rsync sets a directory's times before it deletes or renames into it, and sets them again
    // afterwards only at times (its generator and receiver race): on a local filesystem
    // (ext4) as here, s1's and s2's mtimes may stay those of the deletion and of new.dat's
    // rename. Everything else must match.
    assert_same_tree_but_dir_times(&work, &m.p("w"), &["s1", "s2"]);
    // --inplace: same size, different bytes in the middle, rewritten in place on the mount.
    let f = work.join("s4/f2.dat");
    let mut body = fs::read(&f).unwrap();
    body.resize(200_000, 7);
    fs::write(&f, &body).unwrap();
    rsync(&["--inplace"]);
    body[100_000] ^= 0xff;
    fs::write(&f, &body).unwrap();
    set_mtime(&f, 1_650_000_000, 42);
    let stats = rsync(&["--inplace"]);
    assert!(
        stats.contains("Number of regular files transferred: 1"),
        "{stats}"
    );
    assert_same_tree_but_dir_times(&work, &m.p("w"), &["s1", "s2"]);
    // --append: only the new tail is sent and appended.
    let g = work.join("s5/f3.dat");
    let mut tail = fs::read(&g).unwrap();
    tail.extend_from_slice(&[1u8; 70_000]);
    fs::write(&g, &tail).unwrap();
    rsync(&["--append-verify"]);
    assert_same_tree_but_dir_times(&work, &m.p("w"), &["s1", "s2"]);
}

#[test]
fn git_repositories_live_on_the_mount() {
    let m = Mount::new(&unique("tools-git"), &[]);
    let repo = m.p("repo");
    fs::create_dir(&repo).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        sh(Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args))
    };
    git(&repo, &["init", "-q"]);
    sh(Command::new("cp")
        .arg("-a")
        .arg(tree().join("d4"))
        .arg(repo.join("d4")));
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "first"]);
    git(&repo, &["checkout", "-qb", "topic"]);
    fs::write(repo.join("d4/topic.txt"), "on the branch\n").unwrap();
    fs::remove_file(repo.join("d4/s0/f0.dat")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "second"]);
    git(&repo, &["checkout", "-q", "main"]);
    assert!(!repo.join("d4/topic.txt").exists());
    assert!(repo.join("d4/s0/f0.dat").exists());
    git(&repo, &["fsck", "--strict"]);
    assert!(git(&repo, &["status", "--porcelain"]).is_empty());
    assert_eq!(
        fs::read(repo.join("d4/s1/f1.dat")).unwrap(),
        fs::read(tree().join("d4/s1/f1.dat")).unwrap()
    );

    sh(Command::new("git")
        .args(["clone", "-q"])
        .arg(&repo)
        .arg(m.p("clone")));
    git(&m.p("clone"), &["fsck", "--strict"]);
    let log = git(&m.p("clone"), &["log", "--oneline", "--all"]);
    assert_eq!(log.lines().count(), 2, "{log}");
}

#[test]
fn sqlite_databases_survive_transactions_and_a_remount() {
    let m = Mount::new(&unique("tools-sqlite"), &[]);
    let mut sql = String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n");
    for tx in 0..100 {
        sql.push_str("BEGIN;\n");
        for i in 0..100 {
            let id = tx * 100 + i;
            sql.push_str(&format!("INSERT INTO t VALUES({id}, 'row {id}');\n"));
        }
        sql.push_str("COMMIT;\n");
    }
    let script = tempfile::NamedTempFile::new().unwrap();
    fs::write(script.path(), sql).unwrap();
    let db = m.p("db.sqlite");
    let query = |db: &Path, q: &str| sh(Command::new("sqlite3").arg(db).arg(q));
    sh(Command::new("sqlite3")
        .arg(&db)
        .arg(format!(".read {}", script.path().display())));
    assert_eq!(query(&db, "PRAGMA integrity_check;").trim(), "ok");
    let m = m.remount(&[]);
    let db = m.p("db.sqlite");
    assert_eq!(query(&db, "PRAGMA integrity_check;").trim(), "ok");
    assert_eq!(
        query(&db, "SELECT count(*), sum(id) FROM t;").trim(),
        "10000|49995000"
    );
}

#[test]
fn restic_backs_up_checks_and_restores_through_the_mount() {
    let m = Mount::new(&unique("tools-restic"), &[]);
    let src = tree();
    let restic = |args: &[&str]| {
        sh(Command::new("restic")
            .env("RESTIC_PASSWORD", "sealfs test")
            .env(
                "RESTIC_CACHE_DIR",
                std::env::temp_dir().join("sealfs-restic-cache"),
            )
            .arg("-r")
            .arg(m.p("repo"))
            .args(["--no-cache", "-q"])
            .args(args))
    };
    restic(&["init"]);
    let paths = [src.join("d5"), src.join("d6"), src.join("big.bin")];
    let paths: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    restic(&[&["backup"], &paths[..]].concat());
    restic(&[&["backup"], &paths[..]].concat());
    restic(&["check", "--read-data"]);
    let out = tempfile::tempdir().unwrap();
    restic(&[
        "restore",
        "latest",
        "--target",
        out.path().to_str().unwrap(),
    ]);
    let restored = out.path().join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src.join("d5"), &restored.join("d5"));
    assert_same_tree(&src.join("d6"), &restored.join("d6"));
    assert_eq!(
        fs::read(restored.join("big.bin")).unwrap(),
        fs::read(src.join("big.bin")).unwrap()
    );
}

#[test]
fn editors_save_by_rename_and_rewrite_in_place() {
    let m = Mount::new(&unique("tools-edit"), &[]);
    let f = m.p("notes.txt");
    fs::write(&f, "one\ntwo\nthree\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    // sed -i: writes a temporary file in the same directory, copies the mode, renames it over.
    sh(Command::new("sed").args(["-i", "s/two/TWO/"]).arg(&f));
    assert_eq!(fs::read_to_string(&f).unwrap(), "one\nTWO\nthree\n");
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    // vi-style in-place rewrite: truncate and write the whole file through the same inode.
    let ino = fs::metadata(&f).unwrap().ino();
    let mut h = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f)
        .unwrap();
    std::io::Write::write_all(&mut h, b"rewritten\n").unwrap();
    h.sync_all().unwrap();
    drop(h);
    assert_eq!(fs::metadata(&f).unwrap().ino(), ino);
    let m = m.remount(&[]);
    assert_eq!(fs::read_to_string(m.p("notes.txt")).unwrap(), "rewritten\n");
    assert!(
        fs::read_dir(m.path()).unwrap().count() == 1,
        "no temporary files left behind"
    );
}
