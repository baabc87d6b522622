//! Several hosts on one prefix: the conditions this mount's writes carry, and what happens
//! when another host changed an object this mount is replacing (`--on-conflict keep-both`).
//!
//! Invariants:
//! - Nothing is lost to a conflict. A single-PUT upload that loses is stored whole as a sibling
//!   `NAME.conflict-HOST-TIME` next to the file and the application's close/fsync gets ESTALE.
//!   A multipart upload can only complete at the key it was started for, so when one loses,
//!   the other host's version is copied to the sibling first (pinned to its ETag) and this
//!   mount's upload then completes on the condition that the name still holds that version.
//! - A conflict leaves no pending multipart upload: the handed-over upload is completed or
//!   aborted here on every path.
//! - One warning per conflict, naming the path, both versions and where each went.

use std::time::SystemTime;

use super::handles::OpenFile;
use super::{Fs, FsError, Ino, Result};
use crate::meta;
use crate::store::{self, Expect, ObjectMeta, StoreError};
use crate::write::{Base, Lost, LostData};

/// Longest file name S3 mounts support (the sibling's name is cut to fit).
const NAME_MAX: usize = 255;

impl Fs {
    /// `e`, or no condition when this mount lets the last writer win (`--on-conflict
    /// overwrite`).
    pub(super) fn expect(&self, e: Expect) -> Expect {
        self.cfg.write.on_conflict.expect(e)
    }

    /// The condition for replacing or deleting `obj` as this mount saw it.
    pub(super) fn expect_seen(&self, obj: Option<&ObjectMeta>) -> Expect {
        self.expect(match obj {
            Some(o) => Expect::Version(o.etag.clone()),
            None => Expect::Anything,
        })
    }

    /// The version of (parent, name) this mount last showed, while its attributes are fresh
    /// (no request). Taken before anything looks at the bucket again: what a delete or a
    /// rename over the name may remove, and nothing newer.
    pub(super) fn shown_version(&self, parent: Ino, name: &str) -> Option<String> {
        let ino = self.inodes.lock().child(parent, name)?;
        Some(self.known.fresh_version(ino, self.cfg.metadata_ttl)?.1)
    }

    /// The condition for removing or replacing (parent, name): the version `shown`, or when
    /// none was shown (or this mount has just changed it), what is there now.
    pub(super) async fn seen_version(
        &self,
        parent: Ino,
        name: &str,
        shown: Option<String>,
    ) -> Result<Expect> {
        if let Some(etag) = shown.or_else(|| self.shown_version(parent, name)) {
            return Ok(self.expect(Expect::Version(etag)));
        }
        Ok(match self.stat_at(parent, name).await? {
            Some((_, obj)) => self.expect_seen(obj.as_ref()),
            None => self.expect(Expect::Absent),
        })
    }

    /// Forget what this mount cached about (parent, name): another host changed it.
    pub(super) fn changed_elsewhere(&self, parent: Ino, name: &str) {
        self.listed_changed(parent, name);
        let ino = self.inodes.lock().child(parent, name);
        if let Some(ino) = ino {
            self.known.forget_version(ino);
        }
    }

    /// `e` from a delete or rename of (parent, name) at `path`: a refused condition (another
    /// host changed the object since this mount saw it) becomes EBUSY with a log line and a
    /// fresh look next time; anything else passes through.
    pub(super) fn refused(
        &self,
        parent: Ino,
        name: &str,
        path: &str,
        e: impl Into<FsError>,
        what: &str,
    ) -> FsError {
        let e = e.into();
        let conflict = matches!(
            e,
            FsError::Store(StoreError::PreconditionFailed(_))
                | FsError::Write(crate::write::WriteError::Store(
                    StoreError::PreconditionFailed(_)
                ))
        );
        if !conflict {
            return e;
        }
        crate::metrics::global().conflicts.inc();
        self.changed_elsewhere(parent, name);
        tracing::warn!(
            path,
            "conflict: another writer changed the object since this mount saw it; {what}"
        );
        FsError::Busy(format!("{path}: {what}"))
    }

