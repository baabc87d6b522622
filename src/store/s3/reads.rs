//! Reads for `S3Store`: HEAD and ranged GET of the current object or of a version. A GET's
//! body is handed on segment by segment as it arrives, under one deadline for the whole body.

use std::ops::Range;

use super::{classify, to_time, S3Store};
use crate::store::{Body, ObjectMeta, OnSegment, Result, StoreError};

impl S3Store {
    /// HEAD of the current object, or of `version`.
    pub(super) async fn head_at(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<ObjectMeta>> {
        let found = self
            .with_read_keys(|k| async move {
                let req = (self.client.head_object().bucket(&self.bucket).key(key))
                    .set_version_id(version.map(str::to_string));
                sse_c_read!(k, req)
                    .send()
                    .await
                    .map_err(|e| classify(e, key))
            })
            .await;
        let out = match found {
            Ok(out) => out,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().unwrap_or("").to_string(),
            last_modified: to_time(out.last_modified()),
            user: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
            sse_c_key_md5: out.sse_customer_key_md5().map(str::to_string),
            content_type: out.content_type().map(str::to_string),
        }))
    }

    /// GET of `range` of the current object, or of `version` (an id from ListObjectVersions).
    pub(super) async fn get_range_at(
        &self,
        key: &str,
        version: Option<&str>,
        range: Range<u64>,
        if_match: Option<&str>,
        seen: OnSegment<'_>,
    ) -> Result<Body> {
        if range.is_empty() {
            return Ok(Body::default());
        }
        let range = &range;
        let out = self
            .with_read_keys(|k| async move {
                let req = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .range(format!("bytes={}-{}", range.start, range.end - 1))
                    .set_version_id(version.map(str::to_string))
                    .set_if_match(if_match.map(str::to_string));
                sse_c_read!(k, req)
                    .send()
                    .await
                    .map_err(|e| classify(e, key))
            })
            .await?;
        // The SDK's attempt timeout ends when the headers arrive; bound the body too.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut body = out.body;
        // Segments as received: joining them here would copy every byte once more.
        let mut segments = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, body.next())
                .await
                .map_err(|_| StoreError::Unreachable(format!("{key}: body: timeout")))?;
            match next {
                None => break,
                Some(Err(e)) => return Err(StoreError::Unreachable(format!("{key}: body: {e}"))),
                Some(Ok(segment)) if segment.is_empty() => {}
                Some(Ok(segment)) => {
                    seen(&segment);
                    segments.push(segment);
                }
            }
        }
        Ok(Body::new(segments))
    }
}
