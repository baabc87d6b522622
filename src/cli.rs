//! Command-line definitions, turned into each module's configuration. No I/O here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cache::disk::DiskCacheConfig;
use crate::crypto::keys::Names;
use crate::crypto::mode::Mode;
use crate::fs::{Defaults, ExclusiveCreate, FsConfig};
use crate::mount::MountPlan;
use crate::read::ReadConfig;
use crate::sdk::AwsSettings;
use crate::session::SessionConfig;
use crate::setup::EncryptionConfig;
use crate::store::s3::S3Config;
use crate::write::{OnConflict, WriteConfig};

mod helper;
pub use helper::helper_args;

#[derive(Debug, Parser)]
#[command(
    name = "sealfs",
    version,
    about = "Mount an S3 bucket as a local directory"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the mount variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Mount s3://BUCKET[/PREFIX] at MOUNTPOINT.
    Mount(MountArgs),
    /// Set up a prefix for an encryption mode (creates its config object and keyring).
    Init(InitArgs),
    /// Write a new random 256-bit key file (mode 0600).
    Keygen(KeygenArgs),
    /// Decrypt (and authenticate) one object to stdout, without mounting.
    Cat(ToolArgs),
    /// Authenticate every object under a prefix; report bad or foreign ones (exit 1 if any).
    Verify(ToolArgs),
    /// Move a version-1 client-mode prefix to format 2 in place (encrypted names, sealed
    /// attributes, an authenticated config); resumable. Unmount it everywhere first.
    Migrate(ToolArgs),
    /// List the versions of one file (s3://BUCKET/PREFIX/PATH) in a versioned bucket, newest
    /// first; mount with --as-of TIME to see the prefix as it was then.
    Versions(ToolArgs),
    /// Upload a local file to s3://BUCKET/KEY as a mount would write it (sealed in client
    /// mode, with its mode, owner and mtime).
    Put(PutArgs),
    /// Client mode: add a new data key version for new files and/or rewrap the keyring under
    /// a new key file or KMS key. No object is rewritten; old objects stay readable.
    RotateKey(RotateArgs),
    /// SSE-C: re-encrypt (server-side copy) every object under a prefix that is not under the
    /// first key of --sse-c-key-file with that key.
    Rekey(ToolArgs),
    /// Print the S3 requests (per operation) and bytes a running mount has made so far.
    Stats(StatsArgs),
    /// Check everything a mount of s3://BUCKET[/PREFIX] needs, one line per check (OK, WARN,
    /// FAIL and what to do): endpoint, TLS, credentials, region, bucket, addressing, clock,
    /// writes, what the server enforces, versioning, the prefix's config and key, FUSE.
    /// Exit status 1 when a check fails.
    Doctor(DoctorArgs),
    /// Print a shell completion script to stdout, e.g.
    /// `sealfs completions bash > /usr/share/bash-completion/completions/sealfs`.
    Completions(CompletionsArgs),
    /// Write man pages (sealfs.1 and one per command, sealfs-mount.1, ...) into a directory,
    /// e.g. `sealfs man /usr/local/share/man/man1`.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub target: InitArgs,
    /// Check what `--allow-other` needs too.
    #[arg(long)]
    pub allow_other: bool,
    /// AWS profile, as for `mount --profile`.
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Mountpoint of a running sealfs mount started by this user.
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Local regular file to upload.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: InitArgs,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// s3://BUCKET[/PREFIX] of a client-mode prefix; --key-file gives its current key file
    /// (KMS-wrapped keyrings need no option).
    #[command(flatten)]
    pub target: InitArgs,
    /// Rewrap the keyring under this key file (from now on mount with it).
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
    /// Rewrap the keyring under this KMS key (ARN, id or alias).
    #[arg(long, conflicts_with = "new_key_file")]
    pub new_kms_key_id: Option<String>,
    /// Only rewrap; new files keep using the current data key.
    #[arg(long)]
    pub rewrap_only: bool,
}

/// `cat` / `verify` take what `init` takes: an S3 URL (s3://BUCKET/KEY for cat), connection
/// options and keys; their mode comes from the prefix's config object.
pub type ToolArgs = InitArgs;

/// `--encryption`: the modes as `Mode::name` spells them, listed in `--help`.
fn mode_parser() -> impl clap::builder::TypedValueParser<Value = Mode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Mode::ALL.map(Mode::name))
        .map(|name| Mode::from_name(&name).unwrap_or_default())
}

