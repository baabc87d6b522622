//! One conformance suite for every `ObjectStore`: the behaviour the rest of sealfs relies on
//! (the invariants in `store`'s module comment), checked the same way against the in-memory
//! store here and against `S3Store` on a real server (`tests/store.rs`). A difference between
//! the two is a bug in one of them, found before it hides in a filesystem test.

use bytes::Bytes;

use super::{CompletedPart, ObjectStore, StoreError, UserMeta, MIN_PART_SIZE};

fn meta(pairs: &[(&str, &str)]) -> UserMeta {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run every check under `prefix` (empty or ending in '/'), which must hold no objects.
/// Panics with the name of the first check that fails.
pub async fn check(s: &dyn ObjectStore, prefix: &str) {
    let key = |name: &str| format!("{prefix}{name}");

    // HEAD and GET of a missing object.
    assert_eq!(s.head(&key("missing")).await.unwrap(), None, "HEAD missing");
    assert!(
        matches!(
            s.get_range(&key("missing"), 0..1, None).await,
            Err(StoreError::NotFound(_))
        ),
        "GET missing is NotFound"
    );

    // PUT, then HEAD: size, ETag and user metadata come back as stored.
    let m = meta(&[("mode", "33188"), ("other-tool", "kept")]);
    let etag = s
        .put(&key("a"), Bytes::from_static(b"hello world"), &m)
        .await
        .unwrap();
    assert!(!etag.is_empty(), "PUT returns an ETag");
    let head = s.head(&key("a")).await.unwrap().expect("HEAD after PUT");
    assert_eq!(head.size, 11, "HEAD size");
    assert_eq!(head.etag, etag, "HEAD ETag is PUT's");
    assert_eq!(head.user, m, "user metadata round trip");

    // Ranged GETs: a slice, a range clamped at the end, a condition on the version.
    let get = |r: std::ops::Range<u64>, tag: Option<&'static str>| {
        let k = key("a");
        async move { s.get_range(&k, r, tag).await }
    };
    assert_eq!(&get(6..11, None).await.unwrap()[..], b"world", "GET range");
    assert_eq!(
        &get(6..100, None).await.unwrap()[..],
        b"world",
        "GET clamps"
    );
    assert!(get(3..3, None).await.unwrap().is_empty(), "empty range");
    // A body shown while it arrives: the segments shown, in order, are the body returned.
    let mut shown = Vec::new();
    let body = s
        .get_body_with(&key("a"), 2..11, None, &mut |seg| {
            shown.extend_from_slice(seg)
        })
        .await
        .unwrap();
    assert_eq!(&shown[..], b"llo world", "segments shown");
    assert_eq!(&body.into_bytes()[..], b"llo world", "body after segments");
    assert_eq!(
        &s.get_range(&key("a"), 0..5, Some(&etag)).await.unwrap()[..],
        b"hello",
        "GET if-match current"
    );
    assert!(
        matches!(
            get(0..5, Some("\"not-the-etag\"")).await,
            Err(StoreError::PreconditionFailed(_))
        ),
        "GET if-match stale is PreconditionFailed"
    );

    // CopyObject: replacing the metadata, and keeping the source's.
    s.copy(&key("a"), &key("b"), Some(&meta(&[("mode", "33261")])))
        .await
        .unwrap();
    let b = s.head(&key("b")).await.unwrap().expect("copy target");
    assert_eq!(b.user, meta(&[("mode", "33261")]), "copy replaces metadata");
    s.copy(&key("a"), &key("c"), None).await.unwrap();
    let c = s.head(&key("c")).await.unwrap().expect("copy target");
    assert_eq!(c.user, m, "copy keeps metadata");
    assert_eq!(
        &s.get_range(&key("c"), 0..11, None).await.unwrap()[..],
        b"hello world",
        "copy keeps the body"
    );

    // Multipart: invisible until completed; a part copy pinned to the source's version.
    // (Servers refuse to copy from sources under the 5 MiB part minimum: Garage does.)
    let big = Bytes::from(vec![7u8; MIN_PART_SIZE as usize]);
    let big_etag = s.put(&key("big"), big, &UserMeta::new()).await.unwrap();
    let id = s.create_multipart(&key("mp"), &m).await.unwrap();
    let p1 = s
        .upload_part_copy(&key("mp"), &id, 1, &key("big"), &big_etag, 0..MIN_PART_SIZE)
        .await
        .unwrap();
    let p2 = s
        .upload_part(&key("mp"), &id, 2, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        s.head(&key("mp")).await.unwrap(),
        None,
        "parts are invisible"
    );
    assert!(
        matches!(
            s.upload_part_copy(
                &key("mp"),
                &id,
                3,
                &key("big"),
                "\"stale\"",
                0..MIN_PART_SIZE
            )
            .await,
            Err(StoreError::PreconditionFailed(_))
        ),
        "part copy of a changed source is PreconditionFailed"
    );
    let parts = [
        CompletedPart {
            number: 1,
            etag: p1,
        },
        CompletedPart {
            number: 2,
            etag: p2,
        },
    ];
    s.complete_multipart(&key("mp"), &id, &parts).await.unwrap();
    let mp = s.head(&key("mp")).await.unwrap().expect("completed upload");
    assert_eq!(mp.size, MIN_PART_SIZE + 5, "multipart size");
    assert_eq!(mp.user, m, "multipart metadata from create");
    let tail = s
        .get_range(&key("mp"), MIN_PART_SIZE - 2..MIN_PART_SIZE + 5, None)
        .await
        .unwrap();
    assert_eq!(&tail[..], b"\x07\x07hello", "parts in order");

    // An upload in progress is listed under its prefix (and only there) until it is
    // aborted; an aborted upload leaves no object.
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    let id = s.create_multipart(&key("gone"), &m).await.unwrap();
    s.upload_part(&key("gone"), &id, 1, Bytes::from_static(b"x"))
        .await
        .unwrap();
    let pending = s.list_uploads(prefix).await.unwrap();
    assert_eq!(pending.len(), 1, "one upload in progress: {pending:?}");
    assert_eq!(
        (&pending[0].key, &pending[0].upload_id),
        (&key("gone"), &id)
    );
    assert!(
        pending[0].initiated > before,
        "initiated: {:?}",
        pending[0].initiated
    );
    let elsewhere = s
        .list_uploads(&format!("{prefix}zz-not-here/"))
        .await
        .unwrap();
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    s.abort_multipart(&key("gone"), &id).await.unwrap();
    assert!(s.list_uploads(prefix).await.unwrap().is_empty(), "aborted");
    assert_eq!(
        s.head(&key("gone")).await.unwrap(),
        None,
        "abort leaves nothing"
    );

    // Listing with a delimiter: objects and common prefixes, page by page.
    s.put(&key("d/x"), Bytes::new(), &UserMeta::new())
        .await
        .unwrap();
    s.put(&key("d/y/z"), Bytes::new(), &UserMeta::new())
        .await
        .unwrap();
    let page = s.list(prefix, Some("/"), None, None).await.unwrap();
    let names: Vec<_> = page.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(
        names,
        [key("a"), key("b"), key("big"), key("c"), key("mp")],
        "LIST objects"
    );
    assert_eq!(page.prefixes, [key("d/")], "LIST common prefixes");
    assert_eq!(page.objects[0].etag, etag, "LIST ETag");
    assert_eq!(page.objects[0].size, 11, "LIST size");
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = s.list(prefix, None, token, Some(2)).await.unwrap();
        assert!(page.objects.len() <= 2, "LIST max-keys");
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "LIST pages cover every key once: {seen:?}");

    // DELETE: a missing key is not an error; a batch removes every key given.
    s.delete(&key("missing")).await.unwrap();
    s.delete(&key("c")).await.unwrap();
    assert_eq!(s.head(&key("c")).await.unwrap(), None, "DELETE");
    s.delete_many(&[
        key("a"),
        key("b"),
        key("big"),
        key("mp"),
        key("d/x"),
        key("d/y/z"),
    ])
    .await
    .unwrap();
    let left = s.list(prefix, None, None, None).await.unwrap();
    assert!(left.objects.is_empty(), "DeleteObjects removes every key");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_in_memory_store_conforms() {
        let mem = crate::store::mem::MemStore::new();
        super::check(&mem, "").await;
        super::check(&mem, "some/prefix/").await;
    }
}
