//! A wrapper that counts the requests (and bytes) a store makes, per S3 operation and outcome,
//! with their latency, so that benchmarks and users can see what a workload costs (`sealfs
//! stats MOUNTPOINT`, `--metrics-addr`, and a log line at unmount).
//!
//! Invariant: a request is counted once, when it ends: with its outcome, or as `cancelled`
//! when its caller dropped it; SSE-C retries with older keys are inside the inner store and
//! count as one. The counters are `prometheus-client` metrics, so the mount registers the very
//! same numbers in the process's registry (`register`).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;

use super::{
    Body, CompletedPart, Expect, ListPage, ObjectMeta, ObjectStore, OnSegment, Op, PendingUpload,
    Result, StoreError, UserMeta,
};

/// How a request ended, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    PreconditionFailed,
    Denied,
    Unreachable,
    Error,
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::PreconditionFailed,
        Outcome::Denied,
        Outcome::Unreachable,
        Outcome::Error,
        Outcome::Cancelled,
    ];

    fn of<T>(r: &Result<T>) -> Self {
        match r {
            Ok(_) => Outcome::Ok,
            Err(StoreError::NotFound(_) | StoreError::NoSuchBucket(_)) => Outcome::NotFound,
            Err(StoreError::PreconditionFailed(_)) => Outcome::PreconditionFailed,
            Err(StoreError::AccessDenied(_) | StoreError::NoCredentials(_)) => Outcome::Denied,
            Err(StoreError::Unreachable(_)) => Outcome::Unreachable,
            Err(_) => Outcome::Error,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::PreconditionFailed => "precondition_failed",
            Outcome::Denied => "denied",
            Outcome::Unreachable => "unreachable",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
}

type Latency = Family<OpLabels, Histogram, fn() -> Histogram>;

/// 1 ms to ~33 s, doubling: local servers answer in a millisecond, a stalled one in the
/// request timeout.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Counters {
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
        }
    }
}

/// A request being made: counted with its outcome when it ends, as cancelled if dropped.
struct Timing<'a> {
    counters: &'a Counters,
    op: Op,
    start: Instant,
    outcome: Outcome,
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        let operation = self.op.name();
        let outcome = self.outcome.name();
        let c = self.counters;
        c.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .inc();
        c.latency
            .get_or_create(&OpLabels { operation })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Counters {
    /// Run one request of `op`, counting it.
    async fn time<T>(&self, op: Op, request: impl Future<Output = Result<T>>) -> Result<T> {
        let mut t = Timing {
            counters: self,
            op,
            start: Instant::now(),
            outcome: Outcome::Cancelled,
        };
        let r = request.await;
        t.outcome = Outcome::of(&r);
        r
    }

    /// Requests of one operation so far.
    pub fn count(&self, op: Op) -> u64 {
        Outcome::ALL
            .iter()
            .filter_map(|o| {
                let labels = RequestLabels {
                    operation: op.name(),
                    outcome: o.name(),
                };
                self.requests.get(&labels).map(|c| c.get())
            })
            .sum()
    }

    /// (operation, count) for every operation, and the body bytes received / sent.
    pub fn snapshot(&self) -> (Vec<(Op, u64)>, u64, u64) {
        (
            Op::ALL.iter().map(|o| (*o, self.count(*o))).collect(),
            self.bytes_in.get(),
            self.bytes_out.get(),
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

    /// Put these counters into the process's metrics (the mount's store).
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        let help = "S3 requests by operation and outcome";
        metrics.register("s3_requests", help, None, self.requests.clone());
        let help = "S3 request latency by operation, body included";
        let latency = self.latency.clone();
        metrics.register("s3_request_duration", help, Some(Unit::Seconds), latency);
        let help = "Body bytes received from S3";
        let bytes_in = self.bytes_in.clone();
        metrics.register("s3_received", help, Some(Unit::Bytes), bytes_in);
        let help = "Body bytes sent to S3";
        let bytes_out = self.bytes_out.clone();
        metrics.register("s3_sent", help, Some(Unit::Bytes), bytes_out);
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
        self.counters.time(Op::Head, self.inner.head(key)).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        // One place counts GETs: `get_body`, whose segments are joined here (as the SDK
        // would have joined them).
        Ok(self.get_body(key, range, if_match).await?.into_bytes())
    }

    async fn get_body_with(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        if range.is_empty() {
            return self.inner.get_body_with(key, range, if_match, seen).await;
        }
        let body = (self.counters)
            .time(
                Op::Get,
                self.inner.get_body_with(key, range, if_match, seen),
            )
            .await?;
        self.counters.bytes_in.inc_by(body.len() as u64);
        Ok(body)
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &UserMeta,
        expect: &Expect,
    ) -> Result<String> {
        self.counters.bytes_out.inc_by(body.len() as u64);
        (self.counters)
            .time(Op::Put, self.inner.put_if(key, body, meta, expect))
            .await
    }

    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        (self.counters)
            .time(Op::CreateMultipart, self.inner.create_multipart(key, meta))
            .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String> {
        self.counters.bytes_out.inc_by(body.len() as u64);
        let part = self.inner.upload_part(key, upload_id, number, body);
        self.counters.time(Op::UploadPart, part).await
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
        (self.counters)
            .time(
                Op::UploadPartCopy,
                self.inner
                    .upload_part_copy(key, upload_id, number, src_key, src_etag, range),
            )
            .await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        expect: &Expect,
    ) -> Result<String> {
        (self.counters)
            .time(
                Op::CompleteMultipart,
                self.inner
                    .complete_multipart_if(key, upload_id, parts, expect),
            )
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        (self.counters)
            .time(
                Op::AbortMultipart,
                self.inner.abort_multipart(key, upload_id),
            )
            .await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        (self.counters)
            .time(Op::ListUploads, self.inner.list_uploads(prefix))
            .await
    }

    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String> {
        (self.counters)
            .time(
                Op::Copy,
                self.inner.copy_if(src, dst, meta, src_etag, expect),
            )
            .await
    }

    async fn delete_if(&self, key: &str, expect: &Expect) -> Result<()> {
        (self.counters)
            .time(Op::Delete, self.inner.delete_if(key, expect))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return self.inner.delete_many(keys).await;
        }
        (self.counters)
            .time(Op::Delete, self.inner.delete_many(keys))
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        (self.counters)
            .time(
                Op::List,
                self.inner.list(prefix, delimiter, token, max_keys),
            )
            .await
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
