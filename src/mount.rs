//! Wiring: the one place that builds the store, the filesystem and the FUSE session from a
//! `MountPlan`, and runs it in the foreground or as a daemon.
//!
//! A background mount forks before any thread exists; the parent returns only when the child
//! reports that the kernel mount is ready (exit 0) or why it failed (message, exit 1), so
//! `sealfs mount` never leaves a half-mounted directory behind.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::cache::disk::{Contents, DiskCache, DiskCacheConfig};
use crate::crypto::local::LocalKey;
use crate::fs::{Fs, FsConfig};
use crate::fuse::{self, FuseFs, MountOptions};
use crate::layout::Layout;
use crate::read::Fetcher;
use crate::session::{Marked, Session, SessionConfig};
use crate::setup::{self, EncryptionConfig};
use crate::store::asof::AsOf;
use crate::store::counted::{Counted, Counters};
use crate::store::probe::{self, Enforced};
use crate::store::s3::{S3Config, S3Store};
use crate::store::{ObjectStore, Sse, StoreError};
use crate::sys;

/// Everything a mount needs, validated (`cli` makes it from the command line).
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub s3: S3Config,
    pub fs: FsConfig,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub auto_unmount: bool,
    pub default_permissions: bool,
    pub log_file: Option<PathBuf>,
    /// Show the prefix as it was at this moment (`--as-of`; the mount is read-only).
    pub as_of: Option<std::time::SystemTime>,
    /// Where to serve Prometheus metrics (`--metrics-addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub fsname: String,
    pub enc: EncryptionConfig,
    /// A read-write mount's session and its cleanup of crashed mounts' uploads.
    pub sessions: SessionConfig,
}

/// Makes the store a mount or a tool works on: the seam between the wiring and S3, so that
/// `run` and the tools can be driven by another store (an in-memory one in a test binary).
#[async_trait::async_trait]
pub trait Connect: Send + Sync {
    /// A store asking `sse` of the server, its bucket checked; `Err` is one line for the user.
    async fn connect(&self, sse: Sse) -> std::result::Result<Arc<dyn ObjectStore>, String>;
}

/// `Connect` to S3 (or an S3-compatible server) with the given settings.
pub struct S3Connector(pub S3Config);

#[async_trait::async_trait]
impl Connect for S3Connector {
    async fn connect(&self, sse: Sse) -> std::result::Result<Arc<dyn ObjectStore>, String> {
        let s3 = S3Config {
            sse,
            ..self.0.clone()
        };
        let store = S3Store::connect(&s3).await.map_err(|e| explain(&e, &s3))?;
        store.check_bucket().await.map_err(|e| explain(&e, &s3))?;
        Ok(Arc::new(store))
    }
}

/// The error of a background mount whose child already told the parent (and the user) why it
/// failed: the binary exits 1 without printing it again.
#[derive(Debug, thiserror::Error)]
#[error("the mount failed (reported)")]
pub struct Reported;

