//! POSIX conformance through a real mount, checked against the local filesystem: one script of
//! system calls (success and error cases, another user's calls through `--allow-other`, sticky
//! directories, special files, extended attributes, an unlinked open file) runs in a local
//! directory and in a mount of the suite's mode, and every step must answer the same: the same
//! value, or the same errno. Steps where sealfs differs on purpose are checked on their own
//! (`sealfs_limits`), with the reason.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// A step's outcome: a value to compare, or the errno.
type Outcome = Result<String, i32>;

fn io<T>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The result of a libc call returning -1 on failure.
fn sys(ret: libc::c_long) -> Outcome {
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok("ok".into())
    }
}

fn ok(r: std::io::Result<impl Sized>) -> Outcome {
    io(r).map(|_| "ok".into())
}

fn kind(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    match () {
        _ if t.is_fifo() => "fifo",
        _ if t.is_socket() => "socket",
        _ if t.is_char_device() => "char",
        _ if t.is_block_device() => "block",
        _ if t.is_symlink() => "symlink",
        _ if t.is_dir() => "dir",
        _ => "file",
    }
}

fn stat(p: &Path) -> Outcome {
    let m = io(fs::symlink_metadata(p))?;
    Ok(format!(
        "{} {:o} uid={} size={} rdev={:x}",
        kind(&m),
        m.mode() & 0o7777,
        m.uid(),
        if m.is_dir() { 0 } else { m.size() },
        m.rdev()
    ))
}

fn mknod(p: &Path, mode: u32, dev: u64) -> Outcome {
    sys(unsafe { libc::mknod(c(p).as_ptr(), mode, dev) } as _)
}

fn truncate(p: &Path, size: i64) -> Outcome {
    sys(unsafe { libc::truncate(c(p).as_ptr(), size) } as _)
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Outcome {
    let n = CString::new(name).unwrap();
    let (v, len) = (value.as_ptr().cast(), value.len());
    sys(unsafe { libc::setxattr(c(p).as_ptr(), n.as_ptr(), v, len, flags) } as _)
}

fn getxattr(p: &Path, name: &str) -> Outcome {
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    let (b, len) = (buf.as_mut_ptr().cast(), buf.len());
    let got = unsafe { libc::getxattr(c(p).as_ptr(), n.as_ptr(), b, len) };
    sys(got as _)?;
    Ok(String::from_utf8_lossy(&buf[..got as usize]).into_owned())
}

fn listxattr(p: &Path) -> Outcome {
    let mut buf = [0u8; 256];
    let got = unsafe { libc::listxattr(c(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    sys(got as _)?;
    let mut names: Vec<&str> = std::str::from_utf8(&buf[..got as usize])
        .unwrap()
        .split('\0')
        .filter(|n| n.starts_with("user."))
        .collect();
    names.sort();
    Ok(names.join(","))
}

fn removexattr(p: &Path, name: &str) -> Outcome {
    let n = CString::new(name).unwrap();
    sys(unsafe { libc::removexattr(c(p).as_ptr(), n.as_ptr()) } as _)
}

fn set_mtime(p: &Path, secs: i64) -> Outcome {
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = [t, t];
    sys(unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), times.as_ptr(), 0) } as _)
}

/// Run `f` as `uid` (group `uid`, no supplementary groups) in a child process: its outcome
/// is "ok" or the errno.
fn as_user(uid: u32, f: impl FnOnce() -> Outcome) -> Outcome {
    // SAFETY: the child only makes system calls and exits; it never returns into the test
    // harness.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let dropped = libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(uid) == 0
                && libc::setuid(uid) == 0;
            let code = match (dropped, f()) {
                (false, _) => 254,
                (true, Ok(_)) => 0,
                (true, Err(e)) => e.clamp(1, 253),
            };
            libc::_exit(code);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        match libc::WEXITSTATUS(status) {
            0 => Ok("ok".into()),
            254 => panic!("could not become uid {uid}"),
            e => Err(e),
        }
    }
}

const NOBODY: u32 = 65534;
const ALICE: u32 = 1000;
const BOB: u32 = 1001;

