//! Client-side encryption through a real mount on the local S3 server: the bucket holds only
//! ciphertext, tampering on the server gives EIO (never wrong bytes), and wrong keys or modes
//! refuse the mount.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use common::*;
use sealfs::crypto::format::{block_range, BLOCK_PLAIN, HEADER_LEN};
use sealfs::store::ObjectStore;

fn text(len: usize) -> Vec<u8> {
    b"The quick brown fox jumps over the lazy dog. "
        .iter()
        .cycle()
        .take(len)
        .copied()
        .collect()
}

fn raw(key: &str) -> Vec<u8> {
    rt().block_on(sealfs::store::get_all(&raw_store(), key))
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Replace an object's body, keeping its metadata (what an attacker with bucket access can do).
fn replace_body(key: &str, body: Vec<u8>) {
    let s3 = raw_store();
    let meta = rt().block_on(s3.head(key)).unwrap().unwrap().user;
    rt().block_on(s3.put(key, Bytes::from(body), &meta))
        .unwrap();
}

fn read_errno(path: &std::path::Path) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut out))
        .map(|_| out)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn the_bucket_holds_only_ciphertext() {
    let m = Prefix::client(&unique("cipher")).mount(&[]);
    let secret = text(300_000);
    fs::write(m.p("secret.txt"), &secret).unwrap();
    fs::create_dir(m.p("dir")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", m.p("dir/link")).unwrap();
    let body = raw(&m.key("secret.txt"));
    assert!(
        !body.windows(19).any(|w| w == b"The quick brown fox"),
        "plaintext in the bucket"
    );
    assert_eq!(body.len() as u64, m.object_size(secret.len() as u64));
    assert!(!raw(&m.key("dir/link"))
        .windows(10)
        .any(|w| w == b"secret.txt"));
    assert_eq!(
        fs::metadata(m.p("secret.txt")).unwrap().len(),
        300_000,
        "ls shows plaintext sizes"
    );
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("secret.txt")).unwrap(), secret);
    assert_eq!(fs::read(m.p("dir/link")).unwrap(), secret);
    // The config object is hidden and its name reserved.
    assert!(!fs::read_dir(m.path())
        .unwrap()
        .any(|e| e.unwrap().file_name() == ".sealfs"));
    assert_eq!(errno_of(fs::write(m.p(".sealfs"), b"x")), libc::EACCES);
}

#[test]
fn tampered_objects_give_eio_never_wrong_bytes() {
    let m = Prefix::client(&unique("tamper")).mount(&["--metadata-ttl", "0"]);
    let data = text(4 * BLOCK_PLAIN as usize + 1000);
    let size = data.len() as u64;
    for name in [
        "flip", "trunc", "append", "reorder", "splice", "swap-a", "swap-b", "header",
    ] {
        fs::write(m.p(name), &data).unwrap();
    }
    fs::write(m.p("other"), text(size as usize)).unwrap();
    let key = |n: &str| m.key(n);
    let block = |body: &[u8], i: u64| {
        let r = block_range(i, size);
        body[r.start as usize..r.end as usize].to_vec()
    };
    let orig = raw(&key("flip"));

    let mut b = orig.clone();
    b[block_range(2, size).start as usize + 40] ^= 0x20;
    replace_body(&key("flip"), b);

    let cut = block_range(3, size).start as usize;
    replace_body(&key("trunc"), raw(&key("trunc"))[..cut].to_vec());

    let mut b = raw(&key("append"));
    let extra = block(&b, 1);
    b.extend_from_slice(&extra);
    replace_body(&key("append"), b);

    let b = raw(&key("reorder"));
    let mut r = b[..HEADER_LEN as usize].to_vec();
    for i in [1, 0, 2, 3, 4] {
        r.extend_from_slice(&block(&b, i));
    }
    replace_body(&key("reorder"), r);

    let (b, o) = (raw(&key("splice")), raw(&key("other")));
    let mut r = b[..block_range(1, size).start as usize].to_vec();
    r.extend_from_slice(&block(&o, 1));
    r.extend_from_slice(&b[block_range(2, size).start as usize..]);
    replace_body(&key("splice"), r);

    let (a, bb) = (raw(&key("swap-a")), raw(&key("swap-b")));
    replace_body(&key("swap-a"), bb);
    replace_body(&key("swap-b"), a);

    let mut b = raw(&key("header"));
    b[20] ^= 1; // the file id
    replace_body(&key("header"), b);

    for name in [
        "flip", "trunc", "append", "reorder", "splice", "swap-a", "swap-b", "header",
    ] {
        let got = read_errno(&m.p(name));
        assert_eq!(
            got.as_ref().map(|v| v.len()),
            Err(&libc::EIO),
            "{name}: expected EIO"
        );
    }
    // Untouched blocks of the flipped object still read; the log names object and block.
    let f = fs::File::open(m.p("flip")).unwrap();
    let mut buf = vec![0u8; 1000];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 10).unwrap();
    assert_eq!(buf, data[10..1010]);
    let log = m.log_text();
    assert!(
        log.contains(&key("flip")) && log.contains("block 2"),
        "log: {log}"
    );
    assert_eq!(fs::read(m.p("other")).unwrap(), text(size as usize));
}

