//! Connection slots: a budget of open connections, in total and per source address, and
//! the drain that waits for it to empty at shutdown.
//!
//! verigated keeps two budgets: one for connections being peeked and passed through
//! (`gateway.max_connections`, `gateway.max_connections_per_source`) and one for the own
//! endpoint (`api.max_connections`, `api.max_connections_per_source`), so that clients
//! holding own-endpoint connections cannot refuse passthrough routes, nor the reverse.
//! The listener takes a [`ConnectionSlot`] per accepted connection and the connection's
//! task holds it to its end; dropping it frees the slot (and its source's share) and
//! wakes a drain.
//!
//! A source is an IPv4 address, or an IPv6 /64: one machine is commonly given a whole
//! /64, so counting single IPv6 addresses would give it billions of shares. An IPv4
//! address mapped into IPv6 (a dual-stack listener) counts as that IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// The open connections of one budget, counted in total and per source address.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    open: AtomicUsize,
    /// Open connections by source; a source leaves the map when its count drops to
    /// zero, so the map never holds more entries than there are connections.
    per_source: Mutex<HashMap<IpAddr, usize>>,
    closed: Notify,
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The budget's total was reached.
    Full,
    /// The source address already holds its share of the budget.
    SourceFull,
}

impl ConnectionSlots {
    /// No connection open.
    pub fn new() -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots::default())
    }

    /// Takes a connection slot if fewer than `max` are open; not yet counted against
    /// any source (see [`ConnectionSlot::attribute`]).
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
                Ok(_) => {
                    return Some(ConnectionSlot {
                        slots: self.clone(),
                        source: None,
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    /// Takes a slot if fewer than `max` are open and fewer than `max_per_source` of them
    /// come from `source`.
    pub fn try_open_from(
        self: &Arc<Self>,
        source: IpAddr,
        max: usize,
        max_per_source: usize,
    ) -> Result<ConnectionSlot, Refusal> {
        let mut slot = self.try_open(max).ok_or(Refusal::Full)?;
        slot.attribute(source, max_per_source)?;
        Ok(slot)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections open now from `source`'s share.
    pub fn open_from(&self, source: IpAddr) -> usize {
        self.sources()
            .get(&source_key(source))
            .copied()
            .unwrap_or(0)
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map holds plain counts; a panic elsewhere cannot leave it half-updated.
        self.per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

/// One open connection, counted against its budget (and its source's share, once
/// known) until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    source: Option<IpAddr>,
}

impl ConnectionSlot {
    /// Counts this connection against `source`'s share, at most `max_per_source`; the
    /// slot keeps its place in the total either way. Behind a load balancer the source
    /// is known only once its PROXY header is read, hence a second step. A slot already
    /// attributed moves to the new source.
    pub fn attribute(&mut self, source: IpAddr, max_per_source: usize) -> Result<(), Refusal> {
        let source = source_key(source);
        let mut sources = self.slots.sources();
        let count = sources.entry(source).or_insert(0);
        if *count >= max_per_source {
            if *count == 0 {
                sources.remove(&source);
            }
            return Err(Refusal::SourceFull);
        }
        *count += 1;
        if let Some(previous) = self.source.replace(source) {
            release(&mut sources, previous);
        }
        Ok(())
    }
}

/// The share `ip` counts against: itself for IPv4 (mapped or not), its /64 for IPv6.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Takes one connection off `source`'s count, forgetting the source at zero.
fn release(sources: &mut HashMap<IpAddr, usize>, source: IpAddr) {
    if let Some(count) = sources.get_mut(&source) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            sources.remove(&source);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(source) = self.source {
            release(&mut self.slots.sources(), source);
        }
        self.slots.open.fetch_sub(1, Ordering::AcqRel);
        self.slots.closed.notify_waiters();
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

    #[test]
    fn each_source_gets_its_share() {
        let slots = ConnectionSlots::new();
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        let a = slots.try_open_from(one, 10, 2).unwrap();
        let _b = slots.try_open_from(one, 10, 2).unwrap();
        assert_eq!(
            slots.try_open_from(one, 10, 2).unwrap_err(),
            Refusal::SourceFull
        );
        // The refused attempt left no slot taken.
        assert_eq!(slots.open(), 2);
        let _c = slots.try_open_from(two, 10, 2).unwrap();
        assert_eq!(slots.try_open_from(two, 3, 2).unwrap_err(), Refusal::Full);
        drop(a);
        assert_eq!(slots.open_from(one), 1);
        let _d = slots.try_open_from(one, 10, 2).unwrap();
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_a_mapped_ipv4_is_its_ipv4() {
        let slots = ConnectionSlots::new();
        let _a = slots
            .try_open_from("2001:db8:1:2::1".parse().unwrap(), 10, 2)
            .unwrap();
        let _b = slots
            .try_open_from("2001:db8:1:2:ffff::9".parse().unwrap(), 10, 2)
            .unwrap();
        assert_eq!(
            slots
                .try_open_from("2001:db8:1:2::3".parse().unwrap(), 10, 2)
                .unwrap_err(),
            Refusal::SourceFull
        );
        let _c = slots
            .try_open_from("2001:db8:1:3::1".parse().unwrap(), 10, 2)
            .unwrap();
        let _d = slots
            .try_open_from("::ffff:192.0.2.1".parse().unwrap(), 10, 1)
            .unwrap();
        assert_eq!(slots.open_from("192.0.2.1".parse().unwrap()), 1);
    }

    #[test]
    fn a_slot_moves_to_the_source_a_proxy_header_names() {
        let slots = ConnectionSlots::new();
        let balancer: IpAddr = "10.0.0.5".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut slot = slots.try_open_from(balancer, 10, 5).unwrap();
        slot.attribute(client, 1).unwrap();
        assert_eq!(slots.open_from(balancer), 0);
        assert_eq!(slots.open_from(client), 1);
        let mut other = slots.try_open(10).unwrap();
        assert_eq!(other.attribute(client, 1), Err(Refusal::SourceFull));
        drop((slot, other));
        assert_eq!(slots.open_from(client), 0);
        assert_eq!(slots.open(), 0);
    }
}
