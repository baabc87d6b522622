//! The `sealfs` binary: parse the command line, set up logging, hand over to `mount`.

use std::io::IsTerminal;

use clap::Parser;
use sealfs::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse_from(sealfs::cli::helper_args(std::env::args_os().collect()));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,sealfs=info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Mount(args) => args
            .into_plan(sealfs::sys::ids())
            .map_err(anyhow::Error::from)
            .and_then(sealfs::mount::run),
        Command::Init(args) => sealfs::commands::init(&args),
        Command::Cat(args) => sealfs::commands::cat(&args),
        Command::Verify(args) => sealfs::commands::verify(&args),
        Command::Put(args) => sealfs::commands::put(&args),
        Command::RotateKey(args) => sealfs::commands::rotate_key(&args),
        Command::Rekey(args) => sealfs::commands::rekey(&args),
        Command::Stats(args) => sealfs::commands::stats(&args),
        Command::Keygen(args) => sealfs::crypto::keys::keygen(&args.out)
            .map(|()| eprintln!("sealfs: wrote a new key to {} (mode 0600); keep a copy: without it the data cannot be read", args.out.display()))
            .map_err(anyhow::Error::from),
    };
    if let Err(e) = result {
        eprintln!("sealfs: {e:#}");
        std::process::exit(1);
    }
}
