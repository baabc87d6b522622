use super::*;
use crate::store::mem::MemStore;

const HOUR: Duration = Duration::from_secs(3600);

fn up(key: &str, id: &str) -> PendingUpload {
    PendingUpload {
        key: key.into(),
        upload_id: id.into(),
        initiated: SystemTime::UNIX_EPOCH,
    }
}

fn owner(host: &str, pid: u32, start: u64) -> Owner {
    Owner {
        host: host.into(),
        boot: "boot-1".into(),
        pid,
        start,
    }
}

struct World {
    area: Area,
    now: SystemTime,
}

impl World {
    fn new() -> Self {
        Self {
            area: Area::default(),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        }
    }
    fn session(&mut self, sid: &str, o: Option<Owner>, heard_ago: Duration) {
        let seen = SessionSeen {
            owner: o,
            heard: self.now - heard_ago,
        };
        self.area.sessions.insert(sid.into(), seen);
    }
    fn marks(&mut self, sid: &str, key: &str, ago: Duration) {
        let at = self.now - ago;
        let m = self.area.markers.entry(sid.into()).or_default();
        m.push((key_hash(key), at));
        let o = self.area.objects.entry(sid.into()).or_default();
        o.push(format!(
            "p/.sealfs-unlinked/{sid}/upload-{}-0",
            key_hash(key)
        ));
    }
    fn judge(&self, uploads: &[PendingUpload]) -> Verdict {
        let here = owner("this-host", 100, 5000);
        // On this host pid 200 runs (started at 7000); nothing else does.
        let alive = |pid: u32| (pid == 200).then_some(7000);
        judge(
            &self.area,
            uploads,
            (&here, "mine"),
            (self.now, 24 * HOUR),
            &alive,
        )
    }
}

#[test]
fn this_hosts_sessions_are_dead_exactly_when_their_process_is_gone() {
    let mut w = World::new();
    w.session("running", Some(owner("this-host", 200, 7000)), 2 * HOUR);
    w.session("gone", Some(owner("this-host", 300, 7000)), Duration::ZERO);
    w.session(
        "reused",
        Some(owner("this-host", 200, 6999)),
        Duration::ZERO,
    );
    let rebooted = Owner {
        boot: "boot-0".into(),
        ..owner("this-host", 200, 7000)
    };
    w.session("rebooted", Some(rebooted), Duration::ZERO);
    for sid in ["running", "gone", "reused", "rebooted", "mine"] {
        w.marks(sid, &format!("p/{sid}"), Duration::ZERO);
    }
    let uploads: Vec<_> = ["running", "gone", "reused", "rebooted", "mine"]
        .iter()
        .map(|s| up(&format!("p/{s}"), s))
        .collect();
    let v = w.judge(&uploads);
    let aborted: Vec<_> = v.abort.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(aborted, ["gone", "reused", "rebooted"]);
    assert_eq!(v.live, 2, "the running process's and this mount's own");
    assert_eq!(v.dead, ["gone", "rebooted", "reused"]);
}

#[test]
fn other_hosts_sessions_die_only_after_the_stale_age_without_a_heartbeat() {
    let mut w = World::new();
    w.session("fresh", Some(owner("other-host", 1, 1)), 23 * HOUR);
    w.session("stale", Some(owner("other-host", 1, 1)), 25 * HOUR);
    // Unreadable session objects (foreign, too big) are judged by their age alone, as are
    // this host's sessions whose start time was unknown.
    w.session("junk", None, HOUR);
    w.session("no-start", Some(owner("this-host", 999, 0)), HOUR);
    for sid in ["fresh", "stale", "junk", "no-start"] {
        w.marks(sid, &format!("p/{sid}"), 30 * HOUR);
    }
    let uploads: Vec<_> = ["fresh", "stale", "junk", "no-start"]
        .iter()
        .map(|s| up(&format!("p/{s}"), s))
        .collect();
    let v = w.judge(&uploads);
    let aborted: Vec<_> = v.abort.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(aborted, ["stale"]);
    assert_eq!(v.live, 3);
    // A day later with no heartbeat, they are all dead.
    w.now += 24 * HOUR;
    assert_eq!(w.judge(&uploads).abort.len(), 4);
}

#[test]
fn markers_without_a_session_object_die_with_age_and_unmarked_uploads_are_never_aborted() {
    let mut w = World::new();
    w.marks("orphan-new", "p/a", HOUR);
    w.marks("orphan-old", "p/b", 25 * HOUR);
    let uploads = [up("p/a", "a"), up("p/b", "b"), up("p/other-tool", "c")];
    let v = w.judge(&uploads);
    assert_eq!(v.abort, [up("p/b", "b")]);
    assert_eq!(v.unmarked, [up("p/other-tool", "c")]);
    assert_eq!(v.dead, ["orphan-old"]);
}

#[test]
fn a_key_a_live_session_marks_is_kept_even_if_a_dead_one_marks_it_too() {
    // Another host's crashed session and this mount both wrote the key (or the bucket
    // forged a dead session marking it): the upload of the live one must survive.
    let mut w = World::new();
    w.session("dead", Some(owner("this-host", 300, 1)), Duration::ZERO);
    w.marks("dead", "p/k", Duration::ZERO);
    w.marks("mine", "p/k", Duration::ZERO);
    let v = w.judge(&[up("p/k", "1"), up("p/k", "2")]);
    assert!(v.abort.is_empty(), "{v:?}");
    assert_eq!(v.live, 2);
    assert_eq!(v.dead, ["dead"], "its objects still go");
}

