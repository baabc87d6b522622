//! How mount(8) and fstab reach sealfs: its helper command lines become `sealfs mount ...`,
//! and `-o` options fold into the long options they name, so an fstab line and a command
//! line mean the same. No I/O here.

use std::path::Path;

use clap::ValueEnum;

use super::{
    parse_moment, parse_octal, parse_size, CliError, ConflictPolicy, ExclusiveScope, MountArgs,
};
use crate::crypto::mode::Mode;

/// Turn the ways mount(8) runs a filesystem into `sealfs mount ...`:
/// - as `/sbin/mount.fuse.sealfs SOURCE DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]` (a symlink to
///   sealfs, used by `mount -t fuse.sealfs` and fstab): `-f` there means "fake", so it and the
///   other flags that only concern mount(8) are dropped;
/// - as `sealfs SOURCE DIR -o OPTS` (what fuse3's `mount.fuse` runs for `sealfs#SOURCE`).
///
/// Any other command line is returned unchanged.
pub fn helper_args(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use std::ffi::OsString;
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let as_helper = prog.starts_with("mount.") && prog.ends_with("sealfs");
    let bare_url = argv
        .get(1)
        .is_some_and(|a| a.to_string_lossy().starts_with("s3://"));
    if !as_helper && !bare_url {
        return argv;
    }
    let mut out: Vec<OsString> = vec!["sealfs".into(), "mount".into()];
    let mut it = argv.into_iter().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => {
                out.push(a);
                out.extend(it.next());
            }
            Some("-N" | "-t") if as_helper => {
                it.next();
            }
            Some(flag) if as_helper && flag.starts_with('-') && flag.len() > 1 => {
                if let Some(opts) = flag.strip_prefix("-o") {
                    out.push("-o".into());
                    out.push(opts.into());
                }
                // -s (sloppy), -f (fake), -n (no mtab), -v: mount(8)'s business.
            }
            _ => out.push(a),
        }
    }
    out
}

