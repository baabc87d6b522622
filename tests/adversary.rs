//! Client mode (format 2) against the bucket adversary, through a real mount on the local S3
//! server: whoever can list, read and write the bucket sees no names or attributes, and what
//! they change (metadata, index objects, the config, sizes, names) is refused, never shown.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Read;

use bytes::Bytes;
use common::*;
use sealfs::crypto::format::{BLOCK_PLAIN, HEADER_LEN};
use sealfs::store::{ObjectStore, UserMeta};

fn raw(key: &str) -> Vec<u8> {
    rt().block_on(sealfs::store::get_all(&raw_store(), key))
        .unwrap()
        .unwrap()
        .to_vec()
}

fn meta(key: &str) -> UserMeta {
    rt().block_on(raw_store().head(key)).unwrap().unwrap().user
}

fn put(key: &str, body: Vec<u8>, meta: &UserMeta) {
    rt().block_on(raw_store().put(key, Bytes::from(body), meta))
        .unwrap();
}

fn errno_of_read(path: &std::path::Path) -> i32 {
    let mut out = Vec::new();
    match fs::File::open(path).and_then(|mut f| f.read_to_end(&mut out)) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn a_listing_of_the_bucket_shows_no_name_and_no_attribute() {
    let p = Prefix::client(&unique("names"));
    let name = p.name.clone();
    let m = p.mount(&[]);
    fs::create_dir_all(m.p("Projects/secret-merger")).unwrap();
    fs::write(m.p("Projects/secret-merger/term-sheet.docx"), b"x").unwrap();
    fs::write(m.p("diary.txt"), b"dear diary").unwrap();
    std::os::unix::fs::symlink("diary.txt", m.p("today")).unwrap();
    let long = "l".repeat(255);
    fs::write(m.p(&long), b"a 255-byte name").unwrap();
    let keys = keys_under(&format!("{name}/"));
    assert!(keys.len() >= 6, "{keys:?}");
    for key in &keys {
        for word in [
            // A run of the long name's letter long enough that base64 ciphertext cannot hold
            // it by chance ("lll" did, about once in a few hundred runs).
            "Projects",
            "secret",
            "merger",
            "term",
            "diary",
            "today",
            "llllllllllll",
        ] {
            assert!(!key.contains(word), "{key} shows {word}");
        }
        if key.contains("/.sealfs-unlinked/session-") {
            // The mount's session (FORMAT.md): plain JSON of exactly these fields, and a hash
            // of the host, not its name.
            let body = rt().block_on(sealfs::store::get_all(&raw_store(), key));
            let v: serde_json::Value = serde_json::from_slice(&body.unwrap().unwrap()).unwrap();
            let mut fields: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
            fields.sort();
            assert_eq!(fields, ["boot", "host", "pid", "start"], "{v}");
            let host = v["host"].as_str().unwrap();
            assert!(
                host.len() == 32 && host.bytes().all(|b| b.is_ascii_hexdigit()),
                "{v}"
            );
        } else if !key.ends_with("/.sealfs") {
            let user = meta(key);
            let names: Vec<_> = user.keys().collect();
            assert_eq!(names, ["sealfs-attr"], "{key}: {user:?}");
        }
    }
    let m = m.remount(&[]);
    let mut listed: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["Projects", "diary.txt", long.as_str(), "today"]);
    assert_eq!(fs::read(m.p("today")).unwrap(), b"dear diary");
    assert_eq!(
        fs::read(m.p("Projects/secret-merger/term-sheet.docx")).unwrap(),
        b"x"
    );
    // Renaming a directory re-encrypts every name below it.
    fs::rename(m.p("Projects"), m.p("Archive")).unwrap();
    let m = m.remount(&[]);
    assert_eq!(
        fs::read(m.p("Archive/secret-merger/term-sheet.docx")).unwrap(),
        b"x"
    );
}

