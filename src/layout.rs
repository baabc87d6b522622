//! Where things live in the bucket: the one mapping between paths inside a mount and object
//! keys, and back from listed keys to names. Every module that forms or parses a key goes
//! through `Layout`.
//!
//! The layout is s3fs's: a file at `PATH` is the object `PREFIX + PATH`; a directory is the
//! common prefix `PREFIX + PATH + "/"`, plus an empty marker object of that name when it was
//! made by mkdir; s3fs's older `PATH_$folder$` markers are read as directories too. Three
//! names at the top of a mount are sealfs's own and never shown: the prefix's config object
//! (`CONFIG_NAME`), the directory attribute indexes (`INDEX_DIR`) and the objects of files
//! unlinked while open (`UNLINKED_DIR`).
//!
//! With encrypted names (client mode, format 2) every component of `PATH` is stored as its
//! `crypto::names` form, bound to the plaintext path of its parent; legacy markers do not
//! exist there, and a listed name that does not decrypt is `Listed::Foreign` (never shown).
//!
//! Invariants: `prefix` is empty or ends in '/'; `path` is "" for the mount's root and
//! otherwise names joined by '/', with no leading or trailing '/'.

use std::borrow::Cow;

use crate::crypto::names::NameCipher;

/// The prefix's config object (mode, wrapped keyring): `PREFIX.sealfs`.
pub const CONFIG_NAME: &str = ".sealfs";
/// The directory attribute indexes (`dirindex`): under `PREFIX.sealfs-index/`.
pub const INDEX_DIR: &str = ".sealfs-index";
/// Files unlinked while open keep their bytes here until their last close:
/// `PREFIX.sealfs-unlinked/RANDOM`.
pub const UNLINKED_DIR: &str = ".sealfs-unlinked";
/// s3fs's legacy directory marker suffix.
const FOLDER_SUFFIX: &str = "_$folder$";

/// What a listed key under a directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed<'a> {
    /// The directory's own marker: not an entry.
    Marker,
    /// A file (or symlink): its name, and its name as stored (the key's last component).
    File { name: Cow<'a, str>, stored: &'a str },
    /// A directory named by a legacy `NAME_$folder$` marker.
    Dir(Cow<'a, str>),
    /// A stored name that is not an encrypted name of this directory.
    Foreign(&'a str),
}

#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
    names: Option<NameCipher>,
}

fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl Layout {
    /// The layout under `prefix` (empty, or ending in '/') with plain names.
    pub fn new(prefix: &str) -> Self {
        Self::with_names(prefix, None)
    }

    /// The layout under `prefix`, names encrypted by `names` when given.
    pub fn with_names(prefix: &str, names: Option<NameCipher>) -> Self {
        debug_assert!(prefix.is_empty() || prefix.ends_with('/'));
        Self {
            prefix: prefix.to_string(),
            names,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn encrypts_names(&self) -> bool {
        self.names.is_some()
    }

    /// `name` in directory `dir` as it is stored.
    pub fn stored_name<'n>(&self, dir: &str, name: &'n str) -> Cow<'n, str> {
        match &self.names {
            None => Cow::Borrowed(name),
            Some(c) => Cow::Owned(c.encrypt(dir, name)),
        }
    }

    /// `path` as it is stored (every component in its stored form).
    fn stored_path<'p>(&self, path: &'p str) -> Cow<'p, str> {
        let Some(c) = &self.names else {
            return Cow::Borrowed(path);
        };
        let mut out = String::new();
        let mut parent_end = 0;
        for (i, name) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&c.encrypt(&path[..parent_end], name));
            parent_end = if i == 0 {
                name.len()
            } else {
                parent_end + 1 + name.len()
            };
        }
        Cow::Owned(out)
    }

    /// The object of the file (or symlink) at `path`.
    pub fn file_key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, self.stored_path(path))
    }

    /// The prefix under which directory `path`'s entries live; also its marker object's key.
    pub fn dir_prefix(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{}/", self.prefix, self.stored_path(path))
        }
    }

    /// Every marker a directory may have (sealfs's / s3fs's, and the legacy one).
    pub fn dir_markers(&self, path: &str) -> Vec<String> {
        let mut out = vec![self.dir_prefix(path)];
        if self.names.is_none() {
            out.push(format!("{}{FOLDER_SUFFIX}", self.file_key(path)));
        }
        out
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
            format!(
                "{}{INDEX_DIR}/{}/index",
                self.prefix,
                self.stored_path(path)
            )
        }
    }

    /// Where a file unlinked while open keeps its bytes (`id`: random, unique per file).
    pub fn unlinked_key(&self, id: &str) -> String {
        format!("{}{UNLINKED_DIR}/{id}", self.prefix)
    }

    /// Whether `name` at the top of the mount is sealfs's own (never shown, never created).
    pub fn is_reserved(in_root: bool, name: &str) -> bool {
        in_root && (name == CONFIG_NAME || name == INDEX_DIR || name == UNLINKED_DIR)
    }

    /// Whether `key` (under this prefix) is sealfs's own bookkeeping, not a user's file.
    pub fn is_internal(&self, key: &str) -> bool {
        let Some(rel) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        rel == CONFIG_NAME
            || rel.starts_with(&format!("{INDEX_DIR}/"))
            || rel.starts_with(&format!("{UNLINKED_DIR}/"))
    }

    /// What `key`, listed under `dir_prefix` (directory `dir`'s `dir_prefix`), is there.
    pub fn listed<'k>(&self, dir: &str, dir_prefix: &str, key: &'k str) -> Listed<'k> {
        let stored = key.strip_prefix(dir_prefix).unwrap_or(key);
        if stored.is_empty() {
            return Listed::Marker;
        }
        match &self.names {
            None => match stored.strip_suffix(FOLDER_SUFFIX) {
                Some(d) => Listed::Dir(Cow::Borrowed(d)),
                None => Listed::File {
                    name: Cow::Borrowed(stored),
                    stored,
                },
            },
            Some(c) => match c.decrypt(dir, stored) {
                Ok(name) => Listed::File {
                    name: Cow::Owned(name),
                    stored,
                },
                Err(_) => Listed::Foreign(stored),
            },
        }
    }

    /// The name of common prefix `p` (ending in '/') listed under directory `dir`, or the
    /// stored name that does not decrypt.
    pub fn listed_dir<'p>(
        &self,
        dir: &str,
        dir_prefix: &str,
        p: &'p str,
    ) -> Result<Cow<'p, str>, &'p str> {
        let stored = p
            .strip_prefix(dir_prefix)
            .unwrap_or(p)
            .trim_end_matches('/');
        match &self.names {
            None => Ok(Cow::Borrowed(stored)),
            Some(c) => c.decrypt(dir, stored).map(Cow::Owned).map_err(|_| stored),
        }
    }

    /// `key` (an object under directory `src`) moved under directory `dst`: its stored path
    /// below `src` re-encrypted for its new parents. A part that does not decrypt (a foreign
    /// object) moves as it is.
    pub fn moved(&self, src: &str, dst: &str, key: &str) -> String {
        let (from, to) = (self.dir_prefix(src), self.dir_prefix(dst));
        let rel = key.strip_prefix(&from).unwrap_or(key);
        let Some(c) = &self.names else {
            return format!("{to}{rel}");
        };
        let (mut src_dir, mut dst_dir) = (src.to_string(), dst.to_string());
        let mut out = to;
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, stored) in parts.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match c.decrypt(&src_dir, stored) {
                Ok(name) if !stored.is_empty() => {
                    out.push_str(&c.encrypt(&dst_dir, &name));
                    src_dir = join(&src_dir, &name);
                    dst_dir = join(&dst_dir, &name);
                }
                _ => {
                    out.push_str(&parts[i..].join("/"));
                    break;
                }
            }
        }
        out
    }

    /// The mount path of `key` (under this prefix), when every component decrypts.
    pub fn path_of(&self, key: &str) -> Option<String> {
        let rel = key.strip_prefix(&self.prefix)?.trim_end_matches('/');
        let Some(c) = &self.names else {
            return Some(rel.to_string());
        };
        let mut path = String::new();
        for stored in rel.split('/') {
            let name = c.decrypt(&path, stored).ok()?;
            path = join(&path, &name);
        }
        Some(path)
    }

    /// Length of the key of the object at `path` (checked against S3's 1,024-byte limit).
    pub fn key_len(&self, path: &str) -> usize {
        match &self.names {
            None => self.prefix.len() + path.len(),
            Some(_) => {
                self.prefix.len()
                    + path
                        .split('/')
                        .map(|n| NameCipher::encrypted_len(n.len()) + 1)
                        .sum::<usize>()
                    - 1
            }
        }
    }

    /// Parent directory and name of `path` (not the root).
    pub fn split(path: &str) -> (&str, &str) {
        parent_and_name(path)
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
        assert_eq!(l.key_len("a/b"), "p/a/b".len());
        assert_eq!(l.config_key(), "p/.sealfs");
        assert_eq!(l.index_key(""), "p/.sealfs-index/index");
        assert_eq!(Layout::new("").index_key("a/b"), ".sealfs-index/a/b/index");
        assert_ne!(l.index_key("index"), l.index_key(""));
        assert_eq!(l.listed("a", "p/a/", "p/a/"), Listed::Marker);
        assert_eq!(
            l.listed("a", "p/a/", "p/a/f"),
            Listed::File {
                name: "f".into(),
                stored: "f"
            }
        );
        assert_eq!(
            l.listed("a", "p/a/", "p/a/d_$folder$"),
            Listed::Dir("d".into())
        );
        assert_eq!(l.listed_dir("a", "p/a/", "p/a/sub/"), Ok("sub".into()));
        assert_eq!(l.moved("a", "z", "p/a/x/y"), "p/z/x/y");
        assert_eq!(l.path_of("p/a/x/"), Some("a/x".into()));
        assert!(Layout::is_reserved(true, ".sealfs"));
        assert!(!Layout::is_reserved(false, ".sealfs"));
        assert!(l.is_internal("p/.sealfs") && l.is_internal("p/.sealfs-index/a/index"));
        assert!(!l.is_internal("p/a/.sealfs") && !l.is_internal("p/f"));
    }

    #[test]
    fn encrypted_names_hide_every_component_and_move_with_their_directory() {
        let l = Layout::with_names("p/", Some(NameCipher::new([3; 64])));
        let key = l.file_key("docs/2024/report.pdf");
        assert!(
            key.starts_with("p/") && key.matches('/').count() == 3,
            "{key}"
        );
        for name in ["docs", "2024", "report"] {
            assert!(!key.contains(name), "{key}");
        }
        assert_eq!(key.len(), l.key_len("docs/2024/report.pdf"));
        assert_eq!(l.path_of(&key).as_deref(), Some("docs/2024/report.pdf"));
        let dir = l.dir_prefix("docs/2024");
        assert!(key.starts_with(&dir));
        match l.listed("docs/2024", &dir, &key) {
            Listed::File { name, stored } => {
                assert_eq!(name, "report.pdf");
                assert_eq!(format!("{dir}{stored}"), key);
            }
            other => panic!("{other:?}"),
        }
        // Listed under another directory, the same stored name is foreign.
        let elsewhere = l.dir_prefix("docs");
        let stray = format!("{elsewhere}{}", &key[dir.len()..]);
        assert!(matches!(
            l.listed("docs", &elsewhere, &stray),
            Listed::Foreign(_)
        ));
        assert!(matches!(
            l.listed("", "p/", "p/plain.txt"),
            Listed::Foreign("plain.txt")
        ));
        assert_eq!(l.dir_markers("docs").len(), 1, "no legacy markers");
        // A directory move re-encrypts every component below the moved one.
        let moved = l.moved("docs", "old/docs", &key);
        assert_eq!(moved, l.file_key("old/docs/2024/report.pdf"));
        assert_eq!(
            l.moved("docs", "d2", &l.dir_prefix("docs/2024")),
            l.dir_prefix("d2/2024")
        );
        assert_eq!(
            l.index_key("docs"),
            format!(
                "p/.sealfs-index/{}/index",
                &l.dir_prefix("docs")[2..l.dir_prefix("docs").len() - 1]
            )
        );
    }
}
