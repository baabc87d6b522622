//! A multipart upload in progress: its parts done and in flight.

use tokio::task::JoinSet;

use crate::store::{self, CompletedPart, UserMeta};

pub(super) struct Upload {
    pub key: String,
    pub id: String,
    pub meta: UserMeta,
    pub parts: Vec<CompletedPart>,
    pub inflight: JoinSet<store::Result<CompletedPart>>,
    /// Counts this upload in `uploads_in_flight` until it is completed, aborted or handed on.
    pub _counted: crate::metrics::InFlight<'static>,
}

pub(super) fn flatten(
    res: std::result::Result<store::Result<CompletedPart>, tokio::task::JoinError>,
) -> store::Result<CompletedPart> {
    res?
}

pub(super) async fn join_one(up: &mut Upload) -> store::Result<()> {
    if let Some(res) = up.inflight.join_next().await {
        up.parts.push(flatten(res)?);
    }
    Ok(())
}

pub(super) async fn drain(up: &mut Upload) -> store::Result<()> {
    while !up.inflight.is_empty() {
        join_one(up).await?;
    }
    Ok(())
}
