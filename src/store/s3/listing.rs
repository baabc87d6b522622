//! Listings for `S3Store`: ListObjectsV2 (one page) and ListObjectVersions (one page, delete
//! markers included, for point-in-time mounts and `sealfs versions`).

use aws_sdk_s3::error::SdkError;

use super::{classify, to_time, S3Store};
use crate::store::{ListObject, ListPage, ObjectVersion, Result, VersionPage};

impl S3Store {
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token)
            .set_max_keys(max_keys)
            .send()
            .await
            .map_err(|e| classify(e, prefix))?;
        Ok(ListPage {
            objects: out
                .contents()
                .iter()
                .map(|o| ListObject {
                    key: o.key().unwrap_or("").to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or("").to_string(),
                    last_modified: to_time(o.last_modified()),
                })
                .collect(),
            prefixes: out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string))
                .collect(),
            next_token: if out.is_truncated() == Some(true) {
                out.next_continuation_token().map(str::to_string)
            } else {
                None
            },
        })
    }

    pub(super) async fn versioning_status(&self) -> Result<Option<String>> {
        let out = match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            // A 200 whose body the SDK cannot read: moto answers a bucket that never had
            // versioning with an empty element of another name. No status, then.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 200 => return Ok(None),
            Err(e) => return Err(classify(e, &self.bucket)),
        };
        Ok(out.status().map(|s| s.as_str().to_string()))
    }

    pub(super) async fn list_versions_page(
        &self,
        prefix: &str,
        token: Option<(String, String)>,
    ) -> Result<VersionPage> {
        let (key_marker, id_marker) = token.unzip();
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_key_marker(key_marker)
            .set_version_id_marker(id_marker.filter(|m| !m.is_empty()))
            .send()
            .await
            .map_err(|e| classify(e, prefix))?;
        let mut versions: Vec<ObjectVersion> = out
            .versions()
            .iter()
            .map(|v| ObjectVersion {
                key: v.key().unwrap_or("").to_string(),
                version_id: v.version_id().unwrap_or("null").to_string(),
                size: v.size().unwrap_or(0).max(0) as u64,
                etag: v.e_tag().unwrap_or("").to_string(),
                last_modified: to_time(v.last_modified()),
                is_latest: v.is_latest() == Some(true),
                delete_marker: false,
            })
            .collect();
        versions.extend(out.delete_markers().iter().map(|d| ObjectVersion {
            key: d.key().unwrap_or("").to_string(),
            version_id: d.version_id().unwrap_or("null").to_string(),
            size: 0,
            etag: String::new(),
            last_modified: to_time(d.last_modified()),
            is_latest: d.is_latest() == Some(true),
            delete_marker: true,
        }));
        // S3 returns versions and delete markers in two lists; merge them back into one
        // order: by key, newest first.
        versions.sort_by(|a, b| {
            (a.key.as_str(), b.last_modified, !a.is_latest).cmp(&(
                b.key.as_str(),
                a.last_modified,
                !b.is_latest,
            ))
        });
        // A server that says "truncated" without a marker to go on would loop forever.
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(k)) if !k.is_empty() => Some((
                k.to_string(),
                out.next_version_id_marker().unwrap_or("").to_string(),
            )),
            _ => None,
        };
        Ok(VersionPage { versions, next })
    }
}
