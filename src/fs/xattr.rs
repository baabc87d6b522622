//! Extended attributes: names in the `user.` namespace, stored with the object's other
//! attributes (s3fs's `xattr` metadata key, or inside the sealed value in client format 2),
//! so they cost no request of their own and move with renames.
//!
//! Invariants: only `user.` names are stored (other namespaces are `EOPNOTSUPP`, as on
//! filesystems without them, which `cp -a` and `rsync -X` accept); an object's metadata never
//! exceeds S3's 2 KB budget: a change that would is refused with `E2BIG` and nothing changes.
//! A change is a metadata update like chmod (a server-side copy, or at the next flush for an
//! open file) and moves ctime.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Fs, FsError, Ino, Result, SetAttr};
use crate::meta;

/// The one namespace stored.
const USER: &str = "user.";

/// How setxattr treats an existing name (XATTR_CREATE, XATTR_REPLACE, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    Any,
    Create,
    Replace,
}

/// Whether `name` is one this filesystem stores (`EOPNOTSUPP` otherwise).
pub fn supported(name: &str) -> bool {
    name.len() > USER.len() && name.starts_with(USER)
}

impl Fs {
    pub async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        let attr = self.getattr(ino).await?;
        attr.xattrs.get(name).cloned().ok_or(FsError::NoAttr)
    }

    /// Every stored name, each followed by a NUL, as listxattr(2) returns them.
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let attr = self.getattr(ino).await?;
        let mut out = Vec::new();
        for name in attr.xattrs.keys() {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], how: SetMode) -> Result<()> {
        if !supported(name) {
            return Err(FsError::NotSupported("extended attributes outside user."));
        }
        self.check_writable()?;
        let attr = self.getattr(ino).await?;
        let exists = attr.xattrs.contains_key(name);
        match how {
            SetMode::Create if exists => return Err(FsError::Exists),
            SetMode::Replace if !exists => return Err(FsError::NoAttr),
            _ => {}
        }
        let mut x: BTreeMap<String, Vec<u8>> = (*attr.xattrs).clone();
        x.insert(name.to_string(), value.to_vec());
        self.store_xattrs(ino, &attr, x).await
    }

    pub async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        if !supported(name) {
            return Err(FsError::NoAttr);
        }
        self.check_writable()?;
        let attr = self.getattr(ino).await?;
        let mut x: BTreeMap<String, Vec<u8>> = (*attr.xattrs).clone();
        x.remove(name).ok_or(FsError::NoAttr)?;
        self.store_xattrs(ino, &attr, x).await
    }

    /// Store `x` as `ino`'s extended attributes, unless the object's metadata would then
    /// exceed S3's budget.
    async fn store_xattrs(
        &self,
        ino: Ino,
        attr: &crate::inode::Attr,
        x: BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        let x = Arc::new(x);
        let next = crate::inode::Attr {
            xattrs: x.clone(),
            ..attr.clone()
        };
        // The encoded size does not depend on the key (sealed values are bound to it, not
        // sized by it), nor on the file id's value.
        let id = self.cfg.keys.is_some().then_some([0; 16]);
        let encoded = self.meta.encode("", &next, id, None);
        if meta::meta_size(&encoded) > meta::USER_META_BUDGET {
            return Err(FsError::MetaTooBig(meta::USER_META_BUDGET));
        }
        let set = SetAttr {
            xattrs: Some(x),
            ..Default::default()
        };
        self.setattr(ino, None, set).await?;
        Ok(())
    }
}
