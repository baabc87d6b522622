//! The one errno table of sealfs: every error any filesystem operation can return maps to an
//! errno here, and nowhere else.

use crate::crypto::attrs::AttrError;
use crate::crypto::format::FormatError;
use crate::read::ReadError;
use crate::store::StoreError;
use crate::write::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("read-only file system")]
    ReadOnly,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("name too long")]
    NameTooLong,
    #[error("bad file handle")]
    BadHandle,
    #[error("operation not supported: {0}")]
    NotSupported(&'static str),
    #[error("file changed on the server: {0}")]
    Stale(String),
    /// A delete or rename refused because another host changed the object since this mount
    /// saw it. Not ESTALE: the kernel retries unlink and rename once on ESTALE, after a fresh
    /// lookup, which would remove the very change the condition protected.
    #[error("changed by another writer: {0}")]
    Busy(String),
    #[error("{key}: {error}")]
    Corrupt { key: String, error: FormatError },
    #[error("{key}: {error}")]
    BadAttrs { key: String, error: AttrError },
    #[error("the name is reserved for sealfs's own use")]
    Reserved,
    #[error("no such extended attribute")]
    NoAttr,
    #[error("extended attributes exceed the {0} bytes S3 allows for an object's metadata")]
    MetaTooBig(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<ReadError> for FsError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(s) => FsError::Store(s),
            ReadError::Changed(m) => FsError::Stale(m),
            ReadError::Corrupt { key, error } => FsError::Corrupt { key, error },
        }
    }
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::ReadOnly => libc::EROFS,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported(_) => libc::ENOTSUP,
            FsError::Stale(_) => libc::ESTALE,
            FsError::Busy(_) => libc::EBUSY,
            FsError::Corrupt { .. } | FsError::BadAttrs { .. } => libc::EIO,
            FsError::Reserved => libc::EACCES,
            FsError::NoAttr => libc::ENODATA,
            FsError::MetaTooBig(_) => libc::E2BIG,
            FsError::Write(WriteError::Corrupt { .. }) => libc::EIO,
            FsError::Store(e) => store_errno(e),
            FsError::Write(WriteError::Store(e)) => store_errno(e),
            FsError::Write(WriteError::TooLarge(..)) => libc::EFBIG,
            FsError::Write(WriteError::Changed(_) | WriteError::Conflict(_)) => libc::ESTALE,
            FsError::Write(WriteError::Failed) => libc::EIO,
        }
    }

    /// Client mode: bytes or attributes from the bucket that failed authentication.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            FsError::Corrupt { .. }
                | FsError::BadAttrs { .. }
                | FsError::Write(WriteError::Corrupt { .. })
        )
    }

    /// Expected outcomes (a lookup of a missing name) are not worth a log line.
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::Exists
                | FsError::NotDir
                | FsError::IsDir
                | FsError::NotEmpty
                | FsError::ReadOnly
                | FsError::NameTooLong
                | FsError::Invalid(_)
                | FsError::NotSupported(_)
                | FsError::NoAttr
                | FsError::MetaTooBig(_)
        )
    }
}

fn store_errno(e: &StoreError) -> i32 {
    match e {
        StoreError::NotFound(_) => libc::ENOENT,
        StoreError::AccessDenied(_) => libc::EACCES,
        StoreError::PreconditionFailed(_) => libc::ESTALE,
        _ => libc::EIO,
    }
}

pub type Result<T> = std::result::Result<T, FsError>;