#[test]
fn copied_stripped_and_forged_attributes_are_eio_with_a_log_line() {
    let p = Prefix::client(&unique("attrs"));
    let (ka, kb, kc) = (p.key("a"), p.key("b"), p.key("c"));
    let m = p.mount(&["--metadata-ttl", "0"]);
    for n in ["a", "b", "c"] {
        fs::write(m.p(n), format!("contents of {n}")).unwrap();
    }
    fs::set_permissions(
        m.p("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    // a's (setuid) attributes copied onto b; c's attributes stripped.
    put(&kb, raw(&kb), &meta(&ka));
    put(&kc, raw(&kc), &UserMeta::new());
    for n in ["b", "c"] {
        let err = fs::metadata(m.p(n)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{n}");
    }
    assert_eq!(fs::read(m.p("a")).unwrap(), b"contents of a");
    let log = m.log_text();
    assert!(log.contains(&kb) && log.contains(&kc), "{log}");
}

#[test]
fn a_forged_directory_index_entry_is_refused() {
    let p = Prefix::client(&unique("index"));
    let index_key = p.key(".sealfs-index/d/index");
    let dir_prefix = p.key("d/");
    let victim = p.key("d/f0");
    let donor = p.key("d/f1");
    let m = p.mount(&[]);
    fs::create_dir(m.p("d")).unwrap();
    for i in 0..10 {
        fs::write(m.p(&format!("d/f{i}")), format!("file {i}")).unwrap();
    }
    // An index whose entry for f0 names f0's listed version but carries f1's attributes.
    let listed = rt()
        .block_on(sealfs::store::list_all(&raw_store(), &dir_prefix))
        .unwrap();
    let f0 = listed.iter().find(|o| o.key == victim).unwrap();
    let stored = victim[dir_prefix.len()..].to_string();
    let entry = sealfs::dirindex::IndexEntry {
        etag: f0.etag.clone(),
        size: f0.size,
        modified_ms: sealfs::dirindex::millis(f0.last_modified),
        user: meta(&donor),
    };
    let entries = HashMap::from([(stored, entry)]);
    put(
        &index_key,
        sealfs::dirindex::encode(&entries),
        &UserMeta::new(),
    );
    let m = m.remount(&[]);
    let names: Vec<_> = fs::read_dir(m.p("d")).unwrap().collect();
    assert_eq!(names.len(), 10);
    let err = fs::metadata(m.p("d/f0")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(fs::read(m.p("d/f1")).unwrap(), b"file 1");
}

#[test]
fn sizes_must_be_exact_and_an_empty_file_authenticates_its_block() {
    let p = Prefix::client(&unique("sizes"));
    let (kw, ke) = (p.key("whole"), p.key("emptied"));
    let m = p.mount(&["--metadata-ttl", "0"]);
    fs::write(m.p("whole"), vec![7u8; BLOCK_PLAIN as usize]).unwrap();
    fs::write(m.p("emptied"), b"not empty").unwrap();
    // +28 bytes after a full last block: not a size any file has.
    let mut body = raw(&kw);
    body.extend_from_slice(&[0u8; 28]);
    put(&kw, body, &meta(&kw));
    // The file's own header and 28 bytes: what an empty file looks like, unauthenticated.
    let mut body = raw(&ke)[..HEADER_LEN as usize].to_vec();
    body.extend_from_slice(&[0x55; 28]);
    put(&ke, body, &meta(&ke));
    assert_eq!(errno_of_read(&m.p("whole")), libc::EIO);
    assert_eq!(errno_of_read(&m.p("emptied")), libc::EIO);
}

#[test]
fn names_that_are_not_this_prefixs_are_skipped_and_logged_once() {
    let p = Prefix::client(&unique("foreign"));
    let name = p.name.clone();
    let inner = p.key("d/inner");
    let m = p.mount(&["--metadata-ttl", "0"]);
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/inner"), b"x").unwrap();
    fs::write(m.p("top"), b"y").unwrap();
    put(
        &format!("{name}/notes.txt"),
        b"plain".to_vec(),
        &UserMeta::new(),
    );
    // inner's encrypted name, moved up to the root: bound to d, it does not decrypt there.
    let stored = inner.rsplit('/').next().unwrap();
    put(&format!("{name}/{stored}"), raw(&inner), &meta(&inner));
    for _ in 0..3 {
        let mut listed: Vec<_> = fs::read_dir(m.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        assert_eq!(listed, ["d", "top"]);
    }
    let log = m.log_text();
    assert_eq!(log.matches("skipping listed names").count(), 1, "{log}");
}

/// `sealfs ARGS... --key-file KEY` against the local server.
fn tool(args: &[&str], key: &str) -> std::process::Output {
    sealfs()
        .args(args)
        .args(["--key-file", key])
        .args(["--endpoint-url", &endpoint(), "--force-path-style"])
        .output()
        .unwrap()
}

#[test]
fn a_rolled_back_deleted_or_downgraded_config_is_refused_by_the_mount_and_every_tool() {
    let p = Prefix::client(&unique("config"));
    let key = p.args[3].clone();
    let url = format!("s3://{}/{}", bucket(), p.name);
    let config_key = p.key(".sealfs");
    let m = p.mount(&[]);
    fs::write(m.p("f"), b"sealed").unwrap();
    m.unmount();
    let out = tool(&["rotate-key", &url], &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let genuine = raw(&config_key);
    let local = tempfile::NamedTempFile::new().unwrap();
    fs::write(local.path(), b"would be uploaded").unwrap();
    let local_path = local.path().to_str().unwrap().to_string();
    let file_url = format!("{url}/f");
    let put_url = format!("{url}/new");
    let prefix = format!("{}/", p_name(&url));
    let objects: Vec<_> = keys_under(&prefix)
        .into_iter()
        .filter(|k| *k != config_key)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mount_args = [
        "mount",
        &url,
        dir.path().to_str().unwrap(),
        "--encryption",
        "client",
    ];
    let refused = |what: &str, expect: &str| {
        for args in [
            &mount_args[..],
            &["cat", &file_url][..],
            &["verify", &url][..],
            &["put", &local_path, &put_url][..],
        ] {
            let out = tool(args, &key);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: {args:?} succeeded");
            assert!(out.stdout.is_empty(), "{what}: {args:?} printed");
            assert!(err.contains(expect), "{what}: {args:?}: {err}");
        }
        assert!(!is_mounted(dir.path()));
        let now: Vec<_> = keys_under(&prefix)
            .into_iter()
            .filter(|k| *k != config_key)
            .collect();
        assert_eq!(now, objects, "{what}: something was written");
    };
    let mut rolled: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    rolled["current_key"] = 1.into();
    put(
        &config_key,
        serde_json::to_vec(&rolled).unwrap(),
        &UserMeta::new(),
    );
    refused("current_key rolled back", "authentication check");
    rt().block_on(raw_store().delete(&config_key)).unwrap();
    refused("config deleted", "sealfs init");
    put(
        &config_key,
        br#"{"sealfs": 1, "encryption": "none"}"#.to_vec(),
        &UserMeta::new(),
    );
    refused("config says none", "'none'");
    // The genuine config back: everything works again.
    put(&config_key, genuine, &UserMeta::new());
    let out = tool(&["cat", &file_url], &key);
    assert_eq!(
        out.stdout,
        b"sealed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The prefix (bucket-relative) of an s3:// URL.
fn p_name(url: &str) -> String {
    url.splitn(4, '/').nth(3).unwrap().to_string()
}

#[test]
fn a_keyring_rewrapped_under_another_kms_key_is_refused() {
    use sealfs::crypto::format::Secret;
    use sealfs::crypto::keys::{Keyring, Names, PrefixConfig, PrefixKey};
    let (kms_url, kms) = localstack_kms();
    let (mine, theirs) = (localstack_key(&kms), localstack_key(&kms));
    let name = unique("kms-foreign");
    let url = format!("s3://{}/{name}", bucket());
    let conn = ["--endpoint-url", &endpoint(), "--force-path-style"];
    init_kms(&kms_url, &url, &mine);
    // The attacker's keyring: data and prefix keys they know, wrapped under their KMS key with
    // the right encryption context, a valid MAC, and the user's key id written in the config.
    let context = HashMap::from([
        ("sealfs:bucket".to_string(), bucket()),
        ("sealfs:prefix".to_string(), format!("{name}/")),
        ("sealfs:format".to_string(), "2".to_string()),
    ]);
    let generate = || {
        let out = rt()
            .block_on(
                kms.generate_data_key()
                    .key_id(&theirs)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .set_encryption_context(Some(context.clone()))
                    .send(),
            )
            .unwrap();
        let plain: [u8; 32] = out.plaintext().unwrap().as_ref().try_into().unwrap();
        (
            Secret(plain),
            out.ciphertext_blob().unwrap().as_ref().to_vec(),
        )
    };
    let ((data, data_blob), (prefix, prefix_blob)) = (generate(), generate());
    let ring = Keyring::new_single(data).with_prefix_key(PrefixKey::new(prefix, Names::Encrypted));
    let forged =
        PrefixConfig::wrapped_by_kms(&mine, &ring, vec![(1, data_blob)], Some(prefix_blob));
    put(
        &format!("{name}/.sealfs"),
        forged.to_json(),
        &UserMeta::new(),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs_kms(&kms_url)
        .args(["mount", &url])
        .arg(dir.path())
        .args(["--encryption", "client", "--kms-key-id", &mine])
        .args(conn)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "mounted a keyring under a foreign KMS key"
    );
    assert!(!is_mounted(dir.path()));
    assert!(err.contains("KMS"), "{err}");
    // Without --kms-key-id the mount does not take the key id from the bucket.
    let out = sealfs_kms(&kms_url)
        .args(["mount", &url])
        .arg(dir.path())
        .args(["--encryption", "client"])
        .args(conn)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kms-key-id"));
}
