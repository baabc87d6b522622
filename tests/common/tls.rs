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
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    if !record {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                        return;
                    }
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut from_client, mut to_client) = tokio::io::split(tls);
                    let (mut from_server, mut to_server) = server.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        keep.lock().extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                    let _ = back.await;
                });
            }
        });
        Terminator { addr, sent }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// `http://ip:port` as a socket address (the local servers' endpoints).
pub fn socket_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("not http://ip:port: {url}"))
}
