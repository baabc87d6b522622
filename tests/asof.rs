//! Point-in-time mounts (`--as-of`) and `sealfs versions` on a versioned bucket (moto; Garage
//! has no versioning, and is refused with a message): a file overwritten and a file deleted
//! after a moment read back as they were, in none, client and SSE-C modes, and copy back into the
//! live prefix. A bucket without versioning is refused.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::*;

const VERSIONED: &str = "sealfs-versioned";

fn moto() -> String {
    server_env();
    std::env::var("SEALFS_MOTO_ENDPOINT").expect("SEALFS_MOTO_ENDPOINT (scripts/local-s3.sh start)")
}

/// A plain SDK client of moto.
fn client() -> aws_sdk_s3::Client {
    let conf = rt().block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto())
            .load(),
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

/// The newest LastModified the server gave any version under `prefix`.
fn newest_stamp(s3: &aws_sdk_s3::Client, prefix: &str) -> SystemTime {
    let out = rt()
        .block_on(
            s3.list_object_versions()
                .bucket(VERSIONED)
                .prefix(prefix)
                .send(),
        )
        .unwrap();
    out.versions()
        .iter()
        .filter_map(|v| v.last_modified())
        .map(|t| SystemTime::try_from(*t).unwrap())
        .max()
        .expect("versions under the prefix")
}

