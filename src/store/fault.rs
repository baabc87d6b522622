//! A wrapper that makes chosen store operations fail, to test that failures reach the
//! application as errors and leave nothing half-written behind.
//!
//! Which requests fail is a predicate over the operation and its key, set and cleared while
//! the store is in use; a failing request never reaches the inner store, so a test can check
//! that the bucket holds exactly what it held before.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    Body, CompletedPart, Expect, ListPage, ObjectMeta, ObjectStore, OnSegment, Op, Result,
    StoreError, UserMeta,
};

type Rule = Box<dyn FnMut(Op, &str) -> bool + Send>;

pub struct FaultStore<S> {
    pub inner: Arc<S>,
    rule: Mutex<Option<Rule>>,
}

impl<S: ObjectStore> FaultStore<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            rule: Mutex::new(None),
        }
    }

    /// From now on, fail each request for which `rule(operation, key)` is true (the rule is
    /// called once per request, so it may count).
    pub fn fail_when(&self, rule: impl FnMut(Op, &str) -> bool + Send + 'static) {
        *self.rule.lock() = Some(Box::new(rule));
    }

    /// Fail every request that changes the bucket, after letting `first` of them through.
    pub fn fail_writes_after(&self, first: u64) {
        let mut left = first;
        self.fail_when(move |op, _| {
            if !op.writes() || op == Op::AbortMultipart {
                return false;
            }
            if left > 0 {
                left -= 1;
                return false;
            }
            true
        });
    }

    /// Stop failing.
    pub fn heal(&self) {
        *self.rule.lock() = None;
    }

    fn check(&self, op: Op, key: &str) -> Result<()> {
        let fail = self.rule.lock().as_mut().is_some_and(|rule| rule(op, key));
        if fail {
            return Err(StoreError::Unreachable(format!(
                "injected failure: {} {key}",
                op.name()
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.check(Op::Head, key)?;
        self.inner.head(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        self.check(Op::Get, key)?;
        self.inner.get_range(key, range, if_match).await
    }
    async fn get_body_with(
        &self,
        key: &str,
        range: Range<u64>,
        tag: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        self.check(Op::Get, key)?;
        self.inner.get_body_with(key, range, tag, seen).await
    }
    async fn put_if(&self, key: &str, body: Bytes, meta: &UserMeta, e: &Expect) -> Result<String> {
        self.check(Op::Put, key)?;
        self.inner.put_if(key, body, meta, e).await
    }
    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        self.check(Op::CreateMultipart, key)?;
        self.inner.create_multipart(key, meta).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: i32, body: Bytes) -> Result<String> {
        self.check(Op::UploadPart, key)?;
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
        self.check(Op::UploadPartCopy, key)?;
        self.inner
            .upload_part_copy(key, id, n, src, etag, range)
            .await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: &[CompletedPart],
        e: &Expect,
    ) -> Result<String> {
        self.check(Op::CompleteMultipart, key)?;
        self.inner.complete_multipart_if(key, id, parts, e).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.check(Op::AbortMultipart, key)?;
        self.inner.abort_multipart(key, id).await
    }
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<super::PendingUpload>> {
        self.check(Op::ListUploads, prefix)?;
        self.inner.list_uploads(prefix).await
    }
    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        e: &Expect,
    ) -> Result<String> {
        self.check(Op::Copy, dst)?;
        self.inner.copy_if(src, dst, meta, src_etag, e).await
    }
    async fn delete_if(&self, key: &str, e: &Expect) -> Result<()> {
        self.check(Op::Delete, key)?;
        self.inner.delete_if(key, e).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for k in keys {
            self.check(Op::Delete, k)?;
        }
        self.inner.delete_many(keys).await
    }
    async fn list(
        &self,
        p: &str,
        d: Option<&str>,
        t: Option<String>,
        m: Option<i32>,
    ) -> Result<ListPage> {
        self.check(Op::List, p)?;
        self.inner.list(p, d, t, m).await
    }
}