pub fn run(plan: MountPlan, connect: &dyn Connect) -> Result<()> {
    let log = match &plan.log_file {
        Some(path) => Some(
            sys::private_log(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?,
        ),
        None => None,
    };
    if plan.foreground {
        return serve(&plan, connect, None);
    }
    let daemon = sys::daemonize().context("cannot fork into the background")?;
    if let Some(log) = &log {
        sys::detach_stdio(Some(log)).ok();
    }
    serve(&plan, connect, Some((daemon, log)))
}

/// Explain a failed bucket check in one line a user can act on.
fn explain(e: &StoreError, s3: &S3Config) -> String {
    let bucket = &s3.bucket;
    match e {
        StoreError::NoSuchBucket(_) => format!("bucket {bucket} does not exist"),
        StoreError::NotFound(_) => format!("bucket {bucket} does not exist"),
        StoreError::AccessDenied(m) => {
            format!("access to bucket {bucket} denied (check AWS credentials and permissions): {m}")
        }
        StoreError::NoCredentials(_) | StoreError::Config(_) => e.to_string(),
        StoreError::Unreachable(m) => format!(
            "cannot reach the S3 endpoint {}: {m}{}",
            s3.endpoint_url
                .as_deref()
                .unwrap_or("(from the AWS configuration)"),
            crate::sdk::trust_hint(m)
        ),
        other => format!("cannot use bucket {bucket}: {other}"),
    }
}

/// What the server enforces of conditional writes (one probe on a scratch key in the prefix's
/// reserved area), said in one log line. A read-only mount, or one that sends no conditions
/// (`--on-conflict overwrite`), does not ask. A probe that fails (no delete permission, say)
/// assumes S3's behaviour: the headers cost nothing where they are ignored.
async fn probe_conditions(
    store: &dyn ObjectStore,
    plan: &MountPlan,
    session: Option<&Session>,
) -> Enforced {
    if plan.fs.read_only || !plan.fs.write.on_conflict.is_conditional() {
        return Enforced::ALL;
    }
    let scratch = match session {
        Some(s) => s.scratch_key("probe"),
        None => {
            let id = sys::random_hex::<8>();
            Layout::new(&plan.fs.prefix).unlinked_key(&format!("probe-{id}"))
        }
    };
    match probe::probe(store, &scratch).await {
        Ok(found) if found == Enforced::ALL => {
            tracing::info!("{}", found.describe());
            found
        }
        Ok(found) => {
            tracing::warn!("{}", found.describe());
            found
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not probe the server's conditional writes");
            Enforced::ALL
        }
    }
}

/// FUSE worker threads reading requests from the kernel. Each only decodes a request and
/// hands it to the async runtime (or answers a cached lookup), so a few keep the kernel's
/// queue drained; more would just contend for the 2-4 cores a mount typically has.
const FUSE_THREADS: usize = 4;

/// What a mount serves: the filesystem, the counters of the store under it, and (read-write)
/// the mount's session, ended at a clean unmount.
pub struct Built {
    pub fs: Arc<Fs>,
    pub counters: Arc<Counters>,
    pub session: Option<Arc<Session>>,
}

/// A read-write mount's session (`session`): registered, kept alive, and used once to clean
/// up what crashed mounts left under the prefix. A mount whose session cannot be written
/// still serves files, its uploads unmarked (one warning).
async fn start_session(store: &Arc<dyn ObjectStore>, plan: &MountPlan) -> Option<Arc<Session>> {
    if plan.fs.read_only {
        return None;
    }
    let prefix = &plan.fs.prefix;
    let session = match Session::start(store.clone(), prefix, plan.sessions.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register this mount's session: uploads a crash would leave are not marked for cleanup");
            return None;
        }
    };
    if let Err(e) = session.clean_up(prefix, std::time::SystemTime::now()).await {
        tracing::warn!(error = %e, "could not look for uploads crashed mounts left");
    }
    session.keep_alive();
    Some(session)
}

/// The point-in-time view of `prefix` at `moment`, or why there cannot be one.
async fn as_of(
    store: Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    moment: std::time::SystemTime,
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    let shown = humantime::format_rfc3339_seconds(moment);
    let view = AsOf::new(store, prefix, moment).await.map_err(|e| {
        format!("cannot list the versions of s3://{bucket}/{prefix} for --as-of {shown} (a versioned bucket is needed): {e}")
    })?;
    tracing::info!(
        "read-only view of s3://{bucket}/{prefix} as of {shown}: {} objects",
        view.len()
    );
    Ok(Arc::new(view))
}

