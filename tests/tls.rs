//! HTTPS endpoints whose certificate a private CA signed (MinIO, Ceph RGW, a company proxy):
//! a TLS terminator in front of the local servers, with a CA made for the test, and sealfs
//! told about the CA the ways the AWS CLI is (AWS_CA_BUNDLE, `ca_bundle` in the profile) or
//! with `--ca-bundle`. S3 and KMS both go through it.

mod common;

use std::fs;
use std::process::{Command, Output};

use common::tls::{ca_file, socket_of, Terminator};
use common::*;

/// `sealfs ARGS` with no CA setting inherited from this process (nor a profile file).
fn bare(args: &[&str]) -> Command {
    let mut c = sealfs();
    c.args(args)
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_CONFIG_FILE", "/nonexistent/sealfs-test-config");
    c
}

fn mount_args(name: &str, dir: &std::path::Path, endpoint: &str) -> Vec<String> {
    vec![
        "mount".into(),
        format!("s3://{}/{name}", bucket()),
        dir.to_string_lossy().into_owned(),
        "--endpoint-url".into(),
        endpoint.into(),
        "--force-path-style".into(),
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Mount through `cmd` (built by the test), and hand the mount to the harness for teardown.
fn mounted(mut cmd: Command, name: &str, dir: tempfile::TempDir) -> Mount {
    let log = std::env::temp_dir().join(format!("{}.log", unique("sealfs-tls")));
    let out = cmd.arg("--log-file").arg(&log).output().unwrap();
    assert!(out.status.success(), "mount failed: {}", stderr(&out));
    Mount {
        dir,
        prefix: name.to_string(),
        log,
        setup: Prefix::new_empty(),
    }
}

#[test]
fn aws_ca_bundle_lets_a_mount_use_a_private_ca_endpoint() {
    let tls = Terminator::start(socket_of(&server_endpoint()));
    let name = unique("tls-env");
    let dir = tempfile::tempdir().unwrap();
    let args = mount_args(&name, dir.path(), &tls.url());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    // What the issue saw: without the CA, a clear refusal that says what to set.
    let out = bare(&argv).output().unwrap();
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(
        msg.contains("certificate") && msg.contains("AWS_CA_BUNDLE"),
        "{msg}"
    );

    let mut cmd = bare(&argv);
    cmd.env("AWS_CA_BUNDLE", ca_file());
    let m = mounted(cmd, &name, dir);
    let data = pattern(3 << 20, 7);
    fs::write(m.p("over-https"), &data).unwrap();
    assert_eq!(fs::read(m.p("over-https")).unwrap(), data);
    assert!(m.log_text().contains("HTTPS trusts the 1 certificate(s)"));
    drop(m);
    // It reached the server through the terminator.
    assert_eq!(
        keys_under(&format!("{name}/")),
        vec![format!("{name}/over-https")]
    );
}

#[test]
fn the_profiles_ca_bundle_and_the_option_are_honoured_by_mounts_and_tools() {
    let tls = Terminator::start(socket_of(&server_endpoint()));
    let name = unique("tls-profile");
    let cfg_dir = tempfile::tempdir().unwrap();
    let config = cfg_dir.path().join("config");
    fs::write(
        &config,
        format!("[profile private]\nca_bundle = {}\n", ca_file().display()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = mount_args(&name, dir.path(), &tls.url());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = bare(&argv);
    cmd.env("AWS_CONFIG_FILE", &config)
        .args(["--profile", "private"]);
    let m = mounted(cmd, &name, dir);
    fs::write(m.p("f"), b"through the profile's CA").unwrap();
    assert!(m.log_text().contains("ca_bundle in profile private"));
    drop(m);

    // A tool with --ca-bundle, even with a bad AWS_CA_BUNDLE in the environment: the option
    // the user typed wins.
    let url = format!("s3://{}/{name}/f", bucket());
    let endpoint = tls.url();
    let cat = || {
        let mut c = bare(&[
            "cat",
            &url,
            "--endpoint-url",
            &endpoint,
            "--force-path-style",
        ]);
        c.env("AWS_CA_BUNDLE", "/nonexistent/ca.pem");
        c
    };
    let out = cat().arg("--ca-bundle").arg(ca_file()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"through the profile's CA");

    // A bundle that cannot be used stops the command at once, naming it and its source.
    let out = cat().output().unwrap();
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(
        msg.contains("/nonexistent/ca.pem") && msg.contains("from AWS_CA_BUNDLE"),
        "{msg}"
    );
}

#[test]
fn kms_calls_trust_the_same_bundle() {
    server_env();
    let moto_kms = std::env::var("AWS_ENDPOINT_URL_KMS").expect("AWS_ENDPOINT_URL_KMS");
    let key_id = std::env::var("SEALFS_TEST_KMS_KEY_ID").expect("SEALFS_TEST_KMS_KEY_ID");
    let kms_tls = Terminator::start(socket_of(&moto_kms));
    let name = unique("tls-kms");
    let url = format!("s3://{}/{name}", bucket());
    let init = |ca: bool| {
        let mut c = bare(&[
            "init",
            &url,
            "--encryption",
            "client",
            "--kms-key-id",
            &key_id,
        ]);
        c.args(["--endpoint-url", &server_endpoint(), "--force-path-style"])
            .env("AWS_ENDPOINT_URL_KMS", kms_tls.url());
        if ca {
            c.env("AWS_CA_BUNDLE", ca_file());
        }
        c.output().unwrap()
    };
    let out = init(false);
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(
        msg.contains("GenerateDataKey") && msg.contains("AWS_CA_BUNDLE"),
        "{msg}"
    );
    let out = init(true);
    assert!(out.status.success(), "{}", stderr(&out));

    // The mount unwraps the keyring through KMS over HTTPS too (and again after a remount).
    let mount = || {
        let dir = tempfile::tempdir().unwrap();
        let args = mount_args(&name, dir.path(), &server_endpoint());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = bare(&argv);
        cmd.args(["--encryption", "client", "--kms-key-id", &key_id])
            .env("AWS_ENDPOINT_URL_KMS", kms_tls.url())
            .env("AWS_CA_BUNDLE", ca_file());
        mounted(cmd, &name, dir)
    };
    let m = mount();
    fs::write(m.p("sealed"), b"wrapped by KMS over https").unwrap();
    drop(m);
    let m = mount();
    assert_eq!(
        fs::read(m.p("sealed")).unwrap(),
        b"wrapped by KMS over https"
    );
}

#[test]
fn doctor_names_the_certificate_problem_and_the_bundle_that_solves_it() {
    let tls = Terminator::start(socket_of(&server_endpoint()));
    let url = format!("s3://{}/{}", bucket(), unique("tls-doctor"));
    let argv = [
        "doctor",
        &url,
        "--endpoint-url",
        &tls.url(),
        "--force-path-style",
    ];
    let line = |out: &Output, check: &str| -> String {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_default()
            .to_string()
    };
    let out = bare(&argv).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let bucket_line = line(&out, "bucket");
    assert!(bucket_line.starts_with("FAIL"), "{bucket_line}");
    assert!(bucket_line.contains("AWS_CA_BUNDLE"), "{bucket_line}");

    let ca = ca_file().to_str().unwrap();
    let out = bare(&argv).args(["--ca-bundle", ca]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let tls_line = line(&out, "tls");
    assert!(
        tls_line.contains(&format!("1 certificate(s) in {ca} (from --ca-bundle)")),
        "{tls_line}"
    );
    assert!(line(&out, "bucket").starts_with("OK"));
}

/// Over HTTPS, PUT and UploadPart bodies go as `UNSIGNED-PAYLOAD` (TLS protects them; the
/// SHA-256 of every byte for SigV4 costs a writer CPU); every other request still signs its
/// (empty) payload.
#[test]
fn bodies_are_not_hashed_for_the_signature_over_https() {
    let tls = Terminator::recording(socket_of(&server_endpoint()));
    let name = unique("tls-unsigned");
    let dir = tempfile::tempdir().unwrap();
    let args = mount_args(&name, dir.path(), &tls.url());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = bare(&argv);
    cmd.env("AWS_CA_BUNDLE", ca_file());
    let m = mounted(cmd, &name, dir);
    let small = pattern(100_000, 1);
    let big = pattern(9 << 20, 2);
    fs::write(m.p("small"), &small).unwrap();
    fs::write(m.p("big"), &big).unwrap();
    assert_eq!(fs::read(m.p("big")).unwrap(), big);
    drop(m);
    let sent = tls.sent.lock().clone();
    let header = b"x-amz-content-sha256:";
    let find_back =
        |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).rposition(|w| w == needle);
    // (method, value) of each request: the method is the one that starts the request line
    // before the header (request heads are ASCII; the bodies between them are not searched
    // forward, only back from a header to its own request line).
    let requests: Vec<(String, String)> = sent
        .windows(header.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(header))
        .map(|(at, _)| {
            let rest = &sent[at + header.len()..];
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let value = String::from_utf8_lossy(&rest[..end]).trim().to_string();
            let line = find_back(&sent[..at], b" HTTP/1.1\r\n").unwrap();
            let method = ["PUT /", "POST /", "GET /", "HEAD /", "DELETE /"]
                .iter()
                .filter_map(|m| Some((find_back(&sent[..line], m.as_bytes())?, *m)))
                .max()
                .unwrap()
                .1;
            (method.trim_end_matches(" /").to_string(), value)
        })
        .collect();
    let puts: Vec<_> = requests.iter().filter(|(m, _)| m == "PUT").collect();
    let unsigned = puts.iter().filter(|(_, v)| v == "UNSIGNED-PAYLOAD").count();
    // small: one PUT; big: two UploadParts (8 MiB parts); plus directory indexes, sessions.
    assert!(unsigned >= 3, "{requests:?}");
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (_, v) in &puts {
        // Copies (CopyObject, UploadPartCopy) are PUTs without a body.
        assert!(
            v == "UNSIGNED-PAYLOAD" || v == empty,
            "a signed PUT body: {v}"
        );
    }
    // Requests that are not body uploads keep a signed payload hash.
    assert!(requests
        .iter()
        .any(|(m, v)| m != "PUT" && v != "UNSIGNED-PAYLOAD"));
}
