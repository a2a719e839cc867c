//! Connection slots: the count of open connections under `gateway.max_connections`, and
//! the drain that waits for it to reach zero at shutdown.
//!
//! The listener takes a [`ConnectionSlot`] per accepted connection and the connection's
//! task holds it to its end; dropping it frees the slot and wakes a drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The open connections, counted.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    open: AtomicUsize,
    closed: Notify,
}

impl ConnectionSlots {
    /// No connection open.
    pub fn new() -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots::default())
    }

    /// Takes a connection slot if fewer than `max` are open.
    pub fn try_open(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        let mut current = self.open.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match self.open.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => current = now,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until no connection is open, at most `grace`; returns how many were still
    /// open at the end.
    pub async fn drain(&self, grace: Duration) -> usize {
        let wait = async {
            loop {
                // Registered before the count is read, so a close in between still wakes.
                let notified = self.closed.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.open.load(Ordering::Acquire)
    }
}

/// One open connection, counted against `max_connections` until dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionSlots>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_counted_and_drained() {
        let slots = ConnectionSlots::new();
        let a = slots.try_open(2).unwrap();
        let _b = slots.try_open(2).unwrap();
        assert!(slots.try_open(2).is_none());
        assert_eq!(slots.open(), 2);
        drop(a);
        assert_eq!(slots.open(), 1);
        assert_eq!(slots.drain(Duration::from_millis(20)).await, 1);
        let c = slots.try_open(2).unwrap();
        let drained = tokio::spawn({
            let slots = slots.clone();
            async move { slots.drain(Duration::from_secs(10)).await }
        });
        drop((c, _b));
        assert_eq!(drained.await.unwrap(), 0);
    }
}
