//! Where things live in the bucket: the one mapping between paths inside a mount and object
//! keys, and back from listed keys to names. Every module that forms or parses a key goes
//! through `Layout`; encrypted names (a later format) plug in here and nowhere else.
//!
//! The layout is s3fs's: a file at `PATH` is the object `PREFIX + PATH`; a directory is the
//! common prefix `PREFIX + PATH + "/"`, plus an empty marker object of that name when it was
//! made by mkdir; s3fs's older `PATH_$folder$` markers are read as directories too. Two names
//! at the top of a mount are sealfs's own and never shown: the prefix's config object
//! (`CONFIG_NAME`) and the directory attribute indexes (`INDEX_DIR`).
//!
//! Invariants: `prefix` is empty or ends in '/'; `path` is "" for the mount's root and
//! otherwise names joined by '/', with no leading or trailing '/'.

/// The prefix's config object (mode, wrapped keyring): `PREFIX.sealfs`.
pub const CONFIG_NAME: &str = ".sealfs";
/// The directory attribute indexes (`dirindex`): under `PREFIX.sealfs-index/`.
pub const INDEX_DIR: &str = ".sealfs-index";
/// s3fs's legacy directory marker suffix.
const FOLDER_SUFFIX: &str = "_$folder$";

/// What a listed key under a directory is, by its name in that directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed<'a> {
    /// The directory's own marker: not an entry.
    Marker,
    File(&'a str),
    /// A directory named by a legacy `NAME_$folder$` marker.
    Dir(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (empty, or ending in '/').
    pub fn new(prefix: &str) -> Self {
        debug_assert!(prefix.is_empty() || prefix.ends_with('/'));
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object of the file (or symlink) at `path`.
    pub fn file_key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The prefix under which directory `path`'s entries live; also its marker object's key.
    pub fn dir_prefix(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{path}/", self.prefix)
        }
    }

    /// Every marker a directory may have (sealfs's / s3fs's, and the legacy one).
    pub fn dir_markers(&self, path: &str) -> [String; 2] {
        [
            self.dir_prefix(path),
            format!("{}{FOLDER_SUFFIX}", self.file_key(path)),
        ]
    }

    /// The prefix's config object.
    pub fn config_key(&self) -> String {
        format!("{}{CONFIG_NAME}", self.prefix)
    }

    /// The attribute index object of directory `path`.
    pub fn index_key(&self, path: &str) -> String {
        if path.is_empty() {
            format!("{}{INDEX_DIR}/index", self.prefix)
        } else {
            format!("{}{INDEX_DIR}/{path}/index", self.prefix)
        }
    }

    /// Whether `name` at the top of the mount is sealfs's own (never shown, never created).
    pub fn is_reserved(in_root: bool, name: &str) -> bool {
        in_root && (name == CONFIG_NAME || name == INDEX_DIR)
    }

    /// Whether `key` (under this prefix) is sealfs's own bookkeeping, not a user's file.
    pub fn is_internal(&self, key: &str) -> bool {
        let Some(rel) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        rel == CONFIG_NAME || rel.starts_with(&format!("{INDEX_DIR}/"))
    }

    /// What `key`, listed under directory prefix `dir` (from `dir_prefix`), is there.
    pub fn listed<'k>(dir: &str, key: &'k str) -> Listed<'k> {
        let name = key.strip_prefix(dir).unwrap_or(key);
        if name.is_empty() {
            return Listed::Marker;
        }
        match name.strip_suffix(FOLDER_SUFFIX) {
            Some(d) => Listed::Dir(d),
            None => Listed::File(name),
        }
    }

    /// The name of common prefix `p` (ending in '/') listed under directory prefix `dir`.
    pub fn listed_dir<'p>(dir: &str, p: &'p str) -> &'p str {
        p.strip_prefix(dir).unwrap_or(p).trim_end_matches('/')
    }

    /// `key` (under `from`, a directory prefix) moved under directory prefix `to`.
    pub fn moved(from: &str, to: &str, key: &str) -> String {
        format!("{to}{}", key.strip_prefix(from).unwrap_or(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_keys_and_listed_keys_back_to_names() {
        let l = Layout::new("p/");
        assert_eq!(l.file_key("a/b"), "p/a/b");
        assert_eq!(l.dir_prefix(""), "p/");
        assert_eq!(l.dir_prefix("a"), "p/a/");
        assert_eq!(
            l.dir_markers("a"),
            ["p/a/".to_string(), "p/a_$folder$".into()]
        );
        assert_eq!(l.config_key(), "p/.sealfs");
        assert_eq!(l.index_key(""), "p/.sealfs-index/index");
        assert_eq!(Layout::new("").index_key("a/b"), ".sealfs-index/a/b/index");
        assert_ne!(l.index_key("index"), l.index_key(""));
        assert_eq!(Layout::listed("p/a/", "p/a/"), Listed::Marker);
        assert_eq!(Layout::listed("p/a/", "p/a/f"), Listed::File("f"));
        assert_eq!(Layout::listed("p/a/", "p/a/d_$folder$"), Listed::Dir("d"));
        assert_eq!(Layout::listed_dir("p/a/", "p/a/sub/"), "sub");
        assert_eq!(Layout::moved("p/a/", "p/z/", "p/a/x/y"), "p/z/x/y");
        assert!(Layout::is_reserved(true, ".sealfs"));
        assert!(!Layout::is_reserved(false, ".sealfs"));
        assert!(l.is_internal("p/.sealfs") && l.is_internal("p/.sealfs-index/a/index"));
        assert!(!l.is_internal("p/a/.sealfs") && !l.is_internal("p/f"));
    }
}
