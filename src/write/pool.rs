//! Part buffers kept for reuse: a sequential writer's staging buffer for one part and the
//! sealed body of a part being uploaded.
//!
//! Why: a part is 8 MiB by default. Allocated afresh for every part, each buffer came from the
//! kernel (the allocator maps a fresh region for anything that large) and went back to it when
//! the upload ended, so every page was faulted in and zeroed again, part after part: writing
//! 1 GiB in client mode cost about 42,000 page faults and a peak of 175 MB resident, against
//! 15,000 and 77 MB with the same pages serving one part after another.
//!
//! Invariants:
//! - Only buffers of exactly `capacity` bytes of capacity are kept, at most `keep` of them, each
//!   emptied (length 0) before it is kept; `take` hands out one with room for a whole part.
//! - Spare buffers do not outlive a pause in writing: once spares exist, a task on the runtime
//!   drops them all after `IDLE` without a `take` (no runtime, nothing is kept).
//! - A body handed out by `lease` returns its buffer to the pool when its last clone is
//!   dropped (the SDK clones bodies to retry them), never earlier.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

/// How long spare buffers stay without being used.
pub const IDLE: Duration = Duration::from_secs(30);

pub struct PartPool {
    capacity: usize,
    keep: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    spare: Vec<Vec<u8>>,
    /// `take` calls so far: the idle trimmer compares it across its sleep.
    takes: u64,
    trimming: bool,
}

impl PartPool {
    /// A pool of buffers of `capacity` bytes keeping at most `keep` spares (0: a pool that
    /// keeps nothing, every `take` allocates).
    pub fn new(capacity: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            keep,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Capacity of every buffer this pool hands out.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An empty buffer with room for `capacity` bytes: a spare if there is one.
    pub fn take(&self) -> Vec<u8> {
        let spare = {
            let mut inner = self.inner.lock();
            inner.takes += 1;
            inner.spare.pop()
        };
        spare.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Hand `buf` back: kept if it is one of this pool's and there is room, dropped otherwise.
    pub fn give(self: &Arc<Self>, mut buf: Vec<u8>) {
        if buf.capacity() != self.capacity || self.keep == 0 {
            return;
        }
        buf.clear();
        let mut inner = self.inner.lock();
        if inner.spare.len() >= self.keep {
            return;
        }
        if !inner.trimming {
            // Spares must not stay forever once writing stops: that needs a timer, so a
            // runtime; without one (a drop on a foreign thread), keep nothing.
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            inner.trimming = true;
            rt.spawn(trim_when_idle(Arc::downgrade(self)));
        }
        inner.spare.push(buf);
    }

    /// `buf` as an upload body; its buffer comes back to the pool when the body is dropped.
    pub fn lease(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lease {
            buf,
            pool: self.clone(),
        })
    }

    /// Spare buffers held now.
    pub fn spares(&self) -> usize {
        self.inner.lock().spare.len()
    }
}

async fn trim_when_idle(pool: Weak<PartPool>) {
    loop {
        let Some(takes) = pool.upgrade().map(|p| p.inner.lock().takes) else {
            return;
        };
        tokio::time::sleep(IDLE).await;
        let Some(p) = pool.upgrade() else {
            return;
        };
        let mut inner = p.inner.lock();
        if inner.takes == takes {
            inner.spare = Vec::new();
            inner.trimming = false;
            return;
        }
    }
}

struct Lease {
    buf: Vec<u8>,
    pool: Arc<PartPool>,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buffers_come_back_and_are_handed_out_again_empty() {
        let pool = PartPool::new(1024, 2);
        let mut a = pool.take();
        assert_eq!(a.capacity(), 1024);
        a.extend_from_slice(b"secret part");
        let at = a.as_ptr();
        let body = pool.lease(a);
        let again = body.clone();
        drop(body);
        assert_eq!(pool.spares(), 0, "a clone of the body is still out");
        assert_eq!(&again[..], b"secret part");
        drop(again);
        assert_eq!(pool.spares(), 1);
        let b = pool.take();
        assert_eq!((b.as_ptr(), b.len(), b.capacity()), (at, 0, 1024));
        // Foreign buffers and buffers beyond `keep` are not kept.
        pool.give(Vec::with_capacity(10));
        for _ in 0..3 {
            pool.give(Vec::with_capacity(1024));
        }
        assert_eq!(pool.spares(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn spares_are_dropped_after_a_pause_in_writing_not_while_it_goes_on() {
        let pool = PartPool::new(64, 4);
        pool.give(pool.take());
        for _ in 0..3 {
            // In use: each period sees a take, so the spare stays.
            tokio::time::sleep(IDLE / 2 + Duration::from_millis(1)).await;
            pool.give(pool.take());
            assert_eq!(pool.spares(), 1);
        }
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(pool.spares(), 0);
        // A new burst of writing starts a new trimmer.
        pool.give(pool.take());
        assert_eq!(pool.spares(), 1);
        tokio::time::sleep(IDLE * 3).await;
        assert_eq!(pool.spares(), 0);
    }

    #[test]
    fn a_pool_without_a_runtime_or_room_keeps_nothing() {
        let pool = PartPool::new(64, 4);
        pool.give(pool.take());
        assert_eq!(pool.spares(), 0);
        let none = PartPool::new(64, 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async { none.give(none.take()) });
        assert_eq!(none.spares(), 0);
    }
}
