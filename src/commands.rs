//! Wiring of the commands that work without a mount (`init`, `cat`, `put`, `verify`,
//! `rotate-key`, `rekey`; `completions` and `man`, which only print): each connects to the bucket with the SSE settings its prefix needs,
//! runs one `setup` or `tools` function, and reports in one line.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::{InitArgs, PutArgs, RotateArgs, ToolArgs};
use crate::crypto::mode::Mode;
use crate::mount::{Connect, S3Connector};
use crate::setup::{self, EncryptionConfig};
use crate::store::s3::S3Config;
use crate::store::{ObjectStore, Sse};
use crate::tools;

/// How a command that ran to the end went: `Clean`, or `Findings` (bad objects, failed
/// copies) already printed, which make the process exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Findings,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Connect with `sse` and check the bucket, explaining failures in one line.
async fn connect(s3: &S3Config, sse: Sse) -> Result<Arc<dyn ObjectStore>> {
    S3Connector(s3.clone())
        .connect(sse)
        .await
        .map_err(anyhow::Error::msg)
}

/// The mode the user's options fix (`--encryption`, or a key file that names one), or `none`
/// when they fix nothing: then tools take the mode from the bucket. An SSE-C key file given is
/// used for every request.
fn tool_enc(args: &ToolArgs, s3: &S3Config) -> EncryptionConfig {
    let mut enc = args.enc.clone();
    enc.infer_mode();
    EncryptionConfig {
        aws: s3.aws.clone(),
        ..enc.config()
    }
}

fn prefix_of(key: &str) -> String {
    match key.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    }
}

