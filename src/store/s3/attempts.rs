//! Counts the SDK's retries: an interceptor that sees every attempt of every S3 request and
//! records those beyond the first in the process's metrics (`sealfs_s3_retries_total`).
//! The store's own counters see a request once, however many attempts it took.

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

#[derive(Debug)]
pub(super) struct CountRetries;

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "sealfs::CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The orchestrator stores the attempt's number before this hook runs.
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1)
        {
            crate::metrics::global().retries.inc();
        }
        Ok(())
    }
}
