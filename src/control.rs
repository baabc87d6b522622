//! The mount's control socket: `sealfs stats MOUNTPOINT` asks a running mount for its S3
//! request counters (what a workload cost) without going through the filesystem.
//!
//! The counters used to be an extended attribute of the mount's root, but answering
//! getxattr at all makes the kernel send every getxattr to sealfs: `ls -l` asks two per file
//! (ACLs, security labels), two FUSE round trips each that no file here can answer. Replying
//! ENOSYS once lets the kernel stop asking.
//!
//! Invariants: one socket per mountpoint, named by a hash of its canonical path, in a
//! directory only its user can enter (mode 0700; the socket itself 0600); a mount removes
//! a stale socket of its mountpoint before binding and its own socket when it ends.
//! The protocol is one reply per connection: the report, then EOF.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::counted::Counters;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}: not a directory sealfs can reach: {1}")]
    BadMountpoint(PathBuf, std::io::Error),
    #[error(
        "no running sealfs mount of yours at {0} (its control socket {1} does not answer: {2})"
    )]
    NotMounted(PathBuf, PathBuf, std::io::Error),
    #[error("control socket {0}: {1}")]
    Socket(PathBuf, std::io::Error),
}

/// Where the control socket of the mount at `mountpoint` lives, in `dir`.
fn socket_path(dir: &Path, mountpoint: &Path) -> Result<PathBuf, ControlError> {
    let canonical = mountpoint
        .canonicalize()
        .map_err(|e| ControlError::BadMountpoint(mountpoint.into(), e))?;
    Ok(dir.join(format!(
        "{:016x}.sock",
        fnv1a(canonical.as_os_str().as_encoded_bytes())
    )))
}

/// The directory of this user's control sockets.
pub fn socket_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sealfs");
    }
    let uid = crate::sys::ids().0;
    if uid == 0 {
        PathBuf::from("/run/sealfs")
    } else {
        std::env::temp_dir().join(format!("sealfs-{uid}"))
    }
}

/// FNV-1a: a stable name for a path (not a security boundary; the directory's mode is).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// A bound control socket; dropping it removes the socket file.
pub struct Listener {
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// Serve `counters` on the control socket of `mountpoint` in `dir` (on the current runtime).
pub fn serve(
    dir: &Path,
    mountpoint: &Path,
    counters: Arc<Counters>,
) -> Result<Listener, ControlError> {
    let path = socket_path(dir, mountpoint)?;
    let dir = path.parent().expect("socket path has a directory");
    let err = |e| ControlError::Socket(path.clone(), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    // Another user's directory (made there first) could hold a socket that answers for us.
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    let owner_only = meta.permissions().mode() & 0o077 == 0;
    if !meta.is_dir() || meta.uid() != crate::sys::ids().0 || !owner_only {
        let e = std::io::Error::other(format!(
            "{} must be a directory owned by this user with mode 0700",
            dir.display()
        ));
        return Err(err(e));
    }
    // A mount that died without cleaning up leaves its socket: the mountpoint is ours now.
    std::fs::remove_file(&path).ok();
    let listener = tokio::net::UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let report = counters.report() + &crate::metrics::global().report();
            tokio::spawn(async move { conn.write_all(report.as_bytes()).await.ok() });
        }
    });
    Ok(Listener { path })
}

/// Ask the mount at `mountpoint` for its counters (`sealfs stats`); its socket is in `dir`.
pub async fn query(dir: &Path, mountpoint: &Path) -> Result<String, ControlError> {
    let path = socket_path(dir, mountpoint)?;
    let not_mounted = |e| ControlError::NotMounted(mountpoint.into(), path.clone(), e);
    let mut conn = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(not_mounted)?;
    let mut out = String::new();
    conn.read_to_string(&mut out).await.map_err(not_mounted)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mount_answers_with_its_counters_and_cleans_up() {
        let runtime = tempfile::tempdir().unwrap();
        let dir = runtime.path().join("sealfs");
        let mnt = tempfile::tempdir().unwrap();
        let counters = Arc::new(Counters::default());
        let listener = serve(&dir, mnt.path(), counters.clone()).unwrap();
        let report = query(&dir, mnt.path()).await.unwrap();
        assert!(report.contains("requests 0\n"), "{report}");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(listener);
        let err = query(&dir, mnt.path()).await.unwrap_err().to_string();
        assert!(err.contains("no running sealfs mount"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_directory_another_user_owns_or_others_may_enter_is_refused() {
        let runtime = tempfile::tempdir().unwrap();
        let mnt = tempfile::tempdir().unwrap();
        let open = runtime.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let counters = Arc::new(Counters::default());
        let err = serve(&open, mnt.path(), counters.clone()).err().unwrap();
        assert!(err.to_string().contains("mode 0700"), "{err}");
        if crate::sys::ids().0 == 0 {
            // Root can make a directory that looks right but belongs to someone else.
            let theirs = runtime.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4242), None).unwrap();
            let err = serve(&theirs, mnt.path(), counters).err().unwrap();
            assert!(err.to_string().contains("owned by this user"), "{err}");
        }
    }
}