/// The one builder of a mount's parts: the store (with the SSE the mode asks), the prefix's
/// checked mode and keyring, the request counters and the filesystem. `Err` is one line for
/// the user.
pub async fn build(plan: &MountPlan, connect: &dyn Connect) -> std::result::Result<Built, String> {
    let sse = setup::sse_for(&plan.enc).map_err(|e| e.to_string())?;
    let mut store = connect.connect(sse).await?;
    if let Some(moment) = plan.as_of {
        store = as_of(store, &plan.s3.bucket, &plan.fs.prefix, moment).await?;
    }
    let url = format!("s3://{}/{}", plan.s3.bucket, plan.fs.prefix);
    let keys = setup::open(
        &*store,
        &plan.s3.bucket,
        url.trim_end_matches('/'),
        &plan.fs.prefix,
        &plan.enc,
    )
    .await
    .map_err(|e| e.to_string())?;
    let session = start_session(&store, plan).await;
    let enforced = probe_conditions(&*store, plan, session.as_deref()).await;
    let counted = Counted::new(store);
    let counters = counted.counters();
    let store: Arc<dyn ObjectStore> = Arc::new(counted);
    // Markers are written through the counter: `sealfs stats` shows what they cost.
    let (store, unlinked_names) = match &session {
        Some(s) => {
            let marked: Arc<dyn ObjectStore> = Arc::new(Marked::new(store, s.clone()));
            (marked, format!("{}/unlinked-", s.id()))
        }
        None => (store, String::new()),
    };
    let disk = match &plan.fs.read.disk {
        Some(cfg) => Some(open_disk_cache(cfg, plan, keys.is_some())?),
        None => None,
    };
    let fetcher = Fetcher::with_disk(store.clone(), plan.fs.read.clone(), disk);
    let fs_cfg = FsConfig {
        keys,
        enforced,
        unlinked_names,
        ..plan.fs.clone()
    };
    Ok(Built {
        fs: Arc::new(Fs::new(store, fetcher, fs_cfg)),
        counters,
        session,
    })
}

/// The mount's disk cache. Its entries are named under the mount's scope (endpoint, bucket,
/// prefix), so one directory used by different buckets over time never mixes them up.
fn open_disk_cache(
    cfg: &DiskCacheConfig,
    plan: &MountPlan,
    client: bool,
) -> std::result::Result<Arc<DiskCache>, String> {
    // Inside the mount, the cache would write through the mount it serves.
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if abs(&cfg.dir).starts_with(abs(&plan.mountpoint)) {
        return Err(format!(
            "cache directory {} is inside the mount point {}: put it on a local file system",
            cfg.dir.display(),
            plan.mountpoint.display()
        ));
    }
    let endpoint = plan.s3.endpoint().unwrap_or_else(|| "aws".to_string());
    let scope = format!("{endpoint}\n{}\n{}", plan.s3.bucket, plan.fs.prefix);
    let contents = |key: &std::path::Path| match client {
        true => Ok(Contents::AsFetched),
        false => LocalKey::load_or_create(key).map(|k| Contents::Sealed(Box::new(k))),
    };
    let disk = DiskCache::open(cfg, &scope, contents).map_err(|e| e.to_string())?;
    tracing::info!(
        dir = %disk.dir().display(),
        budget = disk.budget(),
        held = disk.bytes(),
        "disk cache: {}",
        if client { "ciphertext as stored in the bucket" } else { "entries sealed under the local key" }
    );
    Ok(disk)
}

/// Tells the user (directly, or through the parent of a background mount) how starting
/// went: a background mount's parent exits only when it hears.
struct Starting {
    daemon: Option<sys::Daemon>,
    log: Option<std::fs::File>,
}

impl Starting {
    fn fail(self, msg: String) -> Result<()> {
        match self.daemon {
            Some(d) => {
                d.report(Err(msg));
                Err(Reported.into())
            }
            None => bail!(msg),
        }
    }

    fn ready(self) {
        if let Some(d) = self.daemon {
            d.report(Ok(()));
            if self.log.is_none() {
                sys::detach_stdio(None).ok();
            }
        }
    }
}

/// Why `mountpoint` cannot take a mount, if it cannot.
fn check_mountpoint(mountpoint: &std::path::Path) -> Option<String> {
    if !mountpoint.is_dir() {
        return Some(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        ));
    }
    sys::is_mount_point(mountpoint).then(|| {
        format!(
            "mount point {} is busy: something is already mounted there",
            mountpoint.display()
        )
    })
}

