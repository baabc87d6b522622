//! The object store: the narrow interface every other module uses to talk to S3.
//!
//! `ObjectStore` is the only way the filesystem reaches the bucket. `s3::S3Store` implements it
//! over `aws-sdk-s3` (this module tree is the only importer of that crate); `mem::MemStore` is an
//! in-memory implementation for fast unit tests, and `fault::FaultStore` wraps any store to inject
//! failures; `asof::AsOf` is a read-only view of a versioned bucket at a moment. Keys here are full bucket keys: the mount prefix is applied by the caller.
//!
//! Invariants:
//! - A missing object is `StoreError::NotFound`, never a generic error, so callers can map it to
//!   ENOENT; every other failure keeps the server's code and message for the log.
//! - Conditional reads (`if_match`) fail with `PreconditionFailed` when the object changed, so a
//!   reader never splices bytes from two versions of an object.
//! - Conditional writes (`Expect`, S3's `If-None-Match: *` / `If-Match: ETAG` on PutObject,
//!   CompleteMultipartUpload, CopyObject's destination and DeleteObject) fail with
//!   `PreconditionFailed` when the server enforces them and the object is not as expected (412,
//!   and 409 ConditionalRequestConflict). Servers that ignore the headers just write (see
//!   `probe`).
//! - Store errors never carry request bodies or key material: only codes, messages, keys.

pub mod asof;
#[cfg(any(test, feature = "test-doubles"))]
pub mod conformance;
pub mod counted;
#[cfg(any(test, feature = "test-doubles"))]
pub mod fault;
#[cfg(any(test, feature = "test-doubles"))]
pub mod mem;
pub mod probe;
pub mod s3;
pub mod sse;
pub use sse::{CustomerKey, CustomerKeys, Sse};

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

pub use crate::body::Body;

/// User metadata (`x-amz-meta-*`), keys without the prefix, lower case.
pub type UserMeta = BTreeMap<String, String>;

/// S3 refuses a single CopyObject above this size; larger copies go part by part.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// S3's floor for every multipart part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's ceiling on the number of parts of one upload.
pub const MAX_PARTS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("bucket not found: {0}")]
    NoSuchBucket(String),
    #[error("the object is not the version this request expected (changed on the server): {0}")]
    PreconditionFailed(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {0}")]
    NoCredentials(String),
    #[error("range not satisfiable: {0}")]
    InvalidRange(String),
    #[error("request refused: {0}")]
    BadRequest(String),
    #[error("the server did not apply the requested encryption: {0}")]
    EncryptionNotApplied(String),
    /// A setting that stops the connection before any request (a bad CA bundle).
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the S3 endpoint: {0}")]
    Unreachable(String),
    #[error("S3 error: {0}")]
    Other(String),
    #[error("an upload task stopped before it finished: {0}")]
    TaskFailed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Shown each segment of a GET's body as it arrives (`ObjectStore::get_body_with`).
pub type OnSegment<'a> = &'a mut (dyn FnMut(&Bytes) + Send);

/// A body that came in one piece, shown to `seen` as its one segment.
fn shown(body: Bytes, seen: OnSegment<'_>) -> Body {
    if !body.is_empty() {
        seen(&body);
    }
    Body::from(body)
}

/// A request run as a task (a part upload, a parallel copy) that panicked or was cancelled.
impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::TaskFailed(e.to_string())
    }
}

/// The S3 operations the store makes: one name for the counters, the fault injector and
/// the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Head,
    Get,
    Put,
    List,
    Copy,
    Delete,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    CompleteMultipart,
    AbortMultipart,
    ListUploads,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 12] = [
        Op::Head,
        Op::Get,
        Op::Put,
        Op::List,
        Op::Copy,
        Op::Delete,
        Op::CreateMultipart,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::CompleteMultipart,
        Op::AbortMultipart,
        Op::ListUploads,
    ];

    /// The name reports use (S3's for the multipart calls).
    pub fn name(self) -> &'static str {
        match self {
            Op::Head => "HEAD",
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::List => "LIST",
            Op::Copy => "COPY",
            Op::Delete => "DELETE",
            Op::CreateMultipart => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipart => "CompleteMultipartUpload",
            Op::AbortMultipart => "AbortMultipartUpload",
            Op::ListUploads => "ListMultipartUploads",
        }
    }

    /// Whether the operation changes the bucket.
    pub fn writes(self) -> bool {
        !matches!(self, Op::Head | Op::Get | Op::List | Op::ListUploads)
    }
}

