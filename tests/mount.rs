//! Every operation of the mount issue, through the kernel (real FUSE) against the local S3
//! server, driven with std::fs and real processes.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use sealfs::store::{ObjectStore, UserMeta};

#[test]
fn files_and_directories_round_trip_and_land_in_the_bucket() {
    let m = Mount::new(&unique("basic"), &[]);
    fs::write(m.p("hello.txt"), b"hello world").unwrap();
    assert_eq!(fs::read(m.p("hello.txt")).unwrap(), b"hello world");
    fs::create_dir(m.p("dir")).unwrap();
    fs::create_dir_all(m.p("dir/a/b")).unwrap();
    fs::write(m.p("dir/a/b/deep"), b"x").unwrap();
    fs::write(m.p("empty"), b"").unwrap();
    let mut names: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "empty", "hello.txt"]);
    assert_eq!(fs::metadata(m.p("empty")).unwrap().len(), 0);
    assert!(fs::metadata(m.p("dir/a")).unwrap().is_dir());

    let obj = m.head("hello.txt");
    assert_eq!(obj.size, m.object_size(11));
    assert_eq!(m.get("hello.txt").unwrap(), b"hello world");
    assert!(
        rt().block_on(m.s3().head(&m.key("dir/")))
            .unwrap()
            .is_some(),
        "mkdir leaves a marker"
    );
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("dir/a/b/deep")).unwrap(), b"x");
}

#[test]
fn errors_have_the_right_errno() {
    let m = Mount::new(&unique("errno"), &[]);
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"1").unwrap();
    assert_eq!(errno_of(fs::read(m.p("missing"))), libc::ENOENT);
    assert_eq!(errno_of(fs::remove_dir(m.p("d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_file(m.p("d"))), libc::EISDIR);
    assert_eq!(errno_of(fs::read(m.p("d/f/x"))), libc::ENOTDIR);
    assert_eq!(
        errno_of(File::open(m.p("d")).and_then(|mut f| f.read(&mut [0; 4]))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(m.p("d/f"))
        ),
        libc::EEXIST
    );
    assert_eq!(errno_of(fs::create_dir(m.p("d"))), libc::EEXIST);
    fs::write(m.p("top"), b"t").unwrap();
    assert_eq!(errno_of(fs::rename(m.p("top"), m.p("d"))), libc::EISDIR);
    fs::create_dir(m.p("other")).unwrap();
    fs::write(m.p("other/x"), b"").unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("d"), m.p("other"))),
        libc::ENOTEMPTY
    );
    fs::create_dir(m.p("e")).unwrap();
    assert_eq!(errno_of(fs::rename(m.p("e"), m.p("top"))), libc::ENOTDIR);
    fs::remove_file(m.p("d/f")).unwrap();
    fs::remove_dir(m.p("d")).unwrap();
    assert_eq!(errno_of(fs::metadata(m.p("d"))), libc::ENOENT);
}

#[test]
fn rename_exchange_is_refused_with_einval() {
    let m = Mount::new(&unique("xchg"), &[]);
    fs::write(m.p("a"), b"a").unwrap();
    fs::write(m.p("b"), b"b").unwrap();
    let out = Command::new("mv")
        .arg("--exchange")
        .arg(m.p("a"))
        .arg(m.p("b"))
        .output()
        .unwrap();
    if String::from_utf8_lossy(&out.stderr).contains("unrecognized option") {
        return; // coreutils too old to ask for RENAME_EXCHANGE; the fs unit test covers it
    }
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{out:?}"
    );
    let out = Command::new("mv")
        .arg("--no-clobber")
        .arg(m.p("a"))
        .arg(m.p("b"))
        .output()
        .unwrap();
    assert_eq!(fs::read(m.p("b")).unwrap(), b"b", "{out:?}");
}

