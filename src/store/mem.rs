//! An in-memory `ObjectStore` with S3's semantics (ranged reads clamp at the end, multipart
//! parts stay invisible until completed, CopyObject can replace metadata), for unit tests that
//! need no server. It never replaces the real-server tests. Conditional writes are enforced as
//! S3 enforces them (a 412 on CompleteMultipartUpload keeps the upload), unless
//! `ignore_conditions` makes it behave like a server that ignores them (Garage).

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{
    CompletedPart, Expect, ListObject, ListPage, ObjectMeta, ObjectStore, PendingUpload, Result,
    StoreError, UserMeta,
};

#[derive(Clone)]
struct Obj {
    data: Bytes,
    etag: String,
    meta: UserMeta,
    modified: SystemTime,
    content_type: Option<String>,
}

struct Upload {
    key: String,
    meta: UserMeta,
    parts: BTreeMap<i32, Bytes>,
    initiated: std::time::SystemTime,
}

#[derive(Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Obj>>,
    uploads: Mutex<HashMap<String, Upload>>,
    counter: AtomicU64,
    ignore_conditions: std::sync::atomic::AtomicBool,
    /// Every range read, in order (tests of which GETs a reader makes).
    reads: Mutex<Vec<Range<u64>>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_tag(&self) -> String {
        format!("\"{}\"", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Raw object bytes, for tests that inspect what was stored.
    pub fn raw(&self, key: &str) -> Option<Bytes> {
        self.objects.lock().get(key).map(|o| o.data.clone())
    }

    /// Make every object look `by` older (tests of what depends on an object's age).
    pub fn age(&self, by: std::time::Duration) {
        for o in self.objects.lock().values_mut() {
            o.modified -= by;
        }
    }

    /// Store an object with a Content-Type, as another tool would (`put` sends none).
    pub fn put_typed(&self, key: &str, data: Bytes, meta: UserMeta, content_type: &str) {
        self.insert(key, data, meta);
        if let Some(o) = self.objects.lock().get_mut(key) {
            o.content_type = Some(content_type.to_string());
        }
    }

    /// Behave like a server that ignores conditional write headers (Garage today).
    pub fn ignore_conditions(&self) {
        self.ignore_conditions.store(true, Ordering::Relaxed);
    }

    /// `PreconditionFailed` unless `expect` holds for `key` now (or conditions are ignored).
    fn check(&self, objects: &BTreeMap<String, Obj>, key: &str, expect: &Expect) -> Result<()> {
        let current = objects.get(key).map(|o| o.etag.as_str());
        if self.ignore_conditions.load(Ordering::Relaxed) || expect.holds(current) {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed(format!(
                "{key}: expected {expect:?}"
            )))
        }
    }

    /// Store `data` at `key` if `expect` holds, checked and written under one lock (as the
    /// server does, so two racing writers cannot both pass).
    fn insert_if(&self, key: &str, data: Bytes, meta: UserMeta, expect: &Expect) -> Result<String> {
        let mut objects = self.objects.lock();
        self.check(&objects, key, expect)?;
        let etag = self.next_tag();
        let obj = Obj {
            data,
            etag: etag.clone(),
            meta,
            modified: SystemTime::now(),
            content_type: None,
        };
        objects.insert(key.to_string(), obj);
        Ok(etag)
    }

    /// Every key stored, in order.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().keys().cloned().collect()
    }

    /// Every non-empty range read so far, in the order asked.
    pub fn ranges_read(&self) -> Vec<Range<u64>> {
        self.reads.lock().clone()
    }

    /// Number of multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        self.uploads.lock().len()
    }

    fn insert(&self, key: &str, data: Bytes, meta: UserMeta) -> String {
        self.insert_if(key, data, meta, &Expect::Anything)
            .expect("no condition to fail")
    }

    fn get(&self, key: &str) -> Result<Obj> {
        self.objects
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }
}

fn slice(data: &Bytes, range: Range<u64>, key: &str) -> Result<Bytes> {
    let len = data.len() as u64;
    if range.start >= len && !(range.start == 0 && len == 0) {
        return Err(StoreError::InvalidRange(key.to_string()));
    }
    Ok(data.slice(range.start as usize..range.end.min(len) as usize))
}

