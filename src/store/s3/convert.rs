//! Conversions between the SDK's types and the store's: every SDK error classified into a
//! `StoreError` (by HTTP status and S3 error code, once, here), copy-source keys encoded,
//! times and metadata maps converted.

use std::time::SystemTime;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime;

use crate::store::{StoreError, UserMeta};

/// Percent-encode a key for `x-amz-copy-source` (everything but unreserved characters and '/').
pub(super) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(super) fn classify<E>(err: SdkError<E, HttpResponse>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::DispatchFailure(_) => {
            return StoreError::Unreachable(format!("{what}: {}", root_cause(&err)));
        }
        SdkError::TimeoutError(_) => return StoreError::Unreachable(format!("{what}: timeout")),
        _ => {}
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or("").to_string();
    let msg = err.message().unwrap_or("").to_string();
    let detail = if code.is_empty() && msg.is_empty() {
        let status = status.map(|s| s.to_string()).unwrap_or_default();
        format!(
            "{what}: HTTP {status} {}",
            aws_sdk_s3::error::DisplayErrorContext(&err)
        )
    } else {
        format!("{what}: {code} {msg}")
    };
    match (status, code.as_str()) {
        (_, "NoSuchBucket") => StoreError::NoSuchBucket(detail),
        (_, "NoSuchKey") | (Some(404), _) => StoreError::NotFound(detail),
        (Some(412), _) | (_, "PreconditionFailed") | (_, "ConditionalRequestConflict") => {
            StoreError::PreconditionFailed(detail)
        }
        (Some(416), _) => StoreError::InvalidRange(detail),
        (Some(400), _) => StoreError::BadRequest(detail),
        (Some(403), _)
        | (_, "AccessDenied")
        | (_, "InvalidAccessKeyId")
        | (_, "SignatureDoesNotMatch") => StoreError::AccessDenied(detail),
        // A request this server does not implement (Garage: ListObjectVersions) is refused
        // for good, not a server in trouble.
        (Some(501), _) | (_, "NotImplemented") => StoreError::BadRequest(detail),
        (Some(500..), _) | (None, _) => StoreError::Unreachable(detail),
        _ => StoreError::Other(detail),
    }
}

/// The innermost cause of an error chain: the part a person can act on ("Connection refused").
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    // One line: some causes (the credential chain's) list their attempts on several.
    cur.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn to_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(super) fn to_map(meta: &UserMeta) -> std::collections::HashMap<String, String> {
    meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
