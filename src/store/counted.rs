//! A wrapper that counts the requests (and bytes) a store makes, per S3 operation, so that
//! benchmarks and users can see what a workload costs (`sealfs stats MOUNTPOINT`, and a log
//! line at unmount).
//!
//! Invariant: a request is counted once when it is issued, whether it succeeds or not; SSE-C
//! retries with older keys are inside the inner store and count as one.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, Expect, ListPage, ObjectMeta, ObjectStore, Op, PendingUpload, Result, UserMeta,
};

#[derive(Default)]
pub struct Counters {
    ops: [AtomicU64; Op::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counters {
    fn add(&self, op: Op) {
        // `Op::ALL` lists every variant in declaration order, so the discriminant indexes it.
        self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of one operation so far.
    pub fn count(&self, op: Op) -> u64 {
        self.ops[op as usize].load(Ordering::Relaxed)
    }

    /// (operation, count) for every operation, and the body bytes received / sent.
    pub fn snapshot(&self) -> (Vec<(Op, u64)>, u64, u64) {
        (
            Op::ALL
                .iter()
                .zip(&self.ops)
                .map(|(o, c)| (*o, c.load(Ordering::Relaxed)))
                .collect(),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// One line per operation with a non-zero count, then the totals: `NAME COUNT`.
    pub fn report(&self) -> String {
        let (ops, bytes_in, bytes_out) = self.snapshot();
        let mut out = String::new();
        let mut total = 0;
        for (op, n) in ops.into_iter().filter(|(_, n)| *n > 0) {
            out.push_str(&format!("{} {n}\n", op.name()));
            total += n;
        }
        out.push_str(&format!(
            "requests {total}\nbytes_received {bytes_in}\nbytes_sent {bytes_out}\n"
        ));
        out
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.report().replace('\n', ", "))
    }
}

pub struct Counted {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl Counted {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

#[async_trait]
impl ObjectStore for Counted {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.counters.add(Op::Head);
        self.inner.head(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        if range.is_empty() {
            return self.inner.get_range(key, range, if_match).await;
        }
        self.counters.add(Op::Get);
        let body = self.inner.get_range(key, range, if_match).await?;
        self.counters
            .bytes_in
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &UserMeta,
        expect: &Expect,
    ) -> Result<String> {
        self.counters.add(Op::Put);
        self.counters
            .bytes_out
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.inner.put_if(key, body, meta, expect).await
    }

    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        self.counters.add(Op::CreateMultipart);
        self.inner.create_multipart(key, meta).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String> {
        self.counters.add(Op::UploadPart);
        self.counters
            .bytes_out
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.inner.upload_part(key, upload_id, number, body).await
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
        self.counters.add(Op::UploadPartCopy);
        self.inner
            .upload_part_copy(key, upload_id, number, src_key, src_etag, range)
            .await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        expect: &Expect,
    ) -> Result<String> {
        self.counters.add(Op::CompleteMultipart);
        self.inner
            .complete_multipart_if(key, upload_id, parts, expect)
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.counters.add(Op::AbortMultipart);
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        self.counters.add(Op::ListUploads);
        self.inner.list_uploads(prefix).await
    }

    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String> {
        self.counters.add(Op::Copy);
        self.inner.copy_if(src, dst, meta, src_etag, expect).await
    }

    async fn delete_if(&self, key: &str, expect: &Expect) -> Result<()> {
        self.counters.add(Op::Delete);
        self.inner.delete_if(key, expect).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        if !keys.is_empty() {
            self.counters.add(Op::Delete);
        }
        self.inner.delete_many(keys).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        self.counters.add(Op::List);
        self.inner.list(prefix, delimiter, token, max_keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    #[tokio::test]
    async fn every_request_is_counted_once_with_its_bytes() {
        let c = Counted::new(Arc::new(MemStore::new()));
        c.put("a", Bytes::from_static(b"hello"), &UserMeta::new())
            .await
            .unwrap();
        c.head("a").await.unwrap();
        c.head("missing").await.unwrap();
        assert_eq!(&c.get_range("a", 1..3, None).await.unwrap()[..], b"el");
        c.copy("a", "b", None).await.unwrap();
        c.delete_many(&["a".into(), "b".into()]).await.unwrap();
        let report = c.counters().report();
        assert_eq!(
            report,
            "HEAD 2\nGET 1\nPUT 1\nCOPY 1\nDELETE 1\nrequests 6\nbytes_received 2\nbytes_sent 5\n"
        );
    }
}
