//! A TLS terminator in front of a local server (Garage, moto), with a certificate authority
//! made for the test run: what a private-CA HTTPS endpoint (MinIO, Ceph RGW, a company proxy)
//! looks like to sealfs. The CA is made once per test process and written to a PEM file;
//! each terminator gets its own server certificate, for 127.0.0.1 and localhost, signed by it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::rt;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sealfs test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_file = dir.path().join("test-ca.pem");
        std::fs::write(&pem_file, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_file,
            _dir: dir,
        }
    })
}

/// The PEM file of the test CA (what AWS_CA_BUNDLE names).
pub fn ca_file() -> &'static Path {
    &ca().pem_file
}

/// A TLS listener on 127.0.0.1 forwarding every connection's plaintext to `upstream`.
pub struct Terminator {
    pub addr: SocketAddr,
    /// Everything clients sent (decrypted), when started with `recording`.
    pub sent: Arc<parking_lot::Mutex<Vec<u8>>>,
}

impl Terminator {
    pub fn start(upstream: SocketAddr) -> Terminator {
        Self::start_with(upstream, false)
    }

    /// A terminator that also keeps every request's bytes (for a test that checks headers).
    pub fn recording(upstream: SocketAddr) -> Terminator {
        Self::start_with(upstream, true)
    }

    fn start_with(upstream: SocketAddr, record: bool) -> Terminator {
        let sent = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let keep = sent.clone();
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "sealfs test server");
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let chain = vec![cert.der().clone(), ca.cert.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt().spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let keep = keep.clone();
                // As production terminators do: without it Nagle holds a response's last small
                // TLS record until the client acknowledges the rest, which the client's delayed
                // ACK puts off by up to 40 ms.
                let _ = client.set_nodelay(true);
                tokio::spawn(async move {
                    // A client that refuses the certificate just closes: nothing to forward.
                    let Ok(tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    forward(tls, server, record.then_some(keep)).await;
                });
            }
        });
        Terminator { addr, sent }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// Copies one connection both ways until either side ends, keeping what the client sent in
/// `keep` when given.
///
/// The upstream side acknowledges at once (`TCP_QUICKACK`, set again after every read: Linux
/// keeps it only until the next exchange). Garage leaves Nagle on and writes a response in
/// pieces; each piece waits for the ACK of the one before, which Linux delays by 40 ms or more
/// on the reading side. Without this, every system behind the terminator stalls on Garage's
/// pieces here, and the HTTPS benchmark measures those stalls instead of the clients (real S3
/// endpoints do not trickle a response out).
async fn forward(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    server: tokio::net::TcpStream,
    keep: Option<Arc<parking_lot::Mutex<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = tokio::io::split(tls);
    let (mut from_server, mut to_server) = server.into_split();
    let back = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            let _ = socket2::SockRef::from(from_server.as_ref()).set_tcp_quickack(true);
            // rustls keeps what the socket did not take: flush, or a response's tail waits
            // for the next read.
            if to_client.write_all(&buf[..n]).await.is_err() || to_client.flush().await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
        if let Some(keep) = &keep {
            keep.lock().extend_from_slice(&buf[..n]);
        }
        if to_server.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to_server.shutdown().await;
    let _ = back.await;
}

/// `http://ip:port` as a socket address (the local servers' endpoints).
pub fn socket_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("not http://ip:port: {url}"))
}
