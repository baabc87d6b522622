//! `--cache-dir` through real mounts: blocks read come back from the directory after a
//! remount without a GET, a changed object is fetched again, a damaged cache file is dropped
//! and refetched, the budget holds, a second mount is refused, and the directory never holds
//! plaintext (client mode: the bucket's ciphertext; SSE-C: sealed under a local key).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A recognisable plaintext: a marker every few hundred bytes.
fn marked(len: usize) -> Vec<u8> {
    let mut v = pattern(len, 3);
    for chunk in v.chunks_mut(500) {
        let n = chunk.len().min(14);
        chunk[..n].copy_from_slice(&b"SEALFS-MARKER!"[..n]);
    }
    v
}

fn stats(m: &Mount) -> String {
    String::from_utf8(run(sealfs().arg("stats").arg(m.path())).stdout).unwrap()
}

fn stat(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("segments"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Whether any file under `dir` contains `needle`.
fn holds(dir: &Path, needle: &[u8]) -> bool {
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", "-F"])
        .arg(std::str::from_utf8(needle).unwrap())
        .arg(dir)
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

/// Read every file and compare; the kernel's page cache is per mount, so after a remount
/// each read reaches sealfs.
fn check(m: &Mount, files: &[(&str, &Vec<u8>)]) {
    for (name, data) in files {
        assert!(
            &std::fs::read(m.p(name)).unwrap() == *data,
            "{name} differs"
        );
    }
}

fn with_cache(dir: &Path, extra: &[&'static str]) -> Vec<String> {
    let mut v = vec!["--cache-dir".to_string(), dir.display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn client_mode_blocks_come_back_from_disk_after_a_remount_and_damage_is_refetched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let opts = with_cache(&dir, &["--cache-size-mib", "1", "--metadata-ttl", "0"]);
    let m = Prefix::client(&unique("diskcache")).mount(&args(&opts));
    let big = marked(3 << 20);
    let small = marked(10_000);
    std::fs::write(m.p("big"), &big).unwrap();
    std::fs::write(m.p("small"), &small).unwrap();
    let m = m.remount(&args(&opts));
    check(&m, &[("big", &big), ("small", &small)]);
    let first = stats(&m);
    assert!(stat(&first, "GET") >= 2, "{first}");
    assert!(stat(&first, "disk_cache_misses") > 0, "{first}");

    // After a remount: no GET at all, headers and blocks come from the directory.
    let m = m.remount(&args(&opts));
    // Both files are under the 128 blocks of a segment: one segment of blocks and one
    // holding the header, each.
    assert_eq!(cache_files(&dir).len(), 4, "{:?}", cache_files(&dir));
    check(&m, &[("big", &big), ("small", &small)]);
    let warm = stats(&m);
    assert_eq!(stat(&warm, "GET"), 0, "{warm}");
    assert!(stat(&warm, "disk_cache_hits") >= 3 * 16 + 2, "{warm}");
    assert_eq!(stat(&warm, "disk_cache_dropped"), 0, "{warm}");
    assert!(
        !holds(&dir, b"SEALFS-MARKER"),
        "plaintext in the cache directory"
    );

    // Another host replaces `small`: its new ETag misses, the new bytes are read.
    let other = m.alias().mount(&[]);
    let replaced = marked(20_000);
    std::fs::write(other.p("small"), &replaced).unwrap();
    drop(other);
    check(&m, &[("small", &replaced)]);
    assert!(stat(&stats(&m), "GET") >= 1);

    // Damage while unmounted: a byte flipped in the first entry of every segment file, and
    // segments of blocks cut short at 2 MiB (`big`'s: the entry there torn, those after it
    // gone). Each is detected (the block fails authentication, or the length check), dropped
    // and fetched.
    m.unmount();
    // The daemon writes what it still holds before it exits and lets go of the directory.
    eventually(
        Duration::from_secs(30),
        "the daemon let go of the cache",
        || {
            std::process::Command::new("flock")
                .args(["-n"])
                .arg(dir.join("lock"))
                .arg("true")
                .status()
                .unwrap()
                .success()
        },
    );
    for f in cache_files(&dir) {
        let mut raw = std::fs::read(&f).unwrap();
        // Slots before the first entry are holes; its body starts after its 46-byte header.
        let first = raw.iter().position(|&b| b != 0).unwrap();
        raw[first + 46 + 10] ^= 0x40;
        // A header's segment holds it in its last slot: that one is kept whole.
        if first == 0 {
            raw.truncate(raw.len().min(2 << 20));
        }
        std::fs::write(&f, &raw).unwrap();
    }
    let m = m.remount(&args(&opts));
    check(&m, &[("big", &big), ("small", &replaced)]);
    let after = stats(&m);
    // At least the headers of both files and the first block of `big` were looked up, found
    // bad and dropped (`small`'s block comes whole with its header). (Hits are possible: blocks fetched again by readahead and evicted
    // from the 1 MiB memory cache come back from the directory, freshly written.)
    assert!(stat(&after, "disk_cache_dropped") >= 3, "{after}");
    assert!(stat(&after, "GET") >= 2, "{after}");
    // A dropped entry is a miss and an authentication failure, not an error for the reader.
    assert!(
        m.log_text().contains("dropped a bad entry"),
        "{}",
        m.log_text()
    );
    // Written again, good this time.
    let m = m.remount(&args(&opts));
    check(&m, &[("big", &big), ("small", &replaced)]);
    assert_eq!(stat(&stats(&m), "GET"), 0);
}

#[test]
fn the_budget_holds_and_a_second_mount_of_the_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let opts = with_cache(&dir, &["--cache-dir-size", "1MiB", "--cache-size-mib", "1"]);
    let m = Prefix::client(&unique("diskcache-budget")).mount(&args(&opts));
    let data = marked(6 << 20);
    std::fs::write(m.p("f"), &data).unwrap();
    check(&m, &[("f", &data)]);
    eventually(Duration::from_secs(30), "entries evicted", || {
        stat(&stats(&m), "disk_cache_evictions") > 0
    });
    // Segment files are sparse: what they take is their allocated blocks.
    use std::os::unix::fs::MetadataExt;
    let used: u64 = cache_files(&dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().blocks() * 512)
        .sum();
    assert!(used <= 1 << 20, "{used} bytes on disk");
    assert!(stat(&stats(&m), "disk_cache_bytes") <= 1 << 20);

    let second = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args([
            "mount",
            &format!("s3://{}/{}", bucket(), unique("diskcache-other")),
        ])
        .arg(second.path())
        .args(["--endpoint-url", &endpoint(), "--force-path-style"])
        .arg("--cache-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_mount_refused(&out, "in use by another sealfs mount", second.path());

    // A cache directory inside the mount point would write through the mount itself.
    let third = tempfile::tempdir().unwrap();
    let out = sealfs()
        .args([
            "mount",
            &format!("s3://{}/{}", bucket(), unique("diskcache-in")),
        ])
        .arg(third.path())
        .args(["--endpoint-url", &endpoint(), "--force-path-style"])
        .arg("--cache-dir")
        .arg(third.path().join("cache"))
        .output()
        .unwrap();
    assert_mount_refused(&out, "is inside the mount point", third.path());
}

#[test]
fn sse_c_mode_keeps_sealed_entries_under_a_local_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let opts = with_cache(&dir, &["--cache-size-mib", "1"]);
    let m = Prefix::sse_c(&unique("diskcache-ssec")).mount(&args(&opts));
    let data = marked(1 << 20);
    std::fs::write(m.p("f"), &data).unwrap();
    let m = m.remount(&args(&opts));
    check(&m, &[("f", &data)]);
    let m = m.remount(&args(&opts));
    check(&m, &[("f", &data)]);
    let warm = stats(&m);
    assert_eq!(stat(&warm, "GET"), 0, "{warm}");
    assert!(stat(&warm, "disk_cache_hits") >= 16, "{warm}");
    assert!(
        !holds(&dir, b"SEALFS-MARKER"),
        "plaintext in the cache directory"
    );
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(dir.join("local.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}
