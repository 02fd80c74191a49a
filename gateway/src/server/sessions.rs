//! The live authenticated connections, by agent: a newer connection of an agent replaces its
//! older one (closed with 4000).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The live connection of each agent.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    by_agent: HashMap<String, Session>,
    next_connection: u64,
}

#[derive(Debug)]
struct Session {
    connection: u64,
    /// Cancelled to close the connection when a newer one replaces it.
    replaced: CancellationToken,
}

impl Sessions {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new authenticated connection of `agent`, replacing (cancelling `replaced`
    /// of) an older one. Returns the connection's number, for [`Sessions::unregister`].
    pub(crate) fn register(&self, agent: &str, replaced: CancellationToken) -> u64 {
        let mut live = self.live();
        live.next_connection += 1;
        let connection = live.next_connection;
        let old = live.by_agent.insert(
            agent.to_owned(),
            Session {
                connection,
                replaced,
            },
        );
        drop(live);
        if let Some(old) = old {
            tracing::info!(agent, "a new connection replaces the agent's previous one");
            old.replaced.cancel();
        }
        connection
    }

    /// Forgets the connection `connection` of `agent` (unless a newer one replaced it).
    pub(crate) fn unregister(&self, agent: &str, connection: u64) {
        let mut live = self.live();
        if live
            .by_agent
            .get(agent)
            .is_some_and(|s| s.connection == connection)
        {
            live.by_agent.remove(agent);
        }
    }

    /// Number of agents connected now.
    pub(crate) fn connected_agents(&self) -> usize {
        self.live().by_agent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_connection_replaces_the_older_and_only_its_own_end_unregisters() {
        let sessions = Sessions::default();
        let first = CancellationToken::new();
        let one = sessions.register("kitchen", first.clone());
        let second = CancellationToken::new();
        let two = sessions.register("kitchen", second.clone());
        assert!(first.is_cancelled(), "the older connection is closed");
        assert!(!second.is_cancelled());
        sessions.unregister("kitchen", one);
        assert_eq!(
            sessions.connected_agents(),
            1,
            "the old one ending keeps the new one"
        );
        sessions.unregister("kitchen", two);
        assert_eq!(sessions.connected_agents(), 0);
    }
}
