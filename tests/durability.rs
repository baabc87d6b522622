//! Durability when the S3 server itself goes away or hangs in the middle of a large write:
//! the application gets an error from write, fsync or close; no partial or corrupt object
//! appears; the object being overwritten keeps its old contents; and once the server is back,
//! writing works again without a remount.
//!
//! These tests kill (or freeze) the shared local Garage, so they are ignored in the parallel
//! run; scripts/test.sh runs them alone, one at a time, with `--ignored --test-threads 1`.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sealfs::store::ObjectStore;

const MIB: usize = 1 << 20;

fn local_s3(cmd: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-s3.sh");
    run(Command::new(script).arg(cmd));
}

fn garage_signal(sig: &str) {
    let pid =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".local-s3/garage.pid"))
            .expect("garage.pid (scripts/local-s3.sh start)");
    run(Command::new("kill").args([sig, pid.trim()]));
}

/// close(2) with its result: `drop(File)` ignores the error close reports.
fn close(f: File) -> std::io::Result<()> {
    let fd = f.into_raw_fd();
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Overwrite `path` (O_TRUNC) with up to `total` MiB, calling `outage` after `before` MiB;
/// returns the first error the application saw (write, fsync or close), if any.
fn write_through_outage(
    path: &Path,
    before: usize,
    total: usize,
    outage: impl FnOnce(),
) -> Option<String> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let chunk = pattern(MIB, 9);
    let mut outage = Some(outage);
    for i in 0..total {
        if i == before {
            (outage.take().unwrap())();
        }
        if let Err(e) = f.write_all(&chunk) {
            let _ = close(f);
            return Some(format!("write: {e}"));
        }
    }
    if let Err(e) = f.sync_all() {
        let _ = close(f);
        return Some(format!("fsync: {e}"));
    }
    close(f).err().map(|e| format!("close: {e}"))
}

