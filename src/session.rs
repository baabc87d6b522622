//! A read-write mount's session in the bucket, and the cleanup of what crashed sessions left.
//!
//! S3 keeps a multipart upload that was neither completed nor aborted forever, its parts
//! stored and billed: a daemon killed mid-write (OOM killer, reboot, `kill -9`) leaves one.
//! sealfs marks what each mount process leaves in flight, so that a later mount can tell the
//! leftovers of a dead process from the work of a live mount (on this host or another) and
//! from other tools' uploads. Everything lives in the prefix's reserved area
//! `PREFIX.sealfs-unlinked/`:
//!
//! - `session-SID`: one per read-write mount process (SID: 16 random hex digits), a small
//!   JSON object naming its owner (a hash of the host, the boot, the pid and the process's
//!   start time). Written at mount, rewritten every `heartbeat` (its LastModified is the
//!   session's sign of life), deleted at a clean unmount.
//! - `SID/upload-HASH-N`: written *before* each CreateMultipartUpload of the session (HASH:
//!   of the object key), deleted once that upload is completed or aborted. So every upload
//!   sealfs starts is marked for as long as it exists.
//! - `SID/...`: the session's other scratch objects (files unlinked while open, the probe).
//!
//! At a read-write mount, a session is **dead** when its owner is this host and its process
//! is gone (another boot, no such pid, or a pid started at another time); when its object was
//! not rewritten for `stale_age` (a crash on another host); or when it has no object and its
//! newest marker is older than `stale_age`. An upload is aborted when some marker names its
//! key and every session that marks the key is dead. Uploads no marker names (other tools,
//! older sealfs) are never aborted: they are counted in one log line. Dead sessions' objects
//! are then deleted. A live mount's uploads stay marked by its own live session, so nothing in
//! the bucket (which the threat model lets an adversary write) can make sealfs abort them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::UNLINKED_DIR;
use crate::store::{
    self, CompletedPart, Expect, ListPage, ObjectMeta, ObjectStore, PendingUpload, Result,
    StoreError, UserMeta,
};

/// How a read-write mount treats stale uploads (`--stale-upload-age`, `--keep-stale-uploads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session on another host not heard from for this long is dead.
    pub stale_age: Duration,
    /// Abort dead sessions' uploads (`false`: only report them).
    pub abort: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            stale_age: Duration::from_secs(24 * 3600),
            abort: true,
        }
    }
}

impl SessionConfig {
    /// How often a live session rewrites its object: four times per `stale_age`, so a live
    /// session is never taken for a dead one (at least a minute apart).
    pub fn heartbeat(&self) -> Duration {
        (self.stale_age / 4).max(Duration::from_secs(60))
    }
}

/// The process a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// 32 hex digits of SHA-256 over the machine id and host name (not the name itself).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: a pid means nothing across reboots.
    pub boot: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot): a pid reused later is not it.
    pub start: u64,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it runs. A zombie
/// (killed, not yet reaped: a daemon whose parent is gone may stay one) does not run.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl Owner {
    pub fn current() -> Owner {
        let mut h = Sha256::new();
        h.update(b"sealfs-host\0");
        h.update(read_trimmed("/etc/machine-id"));
        h.update(b"\0");
        h.update(crate::sys::hostname());
        let pid = std::process::id();
        Owner {
            host: hex::encode(&h.finalize()[..16]),
            boot: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }
}

/// What is known of another session's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Alive,
    Dead,
}

/// A session object as listed: its owner (None: unreadable or foreign) and LastModified.
#[derive(Debug, Clone)]
pub struct SessionSeen {
    pub owner: Option<Owner>,
    pub heard: SystemTime,
}

/// Everything under the reserved area, grouped by session.
#[derive(Debug, Default)]
pub struct Area {
    pub sessions: BTreeMap<String, SessionSeen>,
    /// Per session: (key hash, LastModified) of each upload marker.
    pub markers: BTreeMap<String, Vec<(String, SystemTime)>>,
    /// Per session: every object under `SID/` (markers included), to delete once it is dead.
    pub objects: BTreeMap<String, Vec<String>>,
}

