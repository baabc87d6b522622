//! Harness for tests through a real FUSE mount against the local S3 server started by
//! `scripts/local-s3.sh` (its settings come from the environment or `.local-s3/env`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use sealfs::store::s3::{S3Config, S3Store};

static ENV: Once = Once::new();

/// Load `.local-s3/env` into this process's environment (once), and insist on a server.
pub fn server_env() {
    ENV.call_once(|| {
        // Never let the AWS credential chain probe the EC2 metadata address from tests.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        if std::env::var("AWS_ENDPOINT_URL_S3").is_err() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".local-s3/env");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!(
                    "no S3 server settings: run `scripts/local-s3.sh start` first ({} missing)",
                    path.display()
                )
            });
            for line in text.lines() {
                if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                    std::env::set_var(k, v);
                }
            }
        }
    });
}

pub fn bucket() -> String {
    server_env();
    std::env::var("SEALFS_TEST_BUCKET").expect("SEALFS_TEST_BUCKET")
}

pub fn endpoint() -> String {
    server_env();
    std::env::var("AWS_ENDPOINT_URL_S3").expect("AWS_ENDPOINT_URL_S3")
}

/// A prefix no other test uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{t:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain S3 client on the test bucket (to look at raw objects).
pub fn raw_store() -> S3Store {
    let cfg = S3Config {
        bucket: bucket(),
        region: None,
        endpoint_url: Some(endpoint()),
        force_path_style: true,
    };
    rt().block_on(S3Store::connect(&cfg)).expect("connect")
}

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .unwrap()
    })
}

pub fn sealfs() -> Command {
    server_env();
    Command::new(env!("CARGO_BIN_EXE_sealfs"))
}

pub struct Mount {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub log: PathBuf,
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Mount s3://bucket/prefix with extra arguments (background mode, as users run it).
    pub fn new(prefix: &str, extra: &[&str]) -> Mount {
        Self::with_endpoint(prefix, &endpoint(), extra)
    }

    pub fn with_endpoint(prefix: &str, endpoint: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let log = std::env::temp_dir().join(format!("{}.log", unique("sealfs-test")));
        let out = sealfs()
            .args(["mount", &format!("s3://{}/{prefix}", bucket())])
            .arg(dir.path())
            .args([
                "--endpoint-url",
                endpoint,
                "--force-path-style",
                "--log-file",
            ])
            .arg(&log)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount {
            dir,
            prefix: prefix.to_string(),
            log,
        }
    }

    pub fn unmount(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = Command::new("umount").arg(self.path()).output().unwrap();
            if st.status.success() || !is_mounted(self.path()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cannot unmount: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn remount(self, extra: &[&str]) -> Mount {
        self.unmount();
        Mount::new(&self.prefix, extra)
    }

    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(self.path()) {
            let _ = Command::new("umount").arg("-l").arg(self.path()).output();
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    sealfs::sys::is_mount_point(path)
}

pub fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an OS error")
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A TCP proxy to the S3 server that a test can cut and restore, to make the server vanish
/// in the middle of an upload.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let target: SocketAddr = endpoint()
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint is http://ip:port");
        let listener = rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        rt().spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (up3, gen3) = (up2.clone(), gen2.clone());
                let born = gen2.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                                if !up3.load(Ordering::SeqCst) || gen3.load(Ordering::SeqCst) != born {
                                    return; // drops both sockets: the server vanished
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            generation,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