/// Block until the server stamps a new object later than `moment` (its clock, not ours,
/// decides which versions a moment includes; some servers stamp whole seconds).
fn until_server_passes(s3: &aws_sdk_s3::Client, scratch: &str, moment: SystemTime) {
    loop {
        let put = s3.put_object().bucket(VERSIONED).key(scratch).send();
        rt().block_on(put).unwrap();
        if newest_stamp(s3, scratch) > moment {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bucket on moto with versioning on (made once per server).
fn versioned_bucket() {
    let s3 = client();
    rt().block_on(async {
        let _ = s3.create_bucket().bucket(VERSIONED).send().await;
        s3.put_bucket_versioning()
            .bucket(VERSIONED)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning on moto");
    });
}

/// `sealfs ARGS... --endpoint-url MOTO --force-path-style` plus the prefix's key options.
fn on_moto(args: &[&str], keys: &[String]) -> Output {
    sealfs()
        .args(args)
        .args(["--endpoint-url", &moto(), "--force-path-style"])
        .args(keys)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Mounted(tempfile::TempDir);

impl Mounted {
    fn new(url: &str, keys: &[String], extra: &[&str]) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        let mut args = vec!["mount", url, &path];
        args.extend_from_slice(extra);
        ok(on_moto(&args, keys));
        Mounted(dir)
    }

    fn p(&self, rel: &str) -> std::path::PathBuf {
        self.0.path().join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        unmount(self.0.path());
    }
}

fn unmount(path: &Path) {
    if is_mounted(path) {
        run(std::process::Command::new("umount").arg(path));
    }
}

fn restore_after_overwrite_and_delete(mode: &str) {
    versioned_bucket();
    let name = unique(&format!("asof-{mode}"));
    let url = format!("s3://{VERSIONED}/{name}");
    let keydir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = match mode {
        "client" => {
            let key = keydir.path().join("key");
            run(sealfs().args(["keygen", "--out"]).arg(&key));
            let keys = vec!["--key-file".into(), key.to_string_lossy().into_owned()];
            ok(on_moto(&["init", &url, "--encryption", "client"], &keys));
            keys
        }
        "sse-c" => {
            use std::os::unix::fs::PermissionsExt;
            let key = keydir.path().join("ssec.key");
            let raw: Vec<u8> = name.bytes().cycle().take(32).collect();
            std::fs::write(&key, format!("{}\n", hex_encode(&raw))).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            let keys = vec![
                "--sse-c-key-file".into(),
                key.to_string_lossy().into_owned(),
            ];
            ok(on_moto(&["init", &url, "--encryption", "sse-c"], &keys));
            keys
        }
        _ => vec![],
    };
    let (first, second) = (pattern(3 << 20, 1), pattern(2 << 20, 2));
    {
        let m = Mounted::new(&url, &keys, &[]);
        std::fs::write(m.p("report"), &first).unwrap();
        std::fs::write(m.p("notes"), b"keep me").unwrap();
        std::fs::create_dir(m.p("dir")).unwrap();
        std::fs::write(m.p("dir/inner"), b"inside").unwrap();
    }
    // The moment to restore: the server's stamp of the last of the first writes; the damage
    // comes once the server stamps later than that.
    let s3 = client();
    let moment = newest_stamp(&s3, &format!("{name}/"));
    until_server_passes(&s3, &format!("{name}-clock"), moment);
    {
        let m = Mounted::new(&url, &keys, &[]);
        std::fs::write(m.p("report"), &second).unwrap();
        std::fs::remove_file(m.p("notes")).unwrap();
        std::fs::remove_file(m.p("dir/inner")).unwrap();
        std::fs::write(m.p("later"), b"written after").unwrap();
    }

    // `sealfs versions` lists both versions of the overwritten file, newest first, with
    // their plaintext sizes, and the deletion of the other.
    let out = ok(on_moto(&["versions", &format!("{url}/report")], &keys));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(&second.len().to_string()) && lines[0].ends_with("(current)"));
    assert!(lines[1].contains(&first.len().to_string()), "{text}");
    let out = ok(on_moto(&["versions", &format!("{url}/notes")], &keys));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().nth(1).unwrap().contains("deleted"), "{text}");

    let at = humantime::format_rfc3339_nanos(moment).to_string();
    let then = Mounted::new(&url, &keys, &["--as-of", &at]);
    assert!(std::fs::read(then.p("report")).unwrap() == first);
    assert_eq!(std::fs::read(then.p("notes")).unwrap(), b"keep me");
    assert_eq!(std::fs::read(then.p("dir/inner")).unwrap(), b"inside");
    assert_eq!(errno_of(std::fs::metadata(then.p("later"))), libc::ENOENT);
    let mut names: Vec<String> = std::fs::read_dir(then.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "notes", "report"]);
    assert_eq!(
        errno_of(std::fs::write(then.p("report"), b"x")),
        libc::EROFS
    );
    assert_eq!(errno_of(std::fs::remove_file(then.p("notes"))), libc::EROFS);

    // Restore with cp from the past into the present.
    let now = Mounted::new(&url, &keys, &[]);
    assert!(std::fs::read(now.p("report")).unwrap() == second);
    assert_eq!(errno_of(std::fs::metadata(now.p("notes"))), libc::ENOENT);
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(then.p("report"))
        .arg(then.p("notes"))
        .arg(now.0.path()));
    assert!(std::fs::read(now.p("report")).unwrap() == first);
    assert_eq!(std::fs::read(now.p("notes")).unwrap(), b"keep me");
}

#[test]
fn as_of_restores_an_overwritten_and_a_deleted_file() {
    restore_after_overwrite_and_delete("none");
}

#[test]
fn as_of_restores_in_client_mode() {
    restore_after_overwrite_and_delete("client");
}

#[test]
fn as_of_restores_in_sse_c_mode() {
    restore_after_overwrite_and_delete("sse-c");
}

#[test]
fn as_of_on_a_bucket_without_versions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args([
            "mount",
            &format!("s3://{}/{}", bucket(), unique("asof-garage")),
        ])
        .arg(dir.path())
        .args(["--endpoint-url", &endpoint(), "--force-path-style"])
        .args(["--as-of", "2026-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert_mount_refused(&out, "--as-of 2026-01-01T00:00:00Z", dir.path());
    let out = sealfs()
        .args(["mount", "s3://b/p", "/nonexistent", "--as-of", "yesterday"])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("not a time like"), "{msg}");
}
