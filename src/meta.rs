//! Attributes in object metadata, with s3fs's keys so that sealfs and s3fs read each other's
//! files: `mode` (decimal st_mode, file type bits included), `uid`, `gid`, `mtime` (seconds,
//! or `seconds.nanoseconds` with nine digits when the time has a fractional part).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::codec::FileCodec;
use crate::inode::{Attr, Kind};
use crate::store::UserMeta;

/// Metadata key holding a client-mode object's file id (hex), bound to its header.
pub const ID_KEY: &str = "sealfs-id";

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;

/// What a mount shows for objects that carry no attributes of their own.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
}

pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    }
}

pub fn parse_time(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = match s.split_once('.') {
        Some((a, b)) => {
            let digits: String = b.chars().take(9).collect();
            let scale = 10u32.pow(9 - digits.len() as u32);
            (a.parse::<u64>().ok()?, digits.parse::<u32>().ok()? * scale)
        }
        None => (s.parse::<u64>().ok()?, 0),
    };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn kind_bits(kind: Kind) -> u32 {
    match kind {
        Kind::File => S_IFREG,
        Kind::Dir => S_IFDIR,
        Kind::Symlink => S_IFLNK,
    }
}

/// Metadata to store for `attr`.
pub fn to_meta(attr: &Attr) -> UserMeta {
    let mut m = UserMeta::new();
    m.insert(
        "mode".into(),
        (kind_bits(attr.kind) | u32::from(attr.perm)).to_string(),
    );
    m.insert("uid".into(), attr.uid.to_string());
    m.insert("gid".into(), attr.gid.to_string());
    m.insert("mtime".into(), format_time(attr.mtime));
    m
}

/// Metadata of an object written with `codec`: its attributes and, in client mode, the file id
/// that binds the object's body to it (checked at open, so swapped bodies are refused).
pub fn object_meta(attr: &Attr, codec: Option<&FileCodec>) -> UserMeta {
    let mut m = to_meta(attr);
    if let Some(FileCodec::Client(keys)) = codec {
        m.insert(ID_KEY.into(), hex::encode(keys.header().file_id));
    }
    m
}

/// The kind an object's metadata declares (s3fs marks symlinks, and old-style directories,
/// in `mode`), or `None` for a plain object.
pub fn declared_kind(meta: &UserMeta) -> Option<Kind> {
    let mode: u32 = meta.get("mode")?.parse().ok()?;
    match mode & S_IFMT {
        S_IFLNK => Some(Kind::Symlink),
        S_IFDIR => Some(Kind::Dir),
        S_IFREG => Some(Kind::File),
        _ => None,
    }
}

/// Attributes of an object of `kind` from its metadata, falling back to the defaults and to
/// the object's LastModified time.
pub fn from_meta(
    kind: Kind,
    size: u64,
    last_modified: SystemTime,
    meta: &UserMeta,
    d: &Defaults,
) -> Attr {
    let default_perm = if kind == Kind::Dir {
        d.dir_mode
    } else if kind == Kind::Symlink {
        0o777
    } else {
        d.file_mode
    };
    let perm = meta
        .get("mode")
        .and_then(|m| m.parse::<u32>().ok())
        .map(|m| (m & 0o7777) as u16)
        .unwrap_or(default_perm);
    let mtime = meta
        .get("mtime")
        .and_then(|s| parse_time(s))
        .unwrap_or(last_modified);
    Attr {
        kind,
        size,
        perm,
        uid: meta
            .get("uid")
            .and_then(|s| s.parse().ok())
            .unwrap_or(d.uid),
        gid: meta
            .get("gid")
            .and_then(|s| s.parse().ok())
            .unwrap_or(d.gid),
        mtime,
        ctime: last_modified.max(mtime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_and_without_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        assert_eq!(format_time(t), "1700000000");
        assert_eq!(parse_time("1700000000"), Some(t));
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(format_time(t), "1700000000.000000005");
        assert_eq!(parse_time(&format_time(t)), Some(t));
        assert_eq!(
            parse_time("12.5"),
            Some(UNIX_EPOCH + Duration::new(12, 500_000_000))
        );
        assert_eq!(parse_time("x"), None);
    }

    #[test]
    fn s3fs_metadata_is_understood() {
        let mut m = UserMeta::new();
        m.insert("mode".into(), "33188".into()); // 0100644
        m.insert("uid".into(), "1000".into());
        m.insert("gid".into(), "100".into());
        m.insert("mtime".into(), "1600000000".into());
        let d = Defaults {
            uid: 0,
            gid: 0,
            file_mode: 0o600,
            dir_mode: 0o700,
        };
        let a = from_meta(Kind::File, 3, UNIX_EPOCH, &m, &d);
        assert_eq!((a.perm, a.uid, a.gid), (0o644, 1000, 100));
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::new(1_600_000_000, 0));
        assert_eq!(declared_kind(&m), Some(Kind::File));
        assert_eq!(to_meta(&a).get("mode").unwrap(), "33188");
        m.insert("mode".into(), (S_IFLNK | 0o777).to_string());
        assert_eq!(declared_kind(&m), Some(Kind::Symlink));
    }
}
