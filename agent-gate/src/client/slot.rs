//! The outstanding calls of one client and the window that paces them: which calls are
//! registered, which were sent on the current connection, and how many of those the gateway
//! still counts against its in-flight cap.
//!
//! The gateway counts a `tool_request` against its cap from the moment the frame arrives
//! until it has sent that frame's response on the same connection. A call can finish on the
//! client earlier than that (its result came from `get_pending_results`, from the previous
//! connection, or the caller gave up); such a call keeps its place in the window until the
//! current connection answers its frame, or until the connection is replaced.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Responder;
use super::request_ids::RequestIds;
use crate::error::Error;

/// Which connection a frame came from: bumped on every attach.
pub(crate) type Generation = u64;

/// One outstanding call.
pub(crate) struct Entry {
    request_id: Option<String>,
    frame: Utf8Bytes,
    responder: Responder,
    /// A `tool_request`: counts against the gateway's in-flight cap, so it is paced.
    paced: bool,
    /// Sent on the current connection.
    sent: bool,
}

impl Entry {
    /// A call that sends `frame`; `paced` calls count against the gateway's in-flight cap.
    pub(crate) fn new(
        request_id: Option<String>,
        frame: Utf8Bytes,
        responder: Responder,
        paced: bool,
    ) -> Entry {
        Entry {
            request_id,
            frame,
            responder,
            paced,
            sent: false,
        }
    }

    /// A `tool_request`, paced by the window.
    pub(crate) fn is_paced(&self) -> bool {
        self.paced
    }

    /// Who waits for this call's answer.
    pub(crate) fn responder(&self) -> &Responder {
        &self.responder
    }

    /// Gives up the entry for its responder.
    pub(crate) fn into_responder(self) -> Responder {
        self.responder
    }
}

/// The client's outstanding calls and the connection they go out on.
pub(crate) struct Slot {
    /// What the gateway's answers have shown about `request_id`.
    pub(crate) request_ids: RequestIds,
    /// The writer's queue while connected; `None` while disconnected.
    outbox: Option<mpsc::UnboundedSender<Message>>,
    /// The current connection (see [`Generation`]).
    generation: Generation,
    calls: HashMap<i64, Entry>,
    by_request_id: HashMap<String, i64>,
    /// Set once the client is closed or has given up; calls fail with it.
    terminal: Option<Error>,
    /// Paced frames sent on the current connection that it has not answered yet.
    sent: usize,
    /// Of those, the ones whose call already finished on the client.
    finished_unanswered: HashSet<i64>,
    /// Most paced calls in flight on one connection (see `GATEWAY_MAX_IN_FLIGHT`).
    window: usize,
    /// Paced calls waiting for room in the window, oldest first.
    waiting: VecDeque<i64>,
}

impl Slot {
    /// No calls, not connected, at most `window` paced calls in flight.
    pub(crate) fn new(window: usize) -> Slot {
        Slot {
            request_ids: RequestIds::Unknown,
            outbox: None,
            generation: 0,
            calls: HashMap::new(),
            by_request_id: HashMap::new(),
            terminal: None,
            sent: 0,
            finished_unanswered: HashSet::new(),
            window,
            waiting: VecDeque::new(),
        }
    }

    /// Why every call fails, once the client is closed or has given up.
    pub(crate) fn terminal(&self) -> Option<&Error> {
        self.terminal.as_ref()
    }

    /// Whether a connection is attached.
    pub(crate) fn is_attached(&self) -> bool {
        self.outbox.is_some()
    }

    /// How many calls wait for an answer.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The call waiting for `request_id`, if any.
    pub(crate) fn by_request_id(&self, request_id: &str) -> Option<&Entry> {
        self.by_request_id
            .get(request_id)
            .and_then(|id| self.calls.get(id))
    }

    /// Registers a call and sends it now, or once the window has room if it is paced.
    pub(crate) fn insert(&mut self, id: i64, entry: Entry) {
        if let Some(rid) = &entry.request_id {
            self.by_request_id.insert(rid.clone(), id);
        }
        let paced = entry.paced;
        self.calls.insert(id, entry);
        if paced {
            self.waiting.push_back(id);
            self.pump();
        } else {
            self.send_now(id);
        }
    }

