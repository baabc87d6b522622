//! `ObjectStore` over `aws-sdk-s3`: the only code in sealfs that speaks the S3 API.
//!
//! Credentials, region and endpoint come from the standard AWS chain (environment, profiles,
//! `AWS_ENDPOINT_URL[_S3]`), overridden by explicit options. Every SDK error is classified once,
//! here, into a `StoreError` by HTTP status and S3 error code.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    ProvideCredentials, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart as SdkPart, Delete, MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use bytes::Bytes;

mod attempts;
mod convert;
mod diagnose;
mod listing;
mod uploads;
use convert::{classify, encode_key, root_cause, to_map, to_time};

use super::sse::{CustomerKey, Sse};
use super::{
    Body, CompletedPart, Expect, ListPage, ObjectMeta, ObjectStore, OnSegment, Result, StoreError,
    UserMeta, VersionPage,
};
use crate::sdk::AwsSettings;

/// Where and how to reach the bucket; `None` fields fall back to the AWS chain.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub sse: Sse,
    /// Limit on one attempt of a request, body included (default `DEFAULT_REQUEST_TIMEOUT`):
    /// a server that hangs turns into an error the application sees, not a hung process.
    pub request_timeout: Option<Duration>,
    /// AWS profile and CA bundle (default: the standard chain and the system's roots).
    pub aws: AwsSettings,
    /// Send SSE-C keys over plain http to a host that is not loopback (refused otherwise:
    /// every SSE-C request carries the key).
    pub allow_plain_http_sse_c: bool,
}

impl S3Config {
    /// The endpoint requests go to, as the SDK picks it (`None`: AWS's own).
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
    }
}

