//! A wrapper that makes chosen store operations fail, to test that failures reach the
//! application as errors and leave nothing half-written behind.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{CompletedPart, ListPage, ObjectMeta, ObjectStore, Result, StoreError, UserMeta};

/// Fails every write-side request (PUT, parts, complete, copy) while `fail_writes` is set,
/// after letting `writes_before_failure` of them through.
pub struct FaultStore<S> {
    pub inner: Arc<S>,
    pub fail_writes: AtomicBool,
    pub writes_before_failure: AtomicU64,
}

impl<S: ObjectStore> FaultStore<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            fail_writes: AtomicBool::new(false),
            writes_before_failure: AtomicU64::new(0),
        }
    }

    fn check(&self) -> Result<()> {
        if !self.fail_writes.load(Ordering::SeqCst) {
            return Ok(());
        }
        let left = self.writes_before_failure.load(Ordering::SeqCst);
        if left > 0 {
            self.writes_before_failure.store(left - 1, Ordering::SeqCst);
            return Ok(());
        }
        Err(StoreError::Unreachable("injected failure".into()))
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        self.inner.get_range(key, range, if_match).await
    }
    async fn put(&self, key: &str, body: Bytes, meta: &UserMeta) -> Result<String> {
        self.check()?;
        self.inner.put(key, body, meta).await
    }
    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        self.inner.create_multipart(key, meta).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: i32, body: Bytes) -> Result<String> {
        self.check()?;
        self.inner.upload_part(key, id, n, body).await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: i32,
        src: &str,
        etag: &str,
        range: Range<u64>,
    ) -> Result<String> {
        self.check()?;
        self.inner
            .upload_part_copy(key, id, n, src, etag, range)
            .await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        parts: &[CompletedPart],
    ) -> Result<String> {
        self.check()?;
        self.inner.complete_multipart(key, id, parts).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(key, id).await
    }
    async fn copy(&self, src: &str, dst: &str, meta: Option<&UserMeta>) -> Result<String> {
        self.check()?;
        self.inner.copy(src, dst, meta).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn list(
        &self,
        p: &str,
        d: Option<&str>,
        t: Option<String>,
        m: Option<i32>,
    ) -> Result<ListPage> {
        self.inner.list(p, d, t, m).await
    }
}