fn serve(
    plan: &MountPlan,
    connect: &dyn Connect,
    daemon: Option<(sys::Daemon, Option<std::fs::File>)>,
) -> Result<()> {
    let (daemon, log) = daemon.map_or((None, None), |(d, l)| (Some(d), l));
    let starting = Starting { daemon, log };
    if let Some(why) = check_mountpoint(&plan.mountpoint) {
        return starting.fail(why);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sealfs-io")
        .build()
        .context("cannot start the async runtime")?;
    let Built {
        fs,
        counters,
        session,
    } = match rt.block_on(build(plan, connect)) {
        Ok(b) => b,
        Err(e) => return starting.fail(e),
    };
    counters.register(crate::metrics::global());
    // Asked for by the user, so a port that cannot be bound stops the mount.
    let _metrics = match plan.metrics_addr {
        Some(addr) => match rt.block_on(crate::metrics::serve(addr)) {
            Ok(task) => Some(task),
            Err(e) => return starting.fail(format!("cannot serve metrics on {addr}: {e}")),
        },
        None => None,
    };
    let opts = MountOptions {
        fsname: plan.fsname.clone(),
        read_only: plan.fs.read_only,
        allow_other: plan.allow_other,
        allow_root: plan.allow_root,
        auto_unmount: plan.auto_unmount,
        default_permissions: plan.default_permissions,
        threads: FUSE_THREADS,
    };
    let fuse_fs = FuseFs::new(fs, rt.handle().clone());
    let canonical = plan.mountpoint.canonicalize().ok();
    let mut mounted = match fuse::mount(fuse_fs, &plan.mountpoint, &opts) {
        Ok(m) => m,
        Err(e) => {
            let where_ = plan.mountpoint.display();
            return starting.fail(format!("cannot mount at {where_}: {e}"));
        }
    };
    raise_read_ahead(canonical.as_deref());
    // Counters are a diagnostic: a mount without its control socket still serves files. The
    // socket listens before the parent returns, so `sealfs stats` works as soon as `mount` did.
    let control = {
        let _guard = rt.enter();
        crate::control::serve(
            &crate::control::socket_dir(),
            &plan.mountpoint,
            counters.clone(),
        )
    };
    let _control = match control {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: `sealfs stats` will not see this mount");
            None
        }
    };
    starting.ready();
    // After detaching: `mount` and fstab helpers print nothing on success.
    tracing::info!(mountpoint = %plan.mountpoint.display(), "mounted {}", plan.fsname);
    if let Some(line) = rt.block_on(crate::sdk::trust_line(&plan.s3.aws)) {
        tracing::info!("{line}");
    }
    rt.spawn(unmount_on_signal(mounted.unmounter()));
    mounted.run().context("FUSE session failed")?;
    if let Some(s) = session {
        rt.block_on(s.end());
    }
    let requests = counters.report().replace('\n', ", ");
    tracing::info!(
        "unmounted; S3 requests: {}",
        requests.trim_end_matches(", ")
    );
    Ok(())
}

/// Kernel readahead of the mount, KiB: one FUSE read request at most (`fuse::MAX_WRITE`).
const KERNEL_READ_AHEAD_KIB: u32 = 1024;

/// Let the kernel read ahead in 1 MiB requests instead of its default 128 KiB: FUSE can only
/// lower the device's readahead at init, so it is raised in sysfs (root only; a user's mount
/// keeps the default). Fewer, larger requests cost fewer round trips through the daemon
/// (a 2 GiB `cat` 5.8 -> 5.3 s in client mode here, two runs each).
fn raise_read_ahead(canonical: Option<&std::path::Path>) {
    let Some(dev) = canonical.and_then(sys::mount_device) else {
        return;
    };
    match sys::set_read_ahead(&dev, KERNEL_READ_AHEAD_KIB) {
        Ok(()) => tracing::debug!(dev, kib = KERNEL_READ_AHEAD_KIB, "kernel readahead raised"),
        Err(e) => tracing::debug!(dev, error = %e, "kernel readahead left at its default"),
    }
}

/// SIGINT or SIGTERM unmounts (the FUSE session then ends, after `destroy` has flushed).
async fn unmount_on_signal(mut unmounter: fuse::Unmounter) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler: only SIGINT unmounts");
            None
        }
    };
    let sigterm = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
    }
    tracing::info!("signal received, unmounting");
    // umount2 or fusermount3: blocking calls, kept off the runtime's worker threads.
    match tokio::task::spawn_blocking(move || unmounter.unmount()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "unmount failed (is the mount busy?)"),
        Err(e) => tracing::error!(error = %e, "unmount task failed"),
    }
}