#[test]
fn wrong_keys_modes_and_key_files_refuse_the_mount() {
    let prefix = Prefix::client(&unique("keys"));
    let name = prefix.name.clone();
    let url = format!("s3://{}/{name}", bucket());
    let dir = tempfile::tempdir().unwrap();
    let mount = |extra: &[&str]| {
        let out = sealfs()
            .args(["mount", &url])
            .arg(dir.path())
            .args(["--endpoint-url", &endpoint(), "--force-path-style"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "mount should fail");
        assert!(!is_mounted(dir.path()));
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let other = dir.path().join("other.key");
    run(sealfs().args(["keygen", "--out"]).arg(&other));
    let msg = mount(&[
        "--encryption",
        "client",
        "--key-file",
        other.to_str().unwrap(),
    ]);
    assert!(msg.contains("wrong key file"), "{msg}");
    assert_eq!(msg.lines().count(), 1);
    let msg = mount(&[]);
    assert!(msg.contains("--encryption client"), "{msg}");
    let key = &prefix.args[3];
    fs::set_permissions(key, fs::Permissions::from_mode(0o644)).unwrap();
    let msg = mount(&["--encryption", "client", "--key-file", key]);
    assert!(msg.contains("chmod 600"), "{msg}");
    fs::set_permissions(key, fs::Permissions::from_mode(0o600)).unwrap();
    let fresh = format!("s3://{}/{}", bucket(), unique("uninit"));
    let out = sealfs()
        .args(["mount", &fresh])
        .arg(dir.path())
        .args([
            "--endpoint-url",
            &endpoint(),
            "--force-path-style",
            "--encryption",
            "client",
            "--key-file",
            key,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sealfs init"));
    // A keyring replaced by one made with another key file: refused, not used.
    let attacker = Prefix::client(&unique("attacker"));
    let theirs = raw(&attacker.key(".sealfs"));
    rt().block_on(raw_store().put(
        &prefix.key(".sealfs"),
        Bytes::from(theirs),
        &Default::default(),
    ))
    .unwrap();
    let msg = mount(&["--encryption", "client", "--key-file", key]);
    assert!(msg.contains("wrong key file"), "{msg}");
}

#[test]
fn kms_wrapped_keys_mount_and_are_bound_to_their_prefix() {
    let key_id =
        std::env::var("SEALFS_TEST_KMS_KEY_ID").expect("SEALFS_TEST_KMS_KEY_ID (local-s3.sh)");
    let name = unique("kms");
    let url = format!("s3://{}/{name}", bucket());
    run(sealfs()
        .args([
            "init",
            &url,
            "--encryption",
            "client",
            "--kms-key-id",
            &key_id,
        ])
        .args(["--endpoint-url", &endpoint(), "--force-path-style"]));
    let config = String::from_utf8(raw(&format!("{name}/.sealfs"))).unwrap();
    assert!(
        config.contains("\"wrapping\": \"kms\"") && config.contains(&key_id),
        "{config}"
    );
    let enc = sealfs::setup::EncryptionConfig {
        mode: sealfs::crypto::mode::Mode::Client,
        kms_key_id: Some(key_id.clone()),
        ..Default::default()
    };
    let p = Prefix::opened(
        &name,
        enc,
        &["--encryption", "client", "--kms-key-id", &key_id],
    );
    let m = p.mount(&[]);
    let secret = text(100_000);
    fs::write(m.p("f"), &secret).unwrap();
    assert!(!raw(&m.key("f"))
        .windows(19)
        .any(|w| w == b"The quick brown fox"));
    let m = m.remount(&[]);
    assert_eq!(fs::read(m.p("f")).unwrap(), secret);
    // The keyring copied to another prefix does not unwrap there (KMS encryption context).
    let other = unique("kms-moved");
    rt().block_on(raw_store().put(
        &format!("{other}/.sealfs"),
        Bytes::from(config),
        &Default::default(),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args(["mount", &format!("s3://{}/{other}", bucket())])
        .arg(dir.path())
        .args([
            "--endpoint-url",
            &endpoint(),
            "--force-path-style",
            "--encryption",
            "client",
            "--kms-key-id",
            &key_id,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("KMS"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");
}

#[test]
fn cat_and_verify_work_without_a_mount() {
    let p = Prefix::client(&unique("tools"));
    let key = p.args[3].clone();
    let name = p.name.clone();
    let m = p.mount(&[]);
    let data = text(3 * BLOCK_PLAIN as usize + 5);
    fs::write(m.p("a"), &data).unwrap();
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/b"), b"small").unwrap();
    let tool = |args: &[&str]| {
        sealfs()
            .args(args)
            .args([
                "--key-file",
                &key,
                "--endpoint-url",
                &endpoint(),
                "--force-path-style",
            ])
            .output()
            .unwrap()
    };
    let out = tool(&["cat", &format!("s3://{}/{name}/a", bucket())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let out = tool(&["verify", &format!("s3://{}/{name}", bucket())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two files and the directory marker (whose sealed attributes are checked too).
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("verified 3 objects, 0 bad"), "{said}");
    // One flipped bit: verify names the object and fails; cat stops before the bad block.
    let mut body = raw(&m.key("a"));
    let at = block_range(2, data.len() as u64).start as usize + 50;
    body[at] ^= 1;
    replace_body(&m.key("a"), body);
    let out = tool(&["verify", &format!("s3://{}/{name}", bucket())]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("BAD {name}/a")) && report.contains("block 2"),
        "{report}"
    );
    let out = tool(&["cat", &format!("s3://{}/{name}/a", bucket())]);
    assert!(!out.status.success());
    assert!(out.stdout.len() < data.len() && data.starts_with(&out.stdout));
}

#[test]
fn verify_reports_progress_in_lines_without_a_terminal() {
    let p = Prefix::client(&unique("progress"));
    let (key, name) = (p.args[3].clone(), p.name.clone());
    let m = p.mount(&[]);
    for i in 0..10 {
        fs::write(m.p(&format!("f{i}")), text(1000)).unwrap();
    }
    let out = sealfs()
        .arg("verify")
        .arg(format!("s3://{}/{name}", bucket()))
        .args(["--key-file", &key, "--endpoint-url", &endpoint()])
        .arg("--force-path-style")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // Equal sizes: one line per tenth, the last tenth being the summary.
    let lines: Vec<&str> = said.lines().filter(|l| l.contains("verified ")).collect();
    assert_eq!(lines.len(), 10, "{said}");
    assert!(lines[4].starts_with("sealfs: verified 5 of 10, "), "{said}");
    assert!(lines[4].contains("/s, eta "), "{said}");
    assert!(!said.contains('\r') && !said.contains('\x1b'), "{said:?}");
}

#[test]
fn rotate_key_and_put_keep_every_object_readable() {
    use std::os::unix::fs::MetadataExt;
    let kms_key =
        std::env::var("SEALFS_TEST_KMS_KEY_ID").expect("SEALFS_TEST_KMS_KEY_ID (local-s3.sh)");
    let p = Prefix::client(&unique("rotate"));
    let k1 = p.args[3].clone();
    let k2 = p.keydir.as_ref().unwrap().path().join("k2");
    run(sealfs().args(["keygen", "--out"]).arg(&k2));
    let name = p.name.clone();
    let url = format!("s3://{}/{name}", bucket());
    let conn = ["--endpoint-url", &endpoint(), "--force-path-style"];
    // Names stay where they are through rotations: the prefix key does not change.
    let layout = p.layout();
    let m = p.mount(&[]);
    fs::write(m.p("before"), text(200_000)).unwrap();
    m.unmount();

    // put: a multipart-sized file with its mode and mtime, sealed like a mount writes it.
    let local = tempfile::NamedTempFile::new().unwrap();
    let big = text(9 * 1024 * 1024 + 123);
    fs::write(local.path(), &big).unwrap();
    fs::set_permissions(local.path(), fs::Permissions::from_mode(0o640)).unwrap();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 5);
    fs::File::options()
        .write(true)
        .open(local.path())
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    run(sealfs()
        .arg("put")
        .arg(local.path())
        .arg(format!("{url}/d/put"))
        .args(["--key-file", &k1])
        .args(conn));
    assert!(!raw(&layout.file_key("d/put"))
        .windows(19)
        .any(|w| w == b"The quick brown fox"));

    // A new data key version, and the keyring rewrapped under k2: k1 no longer opens it.
    run(sealfs()
        .args(["rotate-key", &url, "--key-file", &k1, "--new-key-file"])
        .arg(&k2)
        .args(conn));
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args(["mount", &url])
        .arg(dir.path())
        .args(["--encryption", "client", "--key-file", &k1])
        .args(conn)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key file"));

    let prefix = |args: [&str; 4]| {
        let mut p = Prefix::new_empty();
        p.name = name.clone();
        p.args = args.map(String::from).to_vec();
        p
    };
    let m = prefix(["--encryption", "client", "--key-file", k2.to_str().unwrap()]).mount(&[]);
    assert_eq!(fs::read(m.p("before")).unwrap(), text(200_000));
    assert_eq!(fs::read(m.p("d/put")).unwrap(), big);
    let md = fs::metadata(m.p("d/put")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 5));
    fs::write(m.p("after"), b"under version 2").unwrap();
    let version = |rel: &str| {
        let body = raw(&layout.file_key(rel));
        sealfs::crypto::format::Header::parse(&body[..HEADER_LEN as usize])
            .unwrap()
            .key_version
    };
    assert_eq!((version("before"), version("after")), (1, 2));
    m.unmount();

    // Rewrap only, under KMS: the same keys, now unwrapped by KMS at mount.
    run(sealfs()
        .args(["rotate-key", &url, "--key-file", k2.to_str().unwrap()])
        .args(["--new-kms-key-id", &kms_key, "--rewrap-only"])
        .args(conn));
    let config = String::from_utf8(raw(&format!("{name}/.sealfs"))).unwrap();
    assert!(config.contains("\"wrapping\": \"kms\""), "{config}");
    let m = prefix(["--encryption", "client", "--kms-key-id", &kms_key]).mount(&[]);
    assert_eq!(fs::read(m.p("after")).unwrap(), b"under version 2");
    assert_eq!(fs::read(m.p("d/put")).unwrap(), big);
    fs::write(m.p("third"), b"x").unwrap();
    assert_eq!(version("third"), 2);
}

#[test]
fn a_disabled_kms_key_refuses_the_mount() {
    // moto still decrypts under a disabled key; LocalStack's KMS refuses, as AWS does.
    let (kms_url, kms) = localstack_kms();
    let key_id = localstack_key(&kms);
    let url = format!("s3://{}/{}", bucket(), unique("kms-disabled"));
    let conn = ["--endpoint-url", &endpoint(), "--force-path-style"];
    init_kms(&kms_url, &url, &key_id);
    let dir = tempfile::tempdir().unwrap();
    let mount = || {
        sealfs_kms(&kms_url)
            .args(["mount", &url])
            .arg(dir.path())
            .args(["--encryption", "client", "--kms-key-id", &key_id])
            .args(conn)
            .output()
            .unwrap()
    };
    let out = mount();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(dir.path().join("f"), b"under a KMS key").unwrap();
    run(std::process::Command::new("umount").arg(dir.path()));

    rt().block_on(kms.disable_key().key_id(&key_id).send())
        .unwrap();
    let out = mount();
    assert!(!out.status.success());
    assert!(!is_mounted(dir.path()));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("KMS") && msg.contains("disabled"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");

    rt().block_on(kms.enable_key().key_id(&key_id).send())
        .unwrap();
    let out = mount();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"under a KMS key");
    run(std::process::Command::new("umount").arg(dir.path()));
}
