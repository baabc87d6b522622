//! The FUSE session: mount options, mounting `FuseFs` at a directory, and unmounting it.

use std::path::{Path, PathBuf};

use super::FuseFs;

/// How to mount: the kernel-facing options.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub fsname: String,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub auto_unmount: bool,
    pub default_permissions: bool,
    /// FUSE worker threads reading requests from the kernel (the work itself runs on tokio).
    pub threads: usize,
}

/// A mounted session; `run` serves it until it is unmounted.
pub struct Mounted {
    session: fuser::Session<FuseFs>,
    mountpoint: PathBuf,
}

/// Unmounts the session's mountpoint (from a signal handler).
pub struct Unmounter(PathBuf);

impl Unmounter {
    pub fn unmount(&mut self) -> std::io::Result<()> {
        crate::sys::unmount(&self.0)
    }
}

/// Mount `fs` at `mountpoint`. Returns once the kernel has completed the FUSE handshake, so
/// the mount is usable when this returns.
pub fn mount(fs: FuseFs, mountpoint: &Path, opts: &MountOptions) -> std::io::Result<Mounted> {
    use fuser::{MountOption, SessionACL};
    let mut mo = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("sealfs".into()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    mo.push(if opts.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    if opts.default_permissions {
        mo.push(MountOption::DefaultPermissions);
    }
    if opts.auto_unmount {
        mo.push(MountOption::AutoUnmount);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mo;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root || opts.auto_unmount {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    let session = fuser::Session::new(fs, mountpoint, &config)?;
    Ok(Mounted {
        session,
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl Mounted {
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.mountpoint.clone())
    }

    /// Serve requests until the filesystem is unmounted (and `destroy` has flushed).
    ///
    /// fuser 0.18 unmounts the mountpoint *path* again when its session object is dropped,
    /// and its "already unmounted?" test is inverted (fixed upstream in fuser PR #703, not
    /// released): a mount made at the same path while this process was still flushing would
    /// be unmounted by it. So the session's mount handle is never dropped: the process ends
    /// right after this returns, and the kernel has already unmounted.
    pub fn run(self) -> std::io::Result<()> {
        let background = std::mem::ManuallyDrop::new(self.session.spawn()?);
        // SAFETY: `guard` is moved out exactly once and `background` is never used or
        // dropped afterwards, so nothing reads or drops the moved-out field again.
        let guard = unsafe { std::ptr::read(&background.guard) };
        guard
            .join()
            .map_err(|_| std::io::Error::other("the FUSE session thread panicked"))?
    }
}
