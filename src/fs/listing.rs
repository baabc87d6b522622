//! Directory listings: `readdir` over ListObjectsV2 pages, names decoded by the layout
//! (encrypted names decrypted; names that are not this prefix's skipped and logged once per
//! directory), pending creations merged in, and the listed files' versions handed to the
//! directory's `DirAttrs` so that `ls -l` needs no HEAD per file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::dirattrs::{self, DirAttrs};
use super::{DirEntry, Fh, Fs, Ino, Result, MAX_NAME};
use crate::inode::{Kind, ROOT_INO};
use crate::layout::{Layout, Listed};

impl Fs {
    pub fn opendir(&self, _ino: Ino) -> Fh {
        self.open.new_fh()
    }

    /// Entries of directory `ino` from `offset` on. A listing is taken when a reader starts
    /// (offset 0) and kept for the handle, so a reader resuming at an offset sees a stable list.
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        let cached = self.open.listing(fh);
        match cached {
            Some(list) if offset != 0 => Ok(list),
            _ => {
                let list = Arc::new(self.list_dir(ino).await?);
                self.open.keep_listing(fh, list.clone());
                Ok(list)
            }
        }
    }

    pub fn releasedir(&self, fh: Fh) {
        self.open.drop_listing(fh);
    }

    pub(super) async fn list_dir(&self, ino: Ino) -> Result<Vec<DirEntry>> {
        let path = self.path(ino)?;
        let prefix = self.layout.dir_prefix(&path);
        let mut names: BTreeMap<String, Kind> = BTreeMap::new();
        // Listed files by stored name (what `DirAttrs` and the index know them by), and the
        // stored name of each file's plaintext name.
        let mut files: HashMap<String, dirattrs::Listed> = HashMap::new();
        let mut stored_of: HashMap<String, String> = HashMap::new();
        let mut foreign: Vec<String> = Vec::new();
        let mut token = None;
        loop {
            let page = self.store.list(&prefix, Some("/"), token, None).await?;
            for o in &page.objects {
                let (name, stored) = match self.layout.listed(&path, &prefix, &o.key) {
                    Listed::Marker => continue,
                    Listed::Foreign(stored) => {
                        foreign.push(stored.to_string());
                        continue;
                    }
                    Listed::Dir(dir) => {
                        names.insert(dir.into_owned(), Kind::Dir);
                        continue;
                    }
                    Listed::File { name, stored } => (name.into_owned(), stored),
                };
                names.entry(name.clone()).or_insert(Kind::File);
                let listed = dirattrs::Listed {
                    etag: o.etag.clone(),
                    size: o.size,
                    modified: o.last_modified,
                };
                files.insert(stored.to_string(), listed);
                stored_of.insert(name, stored.to_string());
            }
            for p in &page.prefixes {
                // sealfs's own directories at the top are neither names nor foreign.
                let own = p.strip_prefix(&prefix).map(|n| n.trim_end_matches('/'));
                if own.is_some_and(|n| Layout::is_reserved(ino == ROOT_INO, n)) {
                    continue;
                }
                match self.layout.listed_dir(&path, &prefix, p) {
                    // A directory shadows a file of the same name (both cannot be shown).
                    Ok(name) => {
                        names.insert(name.into_owned(), Kind::Dir);
                    }
                    Err(stored) => foreign.push(format!("{stored}/")),
                }
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        if !foreign.is_empty() && self.foreign_logged.lock().insert(prefix.clone()) {
            tracing::warn!(
                dir = %prefix,
                count = foreign.len(),
                first = %foreign[0],
                "skipping listed names that are not this prefix's encrypted names (written by another tool, or moved in the bucket)"
            );
        }
        let mut inodes = self.inodes.lock();
        for (name, _) in inodes.pending_children(ino) {
            names.entry(name).or_insert(Kind::File);
        }
        names.retain(|name, _| !Layout::is_reserved(ino == ROOT_INO, name));
        stored_of.retain(|name, _| names.get(name) == Some(&Kind::File));
        let shown: std::collections::HashSet<&String> = stored_of.values().collect();
        files.retain(|stored, _| shown.contains(stored));
        // In the order of the plaintext names: the order `ls` stats them.
        let files = (names.keys())
            .filter_map(|n| stored_of.get(n))
            .filter_map(|st| files.remove(st).map(|l| (st.clone(), l)))
            .collect();
        self.keep_dir_attrs(ino, &path, files);
        inodes.set_listing(ino, names.iter().map(|(n, k)| (n.clone(), *k)).collect());
        let parent = inodes.get(ino).map_or(ROOT_INO, |n| n.parent);
        let mut out = vec![
            DirEntry {
                ino,
                name: ".".into(),
                kind: Kind::Dir,
            },
            DirEntry {
                ino: parent,
                name: "..".into(),
                kind: Kind::Dir,
            },
        ];
        for (name, kind) in names {
            if name.is_empty() || name == "." || name == ".." || name.len() > MAX_NAME {
                continue;
            }
            let (child_ino, kind) = match inodes.child(ino, &name) {
                Some(c) => (c, inodes.get(c).map_or(kind, |n| n.kind)),
                None => (synthetic_ino(&prefix, &name), kind),
            };
            out.push(DirEntry {
                ino: child_ino,
                name,
                kind,
            });
        }
        Ok(out)
    }

    /// Start answering HEADs of `ino`'s listed files from `files` (and the directory's index),
    /// dropping what older listings (of any directory) knew.
    fn keep_dir_attrs(&self, ino: Ino, path: &str, files: Vec<(String, dirattrs::Listed)>) {
        let ttl = self.cfg.metadata_ttl;
        let mut all = self.dir_attrs.lock();
        let known = all.remove(&ino).map(|a| a.known()).unwrap_or_default();
        all.retain(|_, a| a.at.elapsed() < ttl || a.in_use(ttl));
        if files.len() >= dirattrs::MIN_FILES && !ttl.is_zero() {
            let attrs = DirAttrs::new(
                self.store.clone(),
                self.layout.dir_prefix(path),
                self.layout.index_key(path),
                !self.cfg.read_only,
                files,
                known,
                self.index_writes.clone(),
            );
            all.insert(ino, Arc::new(attrs));
        }
    }
}

/// A stable inode number for a listed entry the kernel has not looked up yet (readdir's d_ino
/// is informational; the kernel looks an entry up before using it). The top bit keeps these
/// apart from allocated numbers.
fn synthetic_ino(prefix: &str, name: &str) -> Ino {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prefix.hash(&mut h);
    name.hash(&mut h);
    Ino(h.finish() | (1 << 63))
}
