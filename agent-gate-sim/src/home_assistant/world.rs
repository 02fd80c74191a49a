//! The simulated home's state machine: entities and their state objects, the recorded
//! history every change leaves behind (read by `/api/history` and `/api/logbook`), the
//! clock and the context ids.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::time::Timestamp;

/// The context of a state change, as Home Assistant reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    pub id: String,
    pub parent_id: Option<String>,
    pub user_id: Option<String>,
}

impl Context {
    fn to_json(&self) -> Value {
        json!({"id": self.id, "parent_id": self.parent_id, "user_id": self.user_id})
    }
}

/// Where a change came from, for the logbook's `context_*` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub domain: String,
    pub service: String,
}

/// One entity's state object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StateObject {
    pub entity_id: String,
    pub state: String,
    pub attributes: Map<String, Value>,
    pub last_changed: Timestamp,
    pub last_reported: Timestamp,
    pub last_updated: Timestamp,
    pub context: Context,
}

impl StateObject {
    /// The full state object of `/api/states` (field order as Home Assistant's `as_dict`).
    pub fn to_json(&self) -> Value {
        json!({
            "entity_id": self.entity_id,
            "state": self.state,
            "attributes": self.attributes,
            "last_changed": self.last_changed.to_string(),
            "last_reported": self.last_reported.to_string(),
            "last_updated": self.last_updated.to_string(),
            "context": self.context.to_json(),
        })
    }

    /// The shape the history API returns for a recorded state (no context, no
    /// `last_reported`); without `attributes` (`no_attributes`) they are `{}`, as Home
    /// Assistant 2025.4 answers.
    pub fn to_history_json(&self, attributes: bool) -> Value {
        let mut object = Map::new();
        object.insert("entity_id".into(), Value::from(self.entity_id.clone()));
        object.insert("state".into(), Value::from(self.state.clone()));
        let attributes = if attributes {
            self.attributes.clone()
        } else {
            Map::new()
        };
        object.insert("attributes".into(), Value::Object(attributes));
        object.insert(
            "last_changed".into(),
            Value::from(self.last_changed.to_string()),
        );
        object.insert(
            "last_updated".into(),
            Value::from(self.last_updated.to_string()),
        );
        Value::Object(object)
    }

    /// The entity's display name: `friendly_name`, else the object id made readable.
    pub fn name(&self) -> String {
        if let Some(Value::String(name)) = self.attributes.get("friendly_name") {
            return name.clone();
        }
        let object_id = self
            .entity_id
            .split_once('.')
            .map_or(self.entity_id.as_str(), |(_, object_id)| object_id);
        object_id.replace('_', " ")
    }

    /// The entity's domain (`light` for `light.kitchen`).
    pub fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }
}

/// The domain part of an entity id.
pub(crate) fn domain_of(entity_id: &str) -> &str {
    entity_id
        .split_once('.')
        .map_or(entity_id, |(domain, _)| domain)
}

/// Home Assistant's `valid_entity_id`: `domain.object_id`, both of `[a-z0-9_]`, neither
/// starting nor ending with `_`, no `__` in the domain.
pub(crate) fn valid_entity_id(entity_id: &str) -> bool {
    let Some((domain, object_id)) = entity_id.split_once('.') else {
        return false;
    };
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('_')
            && !part.ends_with('_')
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    part_ok(domain) && part_ok(object_id) && !domain.contains("__")
}

/// One recorded change of an entity.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub new: StateObject,
    /// The state value before the change; `None` when the entity was created.
    pub old_state: Option<String>,
    pub origin: Option<Origin>,
}

/// The simulated clock: the system clock, or a fixed start that only moves when told to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    System { offset: Duration },
    Manual { now: Timestamp },
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Self::System { offset } => Timestamp::now().plus(*offset),
            Self::Manual { now } => *now,
        }
    }

    pub fn advance(&mut self, by: Duration) {
        match self {
            Self::System { offset } => *offset = offset.saturating_add(by),
            Self::Manual { now } => *now = now.plus(by),
        }
    }
}