/// What a cleanup decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Uploads of dead sessions, to abort.
    pub abort: Vec<PendingUpload>,
    /// Uploads a live session marks.
    pub live: usize,
    /// Uploads nobody marked: never aborted.
    pub unmarked: Vec<PendingUpload>,
    /// Dead sessions, whose objects go.
    pub dead: Vec<String>,
}

/// Decide, without I/O: `alive(pid)` is the start time of a process of this host.
pub fn judge(
    area: &Area,
    uploads: &[PendingUpload],
    (here, own): (&Owner, &str),
    (now, stale_age): (SystemTime, Duration),
    alive: &dyn Fn(u32) -> Option<u64>,
) -> Verdict {
    let old = |t: SystemTime| now.duration_since(t).is_ok_and(|d| d > stale_age);
    let life = |sid: &str| -> Life {
        if sid == own {
            return Life::Alive;
        }
        match area.sessions.get(sid) {
            // This host's process: known to run or not (a start time of 0 was unreadable
            // when written: such a session is judged by its age, as another host's).
            Some(SessionSeen { owner: Some(o), .. }) if o.host == here.host && o.start != 0 => {
                match o.boot == here.boot && alive(o.pid) == Some(o.start) {
                    true => Life::Alive,
                    false => Life::Dead,
                }
            }
            Some(s) if old(s.heard) => Life::Dead,
            Some(_) => Life::Alive,
            None => {
                let newest = area
                    .markers
                    .get(sid)
                    .and_then(|m| m.iter().map(|x| x.1).max());
                match newest.is_some_and(old) {
                    true => Life::Dead,
                    false => Life::Alive,
                }
            }
        }
    };
    let sids = area
        .sessions
        .keys()
        .chain(area.markers.keys())
        .chain(area.objects.keys());
    let lives: BTreeMap<&str, Life> = sids.map(|s| (s.as_str(), life(s))).collect();
    let mut marked_by: HashMap<&str, Vec<Life>> = HashMap::new();
    for (sid, markers) in &area.markers {
        for (hash, _) in markers {
            marked_by.entry(hash).or_default().push(lives[sid.as_str()]);
        }
    }
    let mut v = Verdict::default();
    for up in uploads {
        match marked_by.get(key_hash(&up.key).as_str()) {
            None => v.unmarked.push(up.clone()),
            Some(l) if l.contains(&Life::Alive) => v.live += 1,
            Some(_) => v.abort.push(up.clone()),
        }
    }
    v.dead = (lives.iter())
        .filter(|(_, l)| **l == Life::Dead)
        .map(|(s, _)| s.to_string())
        .collect();
    v
}

