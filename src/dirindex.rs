//! The directory attribute index: one object per directory that records, for each file object
//! in it, the user metadata a HEAD would return, so that `ls -l` costs the LIST pages plus one
//! GET instead of one HEAD per file (S3 listings carry no user metadata).
//!
//! Invariants:
//! - An entry describes one object version: it names the object's ETag, size and
//!   LastModified *as the listing reports them*, and a reader uses it only when the current
//!   listing reports the same three. Any write, copy (chmod, utimens) or delete after the entry
//!   was recorded changes LastModified, so a stale entry is never used, only ignored.
//! - The index is an optimisation: a missing, foreign or unparsable index object means "no
//!   entries", never an error.
//!
//! Where (`layout::Layout::index_key`): `PREFIX + ".sealfs-index/" + DIR + "/index"` (`PREFIX + ".sealfs-index/index"` for
//! the mount's root), outside every directory's own prefix, so listings, rmdir's emptiness test
//! and s3fs never see it inside a directory. Byte format: docs/FORMAT.md.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::UserMeta;

const MAGIC: &str = "sealfs-dirindex 1";

/// One file object's version and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub etag: String,
    pub size: u64,
    /// LastModified in milliseconds since the epoch, as the listing reported it.
    pub modified_ms: i64,
    pub user: UserMeta,
}

impl IndexEntry {
    /// Whether this entry describes the object a listing reported.
    pub fn matches(&self, etag: &str, size: u64, modified: SystemTime) -> bool {
        self.etag == etag && self.size == size && self.modified_ms == millis(modified)
    }
}

/// Milliseconds since the epoch (negative before it), the precision listings carry.
pub fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Serialize entries, sorted by name so equal indexes are equal bytes.
pub fn encode<'a>(entries: impl IntoIterator<Item = (&'a String, &'a IndexEntry)>) -> Vec<u8> {
    let mut sorted: Vec<_> = entries.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64 + sorted.len() * 96);
    out.push_str(MAGIC);
    out.push('\n');
    for (name, e) in sorted {
        out.push_str(&escape(name));
        for field in [
            &escape(&e.etag),
            &e.size.to_string(),
            &e.modified_ms.to_string(),
        ] {
            out.push('\t');
            out.push_str(field);
        }
        for (k, v) in &e.user {
            out.push('\t');
            out.push_str(&escape(k));
            out.push('=');
            out.push_str(&escape(v));
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Parse an index; `None` when the bytes are not one (a foreign object, another version).
pub fn decode(bytes: &[u8]) -> Option<HashMap<String, IndexEntry>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split('\n');
    if lines.next()? != MAGIC {
        return None;
    }
    let mut out = HashMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let name = unescape(fields.next()?)?;
        let etag = unescape(fields.next()?)?;
        let size = fields.next()?.parse().ok()?;
        let modified_ms = fields.next()?.parse().ok()?;
        let mut user = UserMeta::new();
        for kv in fields {
            let (k, v) = kv.split_once('=')?;
            user.insert(unescape(k)?, unescape(v)?);
        }
        let entry = IndexEntry {
            etag,
            size,
            modified_ms,
            user,
        };
        out.insert(name, entry);
    }
    Some(out)
}

/// Percent-escape the bytes that delimit fields (`%`, tab, newline, carriage return, `=`).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '\t' | '\n' | '\r' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(etag: &str, user: &[(&str, &str)]) -> IndexEntry {
        IndexEntry {
            etag: etag.into(),
            size: 4096,
            modified_ms: 1_700_000_000_123,
            user: user
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The worked example of docs/FORMAT.md, byte for byte.
    #[test]
    fn encodes_the_documented_example() {
        let mut m = HashMap::new();
        m.insert(
            "b\tc=%.txt".to_string(),
            entry("\"e2\"", &[("mode", "33188")]),
        );
        m.insert(
            "a.txt".to_string(),
            entry(
                "\"9f2c\"",
                &[("gid", "0"), ("mode", "33261"), ("mtime", "1700000000.5")],
            ),
        );
        let bytes = encode(&m);
        let expected = "sealfs-dirindex 1\n\
            a.txt\t\"9f2c\"\t4096\t1700000000123\tgid=0\tmode=33261\tmtime=1700000000.5\n\
            b%09c%3D%25.txt\t\"e2\"\t4096\t1700000000123\tmode=33188\n";
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn round_trips_awkward_names_and_values() {
        let mut m = HashMap::new();
        for name in [
            "plain",
            "new\nline",
            "tab\there",
            "per%cent",
            "é☃",
            "a=b",
            "\r",
        ] {
            m.insert(name.to_string(), entry("x", &[("k=1", "v\t%\n")]));
        }
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn refuses_what_is_not_an_index() {
        assert!(decode(b"").is_none());
        assert!(decode(b"some other object\n").is_none());
        assert!(decode(b"sealfs-dirindex 2\n").is_none());
        assert!(decode(b"sealfs-dirindex 1\nname\tetag\tnot-a-size\t0\n").is_none());
        assert!(decode(b"sealfs-dirindex 1\nname\tetag\t1\t0\tno-equals\n").is_none());
        assert!(decode(b"sealfs-dirindex 1\nbad%G1\tetag\t1\t0\n").is_none());
        assert!(decode(&[0xff, 0xfe]).is_none());
        assert_eq!(decode(b"sealfs-dirindex 1\n").unwrap().len(), 0);
    }

    #[test]
    fn an_entry_matches_only_its_version() {
        let e = entry("\"e\"", &[]);
        let t = from_millis(e.modified_ms);
        assert!(e.matches("\"e\"", 4096, t));
        assert!(!e.matches("\"f\"", 4096, t));
        assert!(!e.matches("\"e\"", 4097, t));
        assert!(!e.matches("\"e\"", 4096, t + Duration::from_millis(1)));
        assert_eq!(millis(from_millis(-1500)), -1500);
    }
}
