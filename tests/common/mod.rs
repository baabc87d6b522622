//! Harness for tests through a real FUSE mount against the local S3 server started by
//! `scripts/local-s3.sh` (its settings come from the environment or `.local-s3/env`).
#![allow(dead_code)]

pub mod tls;
pub mod tripwire;

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

/// The local S3 server itself (plain http).
pub fn server_endpoint() -> String {
    server_env();
    std::env::var("AWS_ENDPOINT_URL_S3").expect("AWS_ENDPOINT_URL_S3")
}

/// Whether this run talks to S3 over HTTPS (`SEALFS_TEST_TLS=1`): through a TLS terminator
/// in front of the server, with a CA made for the run that `AWS_CA_BUNDLE` names.
pub fn over_tls() -> bool {
    std::env::var("SEALFS_TEST_TLS").is_ok_and(|v| v == "1")
}

/// The endpoint mounts and tools use: the server, or its TLS terminator when `over_tls()`.
pub fn endpoint() -> String {
    static TLS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if !over_tls() {
        return server_endpoint();
    }
    TLS.get_or_init(|| {
        let t = tls::Terminator::start(tls::socket_of(&server_endpoint()));
        // Every sealfs this process starts (and its own S3 clients) trust the test CA.
        std::env::set_var("AWS_CA_BUNDLE", tls::ca_file());
        t.url()
    })
    .clone()
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
        sse: Default::default(),
        request_timeout: None,
        aws: Default::default(),
        allow_plain_http_sse_c: false,
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

/// The encryption mode the suite runs in (`SEALFS_TEST_ENCRYPTION`: none, the default,
/// client or sse-c), so one suite covers every mode.
pub fn suite_mode() -> String {
    server_env();
    std::env::var("SEALFS_TEST_ENCRYPTION").unwrap_or_else(|_| "none".into())
}

/// A plain S3 client with the given server-side encryption.
pub fn raw_store_with(sse: sealfs::store::Sse) -> S3Store {
    let cfg = S3Config {
        bucket: bucket(),
        region: None,
        endpoint_url: Some(endpoint()),
        force_path_style: true,
        sse,
        request_timeout: None,
        aws: Default::default(),
        allow_plain_http_sse_c: false,
    };
    rt().block_on(S3Store::connect(&cfg)).expect("connect")
}

/// The keyring of client prefix `name`, opened with `enc` as a mount would.
fn open_ring(
    name: &str,
    enc: &sealfs::setup::EncryptionConfig,
) -> Option<sealfs::crypto::keys::Keyring> {
    rt().block_on(sealfs::setup::open(
        &raw_store(),
        &bucket(),
        "test",
        &format!("{name}/"),
        enc,
    ))
    .unwrap()
    .map(|r| std::sync::Arc::try_unwrap(r).unwrap())
}

/// Every key under `prefix` in the test bucket, as listed.
pub fn keys_under(prefix: &str) -> Vec<String> {
    rt().block_on(sealfs::store::list_all(&raw_store(), prefix))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// LocalStack's KMS (where DisableKey makes Decrypt fail, as on AWS): its URL and a client.
pub fn localstack_kms() -> (String, aws_sdk_kms::Client) {
    server_env();
    let url = std::env::var("SEALFS_LOCALSTACK_KMS").expect("SEALFS_LOCALSTACK_KMS (local-s3.sh)");
    let client = rt().block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&url)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        aws_sdk_kms::Client::new(&conf)
    });
    (url, client)
}

/// A new key in LocalStack's KMS.
pub fn localstack_key(kms: &aws_sdk_kms::Client) -> String {
    rt().block_on(kms.create_key().send())
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string()
}

/// `sealfs` with its KMS calls sent to `kms_url`.
pub fn sealfs_kms(kms_url: &str) -> Command {
    let mut c = sealfs();
    c.env("AWS_ENDPOINT_URL_KMS", kms_url);
    c
}