/// The endpoint the client will use, as the SDK resolves it: the typed option, else the
/// S3-specific setting (`AWS_ENDPOINT_URL_S3`, a profile's `s3 = endpoint_url`), else the
/// global one. `SdkConfig::endpoint_url` alone misses the S3-specific ones, which would
/// take an `http://` endpoint for AWS's https default (unsigned bodies, SSE-C keys unchecked).
fn resolved_endpoint(config: &S3Config, sdk: &aws_types::SdkConfig) -> Option<String> {
    if let Some(url) = &config.endpoint_url {
        return Some(url.clone());
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| sdk.service_config()?.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// Whether `endpoint` is plain http to a host other than this machine.
pub fn plain_http_off_host(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// 60 s: an 8 MiB part still goes through at ~1 Mbit/s, and a hung server is an error
/// within three attempts.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct S3Store {
    client: Client,
    bucket: String,
    sse: Sse,
    timeout: Duration,
    recent: parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Send PUT and UploadPart bodies as `UNSIGNED-PAYLOAD` (HTTPS endpoints only, as AWS's
    /// own SDKs do there): TLS protects them in transit, and SigV4's SHA-256 of every body
    /// byte costs CPU a writer needs. Over plain http the signature is all that protects a
    /// body, so it stays signed.
    unsigned_payload: bool,
}

/// Garage 2.5 orders the versions of a key by a millisecond timestamp: a CopyObject onto the
/// key itself (a metadata update: chmod, utimens) within the same millisecond as the previous
/// write of the key may leave that previous version current. About one rsync'ed file in 100
/// lost its chmod that way; with this gap before in-place copies, none of 800 did.
const SAME_KEY_GAP: Duration = Duration::from_millis(2);

/// Apply the write-side SSE headers of `$sse` to request builder `$req`.
macro_rules! sse_write {
    ($sse:expr, $req:expr) => {
        match $sse {
            Sse::None => $req,
            Sse::S3 => $req.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::Kms { key_id, bucket_key } => $req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key_id.clone())
                .bucket_key_enabled(*bucket_key),
            Sse::C(keys) => $req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(keys.current().key_b64.as_str())
                .sse_customer_key_md5(&keys.current().md5_b64),
        }
    };
}

/// Apply SSE-C key `$k` (if any) to a request that reads an object.
macro_rules! sse_c_read {
    ($k:expr, $req:expr) => {
        match $k {
            Some(k) => $req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k.key_b64.as_str())
                .sse_customer_key_md5(&k.md5_b64),
            None => $req,
        }
    };
}

/// Apply SSE-C key `$k` (if any) as the copy source's key.
macro_rules! sse_c_source {
    ($k:expr, $req:expr) => {
        match $k {
            Some(k) => $req
                .copy_source_sse_customer_algorithm("AES256")
                .copy_source_sse_customer_key(k.key_b64.as_str())
                .copy_source_sse_customer_key_md5(&k.md5_b64),
            None => $req,
        }
    };
}

// Declared after the macros above, which it uses.
mod reads;

impl S3Store {
    pub async fn connect(config: &S3Config) -> Result<Self> {
        let (mut loader, _) = crate::sdk::loader(&config.aws)
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        let endpoint = resolved_endpoint(config, &sdk);
        let endpoint = endpoint.as_deref();
        if let (Sse::C(_), Some(url)) = (&config.sse, endpoint) {
            if plain_http_off_host(url) && !config.allow_plain_http_sse_c {
                return Err(StoreError::BadRequest(format!(
                    "refusing to send SSE-C keys in the clear to {url}: use https, or accept the risk with --allow-plain-http-sse-c"
                )));
            }
        }
        // Resolve credentials now: a missing key should stop the mount with one clear line,
        // not surface later as a stream of failed requests.
        let creds = match sdk.credentials_provider() {
            Some(p) => p
                .provide_credentials()
                .await
                .map(|_| ())
                .map_err(|e| root_cause(&e)),
            None => Err("no credentials provider".into()),
        };
        if let Err(why) = creds {
            return Err(StoreError::NoCredentials(why));
        }
        let timeout = config.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.force_path_style)
            // Checksums only where S3 demands them: S3-compatible servers differ in trailer
            // support, and TLS/TCP already protect the payload in transit.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            .interceptor(attempts::CountRetries);
        if sdk.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            sse: config.sse.clone(),
            timeout,
            recent: Default::default(),
            unsigned_payload: endpoint.is_none_or(|url| url.starts_with("https://")),
        })
    }

    async fn copy_once(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String> {
        if src == dst {
            self.settle(dst).await;
        }
        let (if_match, if_none_match) = &expect.headers();
        self.with_read_keys(|k| async move {
            let mut req = self
                .client
                .copy_object()
                .bucket(&self.bucket)
                .key(dst)
                .copy_source(self.copy_source(src))
                .set_copy_source_if_match(src_etag.map(str::to_string))
                .set_if_match(if_match.clone())
                .set_if_none_match(if_none_match.clone());
            if let Some(meta) = meta {
                req = req
                    .metadata_directive(MetadataDirective::Replace)
                    .set_metadata(Some(to_map(meta)));
            }
            let req = sse_write!(&self.sse, req);
            let out = sse_c_source!(k, req)
                .send()
                .await
                .map_err(|e| classify(e, src))?;
            self.wrote(dst);
            self.check_applied(out.server_side_encryption(), dst)?;
            Ok(out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .unwrap_or("")
                .to_string())
        })
        .await
    }

    /// Wait until `SAME_KEY_GAP` has passed since this store last wrote `key`.
    async fn settle(&self, key: &str) {
        let wait = {
            let recent = self.recent.lock();
            recent
                .get(key)
                .map(|t| SAME_KEY_GAP.saturating_sub(t.elapsed()))
        };
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(w).await;
        }
    }

    fn wrote(&self, key: &str) {
        let mut recent = self.recent.lock();
        if recent.len() > 4096 {
            recent.retain(|_, t| t.elapsed() < SAME_KEY_GAP);
        }
        recent.insert(key.to_string(), std::time::Instant::now());
    }

    /// Run `attempt` with each SSE-C key in turn, newest first, until the server accepts one
    /// (once, with no key, without SSE-C). A refusal (403/400: wrong customer key) moves on to
    /// the next key; any other outcome is final. With every key refused, the last refusal.
    async fn with_read_keys<'s, T, F, Fut>(&'s self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Option<&'s CustomerKey>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let keys: Vec<Option<&CustomerKey>> = match &self.sse {
            Sse::C(keys) => keys.iter().map(Some).collect(),
            _ => vec![None],
        };
        let mut refused = None;
        for k in keys {
            match attempt(k).await {
                Err(err @ (StoreError::AccessDenied(_) | StoreError::BadRequest(_))) => {
                    refused = Some(err)
                }
                other => return other,
            }
        }
        Err(refused.unwrap_or_else(|| StoreError::Other("no SSE-C key to try".into())))
    }

    /// Check that the server applied the SSE we asked for (S3 and KMS echo it back).
    fn check_applied(&self, got: Option<&ServerSideEncryption>, key: &str) -> Result<()> {
        let want = match &self.sse {
            Sse::S3 => ServerSideEncryption::Aes256,
            Sse::Kms { .. } => ServerSideEncryption::AwsKms,
            _ => return Ok(()),
        };
        match got {
            Some(g) if *g == want => Ok(()),
            other => Err(StoreError::EncryptionNotApplied(format!(
                "{key}: asked for {}, the server answered {}",
                want.as_str(),
                other.map_or("no encryption header", |g| g.as_str())
            ))),
        }
    }

    /// Fail early and clearly when the bucket is missing or unreachable.
    pub async fn check_bucket(&self) -> Result<()> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &self.bucket))
    }

    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, encode_key(key))
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.head_at(key, None).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        Ok(self
            .get_range_at(key, None, range, if_match, &mut |_| {})
            .await?
            .into_bytes())
    }

    async fn get_body_with(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        self.get_range_at(key, None, range, if_match, seen).await
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &UserMeta,
        expect: &Expect,
    ) -> Result<String> {
        self.settle(key).await;
        let (if_match, if_none_match) = expect.headers();
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .set_metadata(Some(to_map(meta)))
            .body(ByteStream::from(body));
        let req = sse_write!(&self.sse, req);
        let sent = match self.unsigned_payload {
            true => req.customize().disable_payload_signing().send().await,
            false => req.send().await,
        };
        let out = sent.map_err(|e| classify(e, key))?;
        self.wrote(key);
        self.check_applied(out.server_side_encryption(), key)?;
        Ok(out.e_tag().unwrap_or("").to_string())
    }

    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        self.settle(key).await;
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(to_map(meta)));
        let out = sse_write!(&self.sse, req)
            .send()
            .await
            .map_err(|e| classify(e, key))?;
        self.check_applied(out.server_side_encryption(), key)?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Other(format!("{key}: no upload id in response")))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String> {
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body));
        let write_key = match &self.sse {
            Sse::C(keys) => Some(keys.current()),
            _ => None,
        };
        let req = sse_c_read!(write_key, req);
        let sent = match self.unsigned_payload {
            true => req.customize().disable_payload_signing().send().await,
            false => req.send().await,
        };
        let out = sent.map_err(|e| classify(e, key))?;
        Ok(out.e_tag().unwrap_or("").to_string())
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        src_key: &str,
        src_etag: &str,
        range: Range<u64>,
    ) -> Result<String> {
        let write_key = match &self.sse {
            Sse::C(keys) => Some(keys.current()),
            _ => None,
        };
        let range = &range;
        self.with_read_keys(|k| async move {
            let req = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(self.copy_source(src_key))
                .copy_source_if_match(src_etag)
                .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1));
            let req = sse_c_read!(write_key, req);
            let out = sse_c_source!(k, req)
                .send()
                .await
                .map_err(|e| classify(e, key))?;
            Ok(out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .unwrap_or("")
                .to_string())
        })
        .await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        expect: &Expect,
    ) -> Result<String> {
        let (if_match, if_none_match) = expect.headers();
        let parts = parts
            .iter()
            .map(|p| {
                SdkPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(e, key))?;
        self.wrote(key);
        Ok(out.e_tag().unwrap_or("").to_string())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, key))
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<super::PendingUpload>> {
        self.list_uploads_all(prefix).await
    }

    /// CopyObject; with SSE-C the source is opened with whichever key it was written with and
    /// the copy is written with the current key (so a rename also rekeys).
    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String> {
        self.copy_once(src, dst, meta, src_etag, expect).await
    }
    async fn delete_if(&self, key: &str, expect: &Expect) -> Result<()> {
        let (if_match, _) = expect.headers();
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, key) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| classify(e, &keys[0]))?;
        if let Some(err) = out.errors().first() {
            return Err(StoreError::Other(format!(
                "delete {}: {} {}",
                err.key().unwrap_or(""),
                err.code().unwrap_or(""),
                err.message().unwrap_or("")
            )));
        }
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        self.list_page(prefix, delimiter, token, max_keys).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        token: Option<(String, String)>,
    ) -> Result<VersionPage> {
        self.list_versions_page(prefix, token).await
    }

    async fn versioning(&self) -> Result<Option<String>> {
        self.versioning_status().await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<Option<ObjectMeta>> {
        self.head_at(key, Some(version_id)).await
    }

    async fn get_version(&self, key: &str, version_id: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self
            .get_range_at(key, Some(version_id), range, None, &mut |_| {})
            .await?
            .into_bytes())
    }
}

#[cfg(test)]
mod tests;
