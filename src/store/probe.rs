//! What a server does with conditional writes, found once per mount on a scratch key.
//!
//! S3 enforces `If-None-Match: *` and `If-Match: ETAG` on PutObject, CompleteMultipartUpload
//! and CopyObject's destination, and `If-Match` on DeleteObject; other servers enforce some or
//! none (Garage ignores them all today, moto enforces them on PutObject only). Each probe
//! sends a request that must fail if the condition is enforced and looks at the answer.
//!
//! Invariant: the scratch key is the caller's (a reserved, never-listed name) and is deleted
//! before returning, whatever happened; an upload the probe starts is completed or aborted.

use bytes::Bytes;

use super::{CompletedPart, Expect, ObjectStore, Result, StoreError, UserMeta};

/// Which conditional requests the server enforces (true: a failed condition is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// PutObject, both `If-None-Match: *` and `If-Match`.
    pub put: bool,
    /// CompleteMultipartUpload with `If-None-Match: *` (a large file's create).
    pub complete_create: bool,
    /// CompleteMultipartUpload with `If-Match` (a large file's overwrite).
    pub complete_replace: bool,
    /// CopyObject's destination conditions.
    pub copy: bool,
    /// DeleteObject with `If-Match`.
    pub delete: bool,
}

impl Enforced {
    /// What S3 does (and what is assumed until a probe says otherwise).
    pub const ALL: Enforced = Enforced {
        put: true,
        complete_create: true,
        complete_replace: true,
        copy: true,
        delete: true,
    };

    pub const NONE: Enforced = Enforced {
        put: false,
        complete_create: false,
        complete_replace: false,
        copy: false,
        delete: false,
    };

    /// One line for the log: what is protected and what is not.
    pub fn describe(&self) -> String {
        let names = [
            (self.put, "PutObject"),
            (
                self.complete_create,
                "CompleteMultipartUpload (If-None-Match)",
            ),
            (self.complete_replace, "CompleteMultipartUpload (If-Match)"),
            (self.copy, "CopyObject (destination)"),
            (self.delete, "DeleteObject"),
        ];
        let off: Vec<&str> = names
            .iter()
            .filter(|(on, _)| !on)
            .map(|(_, n)| *n)
            .collect();
        match off.len() {
            0 => "the server enforces conditional writes: writers on other hosts cannot \
                  silently replace each other's files"
                .into(),
            5 => "this server ignores conditional writes (If-Match / If-None-Match): \
                  protection against other hosts' writes is off, the last upload wins"
                .into(),
            _ => format!(
                "this server ignores conditional {}: those requests are not protected against \
                 other hosts' writes",
                off.join(", ")
            ),
        }
    }
}

/// Whether `res` is the refusal an enforced condition gives (`Ok(false)`: it was ignored).
fn refused<T>(res: Result<T>) -> Result<bool> {
    match res {
        Ok(_) => Ok(false),
        Err(StoreError::PreconditionFailed(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Probe `store` on `scratch` (a key nobody else uses). Costs 10 to 13 requests.
pub async fn probe(store: &dyn ObjectStore, scratch: &str) -> Result<Enforced> {
    let res = run(store, scratch).await;
    let cleanup = store.delete(scratch).await;
    let found = res?;
    cleanup?;
    Ok(found)
}

async fn run(store: &dyn ObjectStore, scratch: &str) -> Result<Enforced> {
    let none = UserMeta::new();
    store.put(scratch, Bytes::from_static(b"1"), &none).await?;
    // An ETag no object has: quoted like the real ones.
    let other = Expect::Version("\"00000000000000000000000000000000\"".into());
    let put_absent = store.put_if(scratch, Bytes::from_static(b"2"), &none, &Expect::Absent);
    let put = refused(put_absent.await)?
        && refused(
            store
                .put_if(scratch, Bytes::from_static(b"3"), &none, &other)
                .await,
        )?;
    let copy = refused(
        store
            .copy_if(scratch, scratch, Some(&none), None, &Expect::Absent)
            .await,
    )?;
    let delete = refused(store.delete_if(scratch, &other).await)?;
    // One upload tries If-Match first (refused, it stays for the next try), then
    // If-None-Match; a second upload is needed only when the first condition was ignored.
    let first = complete_refused(store, scratch, &other, None).await?;
    let complete_replace = matches!(first, Completion::Refused(_));
    let create = match first {
        Completion::Refused(id) => {
            complete_refused(store, scratch, &Expect::Absent, Some(id)).await?
        }
        Completion::Done => complete_refused(store, scratch, &Expect::Absent, None).await?,
    };
    if let Completion::Refused(id) = &create {
        // S3 keeps an upload whose completion was refused: nothing may be left behind.
        store.abort_multipart(scratch, id).await?;
    }
    Ok(Enforced {
        put,
        complete_create: matches!(create, Completion::Refused(_)),
        complete_replace,
        copy,
        delete,
    })
}

enum Completion {
    /// The condition was enforced: the upload (this id) is still pending.
    Refused(String),
    /// The upload completed: the condition was ignored.
    Done,
}

/// Complete `upload` (or a new one-part upload) on `expect`, aborting it on any error.
async fn complete_refused(
    store: &dyn ObjectStore,
    scratch: &str,
    expect: &Expect,
    upload: Option<String>,
) -> Result<Completion> {
    let id = match upload {
        Some(id) => id,
        None => store.create_multipart(scratch, &UserMeta::new()).await?,
    };
    let tried = async {
        let etag = store
            .upload_part(scratch, &id, 1, Bytes::from_static(b"4"))
            .await?;
        let parts = [CompletedPart { number: 1, etag }];
        refused(
            store
                .complete_multipart_if(scratch, &id, &parts, expect)
                .await,
        )
    }
    .await;
    match tried {
        Ok(true) => Ok(Completion::Refused(id)),
        Ok(false) => Ok(Completion::Done),
        Err(e) => {
            let _ = store.abort_multipart(scratch, &id).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    #[tokio::test]
    async fn an_enforcing_store_is_found_enforcing_and_left_clean() {
        let s = MemStore::new();
        assert_eq!(probe(&s, "p/.x/probe").await.unwrap(), Enforced::ALL);
        assert!(s.head("p/.x/probe").await.unwrap().is_none());
        assert_eq!(s.pending_uploads(), 0);
    }

    #[tokio::test]
    async fn a_store_that_ignores_conditions_is_found_ignoring_them() {
        let s = MemStore::new();
        s.ignore_conditions();
        assert_eq!(probe(&s, "probe").await.unwrap(), Enforced::NONE);
        assert!(s.head("probe").await.unwrap().is_none());
        assert_eq!(s.pending_uploads(), 0);
        assert!(Enforced::NONE
            .describe()
            .contains("protection against other hosts"));
    }
}
