//! What an upload does when another writer (another host) changed its object: the policy, and
//! what a writer hands back when it loses.
//!
//! Invariant: a conflict never drops bytes. The writer that loses returns everything it would
//! have stored in a `Lost` (a body, or a still-pending multipart upload) and the caller decides
//! where it goes (`fs::conflict`).

use bytes::Bytes;

use crate::store::{CompletedPart, Expect};

/// The `--on-conflict` policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Uploads, copies and deletes name the version they replace; when another host changed it,
    /// both versions are kept (the losing one as a sibling `NAME.conflict-HOST-TIME`).
    #[default]
    KeepBoth,
    /// No conditions: the last upload wins, as s3fs, goofys and rclone mount do.
    Overwrite,
}

impl OnConflict {
    /// Whether requests carry `If-Match` / `If-None-Match`.
    pub fn is_conditional(self) -> bool {
        self == OnConflict::KeepBoth
    }

    /// The condition a request carries under this policy: `e`, or none (`Overwrite`).
    pub fn expect(self, e: Expect) -> Expect {
        if self.is_conditional() {
            e
        } else {
            Expect::Anything
        }
    }
}

/// What an upload that lost a conflict would have stored, handed to the caller to keep.
#[derive(Debug)]
pub struct Lost {
    /// The key the upload was for.
    pub key: String,
    /// What the upload expected to find there.
    pub expected: Expect,
    pub data: LostData,
}

#[derive(Debug)]
pub enum LostData {
    /// A single PUT's body, exactly as it would have been stored (sealed in client mode).
    Body(Bytes),
    /// A multipart upload whose completion was refused: still pending on the server (S3 keeps
    /// it after a 412), to be completed or aborted by whoever receives it.
    Upload {
        id: String,
        parts: Vec<CompletedPart>,
    },
}