#[test]
fn a_file_larger_than_the_multipart_threshold_streams_and_reads_back() {
    let m = Mount::new(&unique("large"), &["--part-size-mib", "5"]);
    let data = pattern(23 * 1024 * 1024 + 12345, 7);
    {
        let mut f = File::create(m.p("big")).unwrap();
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    // The preferred I/O size is one FUSE request: cp and cat size their buffers by it (at
    // 4 KiB, cp wrote 128 KiB at a time, eight round trips through FUSE per MiB).
    assert_eq!(fs::metadata(m.p("big")).unwrap().blksize(), 1 << 20);
    let obj = m.head("big");
    assert_eq!(obj.size, m.object_size(data.len() as u64));
    // Multipart ETags end in -PARTS (SSE-C ETags are opaque, so only without SSE-C).
    assert!(
        m.sse_c_key.is_some() || obj.etag.contains('-'),
        "uploaded as multipart: {}",
        obj.etag
    );
    assert_eq!(fs::read(m.p("big")).unwrap(), data);
    // Small ranged reads at odd offsets.
    let f = File::open(m.p("big")).unwrap();
    for off in [
        0u64,
        1,
        5 * 1024 * 1024 - 3,
        17_000_001,
        data.len() as u64 - 10,
    ] {
        let mut buf = [0u8; 100];
        let n = f.read_at(&mut buf, off).unwrap();
        let want = &data[off as usize..(off as usize + 100).min(data.len())];
        assert_eq!(&buf[..n], want, "offset {off}");
    }
}

#[test]
fn writes_into_existing_files_of_any_size() {
    let m = Mount::new(&unique("rw"), &["--part-size-mib", "5"]);
    let mut model = pattern(12 * 1024 * 1024, 1);
    fs::write(m.p("f"), &model).unwrap();
    let f = OpenOptions::new().write(true).open(m.p("f")).unwrap();
    for (off, len) in [
        (3usize, 10usize),
        (6 * 1024 * 1024 + 1, 70_000),
        (12 * 1024 * 1024 - 5, 20),
    ] {
        let chunk = pattern(len, off as u8);
        f.write_at(&chunk, off as u64).unwrap();
        if model.len() < off + len {
            model.resize(off + len, 0);
        }
        model[off..off + len].copy_from_slice(&chunk);
    }
    drop(f);
    assert_eq!(fs::read(m.p("f")).unwrap(), model);
    // Append, then truncate to shrink and to grow.
    let mut a = OpenOptions::new().append(true).open(m.p("f")).unwrap();
    a.write_all(b"tail").unwrap();
    drop(a);
    model.extend_from_slice(b"tail");
    assert_eq!(fs::read(m.p("f")).unwrap(), model);
    let f = OpenOptions::new().write(true).open(m.p("f")).unwrap();
    f.set_len(1000).unwrap();
    f.set_len(3000).unwrap();
    drop(f);
    model.truncate(1000);
    model.resize(3000, 0);
    assert_eq!(fs::read(m.p("f")).unwrap(), model);
    // O_TRUNC.
    fs::write(m.p("f"), b"short").unwrap();
    assert_eq!(fs::read(m.p("f")).unwrap(), b"short");
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("f")).unwrap(), b"short");
}

#[test]
fn renames_of_files_and_directories() {
    let m = Mount::new(&unique("rename"), &[]);
    fs::write(m.p("a"), b"A").unwrap();
    fs::write(m.p("b"), b"B").unwrap();
    fs::rename(m.p("a"), m.p("b")).unwrap();
    assert_eq!(fs::read(m.p("b")).unwrap(), b"A");
    assert_eq!(errno_of(fs::metadata(m.p("a"))), libc::ENOENT);
    fs::create_dir_all(m.p("src/sub")).unwrap();
    for i in 0..120 {
        fs::write(m.p(&format!("src/sub/f{i}")), format!("{i}")).unwrap();
    }
    fs::write(m.p("src/top"), b"t").unwrap();
    fs::rename(m.p("src"), m.p("dst")).unwrap();
    assert_eq!(errno_of(fs::metadata(m.p("src"))), libc::ENOENT);
    assert_eq!(fs::read_dir(m.p("dst/sub")).unwrap().count(), 120);
    assert_eq!(fs::read(m.p("dst/sub/f77")).unwrap(), b"77");
    let s3 = raw_store();
    let left = rt()
        .block_on(sealfs::store::list_all(&s3, &format!("{}/src/", m.prefix)))
        .unwrap();
    assert!(left.is_empty(), "old objects remain: {}", left.len());
    // Editor pattern: write a temp file, rename it over the original.
    fs::write(m.p("doc"), b"v1").unwrap();
    fs::write(m.p(".doc.swp"), b"v2").unwrap();
    fs::rename(m.p(".doc.swp"), m.p("doc")).unwrap();
    assert_eq!(fs::read(m.p("doc")).unwrap(), b"v2");
    fs::rename(m.p("doc"), m.p("dst/sub/doc")).unwrap();
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("dst/sub/doc")).unwrap(), b"v2");
}