/// Encryption options shared by `init` and `mount`.
#[derive(Debug, Clone, Args)]
pub struct EncryptionArgs {
    /// Encryption mode; a mount must use the mode
    /// `sealfs init` recorded for the prefix.
    #[arg(long, value_parser = mode_parser(), default_value = "none")]
    pub encryption: Mode,
    /// Key file for `--encryption client` (make one with `sealfs keygen`).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// KMS key (ARN, id or alias) for `--encryption sse-kms`; default: the AWS-managed key.
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// Ask for an S3 Bucket Key with SSE-KMS (fewer KMS calls).
    #[arg(long)]
    pub bucket_key: bool,
    /// SSE-C key file: one 256-bit key per line (base64 or hex), the first used for writes,
    /// the others only to read objects written under them; or 32 raw bytes.
    #[arg(long)]
    pub sse_c_key_file: Option<PathBuf>,
    /// `init --encryption client`: keep object names in the clear (file attributes are still
    /// sealed). Default: names are encrypted.
    #[arg(long)]
    pub plain_names: bool,
}

impl EncryptionArgs {
    /// A key file without a mode names the mode (an fstab line cannot say `encryption=`,
    /// which mount(8) keeps for itself).
    pub fn infer_mode(&mut self) {
        if self.encryption == Mode::None {
            if self.key_file.is_some() {
                self.encryption = Mode::Client;
            } else if self.sse_c_key_file.is_some() {
                self.encryption = Mode::SseC;
            }
        }
    }

    pub fn config(&self) -> EncryptionConfig {
        EncryptionConfig {
            mode: self.encryption,
            key_file: self.key_file.clone(),
            kms_key_id: self.kms_key_id.clone(),
            bucket_key: self.bucket_key,
            sse_c_key_file: self.sse_c_key_file.clone(),
            aws: AwsSettings::default(),
            names: if self.plain_names {
                Names::Plain
            } else {
                Names::Encrypted
            },
        }
    }

    /// The typed configuration, its keys checked to be there for its mode.
    pub fn validated(&self) -> Result<EncryptionConfig, CliError> {
        let cfg = self.config();
        cfg.validate()
            .map_err(|e| CliError::Incomplete(e.to_string()))?;
        Ok(cfg)
    }
}

/// How to reach S3: the same options for every command.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// S3 endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style addressing (http://host/bucket/key), needed by most local servers.
    #[arg(long)]
    pub force_path_style: bool,
    /// Allow SSE-C over plain http to a host other than this machine: every SSE-C request
    /// carries the key, readable by anyone on the path. Refused without this flag.
    #[arg(long)]
    pub allow_plain_http_sse_c: bool,
    /// PEM file of the certificate authorities HTTPS trusts, for S3 and KMS (default:
    /// AWS_CA_BUNDLE, then the profile's ca_bundle, then the system's roots).
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
}