/// 32 hex digits of SHA-256 of an object key: markers name keys without showing them.
pub fn key_hash(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// This mount process's session.
pub struct Session {
    store: Arc<dyn ObjectStore>,
    area: String,
    id: String,
    owner: Owner,
    config: SessionConfig,
    next: AtomicU64,
    /// Uploads of this session in progress: upload id → (object key, marker key).
    pending: parking_lot::Mutex<HashMap<String, (String, String)>>,
}

/// The largest session object read back: anything bigger is not sealfs's.
const MAX_SESSION_OBJECT: u64 = 4096;

impl Session {
    /// Register a new session under `prefix` (one PUT).
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        config: SessionConfig,
    ) -> Result<Arc<Session>> {
        let s = Session {
            store,
            area: format!("{prefix}{UNLINKED_DIR}/"),
            id: crate::sys::random_hex::<8>(),
            owner: Owner::current(),
            config,
            next: AtomicU64::new(0),
            pending: Default::default(),
        };
        s.heartbeat().await?;
        Ok(Arc::new(s))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key of this session's scratch area (`SID/name`), cleaned up if the session dies.
    pub fn scratch_key(&self, name: &str) -> String {
        format!("{}{}/{name}", self.area, self.id)
    }

    fn session_key(&self, sid: &str) -> String {
        format!("{}session-{sid}", self.area)
    }

    /// Rewrite the session object: the session's sign of life.
    pub async fn heartbeat(&self) -> Result<()> {
        let body = serde_json::to_vec(&self.owner).expect("an owner serializes");
        let key = self.session_key(&self.id);
        store::ObjectStore::put(&*self.store, &key, Bytes::from(body), &UserMeta::new()).await?;
        Ok(())
    }

    /// Keep the session alive until the runtime stops (a failed rewrite is retried next time).
    pub fn keep_alive(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let every = self.config.heartbeat();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(s) = me.upgrade() else { return };
                if let Err(e) = s.heartbeat().await {
                    tracing::warn!(error = %e, "could not renew this mount's session object");
                }
            }
        });
    }

    /// A clean unmount: uploads still pending (their abort failed, say while the server was
    /// away) are aborted again; this session's objects go, and its session object too unless
    /// an upload is still there, whose marker and session then let a later mount abort it.
    pub async fn end(&self) {
        let pending: Vec<_> = self.pending.lock().drain().collect();
        let mut kept = Vec::new();
        for (id, (key, marker)) in pending {
            match self.store.abort_multipart(&key, &id).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(%key, error = %e, "could not abort an upload at unmount: the next read-write mount will");
                    kept.push(marker);
                }
            }
        }
        let mine = format!("{}{}/", self.area, self.id);
        let mut keys: Vec<String> = match store::list_all(&*self.store, &mine).await {
            Ok(objs) => objs.into_iter().map(|o| o.key).collect(),
            Err(_) => Vec::new(),
        };
        keys.retain(|k| !kept.contains(k));
        if kept.is_empty() {
            keys.push(self.session_key(&self.id));
        }
        if let Err(e) = store::delete_all(&*self.store, &keys).await {
            tracing::warn!(error = %e, "could not delete this mount's session objects");
        }
    }

    async fn read_area(&self) -> Result<Area> {
        let mut area = Area::default();
        for obj in store::list_all(&*self.store, &self.area).await? {
            let rel = &obj.key[self.area.len()..];
            if let Some(sid) = rel.strip_prefix("session-") {
                // This session's own object needs no reading: `judge` knows it is alive.
                let owner = match obj.size <= MAX_SESSION_OBJECT && sid != self.id {
                    true => store::get_all(&*self.store, &obj.key)
                        .await?
                        .and_then(|b| serde_json::from_slice(&b).ok()),
                    false => None,
                };
                let seen = SessionSeen {
                    owner,
                    heard: obj.last_modified,
                };
                area.sessions.insert(sid.to_string(), seen);
            } else if let Some((sid, name)) = rel.split_once('/') {
                if let Some(hash) = name
                    .strip_prefix("upload-")
                    .and_then(|n| n.split('-').next())
                {
                    let m = area.markers.entry(sid.to_string()).or_default();
                    m.push((hash.to_string(), obj.last_modified));
                }
                area.objects
                    .entry(sid.to_string())
                    .or_default()
                    .push(obj.key.clone());
            }
        }
        Ok(area)
    }

    /// Abort the uploads dead sessions left under `prefix` and delete their objects; one log
    /// line says what was found. Returns what was decided.
    pub async fn clean_up(&self, prefix: &str, now: SystemTime) -> Result<Verdict> {
        let area = self.read_area().await?;
        let uploads = self.store.list_uploads(prefix).await?;
        let me = (&self.owner, self.id.as_str());
        let v = judge(
            &area,
            &uploads,
            me,
            (now, self.config.stale_age),
            &process_start,
        );
        if !self.config.abort {
            if !v.abort.is_empty() {
                tracing::warn!(
                    "{} multipart upload(s) left by crashed sealfs mounts under {prefix:?} kept (--keep-stale-uploads); their parts are stored until aborted",
                    v.abort.len()
                );
            }
            return Ok(v);
        }
        let mut failed = false;
        for up in &v.abort {
            match self.store.abort_multipart(&up.key, &up.upload_id).await {
                Ok(()) | Err(StoreError::NotFound(_)) => tracing::warn!(
                    key = %up.key,
                    initiated = %humantime::format_rfc3339_seconds(up.initiated),
                    "aborted a multipart upload a crashed sealfs mount left"
                ),
                Err(e) => {
                    failed = true;
                    tracing::warn!(key = %up.key, error = %e, "could not abort a stale upload");
                }
            }
        }
        // A session whose upload could not be aborted keeps its markers for the next mount.
        if !failed {
            let mut keys = Vec::new();
            for sid in &v.dead {
                keys.extend(area.objects.get(sid).into_iter().flatten().cloned());
                if area.sessions.contains_key(sid) {
                    keys.push(self.session_key(sid));
                }
            }
            store::delete_all(&*self.store, &keys).await?;
        }
        if !v.unmarked.is_empty() {
            tracing::info!(
                "{} multipart upload(s) under {prefix:?} were not started by a sealfs mount (another tool, or an older sealfs): left alone; an S3 lifecycle rule (AbortIncompleteMultipartUpload) cleans such uploads",
                v.unmarked.len()
            );
        }
        Ok(v)
    }

    fn marker_key(&self, key: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.scratch_key(&format!("upload-{}-{n}", key_hash(key)))
    }
}

