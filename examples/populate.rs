//! Put N small objects under s3://BUCKET/PREFIX directly (no mount), 32 at a time: the
//! fixture for listing measurements. Uses the same environment as sealfs.
//!
//!     cargo run --release --example populate -- s3://BUCKET/PREFIX 10000 [SIZE]

use std::sync::Arc;

use bytes::Bytes;
use sealfs::store::s3::{S3Config, S3Store};
use sealfs::store::{ObjectStore, UserMeta};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (bucket, prefix) = sealfs::cli::parse_url(args.get(1).map_or("", String::as_str))?;
    let n: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let size: usize = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let cfg = S3Config {
        bucket,
        force_path_style: true,
        ..Default::default()
    };
    let store = Arc::new(S3Store::connect(&cfg).await?);
    let body = Bytes::from(vec![b'x'; size]);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (store, prefix, body) = (store.clone(), prefix.clone(), body.clone());
        set.spawn(async move {
            for i in (w..n).step_by(32) {
                store
                    .put(&format!("{prefix}f{i:06}"), body.clone(), &UserMeta::new())
                    .await?;
            }
            Ok::<_, sealfs::store::StoreError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}
