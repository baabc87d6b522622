//! Harness for tests through a real FUSE mount against the local S3 server started by
//! `scripts/local-s3.sh` (its settings come from the environment or `.local-s3/env`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealfs::store::s3::{S3Config, S3Store};
use sealfs::store::{ObjectStore, UserMeta};

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

/// The encryption mode the suite runs in (`SEALFS_TEST_ENCRYPTION`: none, the default, or
/// client), so one suite covers every mode.
pub fn client_mode() -> bool {
    server_env();
    std::env::var("SEALFS_TEST_ENCRYPTION").is_ok_and(|m| m == "client")
}

/// A prefix prepared for a test: initialized (and keyed) in client mode.
pub struct Prefix {
    pub name: String,
    pub args: Vec<String>,
    pub keydir: Option<tempfile::TempDir>,
    pub ring: Option<sealfs::crypto::keys::Keyring>,
}

impl Prefix {
    pub fn new(name: &str) -> Prefix {
        if client_mode() {
            Self::client(name)
        } else {
            Prefix {
                name: name.to_string(),
                args: vec![],
                keydir: None,
                ring: None,
            }
        }
    }

    /// A client-mode prefix whatever the suite's mode.
    pub fn client(name: &str) -> Prefix {
        let keydir = tempfile::tempdir().unwrap();
        let key = keydir.path().join("key");
        run(sealfs().args(["keygen", "--out"]).arg(&key));
        run(sealfs()
            .args([
                "init",
                &format!("s3://{}/{name}", bucket()),
                "--encryption",
                "client",
                "--key-file",
            ])
            .arg(&key)
            .args(["--endpoint-url", &endpoint(), "--force-path-style"]));
        let store = raw_store();
        let ring = rt()
            .block_on(sealfs::setup::open(
                &store,
                "test",
                &format!("{name}/"),
                sealfs::cli::Encryption::Client,
                Some(&key),
            ))
            .unwrap()
            .map(|r| std::sync::Arc::try_unwrap(r).unwrap());
        Prefix {
            name: name.to_string(),
            args: vec![
                "--encryption".into(),
                "client".into(),
                "--key-file".into(),
                key.to_string_lossy().into_owned(),
            ],
            keydir: Some(keydir),
            ring,
        }
    }

    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.name)
    }

    /// Put a file as another writer of this prefix would (sealed in client mode), without
    /// sealfs's attribute metadata.
    pub fn put(&self, rel: &str, data: &[u8]) {
        let body = match &self.ring {
            Some(ring) => ring.new_file().encode(0, data, data.len() as u64),
            None => Bytes::copy_from_slice(data),
        };
        rt().block_on(raw_store().put(&self.key(rel), body, &UserMeta::new()))
            .unwrap();
    }

    /// A file's contents read straight from the bucket (opened with the keyring in client mode).
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        let raw = rt()
            .block_on(sealfs::store::get_all(&raw_store(), &self.key(rel)))
            .unwrap()?;
        Some(match &self.ring {
            Some(ring) => ring.open_object(&raw).expect("object authenticates"),
            None => raw.to_vec(),
        })
    }

    /// Object size of a file of `plain` bytes in this prefix's mode.
    pub fn object_size(&self, plain: u64) -> u64 {
        match self.ring {
            Some(_) => sealfs::crypto::format::cipher_size(plain),
            None => plain,
        }
    }

    pub fn mount(self, extra: &[&str]) -> Mount {
        Mount::start(self, &endpoint(), extra)
    }

    pub fn mount_via(self, endpoint: &str, extra: &[&str]) -> Mount {
        Mount::start(self, endpoint, extra)
    }
}

pub struct Mount {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub log: PathBuf,
    pub setup: Prefix,
}

impl std::ops::Deref for Mount {
    type Target = Prefix;
    fn deref(&self) -> &Prefix {
        &self.setup
    }
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Mount a fresh prefix in the suite's mode (background mode, as users run it).
    pub fn new(prefix: &str, extra: &[&str]) -> Mount {
        Prefix::new(prefix).mount(extra)
    }

    pub fn with_endpoint(prefix: &str, endpoint: &str, extra: &[&str]) -> Mount {
        Prefix::new(prefix).mount_via(endpoint, extra)
    }

    fn start(setup: Prefix, endpoint: &str, extra: &[&str]) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let log = std::env::temp_dir().join(format!("{}.log", unique("sealfs-test")));
        let out = sealfs()
            .args(["mount", &format!("s3://{}/{}", bucket(), setup.name)])
            .arg(dir.path())
            .args([
                "--endpoint-url",
                endpoint,
                "--force-path-style",
                "--log-file",
            ])
            .arg(&log)
            .args(&setup.args)
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
            prefix: setup.name.clone(),
            log,
            setup,
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

    /// Unmount and mount the same prefix again (same mode and key).
    pub fn remount(mut self, extra: &[&str]) -> Mount {
        self.unmount();
        let setup = std::mem::replace(
            &mut self.setup,
            Prefix {
                name: String::new(),
                args: vec![],
                keydir: None,
                ring: None,
            },
        );
        setup.mount(extra)
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
