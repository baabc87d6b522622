//! Server-side encryption modes through a real mount: SSE-C on Garage (which enforces it),
//! SSE-S3 and SSE-KMS on moto (which applies and echoes them), and a server that ignores
//! SSE-KMS (Garage) refused loudly.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use sealfs::store::s3::{S3Config, S3Store};
use sealfs::store::ObjectStore;
use sealfs::store::Sse;

fn moto() -> String {
    server_env();
    std::env::var("SEALFS_MOTO_ENDPOINT").expect("SEALFS_MOTO_ENDPOINT (scripts/local-s3.sh start)")
}

fn store_at(endpoint: &str, sse: Sse) -> S3Store {
    let cfg = S3Config {
        bucket: bucket(),
        region: None,
        endpoint_url: Some(endpoint.into()),
        force_path_style: true,
        sse,
        request_timeout: None,
        aws: Default::default(),
        allow_plain_http_sse_c: false,
    };
    rt().block_on(S3Store::connect(&cfg)).unwrap()
}

fn key_file(dir: &std::path::Path, name: &str, lines: &[[u8; 32]]) -> std::path::PathBuf {
    let p = dir.join(name);
    let text: String = lines
        .iter()
        .map(|k| format!("{}\n", hex_encode(k)))
        .collect();
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn ssec(keys: &[[u8; 32]]) -> Sse {
    Sse::C(std::sync::Arc::new(
        sealfs::store::CustomerKeys::new(
            keys.iter().map(sealfs::store::CustomerKey::new).collect(),
        )
        .expect("at least one key"),
    ))
}

#[test]
fn sse_c_needs_the_key_detects_a_wrong_one_and_reads_older_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, wrong) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let name = unique("ssec");
    let url = format!("s3://{}/{name}", bucket());
    let k_old = key_file(dir.path(), "old", &[old]);
    run(sealfs()
        .args(["init", &url, "--encryption", "sse-c", "--sse-c-key-file"])
        .arg(&k_old)
        .args(["--endpoint-url", &endpoint(), "--force-path-style"]));
    let mut p = Prefix::new_empty();
    p.name = name.clone();
    p.args = vec![
        "--encryption".into(),
        "sse-c".into(),
        "--sse-c-key-file".into(),
        k_old.to_string_lossy().into(),
    ];
    let m = p.mount(&[]);
    fs::write(m.p("f"), b"secret under the old key").unwrap();
    let key = m.key("f");
    // Without the key (or with another), the server refuses the object.
    assert!(rt()
        .block_on(raw_store().get_range(&key, 0..5, None))
        .is_err());
    assert!(rt()
        .block_on(store_at(&endpoint(), ssec(&[wrong])).head(&key))
        .is_err());
    assert!(rt()
        .block_on(store_at(&endpoint(), ssec(&[old])).head(&key))
        .unwrap()
        .is_some());
    m.unmount();

    let mount_err = |extra: &[&str]| {
        let out = sealfs()
            .args(["mount", &url])
            .arg(m.path())
            .args(["--endpoint-url", &endpoint(), "--force-path-style"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(!is_mounted(m.path()));
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let k_wrong = key_file(dir.path(), "wrong", &[wrong]);
    let msg = mount_err(&[
        "--encryption",
        "sse-c",
        "--sse-c-key-file",
        k_wrong.to_str().unwrap(),
    ]);
    assert!(msg.contains("wrong SSE-C key"), "{msg}");
    assert_eq!(msg.lines().count(), 1);
    let msg = mount_err(&[]);
    assert!(msg.contains("sse-c"), "{msg}");

    // Key history: the new key first (for writes), the old one still reads; a rename rekeys.
    let k_both = key_file(dir.path(), "both", &[new, old]);
    let mut p = Prefix::new_empty();
    p.name = name.clone();
    p.args = vec![
        "--encryption".into(),
        "sse-c".into(),
        "--sse-c-key-file".into(),
        k_both.to_string_lossy().into(),
    ];
    let m2 = p.mount(&[]);
    assert_eq!(fs::read(m2.p("f")).unwrap(), b"secret under the old key");
    fs::rename(m2.p("f"), m2.p("g")).unwrap();
    fs::write(m2.p("h"), b"new").unwrap();
    let g = m2.key("g");
    assert!(
        rt().block_on(store_at(&endpoint(), ssec(&[new])).head(&g))
            .unwrap()
            .is_some(),
        "rekeyed"
    );
    assert!(rt()
        .block_on(store_at(&endpoint(), ssec(&[old])).head(&g))
        .is_err());
    assert_eq!(fs::read(m2.p("g")).unwrap(), b"secret under the old key");
}

#[test]
fn sse_kms_on_a_server_that_does_not_apply_it_fails_loudly() {
    let url = format!("s3://{}/{}", bucket(), unique("kms-ignored"));
    let out = sealfs()
        .args([
            "init",
            &url,
            "--encryption",
            "sse-kms",
            "--endpoint-url",
            &endpoint(),
            "--force-path-style",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("did not apply") && msg.contains("aws:kms"),
        "{msg}"
    );
}

#[test]
fn sse_s3_and_sse_kms_are_applied_to_every_write() {
    let kms_key = std::env::var("SEALFS_TEST_KMS_KEY_ID").expect("SEALFS_TEST_KMS_KEY_ID");
    for (mode, extra, want) in [
        ("sse-s3", vec![], "AES256"),
        (
            "sse-kms",
            vec!["--kms-key-id".to_string(), kms_key.clone()],
            "aws:kms",
        ),
    ] {
        let name = unique(mode);
        let url = format!("s3://{}/{name}", bucket());
        run(sealfs()
            .args(["init", &url, "--encryption", mode])
            .args(&extra)
            .args(["--endpoint-url", &moto(), "--force-path-style"]));
        let mut p = Prefix::new_empty();
        p.name = name.clone();
        p.args = vec!["--encryption".into(), mode.into()];
        p.args.extend(extra.iter().cloned());
        let m = p.mount_via(&moto(), &["--part-size-mib", "5"]);
        let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 249) as u8).collect();
        fs::write(m.p("small"), b"hello").unwrap();
        fs::write(m.p("big"), &big).unwrap();
        fs::rename(m.p("small"), m.p("moved")).unwrap();
        fs::set_permissions(m.p("big"), fs::Permissions::from_mode(0o600)).unwrap();
        let s3 = store_at(&moto(), Sse::None);
        for f in ["moved", "big"] {
            let head = rt().block_on(s3.head(&m.key(f))).unwrap().unwrap();
            assert_eq!(head.sse.as_deref(), Some(want), "{mode} {f}");
        }
        assert_eq!(fs::read(m.p("moved")).unwrap(), b"hello");
        assert_eq!(fs::read(m.p("big")).unwrap(), big);
    }
}

#[test]
fn rekey_moves_every_object_to_the_newest_key() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = ([7u8; 32], [8u8; 32]);
    let name = unique("rekey");
    let url = format!("s3://{}/{name}", bucket());
    let conn = ["--endpoint-url", &endpoint(), "--force-path-style"];
    let k_old = key_file(dir.path(), "old", &[old]);
    run(sealfs()
        .args(["init", &url, "--encryption", "sse-c", "--sse-c-key-file"])
        .arg(&k_old)
        .args(conn));
    let prefix = |key: &std::path::Path| {
        let mut p = Prefix::new_empty();
        p.name = name.clone();
        p.args = [
            "--encryption",
            "sse-c",
            "--sse-c-key-file",
            key.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        p
    };
    let m = prefix(&k_old).mount(&[]);
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/a"), b"alpha").unwrap();
    fs::write(m.p("b"), vec![9u8; 6 << 20]).unwrap();
    m.unmount();

    let k_both = key_file(dir.path(), "both", &[new, old]);
    run(sealfs()
        .args(["rekey", &url, "--sse-c-key-file"])
        .arg(&k_both)
        .args(conn));
    let only_new = store_at(&endpoint(), ssec(&[new]));
    for rel in [".sealfs", "d/a", "b"] {
        let key = format!("{name}/{rel}");
        assert!(
            rt().block_on(only_new.head(&key)).unwrap().is_some(),
            "{key} is under the new key"
        );
    }
    // The old key alone no longer opens the prefix; the new one alone does, with the data.
    let k_new = key_file(dir.path(), "new", &[new]);
    let m = prefix(&k_new).mount(&[]);
    assert_eq!(fs::read(m.p("d/a")).unwrap(), b"alpha");
    assert_eq!(fs::read(m.p("b")).unwrap(), vec![9u8; 6 << 20]);
    m.unmount();
    let out = sealfs()
        .args(["mount", &url])
        .arg(m.path())
        .args(["--encryption", "sse-c", "--sse-c-key-file"])
        .arg(&k_old)
        .args(conn)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong SSE-C key"));
    // Running it again has nothing left to do.
    let out = run(sealfs()
        .args(["rekey", &url, "--sse-c-key-file"])
        .arg(&k_both)
        .args(conn));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rekeyed 0 objects"));
}