    /// An upload of `ino` lost to another writer (`lost`, from the writer). Keeps both
    /// versions: `Ok` with the version now at the file's name when this mount's bytes are
    /// there, `Err(Stale)` when they went to the sibling (the application is told).
    pub(super) async fn keep_both(&self, ino: Ino, of: &OpenFile, lost: Lost) -> Result<Base> {
        crate::metrics::global().conflicts.inc();
        let (parent, name) = {
            let inodes = self.inodes.lock();
            let node = inodes.get(ino).ok_or(FsError::NotFound)?;
            (node.parent, node.name.clone())
        };
        let path = self.path(ino)?;
        let current = self.store.head(&lost.key).await;
        self.changed_elsewhere(parent, &name);
        self.entries_changed(parent);
        match lost.data {
            LostData::Body(body) => {
                let theirs = current.ok().flatten().map(|o| o.etag);
                let id = meta::file_id_of(of.codec.as_ref());
                let sibling = self
                    .put_sibling(parent, &name, |key| {
                        let m = self.meta.encode(&key, &of.attr, id, None);
                        let body = body.clone();
                        async move { self.store.put_if(&key, body, &m, &Expect::Absent).await }
                    })
                    .await?;
                tracing::warn!(
                    path,
                    expected = ?lost.expected,
                    theirs = theirs.as_deref().unwrap_or("(deleted)"),
                    kept_as = sibling,
                    "conflict: another writer changed the file since it was opened here; \
                     this mount's version is kept as a sibling"
                );
                Err(FsError::Stale(format!(
                    "{path}: changed by another writer; this version was saved as {sibling}"
                )))
            }
            LostData::Upload { id, parts } => {
                let res = self
                    .complete_over(parent, &name, &lost.key, &id, &parts, current)
                    .await;
                if res.is_err() {
                    if let Err(e) = self.store.abort_multipart(&lost.key, &id).await {
                        tracing::warn!(key = lost.key, error = %e, "could not abort upload");
                    }
                }
                // S3 drops an upload whose completion met a 409 (ConditionalRequestConflict):
                // its bytes are gone with it, and the application must hear so.
                let (etag, theirs) = res.map_err(|e| match e {
                    FsError::Store(StoreError::NotFound(m)) => FsError::Stale(format!(
                        "{path}: the server dropped this upload after a conflicting write; \
                         this version was not stored ({m})"
                    )),
                    e => e,
                })?;
                match &theirs {
                    Some(sibling) => tracing::warn!(
                        path,
                        expected = ?lost.expected,
                        moved_to = sibling,
                        "conflict: another writer changed the file since it was opened here; \
                         its version was moved to a sibling and this mount's (multipart) \
                         version took the name"
                    ),
                    None => tracing::warn!(
                        path,
                        "conflict: another writer deleted the file while it was open here; \
                         this mount's version is stored again"
                    ),
                }
                Ok(Base {
                    key: lost.key,
                    etag,
                    size: of.writer.as_ref().map_or(of.attr.size, |w| w.size()),
                })
            }
        }
    }

    /// Complete a refused multipart upload at `key` after moving what is there now
    /// (`current`) to a sibling. Returns the new ETag and the sibling's name, if one was made.
    async fn complete_over(
        &self,
        parent: Ino,
        name: &str,
        key: &str,
        id: &str,
        parts: &[store::CompletedPart],
        current: store::Result<Option<ObjectMeta>>,
    ) -> Result<(String, Option<String>)> {
        let Some(theirs) = current? else {
            let etag = self
                .store
                .complete_multipart_if(key, id, parts, &Expect::Absent)
                .await?;
            return Ok((etag, None));
        };
        let part = self.cfg.write.part_size;
        let sibling = self
            .put_sibling(parent, name, |to| {
                let theirs = theirs.clone();
                async move {
                    let m =
                        super::names::resealed(&self.meta, &theirs, &to, &self.cfg.defaults, None)
                            .map_err(|e| StoreError::Other(e.to_string()))?;
                    store::copy_any_size(&*self.store, &theirs, &to, &m, part, &Expect::Absent)
                        .await
                }
            })
            .await?;
        let etag = self
            .store
            .complete_multipart_if(key, id, parts, &Expect::Version(theirs.etag.clone()))
            .await?;
        Ok((etag, Some(sibling)))
    }

    /// Store a sibling of (parent, name) with `write(key)` under the first free name
    /// `NAME.conflict-HOST-TIME[-N]`; returns the name it got.
    async fn put_sibling<F, Fut>(&self, parent: Ino, name: &str, write: F) -> Result<String>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = store::Result<String>>,
    {
        let base = sibling_name(name, &crate::sys::hostname(), SystemTime::now());
        for n in 1..=20 {
            let candidate = match n {
                1 => base.clone(),
                _ => fit(&format!("{base}-{n}")),
            };
            let key = self.layout.file_key(&self.child_path(parent, &candidate)?);
            match write(key).await {
                Ok(_) => {
                    self.listed_changed(parent, &candidate);
                    return Ok(candidate);
                }
                Err(StoreError::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FsError::Stale(format!(
            "{name}: no free name for a conflict copy"
        )))
    }
}

/// `NAME.conflict-HOST-YYYYMMDDTHHMMSSZ`, cut to `NAME_MAX` bytes by shortening NAME.
pub(crate) fn sibling_name(name: &str, host: &str, at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let host: String = host
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .take(64)
        .collect();
    fit(&format!("{name}.conflict-{host}-{stamp}"))
}

/// `name` cut (at a character boundary, from the front part) to `NAME_MAX` bytes.
fn fit(name: &str) -> String {
    if name.len() <= NAME_MAX {
        return name.to_string();
    }
    let cut = name.len() - NAME_MAX;
    let at = name.find(".conflict-").unwrap_or(name.len());
    let mut keep = at.saturating_sub(cut);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{}", &name[..keep], &name[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn sibling_names_say_host_and_time_and_fit_in_a_name() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        assert_eq!(
            sibling_name("report.txt", "hostA", at),
            "report.txt.conflict-hostA-20261130T005320Z"
        );
        let long = "é".repeat(200);
        let s = sibling_name(&long, "h", at);
        assert!(s.len() <= NAME_MAX, "{}", s.len());
        assert!(s.ends_with(".conflict-h-20261130T005320Z"));
    }
}