/// What HEAD returns: enough to build a file's attributes and to pin its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    pub user: UserMeta,
    /// Server-side encryption the server reports for the object (`AES256`, `aws:kms`), if any.
    pub sse: Option<String>,
    /// With SSE-C: the MD5 (base64) of the customer key the object is encrypted under.
    pub sse_c_key_md5: Option<String>,
    /// The object's Content-Type (s3fs's old-style directories say `application/x-directory`).
    pub content_type: Option<String>,
}

/// One object in a listing. Listings carry no user metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListObject>,
    /// Common prefixes, each ending in the delimiter.
    pub prefixes: Vec<String>,
    pub next_token: Option<String>,
}

/// One version of a key in a versioned bucket (ListObjectVersions), or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    /// 0 for a delete marker.
    pub size: u64,
    /// Empty for a delete marker.
    pub etag: String,
    pub last_modified: SystemTime,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// One page of ListObjectVersions: versions of each key newest first, keys in order.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    /// (key marker, version-id marker) of the next page.
    pub next: Option<(String, String)>,
}

/// What a write expects to find at its key: S3's conditional writes. The default is no
/// condition (the last writer wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    #[default]
    Anything,
    /// `If-None-Match: *`: the key must not exist (a create).
    Absent,
    /// `If-Match: ETAG`: the key must hold this version (an overwrite of what was read).
    Version(String),
}

impl Expect {
    /// Whether an object whose current ETag is `current` (None: no object) satisfies this.
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Expect::Anything => true,
            Expect::Absent => current.is_none(),
            Expect::Version(e) => current == Some(e.as_str()),
        }
    }

    /// `If-Match` and `If-None-Match` header values.
    pub fn headers(&self) -> (Option<String>, Option<String>) {
        match self {
            Expect::Anything => (None, None),
            Expect::Absent => (None, Some("*".into())),
            Expect::Version(e) => (Some(e.clone()), None),
        }
    }
}

/// A multipart upload in progress (ListMultipartUploads): started, neither completed nor
/// aborted. Its parts are stored (and billed) until one of the two happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

/// A completed part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: i32,
    pub etag: String,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// HEAD; `Ok(None)` when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Ranged GET of `range` (end exclusive, clamped by the server to the object's size).
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes>;
    /// `get_range` as the server delivered it: the segments are kept apart, so a reader
    /// that copies blocks out of the body copies each byte once (see `crate::body`).
    async fn get_body(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Body> {
        self.get_body_with(key, range, if_match, &mut |_| {}).await
    }
    /// `get_body`, showing `seen` each segment as it arrives, so that a reader can use the
    /// first bytes of a large body while the rest is still coming. An error may come after
    /// some segments were shown; the caller must not rely on them being the whole range.
    /// Stores (and wrappers) that deliver bodies override this one, not `get_body`.
    async fn get_body_with(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        Ok(shown(self.get_range(key, range, if_match).await?, seen))
    }
    /// Single PUT; returns the new ETag.
    async fn put(&self, key: &str, body: Bytes, meta: &UserMeta) -> Result<String> {
        self.put_if(key, body, meta, &Expect::Anything).await
    }
    /// PUT on the condition `expect` (`PreconditionFailed` when enforced and not met).
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &UserMeta,
        expect: &Expect,
    ) -> Result<String>;
    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String>;
    /// UploadPartCopy of `range` of `src_key` (pinned to `src_etag`).
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        src_key: &str,
        src_etag: &str,
        range: Range<u64>,
    ) -> Result<String>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<String> {
        self.complete_multipart_if(key, upload_id, parts, &Expect::Anything)
            .await
    }
    /// CompleteMultipartUpload on the condition `expect`. On a 412 the upload stays and can be
    /// completed again; on a 409 (ConditionalRequestConflict) S3 has dropped it.
    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        expect: &Expect,
    ) -> Result<String>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;
    /// Every multipart upload in progress under `prefix` (all pages of ListMultipartUploads).
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>>;
    /// Single CopyObject (objects up to `MAX_SINGLE_COPY`). `meta: Some` replaces the metadata,
    /// `None` keeps the source's.
    async fn copy(&self, src: &str, dst: &str, meta: Option<&UserMeta>) -> Result<String> {
        self.copy_if(src, dst, meta, None, &Expect::Anything).await
    }
    /// CopyObject of the source version `src_etag` (when given: `x-amz-copy-source-if-match`)
    /// onto a destination that must be as `expect` says.
    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        expect: &Expect,
    ) -> Result<String>;
    /// DELETE; deleting a missing key is not an error (S3 semantics).
    async fn delete(&self, key: &str) -> Result<()> {
        self.delete_if(key, &Expect::Anything).await
    }
    /// DELETE on the condition `expect` (`If-Match`; `Absent` makes no sense and is ignored).
    async fn delete_if(&self, key: &str, expect: &Expect) -> Result<()>;
    /// Batch delete (up to 1000 keys per call; callers chunk).
    async fn delete_many(&self, keys: &[String]) -> Result<()>;
    /// One page of ListObjectsV2.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage>;
    /// One page of ListObjectVersions (versioned buckets; others list one version per key
    /// with the id `null`). Stores without versions refuse.
    async fn list_versions(
        &self,
        prefix: &str,
        _token: Option<(String, String)>,
    ) -> Result<VersionPage> {
        Err(StoreError::BadRequest(format!(
            "{prefix}: this store keeps no versions"
        )))
    }
    /// The bucket's versioning status (`Enabled`, `Suspended`), `None` when it was never on.
    async fn versioning(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// HEAD of one version (`Ok(None)`: no such version, or a delete marker).
    async fn head_version(&self, key: &str, _version_id: &str) -> Result<Option<ObjectMeta>> {
        Err(StoreError::BadRequest(format!(
            "{key}: this store keeps no versions"
        )))
    }
    /// Ranged GET of one version.
    async fn get_version(&self, key: &str, _version_id: &str, _range: Range<u64>) -> Result<Bytes> {
        Err(StoreError::BadRequest(format!(
            "{key}: this store keeps no versions"
        )))
    }
}

