//! The process's metrics, in one Prometheus registry: what `--metrics-addr` serves (text
//! format, encoded by `prometheus-client`) and what `sealfs stats` prints.
//!
//! One process serves one mount, so the registry is global: the modules that see an event
//! (`cache`, `read`, `write`, `fs`, `store`) record it here without a handle being passed
//! down to them. The S3 request counters are the exception: they belong to the `Counted`
//! wrapper of one store (unit tests count several stores side by side), and the mount
//! registers its store's counters here (`register`).
//!
//! Invariants: every number is recorded once, in one place, and read from there by both the
//! scrape and `sealfs stats`; nothing here carries a file name, key or byte of data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

pub struct Metrics {
    registry: Mutex<Registry>,
    /// Block-cache lookups that found the block (or found it being fetched).
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// Blocks dropped to stay within `--cache-size-mib`.
    pub cache_evictions: Counter,
    /// Bytes of blocks held now.
    pub cache_bytes: Gauge,
    /// Blocks a sequential reader found already cached or being fetched by readahead.
    pub readahead_hits: Counter,
    /// Blocks fetched by readahead (before any read asked for them).
    pub readahead_blocks: Counter,
    pub parts_uploaded: Counter,
    /// Parts copied server-side (UploadPartCopy) instead of uploaded.
    pub parts_copied: Counter,
    /// Multipart parts being uploaded right now.
    pub parts_in_flight: Gauge,
    /// Multipart uploads started and not yet completed or aborted (files being written in
    /// parts, and server-side copies of large files).
    pub uploads_in_flight: Gauge,
    /// Client mode: blocks, attributes or names that failed authentication (each one `EIO`).
    pub auth_failures: Counter,
    /// Uploads that found the object changed by another host (`--on-conflict`).
    pub conflicts: Counter,
    /// S3 request attempts beyond the first (the SDK's retries).
    pub retries: Counter,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("sealfs")),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            readahead_hits: Counter::default(),
            readahead_blocks: Counter::default(),
            parts_uploaded: Counter::default(),
            parts_copied: Counter::default(),
            parts_in_flight: Gauge::default(),
            uploads_in_flight: Gauge::default(),
            auth_failures: Counter::default(),
            conflicts: Counter::default(),
            retries: Counter::default(),
        };
        {
            let mut r = m.registry.lock();
            let help = "Block-cache lookups that found the block cached or being fetched";
            r.register("block_cache_hits", help, m.cache_hits.clone());
            let help = "Block-cache lookups that had to fetch";
            r.register("block_cache_misses", help, m.cache_misses.clone());
            let help = "Blocks evicted from the block cache to stay within its budget";
            r.register("block_cache_evictions", help, m.cache_evictions.clone());
            let help = "Bytes of decrypted blocks held in the block cache";
            let bytes = m.cache_bytes.clone();
            r.register_with_unit("block_cache", help, Unit::Bytes, bytes);
            let help = "Blocks a sequential reader found cached or in flight thanks to readahead";
            r.register("readahead_hits", help, m.readahead_hits.clone());
            let help = "Blocks fetched by readahead";
            r.register("readahead_blocks", help, m.readahead_blocks.clone());
            let help = "Multipart parts uploaded";
            r.register("parts_uploaded", help, m.parts_uploaded.clone());
            let help = "Multipart parts copied server-side (UploadPartCopy) instead of uploaded";
            r.register("parts_copied", help, m.parts_copied.clone());
            let help = "Multipart parts being uploaded now";
            r.register("parts_in_flight", help, m.parts_in_flight.clone());
            let help = "Multipart uploads started and not yet completed or aborted";
            r.register("uploads_in_flight", help, m.uploads_in_flight.clone());
            let help = "Blocks, attributes or names that failed authentication (client mode)";
            r.register("auth_failures", help, m.auth_failures.clone());
            let help = "Uploads that found the object changed by another host";
            r.register("conflicts", help, m.conflicts.clone());
            let help = "S3 request attempts beyond the first";
            r.register("s3_retries", help, m.retries.clone());
        }
        m
    }

    /// Add a metric owned elsewhere (the mount's S3 request counters).
    pub fn register(&self, name: &str, help: &str, unit: Option<Unit>, metric: impl Metric) {
        let mut r = self.registry.lock();
        match unit {
            Some(u) => r.register_with_unit(name, help, u, metric),
            None => r.register(name, help, metric),
        }
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }

    /// The lines `sealfs stats` adds after the request counters: `NAME VALUE`.
    pub fn report(&self) -> String {
        let rows: [(&str, i64); 13] = [
            ("block_cache_hits", self.cache_hits.get() as i64),
            ("block_cache_misses", self.cache_misses.get() as i64),
            ("block_cache_evictions", self.cache_evictions.get() as i64),
            ("block_cache_bytes", self.cache_bytes.get()),
            ("readahead_hits", self.readahead_hits.get() as i64),
            ("readahead_blocks", self.readahead_blocks.get() as i64),
            ("parts_uploaded", self.parts_uploaded.get() as i64),
            ("parts_copied", self.parts_copied.get() as i64),
            ("parts_in_flight", self.parts_in_flight.get()),
            ("uploads_in_flight", self.uploads_in_flight.get()),
            ("auth_failures", self.auth_failures.get() as i64),
            ("conflicts", self.conflicts.get() as i64),
            ("s3_retries", self.retries.get() as i64),
        ];
        rows.iter().map(|(n, v)| format!("{n} {v}\n")).collect()
    }
}

/// Serve `GET /metrics` on `addr` (HTTP/1.1, hyper) until the returned task is aborted or
/// dropped with the runtime. Binding happens here, so a taken port is an error at once.
pub async fn serve(addr: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving Prometheus metrics at http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics: connection ended");
                }
            });
        }
    }))
}

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (StatusCode::OK, global().render()),
        (&hyper::Method::GET, "/") => (StatusCode::OK, "sealfs: metrics at /metrics\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(resp)
}

/// One more in a gauge for as long as it lives (a part being uploaded, even if cancelled).
pub struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    pub fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
