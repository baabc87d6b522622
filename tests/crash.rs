//! The daemon killed (SIGKILL, as the OOM killer or a reboot would) at exact points of a
//! write, an overwrite, a metadata copy and a directory rename, through a real mount on the
//! local server; then a remount. What must hold: no partial object, an overwritten file has
//! its old or its new contents, a half-renamed directory shows every file at least once, and
//! the multipart uploads the dead daemon left are aborted by the next mount.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::tripwire::Tripwire;
use common::*;
use sealfs::store::ObjectStore;

const MIB: usize = 1 << 20;

fn pending_uploads(prefix: &str) -> Vec<String> {
    rt().block_on(raw_store().list_uploads(&format!("{prefix}/")))
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect()
}

/// Mount `name` through a tripwire (5 MiB parts, so 12 MiB is a multipart upload).
fn mount_wired(name: &str) -> (Mount, Tripwire) {
    let wire = Tripwire::start();
    let m = Prefix::new(name).mount_via(&wire.url(), &["--part-size-mib", "5"]);
    (m, wire)
}

/// Wait for the wire to fire (the daemon is dead), then remount normally.
fn after_crash(m: Mount, wire: &Tripwire) -> Mount {
    eventually(Duration::from_secs(60), "the daemon was killed", || {
        wire.fired()
    });
    let dead = fs::metadata(m.path());
    assert!(dead.is_err(), "the mount is dead: {dead:?}");
    m.remount(&["--part-size-mib", "5"])
}

fn assert_cleaned(m: &Mount, what: &str) {
    let area = keys_under(&format!("{}/.sealfs-unlinked/", m.prefix));
    assert!(
        pending_uploads(&m.prefix).is_empty(),
        "{what}: uploads left; {area:?}\n{}",
        m.log_text()
    );
    let log = m.log_text();
    assert!(
        log.contains("aborted a multipart upload a crashed sealfs mount left"),
        "{what}: {log}"
    );
    // Of the reserved area, only the new mount's session object is left.
    let area = keys_under(&format!("{}/.sealfs-unlinked/", m.prefix));
    assert_eq!(area.len(), 1, "{area:?}");
    assert!(area[0].contains("/.sealfs-unlinked/session-"), "{area:?}");
}

#[test]
fn a_new_file_killed_mid_upload_leaves_no_object_and_its_upload_is_aborted() {
    let (m, wire) = mount_wired(&unique("crash-new"));
    wire.arm("partNumber=2&", 1, m.path());
    let path = m.p("big");
    let writer = std::thread::spawn(move || {
        let mut f = File::create(path)?;
        let chunk = pattern(MIB, 1);
        for _ in 0..20 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    });
    let r = writer.join().unwrap();
    assert!(r.is_err(), "the application sees the crash");
    assert!(wire.fired(), "{:?}", wire.requests());
    // What the issue found: the dead daemon's upload stays on the server.
    assert_eq!(pending_uploads(&m.prefix), vec![m.key("big")]);
    let m = after_crash(m, &wire);
    assert!(!m.p("big").exists());
    assert!(m.get("big").is_none(), "no partial object");
    assert_cleaned(&m, "new file");
}

#[test]
fn an_overwrite_killed_before_it_completes_keeps_the_old_contents() {
    let (m, wire) = mount_wired(&unique("crash-overwrite"));
    let old = pattern(12 * MIB, 2);
    fs::write(m.p("f"), &old).unwrap();
    wire.arm("?uploadId=", 1, m.path());
    let path = m.p("f");
    let writer = std::thread::spawn(move || {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.seek(SeekFrom::Start(6 * MIB as u64))?;
        f.write_all(&pattern(MIB, 9))?;
        f.sync_all()
    });
    assert!(writer.join().unwrap().is_err());
    assert!(wire.fired(), "{:?}", wire.requests());
    assert_eq!(pending_uploads(&m.prefix).len(), 1);
    let m = after_crash(m, &wire);
    assert_eq!(fs::read(m.p("f")).unwrap(), old, "the old contents, whole");
    assert_cleaned(&m, "overwrite");
}

#[test]
fn a_chmod_killed_mid_copy_keeps_the_file_and_one_of_its_modes() {
    let (m, wire) = mount_wired(&unique("crash-chmod"));
    let data = pattern(100_000, 3);
    fs::write(m.p("c"), &data).unwrap();
    fs::set_permissions(m.p("c"), fs::Permissions::from_mode(0o644)).unwrap();
    wire.arm("x-amz-copy-source:", 1, m.path());
    let r = fs::set_permissions(m.p("c"), fs::Permissions::from_mode(0o600));
    assert!(r.is_err(), "the chmod saw the crash");
    assert!(wire.fired(), "{:?}", wire.requests());
    let m = after_crash(m, &wire);
    assert_eq!(fs::read(m.p("c")).unwrap(), data);
    let mode = fs::metadata(m.p("c")).unwrap().permissions().mode() & 0o777;
    assert!(mode == 0o644 || mode == 0o600, "{mode:o}");
}

#[test]
fn a_directory_rename_killed_before_its_deletes_shows_every_file() {
    let (m, wire) = mount_wired(&unique("crash-rename"));
    fs::create_dir(m.p("d")).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}"), pattern(10_000 + i, i as u8)))
        .collect();
    for (name, data) in &files {
        fs::write(m.p(&format!("d/{name}")), data).unwrap();
    }
    // Deletes come after every copy: batched (DeleteObjects) where the server does not
    // enforce conditional deletes, as on Garage, else one DeleteObject per object.
    wire.arm("?delete", 1, m.path());
    assert!(fs::rename(m.p("d"), m.p("e")).is_err());
    assert!(wire.fired(), "{:?}", wire.requests());
    let m = after_crash(m, &wire);
    for (name, data) in &files {
        let old = fs::read(m.p(&format!("d/{name}"))).ok();
        let new = fs::read(m.p(&format!("e/{name}"))).ok();
        assert!(old.is_some() || new.is_some(), "{name} lost");
        for got in [old, new].into_iter().flatten() {
            assert_eq!(&got, data, "{name}");
        }
    }
    // SEMANTICS.md's way to finish the rename: copy what the new name lacks, drop the old.
    run(std::process::Command::new("cp")
        .args(["-an"])
        .arg(m.p("d/."))
        .arg(m.p("e")));
    fs::remove_dir_all(m.p("d")).unwrap();
    for (name, data) in &files {
        assert_eq!(&fs::read(m.p(&format!("e/{name}"))).unwrap(), data);
    }
}