/// `sealfs init URL --encryption client --kms-key-id KEY` with KMS at `kms_url`.
pub fn init_kms(kms_url: &str, url: &str, key: &str) {
    run(sealfs_kms(kms_url)
        .args(["init", url, "--encryption", "client", "--kms-key-id", key])
        .args(["--endpoint-url", &endpoint(), "--force-path-style"]));
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A prefix prepared for a test: initialized (and keyed) for the suite's mode.
pub struct Prefix {
    pub name: String,
    pub args: Vec<String>,
    pub keydir: Option<tempfile::TempDir>,
    pub ring: Option<sealfs::crypto::keys::Keyring>,
    /// SSE-C key file, for a plain client that can read the prefix's objects.
    pub sse_c_key: Option<PathBuf>,
}

impl Prefix {
    pub fn new_empty() -> Prefix {
        Self::empty("")
    }

    fn empty(name: &str) -> Prefix {
        Prefix {
            name: name.to_string(),
            args: vec![],
            keydir: None,
            ring: None,
            sse_c_key: None,
        }
    }

    pub fn new(name: &str) -> Prefix {
        match suite_mode().as_str() {
            "client" => Self::client(name),
            "sse-c" => Self::sse_c(name),
            _ => Self::empty(name),
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
        let enc = sealfs::setup::EncryptionConfig {
            mode: sealfs::crypto::mode::Mode::Client,
            key_file: Some(key.clone()),
            ..Default::default()
        };
        let ring = open_ring(name, &enc);
        Prefix {
            args: vec![
                "--encryption".into(),
                "client".into(),
                "--key-file".into(),
                key.to_string_lossy().into_owned(),
            ],
            keydir: Some(keydir),
            ring,
            ..Self::empty(name)
        }
    }

    /// An initialized client-mode prefix opened with `enc` (e.g. KMS-wrapped): its keyring,
    /// to find and open its objects, and `args` to mount it.
    pub fn opened(name: &str, enc: sealfs::setup::EncryptionConfig, args: &[&str]) -> Prefix {
        let ring = open_ring(name, &enc);
        Prefix {
            args: args.iter().map(|a| a.to_string()).collect(),
            ring,
            ..Self::empty(name)
        }
    }

    /// An SSE-C prefix with a fresh customer key, whatever the suite's mode.
    pub fn sse_c(name: &str) -> Prefix {
        use std::os::unix::fs::PermissionsExt;
        let keydir = tempfile::tempdir().unwrap();
        let key = keydir.path().join("ssec.key");
        let seed = unique("k");
        let raw: Vec<u8> = (0..32)
            .map(|i| seed.as_bytes()[i % seed.len()].wrapping_add(i as u8))
            .collect();
        std::fs::write(&key, format!("{}\n", hex_encode(&raw))).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        run(sealfs()
            .args([
                "init",
                &format!("s3://{}/{name}", bucket()),
                "--encryption",
                "sse-c",
                "--sse-c-key-file",
            ])
            .arg(&key)
            .args(["--endpoint-url", &endpoint(), "--force-path-style"]));
        Prefix {
            args: vec![
                "--encryption".into(),
                "sse-c".into(),
                "--sse-c-key-file".into(),
                key.to_string_lossy().into_owned(),
            ],
            keydir: Some(keydir),
            sse_c_key: Some(key),
            ..Self::empty(name)
        }
    }

    /// A plain client that can read this prefix's objects (with its SSE-C keys).
    pub fn s3(&self) -> S3Store {
        match &self.sse_c_key {
            Some(key) => {
                let keys = sealfs::setup::load_sse_c_keys(key).unwrap();
                raw_store_with(sealfs::store::Sse::C(std::sync::Arc::new(keys)))
            }
            None => raw_store(),
        }
    }

    /// The same prefix and mount arguments, for a second mount while this one lives (its
    /// key files stay where they are).
    pub fn alias(&self) -> Prefix {
        Prefix {
            name: self.name.clone(),
            args: self.args.clone(),
            keydir: None,
            ring: None,
            sse_c_key: self.sse_c_key.clone(),
        }
    }

    /// Where this prefix's paths live (encrypted names in client mode).
    pub fn layout(&self) -> sealfs::layout::Layout {
        let names = self.ring.as_ref().and_then(|r| r.name_cipher());
        sealfs::layout::Layout::with_names(&format!("{}/", self.name), names)
    }

    /// The object key of mount path `rel`: a file, a directory marker (`rel` ending in '/'),
    /// the config object (`.sealfs`) or a directory's index (`.sealfs-index/DIR/index`).
    pub fn key(&self, rel: &str) -> String {
        let l = self.layout();
        if rel == ".sealfs" {
            return l.config_key();
        }
        if let Some(dir) = rel
            .strip_prefix(".sealfs-index/")
            .and_then(|r| r.strip_suffix("index"))
        {
            return l.index_key(dir.trim_end_matches('/'));
        }
        match rel.strip_suffix('/') {
            Some(dir) => l.dir_prefix(dir),
            None => l.file_key(rel),
        }
    }

    /// Put a file as another writer of this prefix would (sealed in client mode, under the
    /// SSE-C key in sse-c mode): without attribute metadata, except for the sealed
    /// attributes a client-mode (format 2) object must carry, with mode 0644 and owner root.
    pub fn put(&self, rel: &str, data: &[u8]) {
        let key = self.key(rel);
        let (body, meta) = match &self.ring {
            Some(ring) => {
                let codec = ring.new_file();
                let meta = match ring.attr_sealer() {
                    Some(sealer) => {
                        let attr = sealfs::inode::Attr {
                            size: data.len() as u64,
                            ..sealfs::inode::Attr::new(
                                sealfs::inode::Kind::File,
                                0o644,
                                0,
                                0,
                                std::time::SystemTime::now(),
                            )
                        };
                        let id = sealfs::meta::file_id_of(Some(&codec));
                        sealfs::meta::MetaCodec::sealed(&format!("{}/", self.name), sealer)
                            .encode(&key, &attr, id, None)
                    }
                    None => UserMeta::new(),
                };
                (
                    codec.encode(0, Bytes::copy_from_slice(data), data.len() as u64),
                    meta,
                )
            }
            None => (Bytes::copy_from_slice(data), UserMeta::new()),
        };
        rt().block_on(self.s3().put(&key, body, &meta)).unwrap();
    }

    /// A file's contents read straight from the bucket (opened with the keyring in client mode).
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        let raw = rt()
            .block_on(sealfs::store::get_all(&self.s3(), &self.key(rel)))
            .unwrap()?;
        Some(match &self.ring {
            Some(ring) => ring.open_object(&raw).expect("object authenticates"),
            None => raw.to_vec(),
        })
    }

    /// HEAD of an object as this prefix's own client sees it.
    pub fn head(&self, rel: &str) -> sealfs::store::ObjectMeta {
        rt().block_on(self.s3().head(&self.key(rel)))
            .unwrap()
            .unwrap()
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
        let setup = std::mem::replace(&mut self.setup, Prefix::new_empty());
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

/// A `sealfs mount` that must fail: it exits non-zero, says `expect` on stderr, and leaves
/// nothing mounted at `mnt`.
pub fn assert_mount_refused(out: &std::process::Output, expect: &str, mnt: &Path) {
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted; stderr: {msg}");
    assert!(msg.contains(expect), "{msg}");
    assert!(!is_mounted(mnt));
}

pub fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .expect("an OS error")
}

/// Wait until `cond` holds, checking every 50 ms, and fail the test with `what` if it does not
/// within `limit`. For what depends on another process's timers (a real mount's TTL), where the
/// test cannot control the clock: it waits for the outcome, not for a guessed duration.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `len` bytes that differ at every position and per `seed` (so a misplaced block shows).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
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
        let target = tls::socket_of(&server_endpoint());
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