/// The script: every step's name and outcome, in order, run under `root`.
fn script(root: &Path) -> Vec<(&'static str, Outcome)> {
    let t = root.join("t");
    let p = |rel: &str| t.join(rel);
    let mut out: Vec<(&'static str, Outcome)> = Vec::new();
    let mut step = |name: &'static str, o: Outcome| out.push((name, o));

    step("mkdir t", ok(fs::create_dir(&t)));
    step(
        "chmod t 0755",
        ok(fs::set_permissions(&t, fs::Permissions::from_mode(0o755))),
    );
    step("mkdir a", ok(fs::create_dir(p("a"))));
    step("mkdir a again", ok(fs::create_dir(p("a"))));
    let new = |path: &Path| {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    step(
        "create a/f",
        io(new(&p("a/f"))).and_then(|mut f| ok(f.write_all(b"hello"))),
    );
    step("create a/f exclusively again", ok(new(&p("a/f"))));
    step("open missing", ok(fs::File::open(p("missing"))));
    step("open under a file", ok(fs::File::open(p("a/f/x"))));
    step("mkdir under a file", ok(fs::create_dir(p("a/f/x"))));
    step("rmdir non-empty", ok(fs::remove_dir(p("a"))));
    step("rmdir a file", ok(fs::remove_dir(p("a/f"))));
    step("rmdir missing", ok(fs::remove_dir(p("missing"))));
    step("unlink a directory", ok(fs::remove_file(p("a"))));
    step("unlink missing", ok(fs::remove_file(p("missing"))));
    step("mkdir d2", ok(fs::create_dir(p("d2"))));
    step("rename dir onto file", ok(fs::rename(p("d2"), p("a/f"))));
    step("rename file onto dir", ok(fs::rename(p("a/f"), p("d2"))));
    step("rename dir into itself", ok(fs::rename(p("a"), p("a/sub"))));
    step("rename onto non-empty dir", ok(fs::rename(p("d2"), p("a"))));
    step("rename missing", ok(fs::rename(p("missing"), p("x"))));
    step("create 256-byte name", ok(new(&p(&"n".repeat(256)))));
    step("create 255-byte name", ok(new(&p(&"n".repeat(255)))));
    step("stat a/f", stat(&p("a/f")));

    // Sizes: 2^50 bytes is past both this ext4's and sealfs's largest file.
    step("truncate to 2^50", truncate(&p("a/f"), 1 << 50));
    step("truncate to 3", truncate(&p("a/f"), 3));
    step(
        "read after truncate",
        io(fs::read(p("a/f"))).map(|b| format!("{b:?}")),
    );
    let pwrite_far = || {
        use std::os::unix::fs::FileExt;
        let f = io(fs::OpenOptions::new().write(true).open(p("a/f")))?;
        ok(f.write_at(b"x", 1 << 50))
    };
    step("pwrite at 2^50", pwrite_far());

    // Special files.
    step("mkfifo", mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0));
    step(
        "mkfifo on an existing name",
        mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0),
    );
    step("stat fifo", stat(&p("fifo")));
    step("mknod regular", mknod(&p("reg"), libc::S_IFREG | 0o600, 0));
    step("stat regular", stat(&p("reg")));
    let dev = libc::makedev(1, 3);
    step(
        "mknod char device",
        mknod(&p("null"), libc::S_IFCHR | 0o666, dev),
    );
    step("stat char device", stat(&p("null")));
    step("mknod socket", mknod(&p("sock"), libc::S_IFSOCK | 0o755, 0));
    step("stat socket", stat(&p("sock")));
    step("symlink", ok(std::os::unix::fs::symlink("a/f", p("link"))));
    step(
        "symlink on an existing name",
        ok(std::os::unix::fs::symlink("a/f", p("link"))),
    );
    step(
        "readlink",
        io(fs::read_link(p("link"))).map(|t| t.display().to_string()),
    );

    // An unlinked open file stays readable and writable through its descriptor.
    let unlinked = || {
        let mut f = io(fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(p("u")))?;
        io(f.write_all(b"abc"))?;
        io(f.sync_all())?;
        io(fs::remove_file(p("u")))?;
        io(f.write_all(b"def"))?;
        let mut back = String::new();
        use std::io::Seek;
        io(f.seek(std::io::SeekFrom::Start(0)))?;
        io(f.read_to_string(&mut back))?;
        let m = io(f.metadata())?;
        Ok(format!(
            "{back} nlink={} exists={}",
            m.nlink(),
            p("u").exists()
        ))
    };
    step("unlinked open file", unlinked());

    // Extended attributes.
    step("setxattr", setxattr(&p("a/f"), "user.k", b"v", 0));
    step("getxattr", getxattr(&p("a/f"), "user.k"));
    step("getxattr missing", getxattr(&p("a/f"), "user.none"));
    step(
        "setxattr create existing",
        setxattr(&p("a/f"), "user.k", b"w", libc::XATTR_CREATE),
    );
    step(
        "setxattr replace missing",
        setxattr(&p("a/f"), "user.none", b"w", libc::XATTR_REPLACE),
    );
    step("setxattr on a dir", setxattr(&p("a"), "user.d", b"dir", 0));
    step("listxattr", listxattr(&p("a/f")));
    step("removexattr", removexattr(&p("a/f"), "user.k"));
    step("removexattr missing", removexattr(&p("a/f"), "user.k"));

    // Permissions, another user's view (through --allow-other on the mount).
    step(
        "chmod a/f 0600",
        ok(fs::set_permissions(
            p("a/f"),
            fs::Permissions::from_mode(0o600),
        )),
    );
    step("stat a/f after chmod", stat(&p("a/f")));
    step(
        "other user creates in a 0755 root dir",
        as_user(NOBODY, || ok(new(&p("theirs")))),
    );
    step(
        "other user reads a 0600 file",
        as_user(NOBODY, || ok(fs::read(p("a/f")))),
    );
    step(
        "other user chmods it",
        as_user(NOBODY, || {
            ok(fs::set_permissions(
                p("a/f"),
                fs::Permissions::from_mode(0o666),
            ))
        }),
    );
    step(
        "other user chowns it",
        as_user(NOBODY, || {
            ok(std::os::unix::fs::chown(p("a/f"), Some(NOBODY), None))
        }),
    );
    step(
        "other user unlinks it",
        as_user(NOBODY, || ok(fs::remove_file(p("a/f")))),
    );
    step(
        "chown to the other user",
        ok(std::os::unix::fs::chown(
            p("a/f"),
            Some(NOBODY),
            Some(NOBODY),
        )),
    );
    step(
        "the owner chmods it",
        as_user(NOBODY, || {
            ok(fs::set_permissions(
                p("a/f"),
                fs::Permissions::from_mode(0o640),
            ))
        }),
    );
    step("stat after the owner's chmod", stat(&p("a/f")));

    // A sticky directory: only an entry's owner (or the directory's, or root) removes it.
    step("mkdir sticky", ok(fs::create_dir(p("s"))));
    step(
        "chmod sticky 1777",
        ok(fs::set_permissions(
            p("s"),
            fs::Permissions::from_mode(0o1777),
        )),
    );
    step("stat sticky", stat(&p("s")));
    step(
        "alice creates in sticky",
        as_user(ALICE, || ok(new(&p("s/alice")))),
    );
    step(
        "bob unlinks alice's file",
        as_user(BOB, || ok(fs::remove_file(p("s/alice")))),
    );
    step(
        "bob renames alice's file",
        as_user(BOB, || ok(fs::rename(p("s/alice"), p("s/bob")))),
    );
    step(
        "alice unlinks her file",
        as_user(ALICE, || ok(fs::remove_file(p("s/alice")))),
    );

    // Directory link counts and times.
    let nlink = |rel: &str| io(fs::metadata(p(rel))).map(|m| m.nlink().to_string());
    step("nlink of t (a, d2, s)", nlink(""));
    step("nlink of an empty dir", nlink("d2"));
    step("utime d2 to 1000", set_mtime(&p("d2"), 1000));
    step("create in d2", ok(new(&p("d2/new"))));
    step(
        "d2 mtime moved",
        io(fs::metadata(p("d2"))).map(|m| (m.mtime() > 1000).to_string()),
    );
    step("utime a/f to 1000", set_mtime(&p("a/f"), 1000));
    step(
        "mtime and ctime of a/f",
        io(fs::metadata(p("a/f"))).map(|m| format!("{} {}", m.mtime(), m.ctime() > 1000)),
    );
    out
}

