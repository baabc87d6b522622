//! `ls -l` through a real mount: the directory attribute index (one GET instead of a HEAD per
//! file), what `sealfs stats` reports, and that another writer's change is never hidden by it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Requests of `op` the mount at `m` has made so far (`sealfs stats`).
fn requests(m: &Mount, op: &str) -> u64 {
    let out = run(sealfs().arg("stats").arg(m.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{op} ")))
        .map_or(0, |n| n.parse().unwrap())
}

fn ls_l(m: &Mount, dir: &str) -> String {
    let out = run(Command::new("ls")
        .args(["-l", "--time-style=full-iso"])
        .arg(m.p(dir)));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_second_ls_l_costs_no_head_per_file_and_shows_the_same() {
    let m = Mount::new(&unique("index"), &[]);
    fs::create_dir(m.p("d")).unwrap();
    for i in 0..40 {
        let f = m.p(&format!("d/f{i:02}"));
        fs::write(&f, format!("file {i}")).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600 + i)).unwrap();
    }
    std::os::unix::fs::symlink("f01", m.p("d/link")).unwrap();
    // Versions younger than the settle time (2 s, against the server's whole-second
    // LastModified) are not recorded. The server's clock cannot be controlled from here: wait
    // it out once.
    std::thread::sleep(Duration::from_millis(2100));
    let m = m.remount(&[]);

    let heads = requests(&m, "HEAD");
    let first = ls_l(&m, "d");
    assert!(
        requests(&m, "HEAD") - heads >= 41,
        "no index yet: a HEAD per file"
    );
    assert!(first.contains("-rw------- "), "{first}");
    // Unmounting right away still writes the index the listing learned.
    let index_key = m.key(".sealfs-index/d/index");
    let m = m.remount(&[]);
    let s3 = m.s3();
    let index = rt().block_on(async { sealfs::store::get_all(&s3, &index_key).await });
    let index = index.unwrap().expect("index written at unmount");
    assert!(index.starts_with(b"sealfs-dirindex 1\n"));

    let heads = requests(&m, "HEAD");
    let gets = requests(&m, "GET");
    let second = ls_l(&m, "d");
    assert_eq!(second, first);
    // The directory's own lookup, and readlink of the symlink (HEAD + GET of its target).
    let (heads, gets) = (requests(&m, "HEAD") - heads, requests(&m, "GET") - gets);
    assert!(heads <= 3, "the index answers the files: {heads} HEADs");
    assert_eq!(gets, 2, "the index and the symlink's target");
    let root: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(root, ["d"], "the index is not shown");
    assert_eq!(errno_of(fs::create_dir(m.p(".sealfs-index"))), libc::EACCES);

    // Another mount changes a file's mode: its entry stops matching, a HEAD tells the truth.
    let other = m.alias().mount(&[]);
    fs::set_permissions(other.p("d/f07"), fs::Permissions::from_mode(0o444)).unwrap();
    other.unmount();
    // A fresh mount (no cached listing to wait out): the index is read, f07's entry no
    // longer matches the listed version, and a HEAD tells the truth.
    let m = m.remount(&[]);
    let third = ls_l(&m, "d");
    let line = third.lines().find(|l| l.ends_with(" f07")).unwrap();
    assert!(line.starts_with("-r--r--r-- "), "{line}");
    // rmdir takes the index along.
    for e in fs::read_dir(m.p("d")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    fs::remove_dir(m.p("d")).unwrap();
    let gone = rt().block_on(async { sealfs::store::get_all(&s3, &index_key).await });
    assert!(gone.unwrap().is_none());
}

#[test]
fn stats_names_a_mount_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs().arg("stats").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running sealfs mount"), "{err}");
}
