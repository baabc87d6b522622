//! A point-in-time view of a versioned bucket (`sealfs mount --as-of TIME`): a read-only store
//! that shows every key under a prefix as it was at a moment, from a snapshot of
//! ListObjectVersions taken when the view is made, and reads each object by version id.
//!
//! Invariants:
//! - A key is in the view when its newest version at or before the moment is an object (not a
//!   delete marker); it then always reads that version, whatever happened to the key since.
//!   S3 gives `LastModified` to the second, so "at or before" is to the second.
//! - Keys outside the snapshot's prefix read the current object: the prefix's own config and
//!   keyring are inside it, so a client-mode view opens with the keyring of the moment.
//! - Every write is refused: a point-in-time view never changes the bucket.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Body, CompletedPart, Expect, ListObject, ListPage, ObjectMeta, ObjectStore, ObjectVersion,
    OnSegment, PendingUpload, Result, StoreError, UserMeta, VersionPage,
};

/// One page of a listing of the view, like S3's default.
const PAGE: usize = 1000;

pub struct AsOf {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// Key -> the version the view shows.
    keys: BTreeMap<String, ObjectVersion>,
}

/// The view of `versions` (of any keys, in any order) at `moment`.
pub fn snapshot(
    versions: impl IntoIterator<Item = ObjectVersion>,
    moment: SystemTime,
) -> BTreeMap<String, ObjectVersion> {
    let mut newest: BTreeMap<String, ObjectVersion> = BTreeMap::new();
    for v in versions.into_iter().filter(|v| v.last_modified <= moment) {
        match newest.get(&v.key) {
            // Same second: the one S3 listed first (newest first) or marked latest stays.
            Some(seen) if seen.last_modified >= v.last_modified => {}
            _ => {
                newest.insert(v.key.clone(), v);
            }
        }
    }
    newest.retain(|_, v| !v.delete_marker);
    newest
}

impl AsOf {
    /// The view of `prefix` at `moment`: lists every version under it (all pages).
    pub async fn new(
        inner: Arc<dyn ObjectStore>,
        prefix: &str,
        moment: SystemTime,
    ) -> Result<Self> {
        let versions = super::list_all_versions(&*inner, prefix).await?;
        Ok(Self {
            keys: snapshot(versions, moment),
            inner,
            prefix: prefix.to_string(),
        })
    }

    /// Objects in the view.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn covers(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    fn refuse(&self, key: &str) -> StoreError {
        StoreError::AccessDenied(format!(
            "{key}: a point-in-time (--as-of) view is read-only"
        ))
    }
}

