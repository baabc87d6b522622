//! The `sealfs` binary: parse the command line, set up logging, hand over to `mount`.

use std::io::IsTerminal;

use std::process::ExitCode;

use clap::Parser;
use sealfs::cli::{Cli, Command};
use sealfs::commands::{self, Outcome};
use sealfs::mount::{Reported, S3Connector};

fn main() -> ExitCode {
    // Before any key is read: a core dump would hold keys and decrypted blocks.
    if let Err(e) = sealfs::sys::no_core_dumps() {
        eprintln!("sealfs: cannot disable core dumps: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(sealfs::cli::helper_args(std::env::args_os().collect()));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,sealfs=info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let clean = |r: anyhow::Result<()>| r.map(|()| Outcome::Clean);
    let result = match cli.command {
        Command::Mount(args) => clean(
            args.into_plan(sealfs::sys::ids())
                .map_err(anyhow::Error::from)
                .and_then(|plan| {
                    let s3 = S3Connector(plan.s3.clone());
                    sealfs::mount::run(plan, &s3)
                }),
        ),
        Command::Init(args) => clean(commands::init(&args)),
        Command::Cat(args) => clean(commands::cat(&args)),
        Command::Verify(args) => commands::verify(&args),
        Command::Migrate(args) => commands::migrate(&args),
        Command::Put(args) => clean(commands::put(&args)),
        Command::Versions(args) => clean(commands::versions(&args)),
        Command::RotateKey(args) => clean(commands::rotate_key(&args)),
        Command::Rekey(args) => commands::rekey(&args),
        Command::Stats(args) => clean(commands::stats(&args)),
        Command::Doctor(args) => commands::doctor(&args),
        Command::Completions(args) => clean(commands::completions(&args)),
        Command::Man(args) => clean(commands::man(&args)),
        Command::Keygen(args) => clean(sealfs::crypto::keys::keygen(&args.out)
            .map(|()| eprintln!("sealfs: wrote a new key to {} (mode 0600); keep a copy: without it the data cannot be read", args.out.display()))
            .map_err(anyhow::Error::from)),
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::FAILURE,
        // A background mount's child already reported its failure through the parent.
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sealfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
