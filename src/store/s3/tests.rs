//! Unit tests of `S3Store` that need no server.

use super::*;

#[test]
fn sse_c_keys_never_cross_the_network_in_the_clear() {
    for (url, off_host) in [
        ("http://10.0.0.5:9000", true),
        ("http://s3.example.com", true),
        ("http://127.0.0.1:3900", false),
        ("http://localhost:3900/", false),
        ("http://[::1]:3900", false),
        ("https://s3.example.com", false),
    ] {
        assert_eq!(plain_http_off_host(url), off_host, "{url}");
    }
    let key = crate::store::CustomerKey::new(&[1; 32]);
    let keys = std::sync::Arc::new(crate::store::CustomerKeys::new(vec![key]).unwrap());
    let cfg = S3Config {
        bucket: "b".into(),
        endpoint_url: Some("http://192.0.2.1:9000".into()),
        sse: Sse::C(keys),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Refused before any request (no credentials are even needed to see it).
    let err = rt.block_on(S3Store::connect(&cfg)).err().unwrap();
    assert!(
        err.to_string().contains("--allow-plain-http-sse-c"),
        "{err}"
    );
}

#[test]
fn copy_source_keys_are_percent_encoded() {
    use super::encode_key;
    assert_eq!(encode_key("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    assert_eq!(encode_key("plain/key-1_2.~"), "plain/key-1_2.~");
}