/// The smallest string above every string that starts with `p`, when there is one.
fn after_all_with(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl ObjectStore for AsOf {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        if !self.covers(key) {
            return self.inner.head(key).await;
        }
        match self.keys.get(key) {
            Some(v) => self.inner.head_version(key, &v.version_id).await,
            None => Ok(None),
        }
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        if !self.covers(key) {
            return self.inner.get_range(key, range, if_match).await;
        }
        let v = self
            .keys
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if if_match.is_some_and(|e| e != v.etag) {
            return Err(StoreError::PreconditionFailed(key.to_string()));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let end = range.end.min(v.size);
        self.inner
            .get_version(key, &v.version_id, range.start..end)
            .await
    }

    async fn get_body_with(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        if !self.covers(key) {
            return self.inner.get_body_with(key, range, if_match, seen).await;
        }
        Ok(super::shown(
            self.get_range(key, range, if_match).await?,
            seen,
        ))
    }

    async fn put_if(&self, key: &str, _: Bytes, _: &UserMeta, _: &Expect) -> Result<String> {
        Err(self.refuse(key))
    }

    async fn create_multipart(&self, key: &str, _: &UserMeta) -> Result<String> {
        Err(self.refuse(key))
    }

    async fn upload_part(&self, key: &str, _: &str, _: i32, _: Bytes) -> Result<String> {
        Err(self.refuse(key))
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        _: &str,
        _: i32,
        _: &str,
        _: &str,
        _: Range<u64>,
    ) -> Result<String> {
        Err(self.refuse(key))
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        _: &str,
        _: &[CompletedPart],
        _: &Expect,
    ) -> Result<String> {
        Err(self.refuse(key))
    }

    async fn abort_multipart(&self, key: &str, _: &str) -> Result<()> {
        Err(self.refuse(key))
    }

    async fn list_uploads(&self, _: &str) -> Result<Vec<PendingUpload>> {
        Ok(Vec::new())
    }

    async fn copy_if(
        &self,
        _: &str,
        dst: &str,
        _: Option<&UserMeta>,
        _: Option<&str>,
        _: &Expect,
    ) -> Result<String> {
        Err(self.refuse(dst))
    }

    async fn delete_if(&self, key: &str, _: &Expect) -> Result<()> {
        Err(self.refuse(key))
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        match keys.first() {
            Some(k) => Err(self.refuse(k)),
            None => Ok(()),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        if !self.covers(prefix) && !self.prefix.starts_with(prefix) {
            return self.inner.list(prefix, delimiter, token, max_keys).await;
        }
        let limit = max_keys.map_or(PAGE, |n| (n.max(1) as usize).min(PAGE));
        let mut page = ListPage::default();
        // The token is the last key (or common prefix) of the previous page.
        let mut from = match &token {
            // A common prefix: go on after every key under it.
            Some(t) if delimiter.is_some_and(|d| t.ends_with(d)) => match after_all_with(t) {
                Some(next) => Bound::Included(next),
                None => return Ok(page),
            },
            Some(t) => Bound::Excluded(t.clone()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut n = 0;
        'outer: loop {
            let mut range = self.keys.range((from.clone(), Bound::Unbounded));
            for (key, v) in range.by_ref() {
                let Some(rest) = key.strip_prefix(prefix) else {
                    break 'outer;
                };
                if n == limit {
                    page.next_token = page
                        .objects
                        .last()
                        .map(|o| o.key.clone())
                        .into_iter()
                        .chain(page.prefixes.last().cloned())
                        .max();
                    break 'outer;
                }
                let folded = delimiter.and_then(|d| rest.find(d).map(|at| at + d.len()));
                match folded {
                    Some(len) => {
                        let common = format!("{prefix}{}", &rest[..len]);
                        page.prefixes.push(common.clone());
                        n += 1;
                        // Skip every key under the common prefix.
                        match after_all_with(&common) {
                            Some(next) => {
                                from = Bound::Included(next);
                                continue 'outer;
                            }
                            None => break 'outer,
                        }
                    }
                    None => {
                        page.objects.push(ListObject {
                            key: key.clone(),
                            size: v.size,
                            etag: v.etag.clone(),
                            last_modified: v.last_modified,
                        });
                        n += 1;
                    }
                }
            }
            break;
        }
        Ok(page)
    }

    async fn list_versions(
        &self,
        prefix: &str,
        token: Option<(String, String)>,
    ) -> Result<VersionPage> {
        self.inner.list_versions(prefix, token).await
    }

    async fn versioning(&self) -> Result<Option<String>> {
        self.inner.versioning().await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head_version(key, version_id).await
    }

    async fn get_version(&self, key: &str, version_id: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_version(key, version_id, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn v(key: &str, id: &str, secs: u64, deleted: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.into(),
            version_id: id.into(),
            size: if deleted { 0 } else { 10 },
            etag: if deleted {
                String::new()
            } else {
                format!("\"{id}\"")
            },
            last_modified: at(secs),
            is_latest: false,
            delete_marker: deleted,
        }
    }

    fn history() -> Vec<ObjectVersion> {
        vec![
            v("p/a", "a2", 200, false),
            v("p/a", "a1", 100, false),
            v("p/b", "b-del", 150, true),
            v("p/b", "b1", 100, false),
            v("p/d/x", "x1", 120, false),
            v("p/d/y", "y1", 300, false),
            v("p/late", "l1", 500, false),
        ]
    }

    #[test]
    fn the_view_is_the_newest_version_at_the_moment_and_hides_deleted_keys() {
        let view = snapshot(history(), at(160));
        let shown: Vec<(&str, &str)> = view
            .iter()
            .map(|(k, v)| (k.as_str(), v.version_id.as_str()))
            .collect();
        assert_eq!(shown, [("p/a", "a1"), ("p/d/x", "x1")]);
        let view = snapshot(history(), at(140));
        assert_eq!(view["p/b"].version_id, "b1");
        assert!(snapshot(history(), at(99)).is_empty());
        // The moment itself is included (S3 times are whole seconds).
        assert_eq!(snapshot(history(), at(200))["p/a"].version_id, "a2");
    }

    #[tokio::test]
    async fn listings_fold_directories_page_by_page_and_writes_are_refused() {
        let store = AsOf {
            inner: Arc::new(MemStore::new()),
            prefix: "p/".into(),
            keys: snapshot(history(), at(400)),
        };
        let top = store.list("p/", Some("/"), None, None).await.unwrap();
        let keys: Vec<&str> = top.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/a"]);
        assert_eq!(top.prefixes, ["p/d/"]);
        assert!(top.next_token.is_none());
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = store.list("p/", None, token, Some(1)).await.unwrap();
            seen.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["p/a", "p/d/x", "p/d/y"]);
        let first = store.list("p/", Some("/"), None, Some(1)).await.unwrap();
        let rest = store
            .list("p/", Some("/"), first.next_token, Some(1))
            .await
            .unwrap();
        assert_eq!(
            (first.objects.len(), rest.prefixes.clone()),
            (1, vec!["p/d/".into()])
        );
        assert!(rest.next_token.is_none() && rest.objects.is_empty());
        let inside = store.list("p/d/", Some("/"), None, None).await.unwrap();
        assert_eq!(inside.objects.len(), 2);
        assert!(store.head("p/gone").await.unwrap().is_none());
        let err = store.put("p/new", Bytes::new(), &UserMeta::new()).await;
        assert!(matches!(err, Err(StoreError::AccessDenied(_))), "{err:?}");
        assert!(store.delete("p/a").await.is_err());
    }
}
