//! Several machines on one prefix, for real: two sealfs processes mounting the same prefix are
//! two hosts, each keeping its own view for a minute (`--metadata-ttl 60`), so only the
//! server's conditions can tell one that the other wrote. On moto (which enforces conditional
//! PutObject, DeleteObject and If-None-Match completes) every race ends with each version at
//! the name, in a conflict sibling, or in an error the losing application saw. On Garage
//! (which ignores conditions) the mount says protection is off and the last writer wins, as
//! before. `src/fs/tests_hosts.rs` covers the same races on a store that enforces every
//! condition, If-Match completes included (no local server does).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::IntoRawFd;

use common::*;
use sealfs::store::probe::{probe, Enforced};
use sealfs::store::s3::{S3Config, S3Store};

const HOST: &[&str] = &["--metadata-ttl", "60"];

fn moto() -> String {
    server_env();
    std::env::var("SEALFS_MOTO_ENDPOINT").expect("SEALFS_MOTO_ENDPOINT (scripts/local-s3.sh start)")
}

fn store_at(endpoint: &str) -> S3Store {
    let cfg = S3Config {
        bucket: bucket(),
        region: None,
        endpoint_url: Some(endpoint.into()),
        force_path_style: true,
        sse: Default::default(),
        request_timeout: None,
        aws: Default::default(),
        allow_plain_http_sse_c: false,
    };
    rt().block_on(S3Store::connect(&cfg)).unwrap()
}

/// A fresh prefix on `endpoint` in the suite's mode (client mode: initialized there).
fn prefix_on(endpoint: &str, name: &str) -> Prefix {
    let mut p = Prefix::new_empty();
    p.name = unique(name);
    if suite_mode() == "client" {
        let keydir = tempfile::tempdir().unwrap();
        let key = keydir.path().join("key");
        run(sealfs().args(["keygen", "--out"]).arg(&key));
        run(sealfs()
            .args(["init", &format!("s3://{}/{}", bucket(), p.name)])
            .args(["--encryption", "client", "--key-file"])
            .arg(&key)
            .args(["--endpoint-url", endpoint, "--force-path-style"]));
        p.args = vec!["--encryption".into(), "client".into(), "--key-file".into()];
        p.args.push(key.to_string_lossy().into_owned());
        p.keydir = Some(keydir);
    }
    p
}

/// Two hosts on one prefix of `endpoint`, and a way to look afresh (a third mount).
struct Hosts {
    a: Mount,
    b: Mount,
    endpoint: String,
}

impl Hosts {
    fn on(endpoint: &str, name: &str, extra: &[&str]) -> Hosts {
        let p = prefix_on(endpoint, name);
        let b = p.alias().mount_via(endpoint, &[HOST, extra].concat());
        let a = p.mount_via(endpoint, &[HOST, extra].concat());
        Hosts {
            a,
            b,
            endpoint: endpoint.to_string(),
        }
    }

    /// Name → contents of every file at the top, as a new mount sees them.
    fn fresh_view(&self) -> Vec<(String, Vec<u8>)> {
        let m = self.a.alias().mount_via(&self.endpoint, &[]);
        let mut out: Vec<_> = fs::read_dir(m.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, fs::read(e.path()).unwrap())
            })
            .collect();
        out.sort();
        out
    }
}

/// close(2)'s outcome: 0, or the errno the application sees.
fn close(f: File) -> i32 {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just released by the File, which no longer closes it.
    match unsafe { libc::close(fd) } {
        0 => 0,
        _ => std::io::Error::last_os_error().raw_os_error().unwrap(),
    }
}

fn opened(path: std::path::PathBuf, data: &[u8], create: bool) -> File {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(create)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
    f
}

fn sibling<'a>(view: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let found: Vec<_> = view
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{name}.conflict-")))
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found.first().map(|(_, v)| v.as_slice())
}

fn at<'a>(view: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    view.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[test]
fn the_probe_finds_what_each_server_enforces() {
    let expected = [
        (endpoint(), Enforced::NONE),
        (
            moto(),
            Enforced {
                put: true,
                complete_create: true,
                complete_replace: false,
                copy: false,
                delete: true,
            },
        ),
    ];
    for (endpoint, want) in expected {
        let s = store_at(&endpoint);
        let key = format!("{}/probe", unique("probe"));
        assert_eq!(rt().block_on(probe(&s, &key)).unwrap(), want, "{endpoint}");
        assert!(keys_on(&s, &key).is_empty(), "the probe leaves nothing");
    }
}

fn keys_on(s: &S3Store, prefix: &str) -> Vec<String> {
    rt().block_on(sealfs::store::list_all(s, prefix))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[test]
fn a_name_created_on_two_hosts_keeps_both_files() {
    let h = Hosts::on(&moto(), "hosts-create", &[]);
    let fa = opened(h.a.p("f"), b"from a", true);
    let fb = opened(h.b.p("f"), b"from b", true);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), libc::ESTALE, "the losing close is told");
    let view = h.fresh_view();
    assert_eq!(at(&view, "f"), Some(&b"from a"[..]));
    assert_eq!(sibling(&view, "f"), Some(&b"from b"[..]));
    assert!(h.b.log_text().contains("conflict"), "{}", h.b.log_text());
    // Each mount's metrics: the conflict is b's.
    assert!(conflicts(&h.b) >= 1);
    assert_eq!(conflicts(&h.a), 0);
}