#[test]
fn attributes_persist_in_s3fs_keys_across_remount() {
    let m = Mount::new(&unique("attrs"), &[]);
    fs::write(m.p("f"), b"data").unwrap();
    fs::set_permissions(m.p("f"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(m.p("f"), Some(1234), Some(4321)).unwrap();
    let t = UNIX_EPOCH + Duration::new(1_500_000_000, 250_000_000);
    File::options()
        .write(true)
        .open(m.p("f"))
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t))
        .unwrap();
    fs::create_dir(m.p("d")).unwrap();
    fs::set_permissions(m.p("d"), fs::Permissions::from_mode(0o710)).unwrap();
    let obj = m.head("f");
    if m.ring.as_ref().is_some_and(|r| r.attr_sealer().is_some()) {
        // Client format 2: one sealed value instead of s3fs's keys (tests/adversary.rs).
        assert_eq!(obj.user.keys().collect::<Vec<_>>(), ["sealfs-attr"]);
    } else {
        assert_eq!(obj.user.get("mode").map(String::as_str), Some("33184")); // 0100640
        assert_eq!(obj.user.get("uid").map(String::as_str), Some("1234"));
        assert_eq!(obj.user.get("gid").map(String::as_str), Some("4321"));
        assert_eq!(
            obj.user.get("mtime").map(String::as_str),
            Some("1500000000.250000000")
        );
        assert_eq!(obj.user.contains_key("sealfs-id"), m.ring.is_some());
    }
    let m = m.remount(&[]);
    let md = fs::metadata(m.p("f")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o640, 1234, 4321)
    );
    assert_eq!(md.modified().unwrap(), t);
    assert_eq!(fs::read(m.p("f")).unwrap(), b"data");
    assert_eq!(fs::metadata(m.p("d")).unwrap().mode() & 0o7777, 0o710);
}