/// What every outage must leave: the old object intact, no new object, and a mount that
/// writes again once the server is back.
fn check_after_outage(m: &Mount, old: &[u8]) {
    let s3 = m.s3();
    let deadline = Instant::now() + Duration::from_secs(30);
    let obj = loop {
        match rt().block_on(sealfs::store::get_all(&s3, &m.key("victim"))) {
            Ok(o) => break o,
            Err(e) if Instant::now() < deadline => {
                eprintln!("server not back yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("server did not come back: {e}"),
        }
    };
    let obj = obj.expect("the overwritten object is still there");
    assert_eq!(
        obj.len() as u64,
        m.object_size(old.len() as u64),
        "old size"
    );
    std::thread::sleep(Duration::from_millis(1100)); // metadata TTL
    assert_eq!(
        fs::read(m.p("victim")).unwrap(),
        old,
        "old contents, not partial"
    );
    let objects = rt()
        .block_on(sealfs::store::list_all(&s3, &format!("{}/", m.prefix)))
        .unwrap();
    // Besides the file: the config, and the mount's own session area (its session object,
    // and the marker of the upload whose abort failed while the server was away).
    let reserved = format!("{}/.sealfs-unlinked/", m.prefix);
    assert!(
        objects.iter().all(|o| o.key == m.key("victim")
            || o.key == m.key(".sealfs")
            || o.key.starts_with(&reserved)),
        "no other object appeared: {objects:?}"
    );
    // Without a remount: new files and an overwrite of the victim work.
    fs::write(m.p("after"), b"the server is back").unwrap();
    assert_eq!(fs::read(m.p("after")).unwrap(), b"the server is back");
    let fresh = pattern(6 * MIB + 5, 4);
    fs::write(m.p("victim"), &fresh).unwrap();
    assert_eq!(fs::read(m.p("victim")).unwrap(), fresh);
    // The log names the object (its stored key: encrypted in client mode).
    assert!(
        m.log_text().contains(&m.key("victim")),
        "the failure is logged"
    );
}

/// After the unmount, the upload the outage left (its abort failed) is aborted, and the
/// mount's session area is gone.
fn check_clean_after_unmount(m: &Mount) {
    m.unmount();
    let prefix = format!("{}/", m.prefix);
    let pending = rt().block_on(m.s3().list_uploads(&prefix)).unwrap();
    assert!(pending.is_empty(), "{pending:?}\n{}", m.log_text());
    let area = keys_under(&format!("{prefix}.sealfs-unlinked/"));
    assert!(area.is_empty(), "{area:?}");
}

/// A counter `sealfs stats` shows for the mount (0 when absent).
fn stat(m: &Mount, name: &str) -> u64 {
    let out = run(sealfs().arg("stats").arg(m.path()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "kills the shared S3 server: scripts/test.sh runs it alone"]
fn the_server_vanishing_mid_write_is_an_error_and_loses_nothing() {
    let m = Mount::new(&unique("vanish"), &["--part-size-mib", "5"]);
    let old = pattern(12 * MIB + 3, 1);
    fs::write(m.p("victim"), &old).unwrap();
    let err = write_through_outage(&m.p("victim"), 30, 120, || local_s3("kill-s3"));
    local_s3("restart-s3");
    let err = err.expect("the application must see the failure");
    assert!(err.contains("os error 5"), "EIO, got {err}");
    assert!(
        stat(&m, "s3_retries") >= 1,
        "refused connections are retried"
    );
    check_after_outage(&m, &old);
    check_clean_after_unmount(&m);
}

#[test]
#[ignore = "freezes the shared S3 server: scripts/test.sh runs it alone"]
fn a_server_that_hangs_mid_write_times_out_into_an_error() {
    let m = Mount::new(
        &unique("hang"),
        &["--part-size-mib", "5", "--request-timeout", "2"],
    );
    let old = pattern(7 * MIB, 2);
    fs::write(m.p("victim"), &old).unwrap();
    let started = Instant::now();
    let err = write_through_outage(&m.p("victim"), 20, 60, || garage_signal("-STOP"));
    let took = started.elapsed();
    garage_signal("-CONT");
    let err = err.expect("the application must see the failure");
    assert!(err.contains("os error 5"), "EIO, got {err}");
    assert!(
        took < Duration::from_secs(120),
        "bounded by the request timeout: {took:?}"
    );
    // Each timed-out request was tried again before it failed, and the metrics say so.
    assert!(stat(&m, "s3_retries") >= 2, "{}", stat(&m, "s3_retries"));
    check_after_outage(&m, &old);
    // A read while the server hangs is an error too, not a hung process.
    garage_signal("-STOP");
    std::thread::sleep(Duration::from_millis(1100)); // past the metadata TTL
    let started = Instant::now();
    let read = fs::read(m.p("victim"));
    let took = started.elapsed();
    garage_signal("-CONT");
    assert_eq!(errno_of(read), libc::EIO);
    assert!(took < Duration::from_secs(60), "{took:?}");
    check_clean_after_unmount(&m);
}

#[test]
#[ignore = "freezes the shared S3 server: scripts/test.sh runs it alone"]
fn an_exiting_mount_leaves_a_new_mount_at_its_path_alone() {
    let name = unique("exiting");
    let m = Mount::new(&name, &["--request-timeout", "2"]);
    fs::create_dir(m.p("d")).unwrap();
    for i in 0..20 {
        fs::write(m.p(&format!("d/f{i}")), b"x").unwrap();
    }
    std::thread::sleep(Duration::from_millis(2100));
    let m = m.remount(&["--request-timeout", "2"]);
    // The listing learns every file's attributes: its index write is pending when the kernel
    // unmounts, and the frozen server keeps the old process busy writing it.
    run(Command::new("ls").arg("-l").arg(m.p("d")));
    garage_signal("-STOP");
    run(Command::new("umount").arg(m.path()));
    let moto = std::env::var("SEALFS_MOTO_ENDPOINT").expect("SEALFS_MOTO_ENDPOINT");
    run(sealfs()
        .args([
            "mount",
            &format!("s3://{}/{}", bucket(), unique("newcomer")),
        ])
        .arg(m.path())
        .args(["--endpoint-url", &moto, "--force-path-style"]));
    garage_signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let old_alive = || {
        Command::new("pgrep")
            .args(["-f", &format!("sealfs mount s3://{}/{name} ", bucket())])
            .status()
            .unwrap()
            .success()
    };
    while old_alive() {
        assert!(
            Instant::now() < deadline,
            "the old mount process did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        is_mounted(m.path()),
        "the old process unmounted the new mount"
    );
    run(Command::new("umount").arg(m.path()));
}
