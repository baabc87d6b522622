//! What `sealfs doctor` asks of an S3 server beyond the store's operations: the server's clock
//! (its `Date` header) and the client's resolved settings.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use parking_lot::Mutex;

use super::{classify, S3Store};
use crate::store::Result;

/// Keeps the `Date` header of the response it sees.
#[derive(Debug, Default, Clone)]
struct DateHeader(Arc<Mutex<Option<String>>>);

impl Intercept for DateHeader {
    fn name(&self) -> &'static str {
        "sealfs::DateHeader"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let date = context.response().headers().get("date").map(str::to_string);
        *self.0.lock() = date;
        Ok(())
    }
}

impl S3Store {
    /// The server's time, from the `Date` header of a one-key listing (`None`: no header).
    pub async fn server_time(&self) -> Result<Option<SystemTime>> {
        let seen = DateHeader::default();
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(1)
            .customize()
            .interceptor(seen.clone())
            .send()
            .await
            .map_err(|e| classify(e, &self.bucket))?;
        let date = seen.0.lock().take();
        Ok(date.and_then(|d| httpdate::parse_http_date(&d).ok()))
    }

    /// The region requests are signed for.
    pub fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map_or_else(|| "us-east-1".into(), |r| r.to_string())
    }
}
