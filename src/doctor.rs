//! `sealfs doctor s3://BUCKET[/PREFIX]`: what a user runs when something is off. One check per
//! line, each OK, WARN or FAIL with what to do; the checks ask the server what it really does
//! (a scratch object in the prefix's reserved area, deleted before the command ends) rather
//! than assume it behaves like AWS.
//!
//! Invariants: nothing outside the scratch keys is written; every scratch key is deleted (a
//! failed delete is itself reported); no key material is printed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::crypto::keys::PrefixConfig;
use crate::crypto::mode::{Mode, Wrapping};
use crate::layout::Layout;
use crate::setup::{self, EncryptionConfig};
use crate::store::s3::{S3Config, S3Store};
use crate::store::{
    self, probe, CustomerKey, CustomerKeys, ObjectStore, Sse, StoreError, UserMeta,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

/// What to check: the connection (as a mount would make it), the prefix, the user's key
/// options, and whether `--allow-other` will be asked for.
pub struct DoctorConfig {
    pub s3: S3Config,
    pub prefix: String,
    pub enc: EncryptionConfig,
    pub allow_other: bool,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
}

/// Run every check, in the order a user would fix things.
pub async fn run(cfg: &DoctorConfig) -> Vec<Check> {
    let mut r = Report::default();
    fuse(&mut r, cfg.allow_other);
    let endpoint = S3Config::endpoint(&cfg.s3);
    reachable(&mut r, endpoint.as_deref(), &cfg.s3).await;
    let s3 = match S3Store::connect(&cfg.s3).await {
        Ok(s) => s,
        Err(StoreError::Config(m)) => {
            r.add("ca bundle", Status::Fail, m);
            return r.0;
        }
        Err(e) => {
            r.add("credentials", Status::Fail, e.to_string());
            return r.0;
        }
    };
    r.add(
        "credentials",
        Status::Ok,
        format!("found ({})", credential_source(&cfg.s3)),
    );
    r.add(
        "region",
        Status::Ok,
        format!("{} ({})", s3.region(), region_source(&cfg.s3)),
    );
    let bucket_ok = bucket(&mut r, &s3, &cfg.s3).await;
    addressing(&mut r, &cfg.s3, bucket_ok).await;
    if !bucket_ok {
        return r.0;
    }
    clock(&mut r, &s3).await;
    let store: Arc<dyn ObjectStore> = Arc::new(s3);
    let layout = Layout::new(&cfg.prefix);
    let scratch = |what: &str| {
        let id = crate::sys::random_hex::<8>();
        layout.unlinked_key(&format!("doctor-{what}-{id}"))
    };
    if write(&mut r, &*store, &scratch("write")).await {
        conditions(&mut r, &*store, &scratch("probe")).await;
        encryption(&mut r, cfg, &scratch("sse")).await;
    }
    versioning(&mut r, &*store).await;
    prefix(&mut r, &*store, cfg).await;
    r.0
}

async fn reachable(r: &mut Report, endpoint: Option<&str>, s3: &S3Config) {
    let Some(url) = endpoint else {
        r.add(
            "endpoint",
            Status::Ok,
            "AWS S3 (no endpoint URL set; the SDK picks the regional one)",
        );
        return;
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = match host_port.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() && !host_port.ends_with(']') => {
            host_port.to_string()
        }
        _ => format!("{host_port}:{}", if scheme == "http" { 80 } else { 443 }),
    };
    let connect = tokio::net::TcpStream::connect(addr.clone());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => r.add("endpoint", Status::Ok, format!("{url}: {addr} accepts connections")),
        Ok(Err(e)) => r.add(
            "endpoint",
            Status::Fail,
            format!("{url}: cannot connect to {addr}: {e} (is the server running? is --endpoint-url right?)"),
        ),
        Err(_) => r.add(
            "endpoint",
            Status::Fail,
            format!("{url}: no answer from {addr} within 5 s (firewall? wrong address?)"),
        ),
    }
    match scheme {
        "https" => {
            let trust = crate::sdk::trust_line(&s3.aws)
                .await
                .unwrap_or_else(|| "HTTPS trusts the system's roots".into());
            r.add(
                "tls",
                Status::Ok,
                format!("https; {trust} (the certificate is checked by the requests below)"),
            )
        }
        _ if crate::store::s3::plain_http_off_host(url) => r.add(
            "tls",
            Status::Warn,
            format!("{url} is plain http to another host: requests and credentials' signatures cross the network readable; use https"),
        ),
        _ => r.add("tls", Status::Ok, "plain http to this machine"),
    }
}

