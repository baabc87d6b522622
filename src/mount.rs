//! Wiring: the one place that builds the store, the filesystem and the FUSE session from a
//! `MountPlan`, and runs it in the foreground or as a daemon.
//!
//! A background mount forks before any thread exists; the parent returns only when the child
//! reports that the kernel mount is ready (exit 0) or why it failed (message, exit 1), so
//! `sealfs mount` never leaves a half-mounted directory behind.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::cli::MountPlan;
use crate::fs::Fs;
use crate::fuse::{self, FuseFs, MountOptions};
use crate::setup;
use crate::store::counted::Counted;
use crate::store::s3::{S3Config, S3Store};
use crate::store::{ObjectStore, Sse, StoreError};
use crate::sys;

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
    if let Some(profile) = &plan.profile {
        // Still single-threaded: the S3 and KMS clients both read it from the AWS chain.
        std::env::set_var("AWS_PROFILE", profile);
    }
    let log = match &plan.log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
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
        StoreError::NoCredentials(_) => e.to_string(),
        StoreError::Unreachable(m) => format!(
            "cannot reach the S3 endpoint {}: {m}",
            s3.endpoint_url
                .as_deref()
                .unwrap_or("(from the AWS configuration)")
        ),
        other => format!("cannot use bucket {bucket}: {other}"),
    }
}

fn serve(
    plan: &MountPlan,
    connect: &dyn Connect,
    daemon: Option<(sys::Daemon, Option<std::fs::File>)>,
) -> Result<()> {
    let (daemon, log) = match daemon {
        Some((d, l)) => (Some(d), l),
        None => (None, None),
    };
    let fail = |daemon: Option<sys::Daemon>, msg: String| -> Result<()> {
        match daemon {
            Some(d) => {
                d.report(Err(msg));
                Err(Reported.into())
            }
            None => bail!(msg),
        }
    };
    if !plan.mountpoint.is_dir() {
        return fail(
            daemon,
            format!(
                "mount point {} is not a directory",
                plan.mountpoint.display()
            ),
        );
    }
    if sys::is_mount_point(&plan.mountpoint) {
        return fail(
            daemon,
            format!(
                "mount point {} is busy: something is already mounted there",
                plan.mountpoint.display()
            ),
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sealfs-io")
        .build()
        .context("cannot start the async runtime")?;
    let sse = match setup::sse_for(&plan.enc) {
        Ok(sse) => sse,
        Err(e) => return fail(daemon, e.to_string()),
    };
    let store = match rt.block_on(connect.connect(sse)) {
        Ok(s) => s,
        Err(e) => return fail(daemon, e),
    };
    let url = format!("s3://{}/{}", plan.s3.bucket, plan.fs.prefix);
    let keys = rt.block_on(setup::open(
        &*store,
        &plan.s3.bucket,
        url.trim_end_matches('/'),
        &plan.fs.prefix,
        &plan.enc,
    ));
    let mut fs_cfg = plan.fs.clone();
    fs_cfg.keys = match keys {
        Ok(k) => k,
        Err(e) => return fail(daemon, e.to_string()),
    };
    let counted = Counted::new(store);
    let counters = counted.counters();
    let fs = Arc::new(Fs::new(Arc::new(counted), fs_cfg));
    let opts = MountOptions {
        fsname: plan.fsname.clone(),
        read_only: plan.fs.read_only,
        allow_other: plan.allow_other,
        allow_root: plan.allow_root,
        auto_unmount: plan.auto_unmount,
        default_permissions: plan.default_permissions,
        threads: 4,
    };
    let mut mounted = match fuse::mount(
        FuseFs::new(fs, rt.handle().clone()),
        &plan.mountpoint,
        &opts,
    ) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                daemon,
                format!("cannot mount at {}: {e}", plan.mountpoint.display()),
            )
        }
    };
    if let Some(d) = daemon {
        d.report(Ok(()));
        if log.is_none() {
            sys::detach_stdio(None).ok();
        }
    }
    // After detaching: `mount` and fstab helpers print nothing on success.
    tracing::info!(mountpoint = %plan.mountpoint.display(), "mounted {}", plan.fsname);
    // Counters are a diagnostic: a mount without its control socket still serves files.
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
    let mut unmounter = mounted.unmounter();
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received, unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::error!(error = %e, "unmount failed (is the mount busy?)");
        }
    });
    mounted.run().context("FUSE session failed")?;
    let requests = counters.report().replace('\n', ", ");
    tracing::info!(
        "unmounted; S3 requests: {}",
        requests.trim_end_matches(", ")
    );
    Ok(())
}
