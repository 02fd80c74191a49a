//! The live authenticated connections, by agent: an agent may hold several connections at
//! once (up to `gateway.max_connections_per_agent`, 8 by default); one more is refused with
//! close code 4000 before its `auth` is answered.
//!
//! Each connection answers its own calls; what an agent's connections share (the rate limit,
//! the pending cap, the stored outcomes and their `request_id`s) is kept per agent by the
//! engine, so it does not matter which connection a call or a re-sent call comes through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Close code of a connection refused because its agent already holds its most connections
/// (upstream's gateway closes a second connection with the same code: "slot taken").
pub(crate) const CLOSE_SLOT_TAKEN: u16 = 4000;

/// The live connections of each agent.
#[derive(Debug)]
pub(crate) struct Sessions {
    live: Arc<Mutex<Live>>,
    max_per_agent: usize,
}

#[derive(Debug, Default)]
struct Live {
    /// Connections by agent (agents with none are removed).
    by_agent: HashMap<String, usize>,
}

/// An agent's place among its connections; given up when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    live: Arc<Mutex<Live>>,
    agent: String,
}

/// Why a connection got no [`Slot`]: its agent holds `max` connections already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// `gateway.max_connections_per_agent`.
    pub(crate) max: usize,
}

impl Full {
    /// The close frame's reason (at most 123 bytes, as WebSocket allows).
    pub(crate) fn reason(&self) -> String {
        format!(
            "this agent already has {} connections (gateway.max_connections_per_agent); retry later",
            self.max
        )
    }
}

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    /// Sessions allowing `max_per_agent` connections per agent (at least 1).
    pub(crate) fn new(max_per_agent: usize) -> Self {
        Self {
            live: Arc::default(),
            max_per_agent: max_per_agent.max(1),
        }
    }

    /// Takes a place for one more connection of `agent`, unless it holds its most already.
    pub(crate) fn register(&self, agent: &str) -> Result<Slot, Full> {
        let mut live = lock(&self.live);
        let count = live.by_agent.entry(agent.to_owned()).or_default();
        if *count >= self.max_per_agent {
            return Err(Full {
                max: self.max_per_agent,
            });
        }
        *count += 1;
        Ok(Slot {
            live: Arc::clone(&self.live),
            agent: agent.to_owned(),
        })
    }

    /// Number of agents with at least one connection now.
    pub(crate) fn connected_agents(&self) -> usize {
        lock(&self.live)
            .by_agent
            .values()
            .filter(|n| **n > 0)
            .count()
    }

    /// Number of authenticated connections now, all agents together.
    pub(crate) fn connections(&self) -> usize {
        lock(&self.live).by_agent.values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        if let Some(count) = live.by_agent.get_mut(&self.agent) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.by_agent.remove(&self.agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_holds_up_to_its_cap_and_a_freed_place_can_be_taken_again() {
        let sessions = Sessions::new(2);
        let one = sessions.register("kitchen").unwrap();
        let two = sessions.register("kitchen").unwrap();
        assert_eq!(sessions.register("kitchen").unwrap_err(), Full { max: 2 });
        let other = sessions.register("laptop").unwrap();
        assert_eq!(sessions.connected_agents(), 2);
        assert_eq!(sessions.connections(), 3);
        drop(one);
        let three = sessions.register("kitchen").unwrap();
        drop((two, three, other));
        assert_eq!(sessions.connected_agents(), 0);
        assert_eq!(sessions.connections(), 0);
    }

    #[test]
    fn the_refusal_fits_a_close_frame() {
        assert!(Full { max: 1_000_000 }.reason().len() <= 123);
    }
}