/// Copy an object of any size: one CopyObject up to 5 GiB, UploadPartCopy above. Metadata is
/// replaced by `meta` (the multipart path cannot copy it, so callers always pass it). The
/// source is pinned to `src.etag`; the destination must be as `expect` says.
pub async fn copy_any_size(
    store: &dyn ObjectStore,
    src: &ObjectMeta,
    dst: &str,
    meta: &UserMeta,
    part_size: u64,
    expect: &Expect,
) -> Result<String> {
    if src.size <= MAX_SINGLE_COPY {
        return store
            .copy_if(&src.key, dst, Some(meta), Some(&src.etag), expect)
            .await;
    }
    // Server-side copies are cheap per byte; large parts keep the part count far from 10,000.
    let part = part_size
        .max(src.size.div_ceil(MAX_PARTS))
        .max(512 * 1024 * 1024);
    let upload_id = store.create_multipart(dst, meta).await?;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < src.size {
        let end = (start + part).min(src.size);
        match store
            .upload_part_copy(dst, &upload_id, number, &src.key, &src.etag, start..end)
            .await
        {
            Ok(etag) => parts.push(CompletedPart { number, etag }),
            Err(e) => {
                let _ = store.abort_multipart(dst, &upload_id).await;
                return Err(e);
            }
        }
        start = end;
        number += 1;
    }
    match store
        .complete_multipart_if(dst, &upload_id, &parts, expect)
        .await
    {
        Ok(etag) => Ok(etag),
        Err(e) => {
            let _ = store.abort_multipart(dst, &upload_id).await;
            Err(e)
        }
    }
}

/// Every key under `prefix` (no delimiter), page by page.
pub async fn list_all(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<ListObject>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store.list(prefix, None, token, None).await?;
        out.extend(page.objects);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Every version and delete marker under `prefix`, page by page.
pub async fn list_all_versions(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<ObjectVersion>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_versions(prefix, token).await?;
        out.extend(page.versions);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// A whole (small) object, or `None` when it does not exist.
pub async fn get_all(store: &dyn ObjectStore, key: &str) -> Result<Option<Bytes>> {
    let Some(obj) = store.head(key).await? else {
        return Ok(None);
    };
    if obj.size == 0 {
        return Ok(Some(Bytes::new()));
    }
    store
        .get_range(key, 0..obj.size, Some(&obj.etag))
        .await
        .map(Some)
}

/// Delete keys in batches of 1000 (the DeleteObjects limit).
pub async fn delete_all(store: &dyn ObjectStore, keys: &[String]) -> Result<()> {
    for chunk in keys.chunks(1000) {
        store.delete_many(chunk).await?;
    }
    Ok(())
}
