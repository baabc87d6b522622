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
    /// Disk-cache (`--cache-dir`) entries read back and found good.
    pub disk_cache_hits: Counter,
    /// Disk-cache lookups that found no entry, or a bad one.
    pub disk_cache_misses: Counter,
    /// Disk-cache entries deleted to stay within `--cache-dir-size`.
    pub disk_cache_evictions: Counter,
    /// Disk-cache entries found torn, corrupted or failing authentication, and deleted.
    pub disk_cache_dropped: Counter,
    /// Bytes the disk cache's entries take now.
    pub disk_cache_bytes: Gauge,
    /// Blocks a sequential reader found already cached or being fetched by readahead.
    pub readahead_hits: Counter,
    /// Blocks fetched by readahead (before any read asked for them).
    pub readahead_blocks: Counter,
    pub parts_uploaded: Counter,
    /// Parts copied server-side (UploadPartCopy) instead of uploaded.
    pub parts_copied: Counter,
    /// Multipart parts being uploaded right now.
    pub parts_in_flight: Gauge,
    /// Multipart uploads of files being written, started and not yet completed or aborted.
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

/// How a metric of `Metrics::table` is registered and read.
enum Entry<'a> {
    Count(&'a Counter),
    Level(&'a Gauge),
    /// A gauge in bytes (its exposed name gets `_bytes`).
    Bytes(&'a Gauge),
}

impl Metrics {
    /// Every metric of the struct once, with its name and help: what `new` registers and
    /// `report` prints, in that order.
    fn table(&self) -> [(&'static str, &'static str, Entry<'_>); 18] {
        use Entry::*;
        [
            (
                "block_cache_hits",
                "Block-cache lookups that found the block cached or being fetched",
                Count(&self.cache_hits),
            ),
            (
                "block_cache_misses",
                "Block-cache lookups that had to fetch",
                Count(&self.cache_misses),
            ),
            (
                "block_cache_evictions",
                "Blocks evicted from the block cache to stay within its budget",
                Count(&self.cache_evictions),
            ),
            (
                "block_cache",
                "Bytes of decrypted blocks held in the block cache",
                Bytes(&self.cache_bytes),
            ),
            (
                "disk_cache_hits",
                "Disk-cache entries read back and found good",
                Count(&self.disk_cache_hits),
            ),
            (
                "disk_cache_misses",
                "Disk-cache lookups that found no entry or a bad one",
                Count(&self.disk_cache_misses),
            ),
            (
                "disk_cache_evictions",
                "Disk-cache entries deleted to stay within the budget",
                Count(&self.disk_cache_evictions),
            ),
            (
                "disk_cache_dropped",
                "Disk-cache entries found torn, corrupted or failing authentication, deleted",
                Count(&self.disk_cache_dropped),
            ),
            (
                "disk_cache",
                "Bytes the disk cache's entries take on disk",
                Bytes(&self.disk_cache_bytes),
            ),
            (
                "readahead_hits",
                "Blocks a sequential reader found cached or in flight thanks to readahead",
                Count(&self.readahead_hits),
            ),
            (
                "readahead_blocks",
                "Blocks fetched by readahead",
                Count(&self.readahead_blocks),
            ),
            (
                "parts_uploaded",
                "Multipart parts uploaded",
                Count(&self.parts_uploaded),
            ),
            (
                "parts_copied",
                "Multipart parts copied server-side (UploadPartCopy) instead of uploaded",
                Count(&self.parts_copied),
            ),
            (
                "parts_in_flight",
                "Multipart parts being uploaded now",
                Level(&self.parts_in_flight),
            ),
            (
                "uploads_in_flight",
                "Multipart uploads started and not yet completed or aborted",
                Level(&self.uploads_in_flight),
            ),
            (
                "auth_failures",
                "Blocks, attributes or names that failed authentication (client mode)",
                Count(&self.auth_failures),
            ),
            (
                "conflicts",
                "Uploads that found the object changed by another host",
                Count(&self.conflicts),
            ),
            (
                "s3_retries",
                "S3 request attempts beyond the first",
                Count(&self.retries),
            ),
        ]
    }

    fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("sealfs")),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            disk_cache_hits: Counter::default(),
            disk_cache_misses: Counter::default(),
            disk_cache_evictions: Counter::default(),
            disk_cache_dropped: Counter::default(),
            disk_cache_bytes: Gauge::default(),
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
            for (name, help, entry) in m.table() {
                match entry {
                    Entry::Count(c) => r.register(name, help, c.clone()),
                    Entry::Level(g) => r.register(name, help, g.clone()),
                    Entry::Bytes(g) => r.register_with_unit(name, help, Unit::Bytes, g.clone()),
                }
            }
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
        let line = |(name, _, entry): (&str, &str, Entry<'_>)| match entry {
            Entry::Count(c) => format!("{name} {}\n", c.get()),
            Entry::Level(g) => format!("{name} {}\n", g.get()),
            Entry::Bytes(g) => format!("{name}_bytes {}\n", g.get()),
        };
        self.table().into_iter().map(line).collect()
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