#[async_trait]
impl ObjectStore for MemStore {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.objects.lock().get(key).map(|o| ObjectMeta {
            key: key.to_string(),
            size: o.data.len() as u64,
            etag: o.etag.clone(),
            last_modified: o.modified,
            user: o.meta.clone(),
            sse: None,
            sse_c_key_md5: None,
            content_type: o.content_type.clone(),
        }))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        let obj = self.get(key)?;
        if if_match.is_some_and(|t| t != obj.etag) {
            return Err(StoreError::PreconditionFailed(key.to_string()));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.reads.lock().push(range.clone());
        slice(&obj.data, range, key)
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &UserMeta,
        expect: &Expect,
    ) -> Result<String> {
        self.insert_if(key, body, meta.clone(), expect)
    }

    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        let id = format!("upload-{}", self.counter.fetch_add(1, Ordering::Relaxed));
        let upload = Upload {
            key: key.to_string(),
            meta: meta.clone(),
            parts: BTreeMap::new(),
            initiated: std::time::SystemTime::now(),
        };
        self.uploads.lock().insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String> {
        let mut uploads = self.uploads.lock();
        let up = uploads
            .get_mut(upload_id)
            .ok_or_else(|| StoreError::NotFound(upload_id.to_string()))?;
        up.parts.insert(number, body);
        Ok(format!("\"part-{number}\""))
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        src_key: &str,
        src_etag: &str,
        range: Range<u64>,
    ) -> Result<String> {
        let src = self.get(src_key)?;
        if src.etag != src_etag {
            return Err(StoreError::PreconditionFailed(src_key.to_string()));
        }
        let body = slice(&src.data, range, src_key)?;
        self.upload_part(key, upload_id, number, body).await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        expect: &Expect,
    ) -> Result<String> {
        // A 412 leaves the upload in place (S3 does the same), so it can be completed again.
        self.check(&self.objects.lock(), key, expect)?;
        let up = self
            .uploads
            .lock()
            .remove(upload_id)
            .ok_or_else(|| StoreError::NotFound(upload_id.to_string()))?;
        if up.key != key {
            return Err(StoreError::Other("upload key mismatch".into()));
        }
        let mut data = BytesMut::new();
        for p in parts {
            let body = up
                .parts
                .get(&p.number)
                .ok_or_else(|| StoreError::Other(format!("missing part {}", p.number)))?;
            data.extend_from_slice(body);
        }
        self.insert_if(key, data.freeze(), up.meta, expect)
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        self.uploads.lock().remove(upload_id);
        Ok(())
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        let mut out: Vec<_> = (self.uploads.lock().iter())
            .filter(|(_, up)| up.key.starts_with(prefix))
            .map(|(id, up)| PendingUpload {
                key: up.key.clone(),
                upload_id: id.clone(),
                initiated: up.initiated,
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(out)
    }

    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String> {
        let obj = self.get(src)?;
        if src_etag.is_some_and(|e| e != obj.etag) {
            return Err(StoreError::PreconditionFailed(src.to_string()));
        }
        let meta = meta.cloned().unwrap_or(obj.meta);
        self.insert_if(dst, obj.data, meta, expect)
    }

    async fn delete_if(&self, key: &str, expect: &Expect) -> Result<()> {
        let mut objects = self.objects.lock();
        if objects.contains_key(key) && *expect != Expect::Absent {
            self.check(&objects, key, expect)?;
        }
        objects.remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let mut objects = self.objects.lock();
        for k in keys {
            objects.remove(k);
        }
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let max = max_keys.unwrap_or(1000).max(1) as usize;
        let objects = self.objects.lock();
        let mut page = ListPage::default();
        let mut count = 0;
        let start = token.unwrap_or_default();
        for (key, obj) in objects.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if key.as_str() <= start.as_str() && !start.is_empty() {
                continue;
            }
            let rest = &key[prefix.len()..];
            let entry = match delimiter.and_then(|d| rest.find(d).map(|i| (i, d))) {
                Some((i, d)) => {
                    let p = format!("{prefix}{}{d}", &rest[..i]);
                    if page.prefixes.last() == Some(&p) {
                        continue;
                    }
                    (Some(p), key.clone())
                }
                None => (None, key.clone()),
            };
            if count == max {
                page.next_token = Some(match page.prefixes.last() {
                    Some(p) if page.objects.last().is_none_or(|o| o.key < *p) => {
                        // Skip past every key of the last common prefix.
                        format!("{p}\u{10ffff}")
                    }
                    _ => page
                        .objects
                        .last()
                        .map(|o| o.key.clone())
                        .unwrap_or_default(),
                });
                break;
            }
            count += 1;
            match entry.0 {
                Some(p) => page.prefixes.push(p),
                None => page.objects.push(ListObject {
                    key: entry.1,
                    size: obj.data.len() as u64,
                    etag: obj.etag.clone(),
                    last_modified: obj.modified,
                }),
            }
        }
        Ok(page)
    }
}