#[test]
fn the_heartbeat_is_a_quarter_of_the_stale_age_and_at_least_a_minute() {
    let c = |secs| SessionConfig {
        stale_age: Duration::from_secs(secs),
        abort: true,
    };
    assert_eq!(c(24 * 3600).heartbeat(), Duration::from_secs(6 * 3600));
    assert_eq!(c(10).heartbeat(), Duration::from_secs(60));
}

#[test]
fn process_start_reads_this_process_and_nothing_for_a_missing_pid() {
    assert!(process_start(std::process::id()).is_some_and(|t| t > 0));
    assert_eq!(process_start(u32::MAX - 1), None);
}

fn meta() -> UserMeta {
    UserMeta::new()
}

/// Replace session `s`'s object with one naming a process of this host that is gone.
async fn crash(mem: &MemStore, s: &Session) {
    let dead = Owner {
        pid: u32::MAX - 1,
        start: 1,
        ..Owner::current()
    };
    let body = serde_json::to_vec(&dead).unwrap();
    mem.put(&s.session_key(s.id()), Bytes::from(body), &meta())
        .await
        .unwrap();
}

#[tokio::test]
async fn uploads_are_marked_for_exactly_as_long_as_they_exist() {
    let mem = Arc::new(MemStore::new());
    let s = Session::start(mem.clone(), "p/", SessionConfig::default())
        .await
        .unwrap();
    let m = Marked::new(mem.clone(), s.clone());
    let area = |mem: &MemStore| -> Vec<String> {
        (mem.keys().into_iter())
            .filter(|k| k.contains("/upload-"))
            .collect()
    };
    let a = m.create_multipart("p/a", &meta()).await.unwrap();
    let b = m.create_multipart("p/b", &meta()).await.unwrap();
    assert_eq!(area(&mem).len(), 2);
    let hash = key_hash("p/a");
    let want = format!("p/.sealfs-unlinked/{}/upload-{hash}-", s.id());
    assert!(area(&mem).iter().any(|k| k.starts_with(&want)), "{want}");
    let part = m
        .upload_part("p/a", &a, 1, Bytes::from_static(b"x"))
        .await
        .unwrap();
    let parts = [CompletedPart {
        number: 1,
        etag: part,
    }];
    // A refused condition keeps the upload, and so its marker.
    mem.put("p/a", Bytes::from_static(b"theirs"), &meta())
        .await
        .unwrap();
    let refused = m
        .complete_multipart_if("p/a", &a, &parts, &Expect::Absent)
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed(_))));
    assert_eq!(area(&mem).len(), 2);
    m.complete_multipart("p/a", &a, &parts).await.unwrap();
    assert_eq!(area(&mem).len(), 1);
    m.abort_multipart("p/b", &b).await.unwrap();
    assert!(area(&mem).is_empty());
    s.end().await;
    assert_eq!(mem.keys(), ["p/a"], "a clean end leaves only the file");
}

#[tokio::test]
async fn a_later_mount_aborts_a_crashed_sessions_uploads_and_nothing_else() {
    let mem = Arc::new(MemStore::new());
    let cfg = SessionConfig::default();
    let old = Session::start(mem.clone(), "p/", cfg.clone())
        .await
        .unwrap();
    let crashed = Marked::new(mem.clone(), old.clone());
    crashed.create_multipart("p/big", &meta()).await.unwrap();
    let unlinked = old.scratch_key("unlinked-1234");
    mem.put(&unlinked, Bytes::from_static(b"kept while open"), &meta())
        .await
        .unwrap();
    // Another tool's upload, and one of a live mount on this host (this very process).
    mem.create_multipart("p/other-tool", &meta()).await.unwrap();
    let live = Session::start(mem.clone(), "p/", cfg.clone())
        .await
        .unwrap();
    let live_store = Marked::new(mem.clone(), live.clone());
    live_store
        .create_multipart("p/live", &meta())
        .await
        .unwrap();
    crash(&mem, &old).await;

    let kept = Session::start(
        mem.clone(),
        "p/",
        SessionConfig {
            abort: false,
            ..cfg.clone()
        },
    )
    .await
    .unwrap();
    let v = kept.clean_up("p/", SystemTime::now()).await.unwrap();
    assert_eq!(
        (v.abort.len(), mem.pending_uploads()),
        (1, 3),
        "--keep-stale-uploads"
    );
    kept.end().await;

    let new = Session::start(mem.clone(), "p/", cfg).await.unwrap();
    let v = new.clean_up("p/", SystemTime::now()).await.unwrap();
    assert_eq!(
        v.abort.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(),
        ["p/big"]
    );
    assert_eq!((v.live, v.unmarked.len()), (1, 1));
    let left: Vec<_> = mem
        .list_uploads("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(left, ["p/live", "p/other-tool"]);
    let keys = mem.keys();
    assert!(
        !keys.iter().any(|k| k.contains(old.id())),
        "crashed session gone: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains(live.id())),
        "the live session stays: {keys:?}"
    );
    // Cleaning again finds nothing more to do.
    let again = new.clean_up("p/", SystemTime::now()).await.unwrap();
    assert!(again.abort.is_empty() && again.dead.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_clean_unmount_aborts_what_is_still_pending_and_leaves_nothing() {
    // An upload whose abort failed (the server was away) is still pending at unmount.
    let mem = Arc::new(MemStore::new());
    let s = Session::start(mem.clone(), "p/", SessionConfig::default())
        .await
        .unwrap();
    let m = Marked::new(mem.clone(), s.clone());
    m.create_multipart("p/big", &meta()).await.unwrap();
    assert_eq!(mem.pending_uploads(), 1);
    s.end().await;
    assert_eq!(mem.pending_uploads(), 0);
    assert!(mem.keys().is_empty(), "{:?}", mem.keys());
}