/// Whether the environment sets `name` to something.
fn env(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

fn credential_source(s3: &S3Config) -> String {
    if env("AWS_ACCESS_KEY_ID") {
        "AWS_ACCESS_KEY_ID in the environment".into()
    } else if let Some(p) = s3
        .aws
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok())
    {
        format!("profile {p}")
    } else {
        "the default chain: ~/.aws/credentials, SSO, or an instance role".into()
    }
}

fn region_source(s3: &S3Config) -> &'static str {
    if s3.region.is_some() {
        "--region"
    } else if env("AWS_REGION") {
        "AWS_REGION"
    } else if env("AWS_DEFAULT_REGION") {
        "AWS_DEFAULT_REGION"
    } else {
        "the profile, or us-east-1 when nothing sets one"
    }
}

/// Whether the bucket exists and can be listed.
async fn bucket(r: &mut Report, s3: &S3Store, cfg: &S3Config) -> bool {
    match s3.check_bucket().await {
        Ok(()) => {
            r.add(
                "bucket",
                Status::Ok,
                format!("{} exists and can be listed", cfg.bucket),
            );
            true
        }
        Err(e) => {
            let hint = match &e {
                StoreError::Unreachable(m) => crate::sdk::trust_hint(m),
                _ => "",
            };
            r.add("bucket", Status::Fail, format!("{}: {e}{hint}", cfg.bucket));
            false
        }
    }
}

/// Path-style vs virtual-hosted addressing: which one the server answers.
async fn addressing(r: &mut Report, cfg: &S3Config, current_ok: bool) {
    let other = S3Config {
        force_path_style: !cfg.force_path_style,
        ..cfg.clone()
    };
    let other_ok = match S3Store::connect(&other).await {
        Ok(s) => s.check_bucket().await.is_ok(),
        Err(_) => false,
    };
    let (now, then) = match cfg.force_path_style {
        true => ("path-style (--force-path-style)", "virtual-hosted"),
        false => ("virtual-hosted", "path-style"),
    };
    match (current_ok, other_ok) {
        (true, true) => r.add(
            "addressing",
            Status::Ok,
            format!("{now} works ({then} too)"),
        ),
        (true, false) => r.add(
            "addressing",
            Status::Ok,
            format!("{now} works ({then} does not)"),
        ),
        (false, true) if !cfg.force_path_style => r.add(
            "addressing",
            Status::Fail,
            "only path-style works with this server: add --force-path-style",
        ),
        (false, true) => r.add(
            "addressing",
            Status::Fail,
            "only virtual-hosted works with this server: drop --force-path-style",
        ),
        (false, false) => r.add(
            "addressing",
            Status::Fail,
            "neither addressing style reaches the bucket",
        ),
    }
}

