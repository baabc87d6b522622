//! The HTTP(S) client under every AWS request sealfs makes (S3, KMS and the credential
//! providers behind them): hyper's HTTP/1.1 client over tokio TCP and rustls with AWS-LC, as the
//! SDK's default client is, plus one thing that client cannot do: acknowledge at once what the
//! server sent.
//!
//! Why: a server that leaves Nagle's algorithm on (Garage 2.5 does) writes a response in
//! pieces, and a piece waits for the acknowledgement of the short one before it. Linux delays
//! that acknowledgement (40 ms or more) on a connection it sees as request/response, so reads
//! paused now and then (docs/CONFIGURATION.md has the figures). `TCP_QUICKACK` sends a pending
//! acknowledgement now, but Linux keeps it only until the next exchange: it is set again after
//! every read of the socket that returned bytes, one `setsockopt` per read.
//!
//! Invariants, as in the SDK's own client: errors are classified for its retry policy (a
//! failed connect or I/O error is `io`, retried; a connect or a response over its timeout is
//! `timeout`; a request the SDK could not convert is `user`), connecting gives up after the
//! connect timeout the SDK's settings name, and waiting for a response's headers after their
//! read timeout (the instance-metadata credential provider sets one).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle connection stays in the pool (the SDK's default client: 90 s).
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The client for the SDK's config: HTTPS trusts exactly `roots`.
pub fn client(roots: rustls::RootCertStore) -> SharedHttpClient {
    let tls = tls_connector(roots);
    // The SDK asks for a connector per request attempt: one per pair of timeouts keeps one
    // connection pool per client, as the SDK's client does.
    type Timeouts = (Option<Duration>, Option<Duration>);
    let made: parking_lot::Mutex<HashMap<Timeouts, SharedHttpConnector>> = Default::default();
    http_client_fn(move |settings, _| {
        let (connect, read) = (settings.connect_timeout(), settings.read_timeout());
        made.lock()
            .entry((connect, read))
            .or_insert_with(|| SharedHttpConnector::new(Client::new(tls.clone(), connect, read)))
            .clone()
    })
}

fn tls_connector(roots: rustls::RootCertStore) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("AWS-LC supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(tls))
}

/// The system's certificate authorities (what HTTPS trusts without a CA bundle), read once
/// per process: S3 and KMS clients both ask for them.
pub fn system_roots() -> rustls::RootCertStore {
    static ROOTS: std::sync::LazyLock<rustls::RootCertStore> =
        std::sync::LazyLock::new(read_system_roots);
    ROOTS.clone()
}

fn read_system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system certificate store could not be read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(found.certs);
    if unusable > 0 {
        tracing::debug!(
            unusable,
            "system certificates rustls cannot use were skipped"
        );
    }
    roots
}

struct Client {
    hyper: hyper_util::client::legacy::Client<Connect, SdkBody>,
    /// How long to wait for a response's headers once the request is sent.
    read_timeout: Option<Duration>,
}

