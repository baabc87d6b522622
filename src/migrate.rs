//! `sealfs migrate`: move a version-1 client-mode prefix to format 2 in place. The config
//! becomes version 2 first (the same data keys, so no file body is re-encrypted; a new prefix
//! key), then every object is copied server-side to its encrypted name with its attributes
//! sealed, and the old object deleted.
//!
//! Invariants:
//! - Resumable: an interrupted run leaves a version-2 config, objects already under encrypted
//!   names (skipped the next time: their names decrypt) and objects still under plain names
//!   (moved the next time). The copy finishes before the delete, so nothing is ever under
//!   neither name.
//! - An object's attributes come from its version-1 metadata; its file id from `sealfs-id`, or
//!   from its header when the metadata lacks one (one 64-byte GET). Objects that are not
//!   sealfs objects are moved too (they stay unreadable, as they were).
//! - Mounts of the prefix must be stopped first: a version-1 mount does not understand the
//!   version-2 config, and a version-2 mount does not list objects not yet moved.

use std::sync::Arc;

use crate::crypto::keys::Keyring;
use crate::layout::{Layout, CONFIG_NAME};
use crate::meta::{Defaults, MetaCodec};
use crate::progress::Progress;
use crate::setup::{self, EncryptionConfig, SetupError};
use crate::store::{self, ObjectMeta, ObjectStore, StoreError};

/// s3fs's legacy directory marker suffix (version 1 reads them as directories).
const FOLDER_SUFFIX: &str = "_$folder$";
/// Objects moved at once: enough to hide request latency.
const CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Objects moved to their encrypted names in this run.
    pub moved: usize,
    /// Objects already under encrypted names (a resumed run).
    pub already: usize,
    /// Objects that failed (reported; run again).
    pub failed: usize,
    /// Whether this run upgraded the config (false: it was version 2 already).
    pub upgraded: bool,
}

