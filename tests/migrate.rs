//! Version-1 client-mode prefixes (made before format 2) keep mounting as they were, and
//! `sealfs migrate` moves one to format 2 in place: names encrypted, attributes sealed, every
//! file still readable with the same key file; a second run finds nothing left to do.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use bytes::Bytes;
use common::*;
use sealfs::crypto::format::Secret;
use sealfs::crypto::keys::{load_key_file, Keyring, PrefixConfig};
use sealfs::store::ObjectStore;

/// A version-1 client prefix keyed by a new key file, as `sealfs init` made them before.
fn v1_prefix(name: &str) -> (Prefix, tempfile::TempDir) {
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("key");
    run(sealfs().args(["keygen", "--out"]).arg(&key));
    let config = PrefixConfig::wrapped_by_key_file(
        &load_key_file(&key).unwrap(),
        &Keyring::new_single(Secret::random()),
    );
    assert_eq!(config.sealfs, 1);
    rt().block_on(raw_store().put(
        &format!("{name}/.sealfs"),
        Bytes::from(config.to_json()),
        &Default::default(),
    ))
    .unwrap();
    let mut p = Prefix::new_empty();
    p.name = name.to_string();
    p.args = [
        "--encryption",
        "client",
        "--key-file",
        key.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    (p, keydir)
}

#[test]
fn a_version_1_prefix_mounts_as_before_and_migrates_in_place() {
    let name = unique("v1");
    let (p, _keydir) = v1_prefix(&name);
    let key = p.args[3].clone();
    let args = p.args.clone();
    let m = p.mount(&[]);
    fs::create_dir_all(m.p("photos/2019")).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.p("photos/2019/beach.jpg"), &big).unwrap();
    fs::write(m.p("notes.txt"), b"version one").unwrap();
    fs::set_permissions(m.p("notes.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("notes.txt", m.p("link")).unwrap();
    // Version 1: plain names and attributes in the bucket, as before.
    assert!(keys_under(&format!("{name}/")).contains(&format!("{name}/notes.txt")));
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("photos/2019/beach.jpg")).unwrap(), big);
    let before = fs::metadata(m.p("notes.txt")).unwrap();
    m.unmount();

    let migrate = || {
        sealfs()
            .args(["migrate", &format!("s3://{}/{name}", bucket())])
            .args(["--key-file", &key])
            .args(["--endpoint-url", &endpoint(), "--force-path-style"])
            .output()
            .unwrap()
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("config upgraded to format 2") && said.contains("0 failed"),
        "{said}"
    );
    for k in keys_under(&format!("{name}/")) {
        for word in ["photos", "2019", "beach", "notes", "link"] {
            assert!(!k.contains(word), "{k} still shows {word}");
        }
    }
    let again = migrate();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("already at format 2") && said.contains(" 0 objects moved"),
        "{said}"
    );

    let mut p = Prefix::new_empty();
    p.name = name.clone();
    p.args = args;
    let m = p.mount(&[]);
    assert_eq!(fs::read(m.p("photos/2019/beach.jpg")).unwrap(), big);
    assert_eq!(fs::read(m.p("link")).unwrap(), b"version one");
    let after = fs::metadata(m.p("notes.txt")).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o600);
    assert_eq!(
        (after.uid(), after.mtime(), after.mtime_nsec()),
        (before.uid(), before.mtime(), before.mtime_nsec())
    );
    let config = rt()
        .block_on(sealfs::store::get_all(
            &raw_store(),
            &format!("{name}/.sealfs"),
        ))
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&config).contains("\"sealfs\": 2"));
}