/// `sealfs init`: record the prefix's mode (and create its keyring).
pub fn init(args: &InitArgs) -> Result<()> {
    let (s3, prefix) = args.s3()?;
    let enc = EncryptionConfig {
        aws: s3.aws.clone(),
        ..args.enc.validated()?
    };
    let sse = setup::sse_for(&enc)?;
    runtime()?.block_on(async {
        let store = connect(&s3, sse).await?;
        let url = args.url.trim_end_matches('/');
        setup::init(&*store, &s3.bucket, url, &prefix, &enc).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    eprintln!(
        "sealfs: {} initialized with encryption '{}'",
        args.url, enc.mode
    );
    Ok(())
}

/// `sealfs cat s3://BUCKET/KEY`
pub fn cat(args: &ToolArgs) -> Result<()> {
    let (s3, key) = args.s3_object()?;
    let enc = tool_enc(args, &s3);
    runtime()?.block_on(async {
        let store = connect(&s3, setup::sse_for(&enc)?).await?;
        tools::cat(store, &s3.bucket, &key, &enc).await?;
        Ok(())
    })
}

/// `sealfs verify s3://BUCKET[/PREFIX]`: findings when any object is bad.
pub fn verify(args: &ToolArgs) -> Result<Outcome> {
    let (s3, key) = args.s3_object()?;
    let enc = tool_enc(args, &s3);
    let (n, bad) = runtime()?.block_on(async {
        let store = connect(&s3, setup::sse_for(&enc)?).await?;
        let prefix = prefix_of(&key);
        Ok::<_, anyhow::Error>(tools::verify(store, &s3.bucket, &prefix, &enc).await?)
    })?;
    eprintln!("sealfs: verified {n} objects, {bad} bad");
    Ok(if bad > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `sealfs versions s3://BUCKET/PREFIX/PATH`: one line per version, newest first.
pub fn versions(args: &ToolArgs) -> Result<()> {
    let (s3, key) = args.s3_object()?;
    let enc = tool_enc(args, &s3);
    let lines = runtime()?.block_on(async {
        let store = connect(&s3, setup::sse_for(&enc)?).await?;
        Ok::<_, anyhow::Error>(tools::versions(store, &s3.bucket, &key, &enc).await?)
    })?;
    println!("{:<40} {:<20} {:>14}", "VERSION", "MODIFIED (UTC)", "SIZE");
    for v in &lines {
        let size = match (v.deleted, v.plain_size) {
            (true, _) => "deleted".to_string(),
            (false, Some(n)) => n.to_string(),
            (false, None) => "?".to_string(),
        };
        let latest = if v.latest { "  (current)" } else { "" };
        println!(
            "{:<40} {:<20} {size:>14}{latest}",
            v.version_id,
            humantime::format_rfc3339_seconds(v.last_modified).to_string()
        );
    }
    eprintln!("sealfs: to see the prefix as it was at one of these times: sealfs mount s3://BUCKET/PREFIX DIR --as-of TIME");
    Ok(())
}

/// `sealfs put FILE s3://BUCKET/KEY`: written with the SSE the prefix records (sse-kms takes
/// --kms-key-id from the command line, as a mount does).
pub fn put(args: &PutArgs) -> Result<()> {
    let (s3, key) = args.target.s3_object()?;
    let mut enc = tool_enc(&args.target, &s3);
    let n = runtime()?.block_on(async {
        let mut store = connect(&s3, setup::sse_for(&enc)?).await?;
        let mode = tools::mode_of(&*store, &key).await?;
        if matches!(mode, Mode::SseS3 | Mode::SseKms) {
            enc.mode = mode;
            store = connect(&s3, setup::sse_for(&enc)?).await?;
        }
        Ok::<_, anyhow::Error>(tools::put(store, &s3.bucket, &key, &enc, &args.file).await?)
    })?;
    eprintln!(
        "sealfs: put {} ({n} bytes) to s3://{}/{key}",
        args.file.display(),
        s3.bucket
    );
    Ok(())
}

/// `sealfs migrate s3://BUCKET[/PREFIX]`: findings when any object failed (run it again).
pub fn migrate(args: &ToolArgs) -> Result<Outcome> {
    let (s3, prefix) = args.s3()?;
    let enc = EncryptionConfig {
        aws: s3.aws.clone(),
        ..args.enc.config()
    };
    let url = args.url.trim_end_matches('/');
    let done = runtime()?.block_on(async {
        let store = connect(&s3, Sse::None).await?;
        Ok::<_, anyhow::Error>(
            crate::migrate::migrate(store, &s3.bucket, url, &prefix, &enc).await?,
        )
    })?;
    let config = match done.upgraded {
        true => "config upgraded to format 2",
        false => "config already at format 2",
    };
    eprintln!(
        "sealfs: {url}: {config}; {} objects moved, {} already moved, {} failed",
        done.moved, done.already, done.failed
    );
    Ok(if done.failed > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `sealfs rotate-key s3://BUCKET[/PREFIX]`
pub fn rotate_key(args: &RotateArgs) -> Result<()> {
    let (s3, prefix) = args.target.s3()?;
    let how = setup::Rotation {
        new_data_key: !args.rewrap_only,
        to_key_file: args.new_key_file.clone(),
        to_kms_key_id: args.new_kms_key_id.clone(),
    };
    let url = args.target.url.trim_end_matches('/');
    let spinner = crate::progress::spinner("rotating the keyring");
    let cfg = runtime()?.block_on(async {
        let store = connect(&s3, Sse::None).await?;
        let current = EncryptionConfig {
            aws: s3.aws.clone(),
            ..args.target.enc.config()
        };
        Ok::<_, anyhow::Error>(
            setup::rotate(&*store, &s3.bucket, url, &prefix, &current, &how).await?,
        )
    });
    spinner.finish_and_clear();
    let cfg = cfg?;
    let wrapping = match &cfg.kms_key_id {
        Some(id) => format!("KMS key {id}"),
        None => "the key file".to_string(),
    };
    eprintln!(
        "sealfs: {url}: {} data key versions, new files use version {}; keyring wrapped by {wrapping}. Running mounts keep their keys until remounted.",
        cfg.keys.len(),
        cfg.current_key
    );
    Ok(())
}

/// `sealfs rekey s3://BUCKET[/PREFIX] --sse-c-key-file FILE`: findings when any object failed.
pub fn rekey(args: &ToolArgs) -> Result<Outcome> {
    let (s3, prefix) = args.s3()?;
    let enc = tool_enc(args, &s3);
    let sse = setup::sse_for(&enc)?;
    let Sse::C(keys) = &sse else {
        anyhow::bail!("rekey is for SSE-C prefixes: give --sse-c-key-file FILE (newest key first)");
    };
    let current = keys.current().md5().to_string();
    let (moved, failed) = runtime()?.block_on(async {
        let store = connect(&s3, sse.clone()).await?;
        Ok::<_, anyhow::Error>(tools::rekey(store, &s3.bucket, &prefix, &enc, &current).await?)
    })?;
    eprintln!("sealfs: rekeyed {moved} objects to the first key, {failed} failed");
    Ok(if failed > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `sealfs stats MOUNTPOINT`: the running mount's request counters, as it reports them.
pub fn stats(args: &crate::cli::StatsArgs) -> Result<()> {
    let dir = crate::control::socket_dir();
    let report = runtime()?.block_on(crate::control::query(&dir, &args.mountpoint))?;
    print!("{report}");
    Ok(())
}

/// `sealfs doctor s3://BUCKET[/PREFIX]`: findings when a check fails.
pub fn doctor(args: &crate::cli::DoctorArgs) -> Result<Outcome> {
    use crate::doctor::{self, Status};
    let (mut s3, prefix) = args.target.s3()?;
    s3.aws.profile = args.profile.clone();
    let mut enc = args.target.enc.clone();
    enc.infer_mode();
    let cfg = doctor::DoctorConfig {
        enc: EncryptionConfig {
            aws: s3.aws.clone(),
            ..enc.config()
        },
        s3,
        prefix,
        allow_other: args.allow_other,
    };
    let checks = runtime()?.block_on(doctor::run(&cfg));
    for c in &checks {
        println!("{:<5} {:<19} {}", c.status.name(), c.name, c.detail);
    }
    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Ok(match worst {
        Status::Fail => Outcome::Findings,
        _ => Outcome::Clean,
    })
}

/// `sealfs completions SHELL`: the completion script clap derives from the command line.
/// Built in memory first: clap_complete panics on a write error (`| head`).
pub fn completions(args: &crate::cli::CompletionsArgs) -> Result<()> {
    use std::io::Write;
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "sealfs", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write the completion script"))
        }
        _ => Ok(()),
    }
}

/// `sealfs man DIR`: sealfs.1 and sealfs-COMMAND.1 for every command, from the same
/// definitions as `--help`.
pub fn man(args: &crate::cli::ManArgs) -> Result<()> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(cmd, &args.dir)
        .with_context(|| format!("cannot write man pages into {}", args.dir.display()))?;
    eprintln!("sealfs: wrote man pages to {}", args.dir.display());
    Ok(())
}