/// The state of the simulated home.
#[derive(Debug)]
pub(crate) struct World {
    pub clock: Clock,
    pub entities: IndexMap<String, StateObject>,
    pub changes: Vec<Change>,
    /// The brightness each light had when it was last on (restored by `turn_on`).
    pub remembered_brightness: IndexMap<String, Value>,
    /// Notifications created with `persistent_notification.create`.
    pub notifications: Vec<Map<String, Value>>,
    /// Events fired through `/api/events/<type>`.
    pub events: Vec<(String, Value)>,
    /// The phones registered with `mobile_app` (the `<device>` of `notify.mobile_app_<device>`).
    pub mobile_app_devices: Vec<String>,
    /// What they were sent.
    pub pushes: Vec<super::mobile_app::MobilePush>,
    /// The states each scene sets (`scene.<id>` → entity id → state or `{state, ...attributes}`).
    pub scenes: IndexMap<String, Map<String, Value>>,
    /// The areas, in creation order.
    pub areas: Vec<super::extras::Area>,
    /// Each calendar's events.
    pub calendar_events: IndexMap<String, Vec<super::extras::Event>>,
    /// Each weather entity's forecast entries (without `datetime`, added when asked).
    pub forecasts: IndexMap<String, Vec<Map<String, Value>>>,
    /// Each to-do list's items (`{summary, uid, status}`).
    pub todo_items: IndexMap<String, Vec<Map<String, Value>>>,
    id_counter: u64,
    last_id_millis: i64,
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl World {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            entities: IndexMap::new(),
            changes: Vec::new(),
            remembered_brightness: IndexMap::new(),
            notifications: Vec::new(),
            events: Vec::new(),
            mobile_app_devices: Vec::new(),
            pushes: Vec::new(),
            scenes: IndexMap::new(),
            areas: Vec::new(),
            calendar_events: IndexMap::new(),
            forecasts: IndexMap::new(),
            todo_items: IndexMap::new(),
            id_counter: 0,
            last_id_millis: 0,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A new ULID-shaped context id (26 Crockford base32 characters, time-ordered).
    pub fn new_context_id(&mut self) -> String {
        let millis = self
            .now()
            .unix_micros()
            .div_euclid(1000)
            .max(self.last_id_millis);
        self.last_id_millis = millis;
        self.id_counter += 1;
        // 48 bits of time, then 80 bits derived from a counter (unique within the world).
        let mixed = splitmix64(self.id_counter);
        let value: u128 = ((millis as u128 & 0xFFFF_FFFF_FFFF) << 80)
            | (u128::from(mixed) << 16)
            | u128::from(self.id_counter as u16);
        (0..26)
            .rev()
            .map(|i| char::from(CROCKFORD[((value >> (i * 5)) & 31) as usize]))
            .collect()
    }

    /// A context for a change made by `user_id` (or by the system).
    pub fn new_context(&mut self, user_id: Option<&str>) -> Context {
        Context {
            id: self.new_context_id(),
            parent_id: None,
            user_id: user_id.map(str::to_owned),
        }
    }

    /// Writes a state the way `hass.states.async_set` does: nothing is recorded when
    /// neither the state nor the attributes changed (only `last_reported` moves).
    /// Returns the new state object when something changed.
    pub fn set_state(
        &mut self,
        entity_id: &str,
        state: &str,
        attributes: Map<String, Value>,
        context: &Context,
        origin: Option<&Origin>,
        at: Timestamp,
    ) -> Option<StateObject> {
        let old = self.entities.get(entity_id);
        if let Some(old) = old
            && old.state == state
            && old.attributes == attributes
        {
            if let Some(old) = self.entities.get_mut(entity_id) {
                old.last_reported = at;
            }
            return None;
        }
        let last_changed = match old {
            Some(old) if old.state == state => old.last_changed,
            _ => at,
        };
        let old_state = old.map(|old| old.state.clone());
        let new = StateObject {
            entity_id: entity_id.to_owned(),
            state: state.to_owned(),
            attributes,
            last_changed,
            last_reported: at,
            last_updated: at,
            context: context.clone(),
        };
        self.entities.insert(entity_id.to_owned(), new.clone());
        self.changes.push(Change {
            new: new.clone(),
            old_state,
            origin: origin.cloned(),
        });
        Some(new)
    }

    /// The recorded states of `entity_id` that `/api/history/period` returns for
    /// `[start, end]`: the state in effect at `start` (when `initial`), then every change
    /// up to `end`. With `significant_only`, attribute-only updates are left out. As in
    /// Home Assistant, the state in effect at `start` is reported as changed at `start`.
    pub fn history(
        &self,
        entity_id: &str,
        start: Timestamp,
        end: Timestamp,
        initial: bool,
        significant_only: bool,
    ) -> Vec<StateObject> {
        let mine = self
            .changes
            .iter()
            .filter(|change| change.new.entity_id == entity_id);
        let mut out = Vec::new();
        if initial
            && let Some(before) = mine
                .clone()
                .rfind(|change| change.new.last_updated <= start)
        {
            let mut at_start = before.new.clone();
            at_start.last_changed = start;
            at_start.last_updated = start;
            out.push(at_start);
        }
        out.extend(
            mine.filter(|change| change.new.last_updated > start && change.new.last_updated <= end)
                .filter(|change| {
                    !significant_only || change.new.last_changed == change.new.last_updated
                })
                .map(|change| change.new.clone()),
        );
        out
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
