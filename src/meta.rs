//! Attributes in object metadata. Two encodings, one per prefix (`MetaCodec`):
//! - plain (every mode but client format 2): s3fs's keys, so that sealfs and s3fs read each
//!   other's files: `mode` (decimal st_mode, file type bits included), `uid`, `gid`, `mtime`
//!   and `ctime` (seconds, or `seconds.nanoseconds` with nine digits when the time has a
//!   fractional part), `rdev` (a device's number, decimal), and in client mode `sealfs-id`,
//!   the file id (checked at open only when present), and `xattr`, the extended attributes
//!   as s3fs writes them (a JSON object of name to base64 value, URL-encoded). An object
//!   without `ctime` (written by another tool) shows the later of its LastModified and mtime;
//! - sealed (client mode, format 2): one `sealfs-attr` value (`crypto::attrs`) holding all of
//!   them and the file id, bound to the object's key; an object without one, or with one that
//!   does not open, has no attributes to show (`AttrError`: EIO plus a log line).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::attrs::{AttrError, AttrSealer, SealedAttrs, ATTR_KEY};
use crate::crypto::codec::FileCodec;
use crate::inode::{Attr, Kind, Xattrs};
use crate::store::{ObjectMeta, UserMeta};

/// Metadata key holding a client-mode object's file id (hex), bound to its header.
pub const ID_KEY: &str = "sealfs-id";

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

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
        Kind::Fifo => S_IFIFO,
        Kind::Socket => S_IFSOCK,
        Kind::CharDevice => S_IFCHR,
        Kind::BlockDevice => S_IFBLK,
    }
}

/// The kind `mode`'s file type bits name.
pub fn kind_of_mode(mode: u32) -> Option<Kind> {
    Some(match mode & S_IFMT {
        S_IFREG => Kind::File,
        S_IFDIR => Kind::Dir,
        S_IFLNK => Kind::Symlink,
        S_IFIFO => Kind::Fifo,
        S_IFSOCK => Kind::Socket,
        S_IFCHR => Kind::CharDevice,
        S_IFBLK => Kind::BlockDevice,
        _ => return None,
    })
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
    m.insert("ctime".into(), format_time(attr.ctime));
    if attr.rdev != 0 {
        m.insert("rdev".into(), attr.rdev.to_string());
    }
    if !attr.xattrs.is_empty() {
        m.insert(XATTR_KEY.into(), encode_xattrs(&attr.xattrs));
    }
    m
}

/// s3fs's metadata key for extended attributes.
const XATTR_KEY: &str = "xattr";

/// Bytes S3 allows for an object's user metadata, keys and values together.
pub const USER_META_BUDGET: usize = 2048;

/// The size S3 counts for `meta` against `USER_META_BUDGET`.
pub fn meta_size(meta: &UserMeta) -> usize {
    meta.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// s3fs's spelling of extended attributes: `{"NAME":"BASE64",...}`, URL-encoded.
fn encode_xattrs(x: &Xattrs) -> String {
    use base64::Engine;
    let map: std::collections::BTreeMap<&str, String> = x
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                base64::engine::general_purpose::STANDARD.encode(v),
            )
        })
        .collect();
    let json = serde_json::to_string(&map).unwrap_or_default();
    percent_encoding::utf8_percent_encode(&json, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The extended attributes `value` (s3fs's spelling) holds; what does not parse is no
/// attribute at all (plain metadata is the bucket's to write).
fn decode_xattrs(value: &str) -> Xattrs {
    use base64::Engine;
    let json = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&json).unwrap_or_default();
    let engine = base64::engine::general_purpose::STANDARD;
    let x = map
        .into_iter()
        .filter_map(|(k, v)| Some((k, engine.decode(v).ok()?)))
        .collect();
    std::sync::Arc::new(x)
}

/// The kind an object's metadata declares (s3fs marks symlinks, special files and old-style
/// directories in `mode`), or `None` for a plain object.
pub fn declared_kind(meta: &UserMeta) -> Option<Kind> {
    kind_of_mode(meta.get("mode")?.parse().ok()?)
}

/// Whether `obj` is an s3fs old-style directory object (a key without the trailing '/',
/// `Content-Type: application/x-directory`) that no `mode` says otherwise of.
pub fn is_old_style_dir(obj: &ObjectMeta) -> bool {
    let typed = (obj.content_type.as_deref())
        .is_some_and(|t| t.trim().starts_with("application/x-directory"));
    typed && !obj.key.ends_with('/') && declared_kind(&obj.user).is_none_or(|k| k == Kind::Dir)
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
    let default_perm = match kind {
        Kind::Dir => d.dir_mode,
        Kind::Symlink => 0o777,
        _ => d.file_mode,
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
        ctime: meta
            .get("ctime")
            .and_then(|s| parse_time(s))
            .unwrap_or(last_modified.max(mtime)),
        rdev: meta.get("rdev").and_then(|s| s.parse().ok()).unwrap_or(0),
        nlink: kind.links(),
        xattrs: meta
            .get(XATTR_KEY)
            .map(|v| decode_xattrs(v))
            .unwrap_or_default(),
    }
}

/// The metadata keys sealfs owns (replaced on every update; other tools' keys are kept).
const OWN_KEYS: [&str; 9] = [
    "mode", "uid", "gid", "mtime", "ctime", "rdev", XATTR_KEY, ID_KEY, ATTR_KEY,
];

/// The file id of an object written with `codec`, in client mode.
pub fn file_id_of(codec: Option<&FileCodec>) -> Option<[u8; 16]> {
    match codec {
        Some(FileCodec::Client(keys)) => Some(keys.header().file_id),
        _ => None,
    }
}

/// A file id as metadata and `Decoded` spell it (lower-case hex).
pub fn id_hex(id: Option<[u8; 16]>) -> Option<String> {
    id.map(hex::encode)
}

/// The file id `hex` spells (from `Decoded::file_id`).
pub fn id_bytes(hex_id: Option<&str>) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id?, &mut id).ok()?;
    Some(id)
}