#[test]
fn posix_calls_answer_as_on_a_local_filesystem() {
    let local = tempfile::tempdir().unwrap();
    fs::set_permissions(local.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let want = script(local.path());

    let m = Mount::new(&unique("posix"), &["--allow-other"]);
    fs::set_permissions(m.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let got = script(m.path());
    assert_eq!(want.len(), got.len());
    let mut differ = Vec::new();
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        if w != g {
            differ.push(format!("{name}: local {w:?}, sealfs {g:?}"));
        }
    }
    // A remount reads back what the script stored.
    let t = m.p("t");
    let stored: Vec<Outcome> = ["fifo", "null", "sock", "reg", "a/f"]
        .iter()
        .map(|n| stat(&t.join(n)))
        .collect();
    let m = m.remount(&["--allow-other"]);
    let t = m.p("t");
    let again: Vec<Outcome> = ["fifo", "null", "sock", "reg", "a/f"]
        .iter()
        .map(|n| stat(&t.join(n)))
        .collect();
    assert_eq!(
        stored, again,
        "special files and attributes after a remount"
    );
    assert_eq!(getxattr(&t.join("a"), "user.d"), Ok("dir".into()));
    assert!(
        differ.is_empty(),
        "{} steps differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// Where sealfs differs from a local filesystem on purpose.
#[test]
fn sealfs_limits() {
    let m = Mount::new(&unique("limits"), &[]);
    fs::write(m.p("f"), b"x").unwrap();
    // S3 objects have one name each: no hard links.
    assert_eq!(errno_of(fs::hard_link(m.p("f"), m.p("g"))), libc::EPERM);
    // Only the user. namespace is stored.
    assert_eq!(
        setxattr(&m.p("f"), "trusted.k", b"v", 0),
        Err(libc::EOPNOTSUPP)
    );
    // The largest file is 10,000 parts (78 GiB at the default 8 MiB parts), below ext4's.
    assert_eq!(truncate(&m.p("f"), 100 << 30), Err(libc::EFBIG));
    // S3 keeps 2 KB of metadata per object.
    assert_eq!(
        setxattr(&m.p("f"), "user.big", &[b'x'; 3000], 0),
        Err(libc::E2BIG)
    );
    assert_eq!(fs::read(m.p("f")).unwrap(), b"x");
}

/// A chmod, chown, utimens or xattr change rewrites an object's metadata: keys another tool
/// put there survive it, on files and on directory markers.
#[test]
fn metadata_updates_keep_what_other_tools_wrote() {
    use sealfs::store::ObjectStore;
    let m = Mount::new(&unique("foreign-meta"), &[]);
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"x").unwrap();
    let s3 = m.s3();
    for rel in ["d/", "d/f"] {
        let key = m.key(rel);
        let obj = rt().block_on(s3.head(&key)).unwrap().unwrap();
        let mut meta = obj.user.clone();
        meta.insert("other-tool".into(), "keep".into());
        rt().block_on(sealfs::store::copy_any_size(
            &s3,
            &obj,
            &key,
            &meta,
            8 << 20,
            &sealfs::store::Expect::Anything,
        ))
        .unwrap();
    }
    let m = m.remount(&[]);
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(m.p("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(setxattr(&m.p("d/f"), "user.k", b"v", 0), Ok("ok".into()));
    for rel in ["d/", "d/f"] {
        let obj = rt().block_on(s3.head(&m.key(rel))).unwrap().unwrap();
        assert_eq!(
            obj.user.get("other-tool").map(String::as_str),
            Some("keep"),
            "{rel}"
        );
    }
    assert_eq!(stat(&m.p("d")).unwrap(), "dir 700 uid=0 size=0 rdev=0");
    assert_eq!(getxattr(&m.p("d/f"), "user.k"), Ok("v".into()));
}

/// `--no-xattr`: no extended attributes, and the kernel stops asking after one ENOSYS.
#[test]
fn no_xattr_mounts_answer_eopnotsupp() {
    let m = Mount::new(&unique("no-xattr"), &["--no-xattr"]);
    fs::write(m.p("f"), b"x").unwrap();
    for _ in 0..2 {
        assert_eq!(
            setxattr(&m.p("f"), "user.k", b"v", 0),
            Err(libc::EOPNOTSUPP)
        );
        assert_eq!(getxattr(&m.p("f"), "user.k"), Err(libc::EOPNOTSUPP));
    }
    assert_eq!(fs::read(m.p("f")).unwrap(), b"x");
}
