//! Caps on connections that have not authenticated yet: in total and per client address.
//!
//! Every accepted connection takes a [`Ticket`] until it authenticates (or ends). When a new
//! connection would exceed a cap, the oldest unauthenticated connection (of that address, for
//! the per-address cap; of all, for the total) is told to go ([`Ticket::evicted`]) and the new
//! one is admitted: a peer holding many silent connections loses its own oldest ones, while a
//! newcomer that authenticates promptly gets through. Authenticated connections hold no ticket,
//! so they are never counted nor dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The caps and the connections under them.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Unauthenticated connections by ticket number: the first is the oldest.
    by_ticket: BTreeMap<u64, (IpAddr, CancellationToken)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl State {
    fn remove(&mut self, ticket: u64) -> Option<CancellationToken> {
        let (ip, evict) = self.by_ticket.remove(&ticket)?;
        if let Some(tickets) = self.by_address.get_mut(&ip) {
            tickets.remove(&ticket);
            if tickets.is_empty() {
                self.by_address.remove(&ip);
            }
        }
        Some(evict)
    }
}

/// How many older connections a new one displaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Displaced {
    /// Of the same address (its cap was reached).
    pub(crate) same_address: usize,
    /// Of any address (the total cap was reached).
    pub(crate) total: usize,
}

impl Admission {
    /// Caps of at least one connection each.
    pub(crate) fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `ip`, displacing the oldest unauthenticated ones as the
    /// caps require.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> (Ticket, Displaced) {
        let mut displaced = Displaced::default();
        let mut state = self.lock();
        while state
            .by_address
            .get(&ip)
            .is_some_and(|tickets| tickets.len() >= self.max_per_address)
        {
            let oldest = state
                .by_address
                .get(&ip)
                .and_then(|tickets| tickets.first().copied());
            match oldest.and_then(|ticket| state.remove(ticket)) {
                Some(evict) => {
                    evict.cancel();
                    displaced.same_address += 1;
                }
                None => break,
            }
        }
        while state.by_ticket.len() >= self.max_total {
            let oldest = state.by_ticket.keys().next().copied();
            match oldest.and_then(|ticket| state.remove(ticket)) {
                Some(evict) => {
                    evict.cancel();
                    displaced.total += 1;
                }
                None => break,
            }
        }
        state.next += 1;
        let number = state.next;
        let evict = CancellationToken::new();
        state.by_ticket.insert(number, (ip, evict.clone()));
        state.by_address.entry(ip).or_default().insert(number);
        drop(state);
        let ticket = Ticket {
            admission: Arc::clone(self),
            number,
            evict,
        };
        (ticket, displaced)
    }

    /// Connections that have not authenticated yet.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.lock().by_ticket.len()
    }
}

/// An unauthenticated connection's place under the caps; dropped once it authenticates or
/// ends.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    number: u64,
    evict: CancellationToken,
}

impl Ticket {
    /// Resolves when a newer connection displaced this one: it must end now.
    pub(crate) fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().remove(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_oldest_of_an_address_goes_first() {
        let admission = Admission::new(100, 2);
        let (a, _) = admission.admit(ip(1));
        let (b, _) = admission.admit(ip(1));
        let (other, _) = admission.admit(ip(2));
        let (c, displaced) = admission.admit(ip(1));
        assert_eq!(displaced.same_address, 1);
        assert!(a.evict.is_cancelled());
        assert!(!b.evict.is_cancelled() && !c.evict.is_cancelled());
        assert!(!other.evict.is_cancelled());
        assert_eq!(admission.unauthenticated(), 3);
        drop(a);
        assert_eq!(admission.unauthenticated(), 3);
        drop((b, c));
        assert_eq!(admission.unauthenticated(), 1);
    }

    #[test]
    fn the_oldest_of_all_goes_first_at_the_total_cap() {
        let admission = Admission::new(3, 10);
        let tickets: Vec<_> = (1..=5).map(|i| admission.admit(ip(i)).0).collect();
        let evicted: Vec<bool> = tickets.iter().map(|t| t.evict.is_cancelled()).collect();
        assert_eq!(evicted, [true, true, false, false, false]);
        assert_eq!(admission.unauthenticated(), 3);
        drop(tickets);
        assert_eq!(admission.unauthenticated(), 0);
    }
}