/// `sealfs migrate s3://BUCKET[/PREFIX]`.
pub async fn migrate(
    s: Arc<dyn ObjectStore>,
    bucket: &str,
    url: &str,
    prefix: &str,
    enc: &EncryptionConfig,
) -> Result<Migrated, MigrateError> {
    let (ring, upgraded) = setup::upgrade(&*s, bucket, url, prefix, enc).await?;
    let target = Arc::new(Target::new(prefix, &ring));
    let objects: Vec<store::ListObject> = store::list_all(&*s, prefix)
        .await?
        .into_iter()
        .filter(|o| !target.layout.is_internal(&o.key))
        // Config objects of prefixes below this one are theirs.
        .filter(|o| o.key.rsplit('/').next() != Some(CONFIG_NAME))
        .collect();
    let total_bytes = objects.iter().map(|o| o.size).sum();
    let mut bar = Progress::new("migrated", objects.len() as u64, total_bytes);
    let mut out = Migrated {
        upgraded,
        ..Migrated::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for o in objects {
        if target.is_migrated(&o.key) {
            out.already += 1;
            bar.inc(o.size);
            continue;
        }
        while tasks.len() >= CONCURRENCY {
            tally(&mut tasks, &mut out, &mut bar).await;
        }
        let (s, t) = (s.clone(), target.clone());
        tasks.spawn(async move {
            let res = t.move_one(&*s, &o).await;
            (o.key, o.size, res)
        });
    }
    while !tasks.is_empty() {
        tally(&mut tasks, &mut out, &mut bar).await;
    }
    bar.finish();
    // The attribute indexes name version-1 keys: drop them (they are rebuilt as listed).
    let index_prefix = format!("{prefix}{}/", crate::layout::INDEX_DIR);
    let indexes: Vec<String> = store::list_all(&*s, &index_prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    store::delete_all(&*s, &indexes).await?;
    Ok(out)
}

async fn tally(
    tasks: &mut tokio::task::JoinSet<(String, u64, Result<(), MigrateError>)>,
    out: &mut Migrated,
    bar: &mut Progress,
) {
    let size = match tasks.join_next().await {
        Some(Ok((_, size, Ok(())))) => {
            out.moved += 1;
            size
        }
        Some(Ok((key, size, Err(e)))) => {
            out.failed += 1;
            bar.say(&format!("FAILED {key}: {e}"));
            size
        }
        Some(Err(e)) => {
            out.failed += 1;
            bar.say(&format!("FAILED: {e}"));
            0
        }
        None => return,
    };
    bar.inc(size);
}

/// The prefix's layouts and attribute encodings before and after.
struct Target {
    prefix: String,
    ring: Arc<Keyring>,
    layout: Layout,
    old_meta: MetaCodec,
    new_meta: MetaCodec,
}

impl Target {
    fn new(prefix: &str, ring: &Arc<Keyring>) -> Self {
        let sealer = ring.attr_sealer().expect("a version-2 keyring");
        Self {
            prefix: prefix.to_string(),
            ring: ring.clone(),
            layout: Layout::with_names(prefix, ring.name_cipher()),
            old_meta: MetaCodec::plain(prefix),
            new_meta: MetaCodec::sealed(prefix, sealer),
        }
    }

    /// Whether `key` is already under its encrypted name (a marker: its directory's path).
    fn is_migrated(&self, key: &str) -> bool {
        key == self.prefix || self.layout.path_of(key).is_some()
    }

    /// Copy one version-1 object to its encrypted name with sealed attributes, then delete it.
    async fn move_one(
        &self,
        s: &dyn ObjectStore,
        listed: &store::ListObject,
    ) -> Result<(), MigrateError> {
        let Some(obj) = s.head(&listed.key).await? else {
            return Ok(()); // gone since the listing
        };
        let rel = &obj.key[self.prefix.len()..];
        let (path, marker) = match (rel.strip_suffix('/'), rel.strip_suffix(FOLDER_SUFFIX)) {
            (Some(dir), _) | (None, Some(dir)) => (dir, true),
            _ => (rel, false),
        };
        let size = crate::crypto::format::plain_size(obj.size).unwrap_or(obj.size);
        let decoded = (self.old_meta)
            .decode(&obj, marker, size, &defaults())
            .expect("plain metadata always decodes");
        let file_id = match (marker, crate::meta::id_bytes(decoded.file_id.as_deref())) {
            (true, _) => None,
            (false, Some(id)) => Some(id),
            (false, None) => self.header_id(s, &obj).await,
        };
        let to = match marker {
            true => self.layout.dir_prefix(path),
            false => self.layout.file_key(path),
        };
        let meta = (self.new_meta).encode(&to, &decoded.attr, file_id, Some(&obj.user));
        store::copy_any_size(
            s,
            &obj,
            &to,
            &meta,
            crate::write::WriteConfig::default().part_size,
            // A run cut short between copy and delete copies again: no condition here.
            &store::Expect::Anything,
        )
        .await?;
        // The source goes only as it was copied: a change made meanwhile stays (and the
        // migration reports it).
        s.delete_if(&obj.key, &store::Expect::Version(obj.etag.clone()))
            .await?;
        Ok(())
    }

    /// The file id in an object's header, when it is a sealfs object under this keyring.
    async fn header_id(&self, s: &dyn ObjectStore, obj: &ObjectMeta) -> Option<[u8; 16]> {
        let len = crate::crypto::format::HEADER_LEN;
        let head = s.get_range(&obj.key, 0..len, Some(&obj.etag)).await.ok()?;
        match self.ring.open_header(&head).ok()? {
            crate::crypto::codec::FileCodec::Client(keys) => Some(keys.header().file_id),
            crate::crypto::codec::FileCodec::Plain => None,
        }
    }
}

/// Attributes a version-1 object lacks are sealed as a mount would show them by default.
fn defaults() -> Defaults {
    Defaults {
        uid: crate::sys::ids().0,
        gid: crate::sys::ids().1,
        file_mode: 0o644,
        dir_mode: 0o755,
    }
}