impl MountArgs {
    /// Fold `-o` options into the long options (so fstab lines and flags mean the same).
    pub(super) fn apply_options(&mut self) -> Result<(bool, bool, bool), CliError> {
        let (mut allow_root, mut auto_unmount, mut default_permissions) = (false, false, true);
        for opt in std::mem::take(&mut self.options) {
            let (k, v) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
            let bad = || CliError::BadValue(k.to_string(), v.to_string());
            match k {
                "" | "rw" | "defaults" | "_netdev" | "nofail" | "auto" | "noauto" | "user"
                | "nouser" | "dev" | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "atime"
                | "noatime" | "relatime" => {}
                "ro" => self.read_only = true,
                "as_of" | "as-of" => self.as_of = Some(parse_moment(v).map_err(|_| bad())?),
                "allow_other" => self.allow_other = true,
                "allow_root" => allow_root = true,
                "auto_unmount" => auto_unmount = true,
                "default_permissions" => default_permissions = true,
                "no_default_permissions" => default_permissions = false,
                "endpoint_url" | "endpoint-url" => self.s3.endpoint_url = Some(v.to_string()),
                "region" => self.s3.region = Some(v.to_string()),
                "profile" => self.profile = Some(v.to_string()),
                "ca_bundle" | "ca-bundle" => self.s3.ca_bundle = Some(v.into()),
                "force_path_style" | "force-path-style" => self.s3.force_path_style = true,
                "uid" => self.uid = Some(v.parse().map_err(|_| bad())?),
                "gid" => self.gid = Some(v.parse().map_err(|_| bad())?),
                "file_mode" | "file-mode" => self.file_mode = parse_octal(v).map_err(|_| bad())?,
                "dir_mode" | "dir-mode" => self.dir_mode = parse_octal(v).map_err(|_| bad())?,
                "metadata_ttl" | "metadata-ttl" => {
                    self.metadata_ttl = v.parse().map_err(|_| bad())?
                }
                "log_file" | "log-file" => self.log_file = Some(v.into()),
                "metrics_addr" | "metrics-addr" => {
                    self.metrics_addr = Some(v.parse().map_err(|_| bad())?)
                }
                "cache_size_mib" | "cache-size-mib" => {
                    self.cache_size_mib = v.parse().map_err(|_| bad())?
                }
                "cache_dir" | "cache-dir" => self.cache_dir = Some(v.into()),
                "cache_dir_size" | "cache-dir-size" => {
                    self.cache_dir_size = Some(parse_size(v).map_err(|_| bad())?)
                }
                "readahead_mib" | "readahead-mib" => {
                    self.readahead_mib = v.parse().map_err(|_| bad())?
                }
                "request_timeout" | "request-timeout" => {
                    self.request_timeout = v.parse().map_err(|_| bad())?
                }
                "exclusive_create" | "exclusive-create" => {
                    self.exclusive_create = ExclusiveScope::from_str(v, true).map_err(|_| bad())?
                }
                "stale_upload_age" | "stale-upload-age" => {
                    self.stale_upload_age = humantime::parse_duration(v).map_err(|_| bad())?
                }
                "keep_stale_uploads" | "keep-stale-uploads" => self.keep_stale_uploads = true,
                "on_conflict" | "on-conflict" => {
                    self.on_conflict = ConflictPolicy::from_str(v, true).map_err(|_| bad())?
                }
                "key_file" | "key-file" => self.enc.key_file = Some(v.into()),
                "sse_c_key_file" | "sse-c-key-file" => self.enc.sse_c_key_file = Some(v.into()),
                "kms_key_id" | "kms-key-id" => self.enc.kms_key_id = Some(v.to_string()),
                "bucket_key" | "bucket-key" => self.enc.bucket_key = true,
                // mount(8) swallows `encryption=` (a legacy loop-device option): `enc=` works.
                "encryption" | "enc" => self.enc.encryption = Mode::from_name(v).ok_or_else(bad)?,
                _ => return Err(CliError::UnknownOption(opt.clone())),
            }
        }
        Ok((allow_root, auto_unmount, default_permissions))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::mount::MountPlan;

    /// The plan `sealfs mount` makes of command line `argv` for the user `ids`.
    fn plan_of<I, T>(argv: I, ids: (u32, u32)) -> Result<MountPlan, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let Command::Mount(m) = Cli::parse_from(argv).command else {
            panic!("not a mount command line")
        };
        m.into_plan(ids)
    }

    #[test]
    fn mount_helper_command_lines_become_sealfs_mount() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            helper_args(args(&[
                "/sbin/mount.fuse.sealfs",
                "s3://b/p",
                "/mnt",
                "-n",
                "-o",
                "rw,_netdev,key_file=/k",
                "-t",
                "fuse.sealfs"
            ])),
            args(&[
                "sealfs",
                "mount",
                "s3://b/p",
                "/mnt",
                "-o",
                "rw,_netdev,key_file=/k"
            ])
        );
        assert_eq!(
            helper_args(args(&["sealfs", "s3://b", "/mnt", "-o", "ro"])),
            args(&["sealfs", "mount", "s3://b", "/mnt", "-o", "ro"])
        );
        let normal = args(&["sealfs", "mount", "s3://b", "/mnt", "-f"]);
        assert_eq!(helper_args(normal.clone()), normal);
        let plan = plan_of(
            helper_args(args(&[
                "mount.sealfs",
                "s3://b/p",
                "/mnt",
                "-sfv",
                "-oro,uid=3",
            ])),
            (0, 0),
        )
        .unwrap();
        assert!(plan.fs.read_only && !plan.foreground);
        assert_eq!(plan.fs.defaults.uid, 3);
    }

    #[test]
    fn dash_o_options_set_the_long_options() {
        let opts = "ro,allow_other,uid=7,file_mode=600";
        let plan = plan_of(["sealfs", "mount", "s3://b/p", "/mnt", "-o", opts], (1, 2)).unwrap();
        assert!(plan.fs.read_only && plan.allow_other);
        assert_eq!(plan.fs.defaults.uid, 7);
        assert_eq!(plan.fs.defaults.gid, 2);
        assert_eq!(plan.fs.defaults.file_mode, 0o600);
        assert!(plan_of(["sealfs", "mount", "s3://b", "/mnt", "-o", "bogus"], (0, 0)).is_err());
    }
}
