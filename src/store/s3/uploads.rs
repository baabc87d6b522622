//! ListMultipartUploads for `S3Store`: the uploads in progress under a prefix, every page.

use super::{classify, to_time, S3Store};
use crate::store::{PendingUpload, Result};

impl S3Store {
    pub(super) async fn list_uploads_all(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| classify(e, prefix))?;
            for up in page.uploads() {
                let (Some(key), Some(id)) = (up.key(), up.upload_id()) else {
                    continue;
                };
                out.push(PendingUpload {
                    key: key.to_string(),
                    upload_id: id.to_string(),
                    initiated: to_time(up.initiated()),
                });
            }
            // A server that says "truncated" without a marker to go on would loop forever.
            match (page.is_truncated(), page.next_key_marker()) {
                (Some(true), Some(k)) if !k.is_empty() => {
                    key_marker = Some(k.to_string());
                    id_marker = page.next_upload_id_marker().map(str::to_string);
                }
                _ => return Ok(out),
            }
        }
    }
}
