//! A sealfs mount over an in-memory store, in the foreground, until Ctrl-C or unmount:
//! `mount::run` takes a `Connect`, so any `ObjectStore` can stand behind a real FUSE mount
//! (a FUSE test that is not about S3 needs no server).
//!
//!   cargo run --features test-doubles --example memfs -- MOUNTPOINT [sealfs mount options]

use std::sync::Arc;

use clap::Parser;
use sealfs::cli::{Cli, Command};
use sealfs::mount::Connect;
use sealfs::store::mem::MemStore;
use sealfs::store::{ObjectStore, Sse};

struct InMemory(Arc<MemStore>);

#[async_trait::async_trait]
impl Connect for InMemory {
    async fn connect(&self, _sse: Sse) -> Result<Arc<dyn ObjectStore>, String> {
        Ok(self.0.clone())
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!args.is_empty(), "usage: memfs MOUNTPOINT [options]");
    let mountpoint = args.remove(0);
    let argv = [
        "sealfs",
        "mount",
        "s3://memory",
        &mountpoint,
        "--foreground",
    ]
    .into_iter()
    .map(String::from)
    .chain(args);
    let Command::Mount(mount) = Cli::parse_from(argv).command else {
        unreachable!("parsed as a mount")
    };
    let plan = mount.into_plan(sealfs::sys::ids())?;
    sealfs::mount::run(plan, &InMemory(Arc::new(MemStore::new())))
}