/// The conflicts a mount's `sealfs stats` reports.
fn conflicts(m: &Mount) -> u64 {
    let out = run(sealfs().arg("stats").arg(m.path()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("conflicts ")?.parse().ok())
        .expect("a conflicts line")
}

#[test]
fn an_overwrite_that_loses_is_kept_as_a_sibling() {
    let h = Hosts::on(&moto(), "hosts-overwrite", &[]);
    fs::write(h.a.p("doc"), b"v0").unwrap();
    assert_eq!(fs::read(h.b.p("doc")).unwrap(), b"v0");
    let fa = opened(h.a.p("doc"), b"a's edit", false);
    let fb = opened(h.b.p("doc"), b"b's edit", false);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), libc::ESTALE);
    let view = h.fresh_view();
    assert_eq!(at(&view, "doc"), Some(&b"a's edit"[..]));
    assert_eq!(sibling(&view, "doc"), Some(&b"b's edit"[..]));
}

#[test]
fn large_files_created_on_two_hosts_keep_both_and_overwrites_show_the_server_gap() {
    let h = Hosts::on(&moto(), "hosts-large", &["--part-size-mib", "5"]);
    let (va, vb) = (vec![b'a'; 6 << 20], vec![b'b'; 6 << 20]);
    // A create: moto enforces If-None-Match on CompleteMultipartUpload. b's upload completes
    // after moving a's file to the sibling (an upload can only complete at its own name).
    let fa = opened(h.a.p("big"), &va, true);
    let fb = opened(h.b.p("big"), &vb, true);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), 0);
    let view = h.fresh_view();
    assert!(at(&view, "big") == Some(&vb[..]));
    assert!(sibling(&view, "big") == Some(&va[..]));
    // An overwrite: moto ignores If-Match on CompleteMultipartUpload (S3 enforces it), so
    // the last upload wins there, as the mount's log line says.
    let fa = opened(h.a.p("big"), &vb, false);
    let fb = opened(h.b.p("big"), &va, false);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), 0);
    assert!(at(&h.fresh_view(), "big") == Some(&va[..]));
    assert!(h
        .a
        .log_text()
        .contains("CompleteMultipartUpload (If-Match)"));
}

#[test]
fn o_excl_is_exclusive_across_hosts() {
    let h = Hosts::on(&moto(), "hosts-excl", &[]);
    // b's kernel and mount remember "no such file" for a minute.
    assert_eq!(errno_of(fs::metadata(h.b.p("lock"))), libc::ENOENT);
    let new = |m: &Mount| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.p("lock"))
    };
    let mut fa = new(&h.a).unwrap();
    assert_eq!(errno_of(new(&h.b)), libc::EEXIST);
    fa.write_all(b"pid 1").unwrap();
    assert_eq!(close(fa), 0);
    assert_eq!(at(&h.fresh_view(), "lock"), Some(&b"pid 1"[..]));
}

#[test]
fn a_delete_does_not_destroy_a_change_made_elsewhere() {
    let h = Hosts::on(&moto(), "hosts-delete", &[]);
    fs::write(h.a.p("x"), b"v0").unwrap();
    fs::write(h.a.p("y"), b"v0").unwrap();
    assert_eq!(fs::read(h.b.p("x")).unwrap(), b"v0");
    // a changes x; b deletes the version it saw: refused, a's change stays. (EBUSY, not
    // ESTALE: the kernel retries an unlink once on ESTALE, after a fresh lookup.)
    fs::write(h.a.p("x"), b"a's x").unwrap();
    assert_eq!(errno_of(fs::remove_file(h.b.p("x"))), libc::EBUSY);
    assert_eq!(at(&h.fresh_view(), "x"), Some(&b"a's x"[..]));
    // Told, b looks again and deletes what it now sees.
    fs::remove_file(h.b.p("x")).unwrap();
    // y: b deletes while a writes; a's close finds v0 gone and keeps its bytes.
    let fa = opened(h.a.p("y"), b"a's y", false);
    fs::remove_file(h.b.p("y")).unwrap();
    assert_eq!(close(fa), libc::ESTALE);
    let view = h.fresh_view();
    assert_eq!(at(&view, "x"), None);
    assert_eq!(at(&view, "y"), None);
    assert_eq!(sibling(&view, "y"), Some(&b"a's y"[..]));
}

#[test]
fn on_garage_protection_is_off_and_the_last_writer_wins() {
    let h = Hosts::on(&endpoint(), "hosts-garage", &[]);
    let fa = opened(h.a.p("f"), b"from a", true);
    let fb = opened(h.b.p("f"), b"from b", true);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), 0);
    assert_eq!(h.fresh_view(), vec![("f".to_string(), b"from b".to_vec())]);
    assert!(
        h.a.log_text().contains("ignores conditional writes"),
        "{}",
        h.a.log_text()
    );
}

#[test]
fn overwrite_policy_sends_no_conditions() {
    let h = Hosts::on(&moto(), "hosts-lww", &["--on-conflict", "overwrite"]);
    let fa = opened(h.a.p("f"), b"from a", true);
    let fb = opened(h.b.p("f"), b"from b", true);
    assert_eq!(close(fa), 0);
    assert_eq!(close(fb), 0);
    assert_eq!(h.fresh_view(), vec![("f".to_string(), b"from b".to_vec())]);
}