/// SigV4 signatures are refused beyond 15 minutes of skew.
async fn clock(r: &mut Report, s3: &S3Store) {
    let server = match s3.server_time().await {
        Ok(Some(t)) => t,
        Ok(None) => return r.add("clock", Status::Warn, "the server sent no Date header"),
        Err(e) => return r.add("clock", Status::Warn, format!("cannot ask: {e}")),
    };
    let now = SystemTime::now();
    let (skew, ahead) = match server.duration_since(now) {
        Ok(d) => (d, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    let secs = skew.as_secs();
    let line = format!("the server's clock is {secs} s {ahead} this machine's");
    match secs {
        0..=60 => r.add("clock", Status::Ok, line),
        61..=600 => r.add("clock", Status::Warn, format!("{line}: fix the time (NTP) before it reaches 15 min, when S3 refuses signed requests")),
        _ => r.add("clock", Status::Fail, format!("{line}: S3 refuses requests signed more than 15 min off; fix the time (NTP)")),
    }
}

/// PUT, HEAD and DELETE of a scratch object under the prefix.
async fn write(r: &mut Report, s: &dyn ObjectStore, key: &str) -> bool {
    let res = async {
        s.put(key, Bytes::from_static(b"sealfs doctor"), &UserMeta::new())
            .await?;
        let found = s.head(key).await?.is_some();
        s.delete(key).await?;
        let gone = s.head(key).await?.is_none();
        Ok::<_, StoreError>((found, gone))
    }
    .await;
    match res {
        Ok((true, true)) => {
            r.add(
                "write",
                Status::Ok,
                format!("PUT, HEAD, DELETE of a scratch object under {key:?} work"),
            );
            true
        }
        Ok((found, _)) => {
            let _ = s.delete(key).await;
            r.add(
                "write",
                Status::Fail,
                format!(
                    "scratch object: written but {} (an eventually consistent or broken server)",
                    if !found {
                        "not found by HEAD"
                    } else {
                        "still there after DELETE"
                    }
                ),
            );
            false
        }
        Err(e) => {
            let _ = s.delete(key).await;
            r.add("write", Status::Fail, format!("cannot write under the prefix ({e}): mount with --read-only, or grant s3:PutObject and s3:DeleteObject"));
            false
        }
    }
}

async fn conditions(r: &mut Report, s: &dyn ObjectStore, key: &str) {
    match probe::probe(s, key).await {
        Ok(found) if found == probe::Enforced::ALL => {
            r.add("conditional writes", Status::Ok, found.describe())
        }
        Ok(found) => r.add(
            "conditional writes",
            Status::Warn,
            format!("{}; fine when one host writes the prefix", found.describe()),
        ),
        Err(e) => r.add(
            "conditional writes",
            Status::Warn,
            format!("cannot probe: {e}"),
        ),
    }
}

/// What the server does with each server-side encryption mode, on scratch objects.
async fn encryption(r: &mut Report, cfg: &DoctorConfig, key: &str) {
    let kms = Sse::Kms {
        key_id: cfg.enc.kms_key_id.clone(),
        bucket_key: false,
    };
    // A throwaway key, never used for data.
    let random = crate::sys::random_bytes::<32>();
    let ssec = CustomerKeys::new(vec![CustomerKey::new(&random)]).map(|k| Sse::C(Arc::new(k)));
    let modes = [
        ("sse-s3", Some(Sse::S3)),
        ("sse-kms", Some(kms)),
        ("sse-c", ssec),
    ];
    for (name, sse) in modes {
        let Some(sse) = sse else { continue };
        let s3 = S3Config {
            sse,
            ..cfg.s3.clone()
        };
        let res = async {
            let store = S3Store::connect(&s3).await?;
            // The store checks that the server echoes the encryption it was asked for.
            let put = store
                .put(key, Bytes::from_static(b"sealfs doctor"), &UserMeta::new())
                .await;
            let cleanup = store.delete(key).await;
            put?;
            cleanup
        }
        .await;
        match res {
            Ok(()) => r.add(
                name,
                Status::Ok,
                format!("the server applies {name} and says so: --encryption {name} works"),
            ),
            Err(StoreError::EncryptionNotApplied(m)) => r.add(
                name,
                Status::Warn,
                format!("the server ignores {name} ({m}): a {name} mount is refused here"),
            ),
            Err(e) => r.add(name, Status::Warn, format!("{name} refused: {e}")),
        }
    }
}

async fn versioning(r: &mut Report, s: &dyn ObjectStore) {
    match s.versioning().await {
        Ok(Some(status)) if status == "Enabled" => r.add("versioning", Status::Ok, "enabled: overwritten and deleted files can be restored (mount --as-of)"),
        Ok(Some(status)) => r.add("versioning", Status::Ok, format!("{status}: versions kept while it was on can be restored (mount --as-of)")),
        Ok(None) => r.add("versioning", Status::Ok, "off: an overwrite or rm is final (enable it on the bucket to restore with mount --as-of)"),
        Err(e) => r.add("versioning", Status::Ok, format!("not available on this server ({e}): an overwrite or rm is final")),
    }
}

/// The prefix's config (mode, keys, wrapping) and whether the given key opens it.
async fn prefix(r: &mut Report, s: &dyn ObjectStore, cfg: &DoctorConfig) {
    let key = Layout::new(&cfg.prefix).config_key();
    let config = match store::get_all(s, &key).await {
        Ok(Some(bytes)) => match PrefixConfig::from_json(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                return r.add(
                    "prefix",
                    Status::Fail,
                    format!("{key}: not a sealfs config ({e})"),
                )
            }
        },
        Ok(None) => None,
        Err(e) => return r.add("prefix", Status::Fail, format!("cannot read {key}: {e}")),
    };
    let url = format!("s3://{}/{}", cfg.s3.bucket, cfg.prefix);
    let Some(c) = config else {
        let status = match cfg.enc.mode {
            Mode::None => Status::Ok,
            _ => Status::Fail,
        };
        let more = match cfg.enc.mode {
            Mode::None => String::new(),
            m => format!(": run `sealfs init {url} --encryption {m} ...` first"),
        };
        return r.add(
            "prefix",
            status,
            format!("{url} has no sealfs config: it mounts in mode none{more}"),
        );
    };
    let wrapping = match (c.encryption, c.wrapping, &c.kms_key_id) {
        (Mode::Client, Some(Wrapping::Kms), Some(id)) => {
            format!(", keyring wrapped by KMS key {id}")
        }
        (Mode::Client, _, _) => ", keyring wrapped by a key file".into(),
        _ => String::new(),
    };
    let keys = match c.encryption {
        Mode::Client => format!(
            ", {} data key version(s), new files use {}",
            c.keys.len(),
            c.current_key
        ),
        _ => String::new(),
    };
    r.add(
        "prefix",
        Status::Ok,
        format!(
            "{url}: mode {}, config format {}{keys}{wrapping}",
            c.encryption, c.sealfs
        ),
    );
    // The key must be the user's: a mount never takes it from the bucket's config either.
    let missing = match (c.encryption, c.wrapping) {
        (Mode::Client, Some(Wrapping::Kms)) if cfg.enc.kms_key_id.is_none() => Some("--kms-key-id"),
        (Mode::Client, Some(Wrapping::Kms)) => None,
        (Mode::Client, _) if cfg.enc.key_file.is_none() => Some("--key-file"),
        (Mode::SseC, _) if cfg.enc.sse_c_key_file.is_none() => Some("--sse-c-key-file"),
        _ => None,
    };
    if let Some(option) = missing {
        return r.add(
            "key",
            Status::Warn,
            format!("give {option} to check that it opens the prefix"),
        );
    }
    if !matches!(c.encryption, Mode::Client | Mode::SseC) {
        return;
    }
    let enc = cfg.enc.with_mode(c.encryption);
    let opened = async {
        let sse = setup::sse_for(&enc)?;
        let store = S3Store::connect(&S3Config {
            sse,
            ..cfg.s3.clone()
        })
        .await?;
        setup::open(
            &store,
            &cfg.s3.bucket,
            url.trim_end_matches('/'),
            &cfg.prefix,
            &enc,
        )
        .await?;
        Ok::<_, setup::SetupError>(())
    }
    .await;
    match opened {
        Ok(()) => r.add("key", Status::Ok, "the given key opens the prefix"),
        Err(e) => r.add("key", Status::Fail, e.to_string()),
    }
}

/// What a mount needs of this machine.
fn fuse(r: &mut Report, allow_other: bool) {
    let root = crate::sys::ids().0 == 0;
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => r.add("fuse", Status::Ok, "/dev/fuse opens"),
        Err(e) => r.add("fuse", Status::Fail, format!("/dev/fuse: {e} (load the fuse module: modprobe fuse; in a container, pass --device /dev/fuse)")),
    }
    let fusermount = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    match (fusermount, root) {
        (true, _) => r.add("fusermount3", Status::Ok, "installed"),
        (false, true) => r.add(
            "fusermount3",
            Status::Warn,
            "missing: root mounts without it, but install fuse3 for umount by users",
        ),
        (false, false) => r.add(
            "fusermount3",
            Status::Fail,
            "missing: install fuse3 (apt-get install fuse3)",
        ),
    }
    if allow_other && !root {
        let conf = std::fs::read_to_string(Path::new("/etc/fuse.conf")).unwrap_or_default();
        let allowed = conf.lines().any(|l| l.trim() == "user_allow_other");
        match allowed {
            true => r.add(
                "allow-other",
                Status::Ok,
                "/etc/fuse.conf has user_allow_other",
            ),
            false => r.add(
                "allow-other",
                Status::Fail,
                "--allow-other needs user_allow_other in /etc/fuse.conf (or mount as root)",
            ),
        }
    }
}