/// The store a read-write mount writes through: each multipart upload is marked before it is
/// created and unmarked once it is completed or aborted.
pub struct Marked {
    inner: Arc<dyn ObjectStore>,
    session: Arc<Session>,
}

impl Marked {
    pub fn new(inner: Arc<dyn ObjectStore>, session: Arc<Session>) -> Self {
        Self { inner, session }
    }

    /// The upload is over (completed, aborted, or gone): its marker goes.
    async fn unmark(&self, upload_id: &str) {
        let marker = self.session.pending.lock().remove(upload_id);
        if let Some((_, marker)) = marker {
            if let Err(e) = self.inner.delete(&marker).await {
                tracing::warn!(error = %e, "could not delete an upload marker");
            }
        }
    }
}

#[async_trait]
impl ObjectStore for Marked {
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes> {
        self.inner.get_range(key, range, if_match).await
    }
    async fn get_body_with(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
        seen: crate::store::OnSegment<'_>,
    ) -> Result<crate::store::Body> {
        self.inner.get_body_with(key, range, if_match, seen).await
    }
    async fn put_if(&self, key: &str, body: Bytes, meta: &UserMeta, e: &Expect) -> Result<String> {
        self.inner.put_if(key, body, meta, e).await
    }
    async fn create_multipart(&self, key: &str, meta: &UserMeta) -> Result<String> {
        let marker = self.session.marker_key(key);
        self.inner
            .put(&marker, Bytes::new(), &UserMeta::new())
            .await?;
        match self.inner.create_multipart(key, meta).await {
            Ok(id) => {
                let entry = (key.to_string(), marker);
                self.session.pending.lock().insert(id.clone(), entry);
                Ok(id)
            }
            Err(e) => {
                let _ = self.inner.delete(&marker).await;
                Err(e)
            }
        }
    }
    async fn upload_part(&self, key: &str, id: &str, n: i32, body: Bytes) -> Result<String> {
        self.inner.upload_part(key, id, n, body).await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: i32,
        src_key: &str,
        src_etag: &str,
        range: std::ops::Range<u64>,
    ) -> Result<String> {
        (self.inner)
            .upload_part_copy(key, id, n, src_key, src_etag, range)
            .await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: &[CompletedPart],
        e: &Expect,
    ) -> Result<String> {
        let r = self.inner.complete_multipart_if(key, id, parts, e).await;
        // A refused condition keeps the upload (it completes or is aborted later); any other
        // failure may have left it too: only success, or an upload that is gone, unmarks it.
        if matches!(r, Ok(_) | Err(StoreError::NotFound(_))) {
            self.unmark(id).await;
        }
        r
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        let r = self.inner.abort_multipart(key, id).await;
        if matches!(r, Ok(()) | Err(StoreError::NotFound(_))) {
            self.unmark(id).await;
        }
        r
    }
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        self.inner.list_uploads(prefix).await
    }
    async fn copy_if(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&UserMeta>,
        src_etag: Option<&str>,
        e: &Expect,
    ) -> Result<String> {
        self.inner.copy_if(src, dst, meta, src_etag, e).await
    }
    async fn delete_if(&self, key: &str, e: &Expect) -> Result<()> {
        self.inner.delete_if(key, e).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        self.inner.list(prefix, delimiter, token, max_keys).await
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