impl Client {
    fn new(
        tls: tokio_rustls::TlsConnector,
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
    ) -> Self {
        let connect = Connect {
            tls,
            timeout: connect_timeout,
        };
        Client {
            hyper: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(connect),
            read_timeout,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sealfs HTTP client")
    }
}

impl HttpConnector for Client {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.hyper.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = within(read_timeout, response)
                .await
                .map_err(|t| ConnectorError::timeout(Box::new(ResponseTimedOut(t))))?;
            match response {
                Ok(r) => HttpResponse::try_from(r.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// `work`'s output, or the limit it ran past (no limit: it runs to the end).
async fn within<F: Future>(limit: Option<Duration>, work: F) -> Result<F::Output, Duration> {
    match limit {
        Some(t) => tokio::time::timeout(t, work).await.map_err(|_| t),
        None => Ok(work.await),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("connecting to {0} took longer than {1:?}")]
struct ConnectTimedOut(String, Duration);

#[derive(Debug, thiserror::Error)]
#[error("no response within {0:?} of the request")]
struct ResponseTimedOut(Duration);

/// The SDK's classification of a failed request (its client's rules, for its retries).
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let hyper = find::<hyper::Error>(&err);
    if find::<ConnectTimedOut>(&err).is_some() || hyper.is_some_and(|h| h.is_timeout()) {
        return ConnectorError::timeout(err.into());
    }
    if hyper.is_some_and(|h| h.is_user()) {
        return ConnectorError::user(err.into());
    }
    if err.is_connect()
        || find::<io::Error>(&err).is_some()
        || hyper.is_some_and(|h| h.is_closed() || h.is_canceled())
    {
        return ConnectorError::io(err.into());
    }
    if hyper.is_some_and(|h| h.is_incomplete_message()) {
        return ConnectorError::other(err.into(), Some(ErrorKind::TransientError));
    }
    ConnectorError::other(err.into(), None)
}

fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref::<E>())
}

/// Opens connections: TCP (Nagle off, as the SDK's client), then TLS for `https`.
#[derive(Clone)]
struct Connect {
    tls: tokio_rustls::TlsConnector,
    timeout: Option<Duration>,
}

impl tower_service::Service<http::Uri> for Connect {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, timeout) = (self.tls.clone(), self.timeout);
        Box::pin(async move {
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                other => return Err(format!("unsupported URL scheme {other:?} in {uri}").into()),
            };
            let host = uri.host().ok_or_else(|| format!("no host in {uri}"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = within(timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|t| ConnectTimedOut(format!("{host}:{port}"), t))??;
            tcp.set_nodelay(true)?;
            let tcp = QuickAck(tcp);
            let stream = if https {
                let name = rustls_pki_types::ServerName::try_from(host)?;
                Stream::Tls(Box::new(tls.connect(name, tcp).await?))
            } else {
                Stream::Plain(tcp)
            };
            Ok(Conn(TokioIo::new(stream)))
        })
    }
}

/// A TCP stream that sends its pending acknowledgement after every read that returned bytes.
struct QuickAck(TcpStream);

impl QuickAck {
    fn ack_now(&self) {
        // Only speed is at stake: a socket refusing the option reads as before.
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.ack_now();
        }
        read
    }
}

/// Writes of a newtype go to the stream it wraps (tokio's and hyper's write traits have the
/// same methods).
macro_rules! write_through {
    ($trait:path, $ty:ty) => {
        impl $trait for $ty {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.0.is_write_vectored()
            }
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
    };
}

write_through!(AsyncWrite, QuickAck);

enum Stream {
    Plain(QuickAck),
    Tls(Box<tokio_rustls::client::TlsStream<QuickAck>>),
}

/// One stream type for both schemes; every call goes to the scheme's stream.
macro_rules! on_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, s => s.poll_shutdown(cx))
    }
}

/// What hyper's pool holds: the stream, through hyper's tokio adapter.
struct Conn(TokioIo<Stream>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

write_through!(hyper::rt::Write, Conn);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// After request/response exchanges Linux delays acknowledgements on the connection; a
    /// read through `QuickAck` turns them back to immediate. Kernel state, no clock.
    #[tokio::test]
    async fn a_read_through_quickack_leaves_acknowledgements_immediate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 3];
            for _ in 0..3 {
                s.write_all(b"response").await.unwrap();
                s.read_exact(&mut b).await.unwrap();
            }
            s.write_all(b"response").await.unwrap();
        });
        let mut client = QuickAck(TcpStream::connect(addr).await.unwrap());
        let quickack = |c: &QuickAck| socket2::SockRef::from(&c.0).tcp_quickack().unwrap();
        let mut b = [0u8; 8];
        for _ in 0..3 {
            // The plain stream beneath: a response read, then a request sent at once.
            client.0.read_exact(&mut b).await.unwrap();
            client.0.write_all(b"req").await.unwrap();
        }
        // The socket is now in Linux's delayed-ACK ("ping-pong") mode, where TCP_QUICKACK
        // reads 0 (not asserted: a scheduling pause of 40 ms would end that mode by itself).
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"response");
        assert!(
            quickack(&client),
            "the read through QuickAck re-armed TCP_QUICKACK"
        );
        server.await.unwrap();
    }

    /// A server that takes the request and never answers: the SDK gets a timeout (which its
    /// retry policy retries) after the read timeout. Paused time: no waiting.
    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_is_a_timeout_after_the_read_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_held, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let tls = tls_connector(rustls::RootCertStore::empty());
        let client = Client::new(tls, None, Some(Duration::from_secs(30)));
        let mut request = HttpRequest::new(SdkBody::empty());
        request.set_uri(format!("http://{addr}/b/k")).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(3600), client.call(request))
            .await
            .expect("the read timeout ended the request, not the test's hour");
        let err = answer.expect_err("nothing was answered");
        assert!(err.is_timeout(), "{err:?}");
        let why = std::error::Error::source(&err).map(|e| e.to_string());
        assert_eq!(
            why.as_deref(),
            Some("no response within 30s of the request")
        );
    }
}