/// What an object's metadata says: its attributes and (client mode) the file id its body
/// must carry.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub attr: Attr,
    pub file_id: Option<String>,
}

/// How a prefix's objects carry their attributes.
#[derive(Debug)]
pub struct MetaCodec {
    /// The mount's prefix: sealed values are bound to keys relative to it.
    prefix: String,
    sealer: Option<AttrSealer>,
}

impl MetaCodec {
    pub fn plain(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            sealer: None,
        }
    }

    pub fn sealed(prefix: &str, sealer: AttrSealer) -> Self {
        Self {
            prefix: prefix.to_string(),
            sealer: Some(sealer),
        }
    }

    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    fn rel<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(&self.prefix).unwrap_or(key)
    }

    /// The metadata of object `key` holding `attr` (and `file_id`, client mode): `old`'s keys
    /// that are not sealfs's are kept.
    pub fn encode(
        &self,
        key: &str,
        attr: &Attr,
        file_id: Option<[u8; 16]>,
        old: Option<&UserMeta>,
    ) -> UserMeta {
        let mut m: UserMeta = old
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mode = kind_bits(attr.kind) | u32::from(attr.perm);
        match &self.sealer {
            None => {
                m.extend(to_meta(attr));
                m.insert("mode".into(), mode.to_string());
                if let Some(id) = id_hex(file_id) {
                    m.insert(ID_KEY.into(), id);
                }
            }
            Some(sealer) => {
                let d = attr.mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
                let c = attr.ctime.duration_since(UNIX_EPOCH).unwrap_or_default();
                let file_id = file_id.unwrap_or_default();
                let sealed = SealedAttrs {
                    mode,
                    uid: attr.uid,
                    gid: attr.gid,
                    mtime_secs: d.as_secs() as i64,
                    mtime_nanos: d.subsec_nanos(),
                    file_id,
                    ctime: Some((c.as_secs() as i64, c.subsec_nanos())),
                    rdev: attr.rdev,
                    xattrs: (attr.xattrs.iter())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                m.insert(ATTR_KEY.into(), sealer.seal(self.rel(key), &sealed));
            }
        }
        m
    }

    /// Attributes of `obj` (a file or symlink object, or with `marker` a directory marker) of
    /// `size` bytes as the file sees it.
    pub fn decode(
        &self,
        obj: &ObjectMeta,
        marker: bool,
        size: u64,
        d: &Defaults,
    ) -> Result<Decoded, AttrError> {
        let Some(sealer) = &self.sealer else {
            // s3fs's old-style directories are objects whose mode says S_IFDIR, or (without
            // a mode) whose Content-Type says so.
            let kind = match marker {
                true => Kind::Dir,
                false if is_old_style_dir(obj) => Kind::Dir,
                false => declared_kind(&obj.user).unwrap_or(Kind::File),
            };
            return Ok(Decoded {
                attr: from_meta(kind, size, obj.last_modified, &obj.user, d),
                file_id: obj.user.get(ID_KEY).cloned(),
            });
        };
        let value = obj.user.get(ATTR_KEY).ok_or(AttrError::Missing)?;
        let a = sealer.open(self.rel(&obj.key), value)?;
        // The type must fit the key's shape: only a marker is a directory.
        let kind = match (marker, kind_of_mode(a.mode)) {
            (true, Some(Kind::Dir)) => Kind::Dir,
            (false, Some(k)) if k != Kind::Dir => k,
            _ => return Err(AttrError::Forged),
        };
        let time = |secs: i64, nanos: u32| {
            u64::try_from(secs)
                .ok()
                .filter(|_| nanos < 1_000_000_000)
                .map(|s| UNIX_EPOCH + Duration::new(s, nanos))
                .ok_or(AttrError::Forged)
        };
        let mtime = time(a.mtime_secs, a.mtime_nanos)?;
        let ctime = match a.ctime {
            Some((secs, nanos)) => time(secs, nanos)?,
            None => obj.last_modified.max(mtime),
        };
        let file_id = (kind != Kind::Dir).then(|| hex::encode(a.file_id));
        Ok(Decoded {
            attr: Attr {
                kind,
                size,
                perm: (a.mode & 0o7777) as u16,
                uid: a.uid,
                gid: a.gid,
                mtime,
                ctime,
                rdev: a.rdev,
                nlink: kind.links(),
                xattrs: std::sync::Arc::new(a.xattrs.into_iter().collect()),
            },
            file_id,
        })
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