impl S3Args {
    /// The store settings for `bucket` (no SSE: that comes from the prefix's mode).
    pub fn config(&self, bucket: String, request_timeout: Option<Duration>) -> S3Config {
        S3Config {
            bucket,
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            force_path_style: self.force_path_style,
            sse: Default::default(),
            request_timeout,
            aws: AwsSettings {
                profile: None,
                ca_bundle: self.ca_bundle.clone(),
            },
            allow_plain_http_sse_c: self.allow_plain_http_sse_c,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// s3://BUCKET or s3://BUCKET/PREFIX
    pub url: String,
    #[command(flatten)]
    pub enc: EncryptionArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

impl InitArgs {
    /// The store settings and the URL's prefix (empty or ending in '/').
    pub fn s3(&self) -> Result<(S3Config, String), CliError> {
        let (bucket, prefix) = parse_url(&self.url)?;
        Ok((self.s3.config(bucket, None), prefix))
    }

    /// The store settings and the URL's object key, as given (for `cat` and `put`).
    pub fn s3_object(&self) -> Result<(S3Config, String), CliError> {
        let (bucket, key) = split_url(&self.url)?;
        Ok((self.s3.config(bucket.to_string(), None), key.to_string()))
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    #[arg(long)]
    pub out: PathBuf,
}

/// `--exclusive-create`'s values (`fs::ExclusiveCreate` below the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExclusiveScope {
    Server,
    Local,
}

/// `--on-conflict`'s values (`write::OnConflict` below the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflictPolicy {
    KeepBoth,
    Overwrite,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// s3://BUCKET or s3://BUCKET/PREFIX
    pub url: String,
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub s3: S3Args,
    #[arg(long)]
    pub read_only: bool,
    /// Show the prefix as it was at this moment (a versioned bucket; read-only): RFC 3339 in
    /// UTC, e.g. 2026-11-30T21:00:00Z, or `@UNIX_SECONDS`. For restores after an overwrite or a
    /// deletion; `sealfs versions` lists a file's versions.
    #[arg(long, value_name = "TIME", value_parser = parse_moment)]
    pub as_of: Option<std::time::SystemTime>,
    /// Let users other than the mounting one use the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Store no extended attributes: every xattr call gets EOPNOTSUPP, and `ls -l` saves the
    /// two round trips per file it spends asking for ACLs and SELinux labels.
    #[arg(long)]
    pub no_xattr: bool,
    /// Multipart uploads a crashed sealfs mount left under the prefix are aborted by the next
    /// read-write mount: at once when that mount ran on this host and its process is gone,
    /// and after this long without a sign of life when it ran on another host (at least 10m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub stale_upload_age: Duration,
    /// Only report uploads crashed mounts left; never abort them.
    #[arg(long)]
    pub keep_stale_uploads: bool,
    /// Stay in the foreground (default: return once the mount is ready).
    #[arg(short, long)]
    pub foreground: bool,
    /// Owner of objects without a stored uid (default: the mounting user).
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permissions (octal) of files without a stored mode.
    #[arg(long, default_value = "644", value_parser = parse_octal)]
    pub file_mode: u16,
    /// Permissions (octal) of directories without a stored mode.
    #[arg(long, default_value = "755", value_parser = parse_octal)]
    pub dir_mode: u16,
    /// Seconds attributes and directory entries are cached.
    #[arg(long, default_value_t = 1.0)]
    pub metadata_ttl: f64,
    /// Multipart part size in MiB (5..=5120).
    #[arg(long, default_value_t = 8)]
    pub part_size_mib: u64,
    /// Parts uploading at once per file.
    #[arg(long, default_value_t = 4)]
    pub upload_concurrency: usize,
    /// When another host changed a file this mount is replacing: keep both versions (the
    /// losing one as NAME.conflict-HOST-TIME, and the losing close/fsync gets ESTALE), or
    /// overwrite (no conditional requests: the last upload wins).
    #[arg(long, value_enum, default_value_t = ConflictPolicy::KeepBoth)]
    pub on_conflict: ConflictPolicy,
    /// Where open(O_CREAT|O_EXCL) is exclusive: server (the name is claimed with an empty PUT
    /// at open, so across hosts; cp, tar and mkstemp then cost two PUTs per new file on a
    /// server that enforces conditions) or local (this mount only; a racing create on another
    /// host is caught at close as a conflict).
    #[arg(long, value_enum, default_value_t = ExclusiveScope::Server)]
    pub exclusive_create: ExclusiveScope,
    /// Memory for decrypted (authenticated) blocks of files read, shared by all files, MiB.
    #[arg(long, default_value_t = 256)]
    pub cache_size_mib: u64,
    /// Keep the bucket's bytes of blocks read in DIR, across unmounts (client mode: the
    /// ciphertext as stored, authenticated at every read; other modes: sealed under a local
    /// key kept in DIR). One mount per directory at a time.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Disk the cache directory's entries may take, e.g. 20GiB or 500MB (default: 10 GiB, or
    /// half the room left on its file system when that is less).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cache_dir")]
    pub cache_dir_size: Option<u64>,
    /// Largest readahead window of a sequentially read file, MiB (fetched in 8 MiB GETs).
    #[arg(long, default_value_t = 64)]
    pub readahead_mib: u64,
    /// Seconds one S3 request may take (body included) before it is retried; a server that
    /// stops answering becomes EIO after three attempts.
    #[arg(long, default_value_t = 60.0)]
    pub request_timeout: f64,
    /// Log file for a background mount (default: logs are discarded once detached).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): S3 requests,
    /// latency, bytes, cache, uploads, retries. Anyone who can reach ADDR can read them.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// AWS profile for credentials, region and endpoints (S3 and KMS), e.g. in an fstab line
    /// where no AWS_* environment is set.
    #[arg(long)]
    pub profile: Option<String>,
    #[command(flatten)]
    pub enc: EncryptionArgs,
    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, auto_unmount,
    /// default_permissions, and any of the long options above as name=value.
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,
}

/// A size with an optional unit: `500MB`, `20GiB`, `1.5 TiB`, or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 20GiB, 500MB, or bytes)"))?;
    match size.as_u64() {
        0 => Err("a size of 0 keeps nothing: leave out --cache-dir instead".to_string()),
        n => Ok(n),
    }
}

/// `--as-of`: RFC 3339 (UTC; `T` or a space, seconds optional) or `@` and Unix seconds.
pub fn parse_moment(s: &str) -> Result<std::time::SystemTime, String> {
    if let Some(secs) = s.strip_prefix('@') {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("'{s}': not @UNIX_SECONDS"))?;
        return Ok(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    }
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| format!("'{s}': not a time like 2026-11-30T21:00:00Z ({e})"))
}

fn parse_octal(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("not an octal mode: {s}"))
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("not an S3 URL (expected s3://BUCKET[/PREFIX]): {0}")]
    BadUrl(String),
    #[error("unknown mount option: {0}")]
    UnknownOption(String),
    #[error("bad value for {0}: {1}")]
    BadValue(String, String),
    #[error("{0}")]
    Incomplete(String),
}

