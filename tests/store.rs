//! The store conformance suite (`sealfs::store::conformance`) against the real `S3Store` on the
//! local server: the in-memory store's unit test runs the same checks.

mod common;

use sealfs::store::s3::{S3Config, S3Store};

#[tokio::test]
async fn the_s3_store_conforms_on_the_local_server() {
    let cfg = S3Config {
        bucket: common::bucket(),
        endpoint_url: Some(common::endpoint()),
        force_path_style: true,
        ..S3Config::default()
    };
    let store = S3Store::connect(&cfg).await.unwrap();
    let prefix = format!("{}/", common::unique("conformance"));
    sealfs::store::conformance::check(&store, &prefix).await;
}