    /// Connection `from` answered frame `id`: the call it belongs to, if still outstanding.
    pub(crate) fn answered(&mut self, id: i64, from: Generation) -> Option<Entry> {
        if from == self.generation && self.finished_unanswered.remove(&id) {
            self.release_one();
            return None;
        }
        let answered_here = from == self.generation;
        self.take(id, answered_here)
    }

    /// The call waiting for `request_id` finished by another path than its own answer
    /// (`get_pending_results`).
    pub(crate) fn resolved(&mut self, request_id: &str) -> Option<Entry> {
        let id = self.by_request_id.get(request_id).copied()?;
        self.take(id, false)
    }

    /// The caller stopped waiting for call `id`.
    pub(crate) fn abandon(&mut self, id: i64) {
        self.take(id, false);
    }

    /// A fresh connection's queue: everything outstanding is sent again, paced calls oldest
    /// first and no more of them in flight than the window. Returns the connection's
    /// generation, which its reader passes to [`Slot::answered`].
    ///
    /// `idempotent`: the gateway at `url` said in its auth answer that it honours
    /// `request_id`. Otherwise a tool call sent on the lost connection is not re-sent (it
    /// might run twice): it fails "outcome unknown".
    pub(crate) fn attach(
        &mut self,
        outbox: mpsc::UnboundedSender<Message>,
        url: &str,
        idempotent: bool,
    ) -> Generation {
        // What this connection's gateway said in its auth answer decides; without a word an
        // earlier "honoured" may have come from another gateway behind the same URL.
        if idempotent {
            self.request_ids = RequestIds::Honoured;
        } else if self.request_ids == RequestIds::Honoured {
            self.request_ids = RequestIds::Unknown;
        }
        if self.request_ids != RequestIds::Honoured {
            let lost: Vec<i64> = self
                .calls
                .iter()
                .filter(|(_, entry)| entry.paced && entry.sent)
                .map(|(id, _)| *id)
                .collect();
            for id in lost {
                if let Some(entry) = self.calls.remove(&id) {
                    if let Some(rid) = &entry.request_id {
                        self.by_request_id.remove(rid);
                    }
                    let error = Error::outcome_unknown(url, self.request_ids.evidence());
                    entry.responder.deliver(Err(error));
                }
            }
        }
        self.outbox = Some(outbox);
        self.generation += 1;
        self.sent = 0;
        self.finished_unanswered.clear();
        self.waiting.clear();
        let mut ids: Vec<i64> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(entry) = self.calls.get_mut(&id) else {
                continue;
            };
            entry.sent = false;
            if entry.paced {
                self.waiting.push_back(id);
            } else {
                self.send_now(id);
            }
        }
        self.pump();
        self.generation
    }

    /// The connection is gone: calls wait until the next [`Slot::attach`].
    pub(crate) fn detach(&mut self) {
        self.outbox = None;
    }

    /// Fail every outstanding call with `error` and refuse new ones.
    pub(crate) fn fail_all(&mut self, error: &Error) {
        self.outbox = None;
        self.terminal = Some(error.clone());
        self.by_request_id.clear();
        self.waiting.clear();
        self.finished_unanswered.clear();
        self.sent = 0;
        for (_, entry) in self.calls.drain() {
            entry.responder.deliver(Err(error.clone()));
        }
    }

    /// Removes call `id`. Its place in the window is freed only if the current connection
    /// answered its frame (`answered_here`); otherwise the gateway still counts the frame.
    fn take(&mut self, id: i64, answered_here: bool) -> Option<Entry> {
        let entry = self.calls.remove(&id)?;
        if let Some(rid) = &entry.request_id {
            self.by_request_id.remove(rid);
        }
        if entry.paced && entry.sent {
            if answered_here {
                self.release_one();
            } else {
                self.finished_unanswered.insert(id);
            }
        }
        Some(entry)
    }

    fn release_one(&mut self) {
        self.sent = self.sent.saturating_sub(1);
        self.pump();
    }

    fn send_now(&mut self, id: i64) {
        let (Some(outbox), Some(entry)) = (&self.outbox, self.calls.get_mut(&id)) else {
            return;
        };
        entry.sent = true;
        // If the writer is gone the entry stays and is re-sent after the reconnection.
        let _ = outbox.send(Message::Text(entry.frame.clone()));
    }

    /// Sends waiting paced calls while the window has room.
    fn pump(&mut self) {
        if self.outbox.is_none() {
            return;
        }
        while self.sent < self.window {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            if self.calls.get(&id).is_some_and(|entry| !entry.sent) {
                self.sent += 1;
                self.send_now(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn paced(request_id: &str) -> Entry {
        let (tx, _rx) = oneshot::channel();
        Entry::new(
            Some(request_id.to_owned()),
            Utf8Bytes::from(request_id.to_owned()),
            Responder::Once(tx),
            true,
        )
    }

    /// The frames the writer would send, in order.
    fn drain(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<String> {
        let mut frames = Vec::new();
        while let Ok(Message::Text(text)) = rx.try_recv() {
            frames.push(text.as_str().to_owned());
        }
        frames
    }

    /// A slot with window 2 holding calls c1..c3, attached: c1 and c2 are on the wire.
    fn two_on_the_wire() -> (Slot, mpsc::UnboundedReceiver<Message>, Generation) {
        let mut slot = Slot::new(2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let generation = slot.attach(tx, "ws://gateway", true);
        for (id, rid) in [(1, "c1"), (2, "c2"), (3, "c3")] {
            slot.insert(id, paced(rid));
        }
        assert_eq!(drain(&mut rx), ["c1", "c2"]);
        (slot, rx, generation)
    }

    #[test]
    fn an_answer_on_the_current_connection_lets_the_next_call_out() {
        let (mut slot, mut rx, generation) = two_on_the_wire();
        assert!(slot.answered(1, generation).is_some());
        assert_eq!(drain(&mut rx), ["c3"]);
    }

    #[test]
    fn a_call_resolved_by_pending_results_keeps_its_place_until_its_frame_is_answered() {
        let (mut slot, mut rx, generation) = two_on_the_wire();
        assert!(slot.resolved("c1").is_some());
        assert!(
            drain(&mut rx).is_empty(),
            "the gateway still counts c1's frame"
        );
        // The gateway answers c1's frame too: now there is room.
        assert!(slot.answered(1, generation).is_none());
        assert_eq!(drain(&mut rx), ["c3"]);
    }

    #[test]
    fn an_answer_from_the_previous_connection_does_not_open_the_new_window() {
        let (mut slot, mut rx, old) = two_on_the_wire();
        slot.detach();
        let (tx, mut new_rx) = mpsc::unbounded_channel();
        let new = slot.attach(tx, "ws://gateway", true);
        assert_eq!(drain(&mut new_rx), ["c1", "c2"]);
        assert!(drain(&mut rx).is_empty());
        // The old connection's answer to c1 arrives late: c1 is done, but the new
        // connection still counts its re-sent frame.
        assert!(slot.answered(1, old).is_some());
        assert!(drain(&mut new_rx).is_empty());
        assert!(slot.answered(1, new).is_none());
        assert_eq!(drain(&mut new_rx), ["c3"]);
    }

    #[test]
    fn an_abandoned_call_keeps_its_place_until_its_frame_is_answered() {
        let (mut slot, mut rx, generation) = two_on_the_wire();
        slot.abandon(2);
        assert!(drain(&mut rx).is_empty());
        slot.answered(2, generation);
        assert_eq!(drain(&mut rx), ["c3"]);
    }

    #[test]
    fn a_new_connection_forgets_the_old_ones_unanswered_frames() {
        let (mut slot, _rx, _) = two_on_the_wire();
        slot.resolved("c1");
        slot.resolved("c2");
        slot.detach();
        let (tx, mut rx) = mpsc::unbounded_channel();
        slot.attach(tx, "ws://gateway", true);
        assert_eq!(drain(&mut rx), ["c3"]);
        assert_eq!(slot.len(), 1);
    }
}