#[test]
fn objects_without_metadata_get_the_mount_defaults() {
    let prefix = Prefix::new(&unique("foreign"));
    if prefix
        .ring
        .as_ref()
        .is_some_and(|r| r.attr_sealer().is_some())
    {
        // Client format 2 has no objects without attributes: one without its sealed value is
        // refused (tests/adversary.rs); `Prefix::put` seals 0644 root:root.
        prefix.put("sealed.txt", b"x");
        let m = prefix.mount(&["--uid", "77", "--file-mode", "600"]);
        let md = fs::metadata(m.p("sealed.txt")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o644, 0));
        return;
    }
    prefix.put("plain.txt", b"from aws cli");
    prefix.put("x/y/z.bin", b"z");
    let when = rt()
        .block_on(prefix.s3().head(&prefix.key("plain.txt")))
        .unwrap()
        .unwrap()
        .last_modified;
    let m = prefix.mount(&[
        "--uid",
        "77",
        "--gid",
        "88",
        "--file-mode",
        "600",
        "--dir-mode",
        "750",
    ]);
    let md = fs::metadata(m.p("plain.txt")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o600, 77, 88));
    assert_eq!(md.len(), 12, "plaintext size");
    let lm = when.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(md.mtime() as u64, lm);
    assert_eq!(fs::metadata(m.p("x/y")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(fs::read(m.p("x/y/z.bin")).unwrap(), b"z");
}

#[test]
fn symlinks_persist() {
    let m = Mount::new(&unique("symlink"), &[]);
    fs::write(m.p("target"), b"T").unwrap();
    std::os::unix::fs::symlink("target", m.p("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", m.p("dangling")).unwrap();
    let m = m.remount(&[]);
    assert_eq!(
        fs::read_link(m.p("link")).unwrap().to_str().unwrap(),
        "target"
    );
    assert_eq!(fs::read(m.p("link")).unwrap(), b"T");
    assert!(fs::symlink_metadata(m.p("dangling"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(m.p("dangling")).unwrap().to_str().unwrap(),
        "/nowhere/at/all"
    );
}

#[test]
fn a_directory_of_thousands_of_entries_lists_completely() {
    let p = Prefix::new(&unique("many"));
    // Listing needs only names (encrypted ones in client mode), not valid bodies.
    let keys: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new((0..3000).map(|i| p.key(&format!("d/f{i:05}"))).collect());
    let s3 = std::sync::Arc::new(raw_store());
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for chunk in 0..32 {
            let (s3, keys) = (s3.clone(), keys.clone());
            set.spawn(async move {
                for key in keys.iter().skip(chunk).step_by(32) {
                    s3.put(key, Bytes::new(), &UserMeta::new()).await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
    });
    let m = p.mount(&[]);
    let mut names: Vec<String> = fs::read_dir(m.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3000);
    assert_eq!(names[0], "f00000");
    assert_eq!(names[2999], "f02999");
    // `ls` reads the directory in several kernel calls (offsets); its count must match.
    let out = run(Command::new("ls").arg("-1").arg(m.p("d")));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3000);
}

#[test]
fn changes_by_another_writer_show_up_after_the_ttl() {
    let m = Mount::new(&unique("ttl"), &["--metadata-ttl", "0.5"]);
    fs::write(m.p("f"), b"mine").unwrap();
    assert_eq!(errno_of(fs::metadata(m.p("theirs"))), libc::ENOENT);
    m.put("f", b"changed elsewhere");
    m.put("theirs", b"new");
    // The mount's clock is its own: wait for the outcome (far past the TTL under any load).
    // Each name's cached answer (the kernel's negative entry for "theirs" included) expires on
    // its own schedule, so both are awaited: "theirs" was looked up after "f" was written.
    eventually(Duration::from_secs(20), "the other writer's files", || {
        fs::read(m.p("f")).is_ok_and(|b| b == b"changed elsewhere")
            && fs::read(m.p("theirs")).is_ok_and(|b| b == b"new")
    });
}

#[test]
fn a_read_only_mount_refuses_writes() {
    let prefix = Prefix::new(&unique("ro"));
    prefix.put("f", b"r");
    let m = prefix.mount(&["--read-only"]);
    assert_eq!(fs::read(m.p("f")).unwrap(), b"r");
    assert_eq!(errno_of(fs::write(m.p("g"), b"x")), libc::EROFS);
    assert_eq!(
        errno_of(OpenOptions::new().write(true).open(m.p("f"))),
        libc::EROFS
    );
    assert_eq!(errno_of(fs::create_dir(m.p("d"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_file(m.p("f"))), libc::EROFS);
}

#[test]
fn statfs_answers() {
    let m = Mount::new(&unique("statfs"), &[]);
    let out = run(Command::new("df").arg("-P").arg(m.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sealfs"), "{text}");
    // What statfs answers: 4 KiB blocks, 1 PiB total and free (S3 has no quota to report),
    // 255-byte names.
    let out = run(Command::new("stat")
        .args(["-f", "-c", "%S %b %f %a %l"])
        .arg(m.path()));
    let blocks = (1u64 << 50) / 4096;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("4096 {blocks} {blocks} {blocks} 255")
    );
}

#[test]
fn a_failed_upload_is_an_error_on_close_and_leaves_no_object() {
    let proxy = Proxy::start();
    let m = Mount::with_endpoint(&unique("fail"), &proxy.url(), &["--part-size-mib", "5"]);
    let mut f = File::create(m.p("big")).unwrap();
    let chunk = pattern(1 << 20, 3);
    for _ in 0..12 {
        f.write_all(&chunk).unwrap();
    }
    proxy.cut();
    // The data written so far is already streaming; the rest, and the completion, fail.
    let mut failed = false;
    for _ in 0..20 {
        if f.write_all(&chunk).is_err() {
            failed = true;
            break;
        }
    }
    let sync = f.sync_all();
    assert!(
        failed || sync.is_err(),
        "the application must see the failure"
    );
    drop(f);
    proxy.restore();
    let s3 = raw_store();
    assert!(
        rt().block_on(s3.head(&m.key("big"))).unwrap().is_none(),
        "no partial object"
    );
    // After the server is back, writing works again without a remount.
    fs::write(m.p("again"), b"works").unwrap();
    assert_eq!(fs::read(m.p("again")).unwrap(), b"works");
    assert!(
        m.log_text().contains("big") || m.log_text().contains("failed"),
        "the failure is logged"
    );
}

#[test]
fn fsync_makes_data_visible_in_the_bucket() {
    let m = Mount::new(&unique("fsync"), &[]);
    let mut f = File::create(m.p("f")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    assert_eq!(m.get("f").unwrap(), b"durable");
    f.write_all(b"+more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    drop(f);
    assert_eq!(m.get("f").unwrap(), b"durable+more");
}

#[test]
fn mount_failures_are_clear_and_leave_nothing_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let try_mount = |url: String, extra: &[&str]| {
        let out = sealfs()
            .args(["mount", &url])
            .arg(dir.path())
            .arg("--force-path-style")
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(!is_mounted(dir.path()));
        let msg = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
        msg
    };
    let msg = try_mount("s3://no-such-bucket-here".into(), &[]);
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = try_mount(
        format!("s3://{}", bucket()),
        &["--endpoint-url", "http://127.0.0.1:9"],
    );
    assert!(msg.contains("cannot reach"), "{msg}");
    let out = sealfs()
        .args([
            "mount",
            &format!("s3://{}", bucket()),
            "/nonexistent/dir",
            "--force-path-style",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    let m = Mount::new(&unique("busy"), &[]);
    let out = sealfs()
        .args(["mount", &format!("s3://{}", bucket())])
        .arg(m.path())
        .arg("--force-path-style")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"));
    let out = Command::new("env")
        .args([
            "-u",
            "AWS_ACCESS_KEY_ID",
            "-u",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_CONFIG_FILE=/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
            "AWS_EC2_METADATA_DISABLED=true",
        ])
        .arg(env!("CARGO_BIN_EXE_sealfs"))
        .args(["mount", &format!("s3://{}", bucket())])
        .arg(dir.path())
        .arg("--force-path-style")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("no AWS credentials"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");
    // An off-host plain-http endpoint named only by AWS_ENDPOINT_URL_S3 is refused for SSE-C
    // like one given with --endpoint-url (the check once saw only AWS_ENDPOINT_URL).
    let key = dir.path().join("ssec.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let m = tempfile::tempdir().unwrap();
    let out = Command::new("env")
        .args(["-u", "AWS_ENDPOINT_URL"])
        .arg("AWS_ENDPOINT_URL_S3=http://192.0.2.1:9000")
        .arg(env!("CARGO_BIN_EXE_sealfs"))
        .args(["mount", &format!("s3://{}", bucket())])
        .arg(m.path())
        .args([
            "--force-path-style",
            "--encryption",
            "sse-c",
            "--sse-c-key-file",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_mount_refused(&out, "--allow-plain-http-sse-c", m.path());
}

#[test]
fn sigterm_in_the_foreground_unmounts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sealfs()
        .args(["mount", &format!("s3://{}/{}", bucket(), unique("sig"))])
        .arg(dir.path())
        .args(["--force-path-style", "--foreground"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !is_mounted(dir.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "mount did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::write(dir.path().join("f"), b"x").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(dir.path()));
}

#[test]
fn mtime_of_written_files_is_close_to_now() {
    let m = Mount::new(&unique("mtime"), &[]);
    let before = SystemTime::now() - Duration::from_secs(2);
    fs::write(m.p("f"), b"x").unwrap();
    let md = fs::metadata(m.p("f")).unwrap();
    assert!(md.modified().unwrap() >= before);
}

#[test]
fn exclusive_create_and_permissions_of_new_files() {
    let m = Mount::new(&unique("create"), &[]);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(m.p("secret"))
        .unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.p("secret")).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn hard_links_are_eperm_and_locks_are_local() {
    use std::os::fd::AsRawFd;
    let m = Mount::new(&unique("misc"), &[]);
    fs::write(m.p("f"), b"x").unwrap();
    assert_eq!(errno_of(fs::hard_link(m.p("f"), m.p("g"))), libc::EPERM);
    // Extended attributes: tests/posix.rs.
    // Locks work within the mount (the kernel keeps them locally).
    let a = File::open(m.p("f")).unwrap();
    let b = File::open(m.p("f")).unwrap();
    assert_eq!(
        unsafe { libc::flock(a.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    assert_eq!(
        unsafe { libc::flock(b.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        -1
    );
    assert_eq!(unsafe { libc::flock(a.as_raw_fd(), libc::LOCK_UN) }, 0);
    assert_eq!(
        unsafe { libc::flock(b.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
}

/// Point /sbin/mount.fuse.sealfs at this build for the test's duration (as a user would
/// install the helper), restoring whatever was there.
struct Helper(Option<std::path::PathBuf>);

impl Helper {
    const PATH: &'static str = "/sbin/mount.fuse.sealfs";

    fn install() -> Helper {
        let previous = fs::read_link(Self::PATH).ok();
        let _ = fs::remove_file(Self::PATH);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sealfs"), Self::PATH)
            .expect("root can install the mount helper");
        Helper(previous)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = fs::remove_file(Self::PATH);
        if let Some(p) = &self.0 {
            let _ = std::os::unix::fs::symlink(p, Self::PATH);
        }
    }
}

#[test]
fn mount_helper_and_fstab_lines_mount_like_any_filesystem() {
    let p = Prefix::new(&unique("helper"));
    // The suite's key options as mount options: --key-file F -> key_file=F.
    let mut opts: Vec<String> = p
        .args
        .chunks(2)
        .filter(|kv| kv[0] != "--encryption")
        .map(|kv| {
            format!(
                "{}={}",
                kv[0].trim_start_matches("--").replace('-', "_"),
                kv[1]
            )
        })
        .collect();
    opts.extend([
        "_netdev".to_string(),
        "force_path_style".into(),
        format!("endpoint_url={}", endpoint()),
    ]);
    let url = format!("s3://{}/{}", bucket(), p.name);
    let _helper = Helper::install();
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("mount")
        .args(["-t", "fuse.sealfs", &url])
        .arg(dir.path())
        .args(["-o", &opts.join(",")]));
    assert!(is_mounted(dir.path()));
    fs::write(dir.path().join("f"), b"through the helper").unwrap();
    run(Command::new("umount").arg(dir.path()));
    assert!(!is_mounted(dir.path()));

    // An fstab line (read-only), mounted by its mount point alone.
    let fstab = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        fstab.path(),
        format!(
            "{url} {} fuse.sealfs ro,{} 0 0\n",
            dir.path().display(),
            opts.join(",")
        ),
    )
    .unwrap();
    run(Command::new("mount")
        .arg("-T")
        .arg(fstab.path())
        .arg(dir.path()));
    assert!(is_mounted(dir.path()));
    assert_eq!(
        fs::read(dir.path().join("f")).unwrap(),
        b"through the helper"
    );
    assert_eq!(errno_of(fs::write(dir.path().join("g"), b"x")), libc::EROFS);
    run(Command::new("umount").arg(dir.path()));
}