/// Split `s3://bucket/rest` into the bucket and the rest, as given.
fn split_url(url: &str) -> Result<(&str, &str), CliError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| CliError::BadUrl(url.into()))?;
    let (bucket, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CliError::BadUrl(url.into()));
    }
    Ok((bucket, rest))
}

/// Split `s3://bucket/some/prefix` into the bucket and a prefix that is empty or ends in '/'.
pub fn parse_url(url: &str) -> Result<(String, String), CliError> {
    let (bucket, prefix) = split_url(url)?;
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

impl MountArgs {
    /// Validate into a plan; `ids` are the mounting user's uid and gid.
    pub fn into_plan(mut self, ids: (u32, u32)) -> Result<MountPlan, CliError> {
        let (allow_root, auto_unmount, default_permissions) = self.apply_options()?;
        let (bucket, prefix) = parse_url(&self.url)?;
        if !(5..=5120).contains(&self.part_size_mib) {
            return Err(CliError::BadValue(
                "--part-size-mib".into(),
                self.part_size_mib.to_string(),
            ));
        }
        if !(self.request_timeout >= 0.1 && self.request_timeout < 1e6) {
            return Err(CliError::BadValue(
                "--request-timeout".into(),
                self.request_timeout.to_string(),
            ));
        }
        if !(self.metadata_ttl >= 0.0 && self.metadata_ttl < 1e9) {
            return Err(CliError::BadValue(
                "--metadata-ttl".into(),
                self.metadata_ttl.to_string(),
            ));
        }
        // A session is renewed at least every minute and four times per age: a shorter age
        // could take another host's live mount for a crashed one.
        if self.stale_upload_age < Duration::from_secs(600) {
            return Err(CliError::BadValue(
                "--stale-upload-age (at least 10m)".into(),
                humantime::format_duration(self.stale_upload_age).to_string(),
            ));
        }
        self.enc.infer_mode();
        let mut enc = self.enc.validated()?;
        let aws = AwsSettings {
            profile: self.profile.clone(),
            ca_bundle: self.s3.ca_bundle.clone(),
        };
        enc.aws = aws.clone();
        let part_size = self.part_size_mib * 1024 * 1024;
        let write = WriteConfig {
            part_size,
            on_conflict: match self.on_conflict {
                ConflictPolicy::KeepBoth => OnConflict::KeepBoth,
                ConflictPolicy::Overwrite => OnConflict::Overwrite,
            },
            max_inflight: self.upload_concurrency.max(1),
            max_dirty: WriteConfig::default().max_dirty.max(2 * part_size),
            ..WriteConfig::default()
        };
        Ok(MountPlan {
            s3: S3Config {
                aws,
                ..self.s3.config(
                    bucket.clone(),
                    Some(Duration::from_secs_f64(self.request_timeout)),
                )
            },
            fs: FsConfig {
                prefix: prefix.clone(),
                defaults: Defaults {
                    uid: self.uid.unwrap_or(ids.0),
                    gid: self.gid.unwrap_or(ids.1),
                    file_mode: self.file_mode,
                    dir_mode: self.dir_mode,
                },
                metadata_ttl: Duration::from_secs_f64(self.metadata_ttl),
                read_only: self.read_only || self.as_of.is_some(),
                xattrs: !self.no_xattr,
                write,
                read: ReadConfig {
                    cache_bytes: self.cache_size_mib << 20,
                    max_window: (self.readahead_mib << 20).max(ReadConfig::default().min_window),
                    disk: self.cache_dir.map(|dir| DiskCacheConfig {
                        dir,
                        budget: self.cache_dir_size,
                    }),
                    ..ReadConfig::default()
                },
                keys: None,
                enforced: crate::store::probe::Enforced::ALL,
                exclusive_create: match self.exclusive_create {
                    ExclusiveScope::Server => ExclusiveCreate::Server,
                    ExclusiveScope::Local => ExclusiveCreate::Local,
                },
                unlinked_names: String::new(),
            },
            sessions: SessionConfig {
                stale_age: self.stale_upload_age,
                abort: !self.keep_stale_uploads,
            },
            mountpoint: self.mountpoint,
            foreground: self.foreground,
            allow_other: self.allow_other,
            allow_root,
            auto_unmount,
            default_permissions,
            log_file: self.log_file,
            metrics_addr: self.metrics_addr,
            as_of: self.as_of,
            fsname: format!("sealfs:{bucket}/{prefix}"),
            enc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_url("s3://b/p/q/").unwrap(),
            ("b".into(), "p/q/".into())
        );
        assert!(parse_url("http://b").is_err());
        assert!(parse_url("s3:///x").is_err());
    }
}
