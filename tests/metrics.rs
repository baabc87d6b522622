//! `--metrics-addr`: a Prometheus scrape of a running mount whose counters move as the
//! operations say, and `sealfs stats` showing the same numbers. Client mode, so a tampered
//! object shows up as an authentication failure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use common::*;
use sealfs::store::ObjectStore;

/// A port nothing listens on now (the mount binds it right after).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET path` over plain HTTP/1.1: (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn stats(m: &Mount, name: &str) -> f64 {
    let out = run(sealfs().arg("stats").arg(m.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn a_scrape_follows_what_the_mount_does() {
    let addr = free_addr();
    let m = Prefix::client(&unique("metrics")).mount(&["--metrics-addr", &addr.to_string()]);
    let scrape = || {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        body
    };
    let before = scrape();
    assert!(before.contains("\nsealfs_s3_sent_bytes_total "), "{before}");
    assert_eq!(value(&before, "sealfs_parts_uploaded_total"), 0.0);

    // 20 MiB: a multipart upload of three 8 MiB parts.
    let data = pattern(20 << 20, 7);
    std::fs::write(m.p("big"), &data).unwrap();
    let after_write = scrape();
    let part_ok = r#"sealfs_s3_requests_total{operation="UploadPart",outcome="ok"}"#;
    assert_eq!(value(&after_write, part_ok), 3.0, "{after_write}");
    assert_eq!(value(&after_write, "sealfs_parts_uploaded_total"), 3.0);
    assert_eq!(value(&after_write, "sealfs_parts_in_flight"), 0.0);
    assert_eq!(value(&after_write, "sealfs_uploads_in_flight"), 0.0);
    let sent = value(&after_write, "sealfs_s3_sent_bytes_total");
    assert!(sent > (20 << 20) as f64, "{sent}");
    let latency = r#"sealfs_s3_request_duration_seconds_count{operation="UploadPart"}"#;
    assert_eq!(value(&after_write, latency), 3.0);

    // Read it twice: the first read misses and reads ahead, the second hits the cache.
    assert!(std::fs::read(m.p("big")).unwrap() == data);
    let first = scrape();
    let misses = value(&first, "sealfs_block_cache_misses_total");
    assert!(misses >= 1.0, "{first}");
    assert!(
        value(&first, "sealfs_readahead_blocks_total") >= 1.0,
        "{first}"
    );
    assert!(value(&first, "sealfs_block_cache_bytes") > 0.0, "{first}");
    let gets = r#"sealfs_s3_requests_total{operation="GET",outcome="ok"}"#;
    let received = value(&first, "sealfs_s3_received_bytes_total");
    assert!(received >= (20 << 20) as f64, "{first}");
    // Drop the kernel's page cache so the second read reaches the mount.
    std::fs::write("/proc/sys/vm/drop_caches", "3").ok();
    assert!(std::fs::read(m.p("big")).unwrap() == data);
    let second = scrape();
    // One GET: opening a client-mode file reads (and authenticates) its header again.
    assert_eq!(value(&second, gets), value(&first, gets) + 1.0, "{second}");
    assert!(
        value(&second, "sealfs_block_cache_hits_total")
            > value(&first, "sealfs_block_cache_hits_total")
    );
    assert_eq!(value(&second, "sealfs_block_cache_misses_total"), misses);

    // `sealfs stats` reads the same counters.
    assert_eq!(stats(&m, "UploadPart"), value(&second, part_ok));
    assert_eq!(stats(&m, "parts_uploaded"), 3.0);
    assert_eq!(stats(&m, "block_cache_misses"), misses);
    assert_eq!(stats(&m, "auth_failures"), 0.0);

    // A flipped byte in the bucket: the read fails with EIO and is counted.
    std::fs::write(m.p("small"), b"hello metrics").unwrap();
    let key = m.key("small");
    let s3 = raw_store();
    let obj = rt().block_on(s3.head(&key)).unwrap().unwrap();
    let mut body = rt()
        .block_on(s3.get_range(&key, 0..obj.size, None))
        .unwrap()
        .to_vec();
    let last = body.len() - 20;
    body[last] ^= 1;
    rt().block_on(s3.put(&key, Bytes::from(body), &obj.user))
        .unwrap();
    // A fresh mount of the prefix, so nothing of the file is cached.
    let addr2 = free_addr();
    let m = m.remount(&["--metrics-addr", &addr2.to_string()]);
    let err = std::fs::read(m.p("small")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let (_, after) = http_get(addr2, "/metrics");
    assert!(
        value(&after, "sealfs_auth_failures_total") >= 1.0,
        "{after}"
    );
    assert_eq!(
        stats(&m, "auth_failures"),
        value(&after, "sealfs_auth_failures_total")
    );

    // An upload in progress shows: a file open for writing with two parts' worth written.
    let mut open = std::fs::File::create(m.p("open")).unwrap();
    std::io::Write::write_all(&mut open, &pattern(17 << 20, 3)).unwrap();
    let (_, during) = http_get(addr2, "/metrics");
    assert_eq!(value(&during, "sealfs_uploads_in_flight"), 1.0, "{during}");
    drop(open);
    let (_, after) = http_get(addr2, "/metrics");
    assert_eq!(value(&after, "sealfs_uploads_in_flight"), 0.0, "{after}");

    let (status, _) = http_get(addr2, "/nothing");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn a_metrics_port_in_use_stops_the_mount() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args([
            "mount",
            &format!("s3://{}/{}", bucket(), unique("metrics-port")),
        ])
        .arg(dir.path())
        .args(["--endpoint-url", &endpoint(), "--force-path-style"])
        .args(["--metrics-addr", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&format!("cannot serve metrics on {addr}")),
        "{msg}"
    );
    assert!(!is_mounted(dir.path()));
}
