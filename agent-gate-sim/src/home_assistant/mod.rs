//! An in-process Home Assistant: the REST API an agent-gate deployment talks to, served
//! over real HTTP by axum, with a small but faithful model of a home behind it.
//!
//! It plays Home Assistant in the gateway's tests and is the built-in home of
//! `agent-gate demo`. What it mirrors (from Home Assistant core's `api`, `history` and
//! `logbook` components):
//!
//! - bearer-token authentication; a missing or wrong token is `401` with the body
//!   `401: Unauthorized` (text/plain), unknown routes are `404: Not Found`; `GET /`
//!   (the frontend) answers 200 without authentication;
//! - `GET /api/`, `/api/config`, `/api/states`, `/api/states/<entity_id>` (unknown:
//!   `404 {"message": "Entity not found."}`), `POST /api/states/<entity_id>`;
//! - `GET /api/services` and `POST /api/services/<domain>/<service>`, which validates the
//!   service data, changes the targeted entities (lights with brightness, switches,
//!   locks, covers, climate, `homeassistant.turn_on/off/toggle`, ...) and returns the
//!   changed state objects; an unknown service or invalid data is `400: Bad Request`;
//!   `?return_response` (present, whatever its value) answers `{changed_states,
//!   service_response}` for the services that answer (`weather.get_forecasts`,
//!   `calendar.get_events`, `todo.get_items`, scripts), with Home Assistant's 400 messages
//!   for asking a service without an answer, or not asking one that only answers;
//! - `GET /api/history/period[/<start>]?filter_entity_id=..` (required, as in Home
//!   Assistant since 2023: `400 {"message": "filter_entity_id is missing"}`) and
//!   `GET /api/logbook[/<start>]?entity=..`, from the recorded changes;
//! - `POST /api/template` for plain text, `variables`, and `states()`, `state_attr()`,
//!   `is_state()`, `areas()`, `area_name()`, `area_entities()` expressions, and the template
//!   of `ha_get_areas` (anything else is `400 {"message": "Error rendering template: ..."}`);
//! - `GET /api/calendars` and `/api/calendars/<entity_id>?start=&end=` (a bare 400 for an
//!   unknown calendar or a bad window);
//! - `POST /api/events/<event_type>` → `{"message": "Event <type> fired."}`.
//!
//! For tests it records every request (headers included), counts service calls, can
//! inject failures ([`Fault`]) and can hold responses until released
//! ([`HomeAssistant::pause`]). Beyond Home Assistant, it can also require the other
//! credential kinds a gateway service may use ([`Credential`]), so the gateway's
//! header, query-parameter and basic authentication can be exercised against it.
//!
//! # Example
//!
//! ```
//! use agent_gate_sim::home_assistant::{Fault, HomeAssistant};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let home = HomeAssistant::demo("my-token");
//! let (addr, server) = home.spawn("127.0.0.1:0").await?;
//! assert_eq!(server.url(), format!("http://{addr}"));
//! assert_eq!(home.state("lock.front_door").unwrap()["state"], "locked");
//! // The next service call fails with a 500 before it takes effect.
//! home.inject(Fault::status(500).on_path("/api/services").once());
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod demo;
mod extras;
mod http;
mod mobile_app;
mod scenes;
mod services;
mod template;
mod websocket;
mod world;

pub use mobile_app::MobilePush;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use super::time::Timestamp;
use world::{Clock, World, valid_entity_id};

/// The token a simulator built without [`HomeAssistantBuilder::token`] accepts.
pub const DEFAULT_TOKEN: &str = "simulated-home-assistant-token";

/// The id of the user the accepted credential belongs to (appears in `context.user_id`).
pub const USER_ID: &str = "5f1c0d6a3b8e4e2f9a7d41c2b6e8f013";

/// The version the simulator reports in `/api/config`.
pub const DEFAULT_VERSION: &str = "2025.11.2";

/// An error in the simulator's set-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimulatorError {
    /// An entity id is not of the form `domain.object_id` (lowercase letters, digits, `_`).
    #[error(
        "simulated Home Assistant: `{0}` is not a valid entity id; use `domain.object_id` with lowercase letters, digits and `_`"
    )]
    InvalidEntityId(String),
    /// Two entities have the same id.
    #[error("simulated Home Assistant: entity `{0}` is defined twice; give each entity its own id")]
    DuplicateEntity(String),
    /// A past state is not older than the entity's current state.
    #[error(
        "simulated Home Assistant: a past state of `{0}` is not older than its current state; past states must be further in the past than `changed_ago`"
    )]
    PastStateNotEarlier(String),
}

/// The credential the simulator requires on every API request.
///
/// Home Assistant itself only knows [`Credential::Bearer`]; the other kinds let the same
/// simulator stand in for any HTTP service a gateway can be configured with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>` (Home Assistant's long-lived access tokens).
    Bearer(String),
    /// A custom header, e.g. `X-Api-Key: <value>`.
    Header {
        /// Header name (case-insensitive).
        name: String,
        /// Exact header value.
        value: String,
    },
    /// A query parameter, e.g. `?api_key=<value>`.
    Query {
        /// Parameter name.
        name: String,
        /// Exact parameter value.
        value: String,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Header { name, .. } => write!(f, "Header({name}: <redacted>)"),
            Self::Query { name, .. } => write!(f, "Query({name}=<redacted>)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
        }
    }
}

/// An entity of the simulated home, for [`HomeAssistantBuilder::entity`].
#[derive(Debug, Clone)]
pub struct Entity {
    entity_id: String,
    state: String,
    attributes: Map<String, Value>,
    changed_ago: Duration,
    past: Vec<(Duration, String)>,
}

impl Entity {
    /// An entity with id `entity_id` (e.g. `light.kitchen`) in state `state`.
    pub fn new(entity_id: impl Into<String>, state: impl Into<String>) -> Self {
        Self {
            entity_id: entity_id.into(),
            state: state.into(),
            attributes: Map::new(),
            changed_ago: Duration::ZERO,
            past: Vec::new(),
        }
    }

    /// Sets the `friendly_name` attribute.
    pub fn name(self, friendly_name: impl Into<String>) -> Self {
        self.attribute("friendly_name", friendly_name.into())
    }

    /// Sets an attribute (`brightness`, `unit_of_measurement`, ...).
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// How long ago the current state began (default: when the simulator was built).
    pub fn changed_ago(mut self, ago: Duration) -> Self {
        self.changed_ago = ago;
        self
    }

    /// An earlier state, `ago` before the simulator was built, recorded in the history
    /// and the logbook. It must be older than [`Entity::changed_ago`].
    pub fn past_state(mut self, ago: Duration, state: impl Into<String>) -> Self {
        self.past.push((ago, state.into()));
        self
    }
}

/// An event of a simulated calendar, for [`HomeAssistantBuilder::calendar_event`].
#[derive(Debug, Clone)]
pub struct CalendarEvent {
    summary: String,
    description: Option<String>,
    location: Option<String>,
    starts_in_seconds: i64,
    duration: Duration,
}

impl CalendarEvent {
    /// An event called `summary` that starts `starts_in_seconds` after the simulator is
    /// built (negative: before) and lasts `duration`.
    pub fn new(summary: impl Into<String>, starts_in_seconds: i64, duration: Duration) -> Self {
        Self {
            summary: summary.into(),
            description: None,
            location: None,
            starts_in_seconds,
            duration,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the location.
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }
}

/// Builds a [`HomeAssistant`].
#[derive(Debug, Clone)]
pub struct HomeAssistantBuilder {
    credential: Credential,
    entities: Vec<Entity>,
    areas: Vec<(String, String, Vec<String>)>,
    scenes: Vec<(String, Map<String, Value>)>,
    calendar_events: Vec<(String, CalendarEvent)>,
    forecasts: Vec<(String, Vec<Map<String, Value>>)>,
    todo_items: Vec<(String, String, String)>,
    location_name: String,
    version: String,
    start_time: Option<Timestamp>,
    mobile_app_devices: Vec<String>,
}

impl HomeAssistantBuilder {
    /// Requires `Authorization: Bearer <token>` (the default is [`DEFAULT_TOKEN`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.credential = Credential::Bearer(token.into());
        self
    }

    /// Requires another kind of credential instead of a bearer token.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = credential;
        self
    }

    /// Adds an entity.
    pub fn entity(mut self, entity: Entity) -> Self {
        self.entities.push(entity);
        self
    }

    /// Adds an area (`area_id`, its name) with the entities in it, as Home Assistant's area
    /// registry keeps them (reached by the templates `areas()`, `area_name()`,
    /// `area_entities()`).
    pub fn area<S: Into<String>>(
        mut self,
        area_id: impl Into<String>,
        name: impl Into<String>,
        entities: impl IntoIterator<Item = S>,
    ) -> Self {
        let entities = entities.into_iter().map(Into::into).collect();
        self.areas.push((area_id.into(), name.into(), entities));
        self
    }

    /// Adds a scene from configuration: entity `scene.<id>` named `name` that sets each
    /// entity of `states` (entity id → state, or `{"state": .., attributes..}`) when
    /// turned on.
    pub fn scene(
        mut self,
        entity_id: impl Into<String>,
        name: impl Into<String>,
        states: Map<String, Value>,
    ) -> Self {
        let entity_id = entity_id.into();
        let members: Vec<Value> = states.keys().cloned().map(Value::String).collect();
        self.entities.push(
            Entity::new(entity_id.clone(), "unknown")
                .attribute("entity_id", Value::Array(members))
                .name(name),
        );
        self.scenes.push((entity_id, states));
        self
    }

    /// Adds an event to calendar `entity_id` (add the `calendar.` entity too).
    pub fn calendar_event(mut self, entity_id: impl Into<String>, event: CalendarEvent) -> Self {
        self.calendar_events.push((entity_id.into(), event));
        self
    }

    /// Sets the forecast `weather.get_forecasts` answers for weather entity `entity_id`:
    /// one object per period (condition, temperature, ...); `datetime` is added.
    pub fn forecast(mut self, entity_id: impl Into<String>, entries: Vec<Value>) -> Self {
        let entries = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect();
        self.forecasts.push((entity_id.into(), entries));
        self
    }

    /// Adds an item (`status` `needs_action` or `completed`) to to-do list `entity_id`.
    pub fn todo_item(
        mut self,
        entity_id: impl Into<String>,
        summary: impl Into<String>,
        status: impl Into<String>,
    ) -> Self {
        self.todo_items
            .push((entity_id.into(), summary.into(), status.into()));
        self
    }

    /// Registers a phone with the `mobile_app` integration: service
    /// `notify.mobile_app_<device>` then exists and records what it is sent
    /// ([`HomeAssistant::mobile_pushes`]).
    pub fn mobile_app_device(mut self, device: impl Into<String>) -> Self {
        self.mobile_app_devices.push(device.into());
        self
    }

    /// Adds the entities of the demo home (see [`HomeAssistant::demo`]).
    pub fn demo_entities(mut self) -> Self {
        self.entities.extend(demo::entities());
        self
    }

    /// The `location_name` in `/api/config` (default `Home`).
    pub fn location_name(mut self, name: impl Into<String>) -> Self {
        self.location_name = name.into();
        self
    }

    /// The `version` in `/api/config` (default [`DEFAULT_VERSION`]).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Runs the simulated clock from a fixed instant that only moves with
    /// [`HomeAssistant::advance_clock`], for reproducible timestamps (default: the
    /// system clock).
    pub fn start_time(mut self, start: Timestamp) -> Self {
        self.start_time = Some(start);
        self
    }

    /// Builds the simulator, recording each entity's past and current states.
    pub fn build(self) -> Result<HomeAssistant, SimulatorError> {
        let clock = match self.start_time {
            Some(now) => Clock::Manual { now },
            None => Clock::System {
                offset: Duration::ZERO,
            },
        };
        let mut world = World::new(clock);
        world.mobile_app_devices = self.mobile_app_devices;
        let now = world.now();
        let mut writes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entity in self.entities {
            if !valid_entity_id(&entity.entity_id) {
                return Err(SimulatorError::InvalidEntityId(entity.entity_id));
            }
            if !seen.insert(entity.entity_id.clone()) {
                return Err(SimulatorError::DuplicateEntity(entity.entity_id));
            }
            if entity
                .past
                .iter()
                .any(|(ago, _)| *ago <= entity.changed_ago)
            {
                return Err(SimulatorError::PastStateNotEarlier(entity.entity_id));
            }
            let is_light = entity.entity_id.starts_with("light.");
            let attributes_for = |state: &str| {
                let mut attributes = entity.attributes.clone();
                if is_light {
                    services::normalize_light(state, &mut attributes);
                }
                attributes
            };
            for (ago, state) in &entity.past {
                writes.push((
                    now.minus(*ago),
                    entity.entity_id.clone(),
                    state.clone(),
                    attributes_for(state),
                ));
            }
            let attributes = attributes_for(&entity.state);
            writes.push((
                now.minus(entity.changed_ago),
                entity.entity_id,
                entity.state,
                attributes,
            ));
        }
        writes.sort_by_key(|(at, ..)| *at);
        for (at, entity_id, state, attributes) in writes {
            let context = world.new_context(None);
            world.set_state(&entity_id, &state, attributes, &context, None, at);
        }
        for (entity_id, states) in self.scenes {
            world.scenes.insert(entity_id, states);
        }
        for (id, name, entities) in self.areas {
            world.areas.push(extras::Area { id, name, entities });
        }
        for (entity_id, event) in self.calendar_events {
            let offset = Duration::from_secs(event.starts_in_seconds.unsigned_abs());
            let start = if event.starts_in_seconds < 0 {
                now.minus(offset)
            } else {
                now.plus(offset)
            };
            world
                .calendar_events
                .entry(entity_id)
                .or_default()
                .push(extras::Event {
                    start,
                    end: start.plus(event.duration),
                    summary: event.summary,
                    description: event.description,
                    location: event.location,
                });
        }
        for (entity_id, entries) in self.forecasts {
            world.forecasts.insert(entity_id, entries);
        }
        for (n, (entity_id, summary, status)) in self.todo_items.into_iter().enumerate() {
            let mut item = Map::new();
            item.insert("summary".into(), summary.into());
            item.insert("uid".into(), format!("item-{}", n + 1).into());
            item.insert("status".into(), status.into());
            world.todo_items.entry(entity_id).or_default().push(item);
        }
        Ok(HomeAssistant::from_parts(
            world,
            self.credential,
            self.location_name,
            self.version,
        ))
    }
}

/// One HTTP request the simulator received (recorded before authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, still percent-encoded, e.g. `/api/states/light.kitchen`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The headers (lowercase names), in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (lossily decoded as UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One authenticated call of `POST /api/services/<domain>/<service>`, recorded when it
/// arrived (whether or not the service existed).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCall {
    /// The service domain (`light`).
    pub domain: String,
    /// The service name (`turn_on`).
    pub service: String,
    /// The service data (the request body), `Null` when empty.
    pub data: Value,
}

/// An event fired through `POST /api/events/<event_type>`.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredEvent {
    /// The event type.
    pub event_type: String,
    /// The event data (`Null` when the body was empty).
    pub data: Value,
}

#[derive(Debug, Clone)]
enum FaultAction {
    Respond {
        status: u16,
        content_type: String,
        body: String,
    },
    Delay(Duration),
}

/// A failure injected into the simulator with [`HomeAssistant::inject`].
///
/// By default a fault applies to every request (of any path) until
/// [`HomeAssistant::clear_faults`], and replaces the response before the request is
/// handled (so a failed service call changes nothing).
#[derive(Debug, Clone)]
pub struct Fault {
    action: FaultAction,
    path_prefix: Option<String>,
    remaining: Option<usize>,
    after_handling: bool,
}

impl Fault {
    fn new(action: FaultAction) -> Self {
        Self {
            action,
            path_prefix: None,
            remaining: None,
            after_handling: false,
        }
    }

    /// Answers with `status` and the body aiohttp gives a bare HTTP error
    /// (`500 Internal Server Error\n\nServer got itself in trouble` for 500,
    /// `<code>: <reason>` otherwise), as text/plain.
    pub fn status(status: u16) -> Self {
        let body = http::plain_error_body(status);
        Self::response(status, "text/plain; charset=utf-8", body)
    }

    /// Answers with `status` and `{"message": message}`, like Home Assistant's own errors.
    pub fn message(status: u16, message: impl Into<String>) -> Self {
        let body = serde_json::json!({ "message": message.into() }).to_string();
        Self::response(status, "application/json", body)
    }

    /// Answers with exactly this status, content type and body.
    pub fn response(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Self::new(FaultAction::Respond {
            status,
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// Answers `200 OK` with a body that is not JSON (an HTML page, as a proxy in front of
    /// Home Assistant might send).
    pub fn non_json(body: impl Into<String>) -> Self {
        Self::response(200, "text/html; charset=utf-8", body)
    }

    /// Delays the response by `delay` (tokio time, so a paused clock skips it), then
    /// handles the request normally.
    pub fn delay(delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay))
    }

    /// Applies only to requests whose path starts with `prefix` (e.g. `/api/services`).
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Applies to the next `count` matching requests only.
    pub fn times(mut self, count: usize) -> Self {
        self.remaining = Some(count);
        self
    }

    /// Applies to the next matching request only.
    pub fn once(self) -> Self {
        self.times(1)
    }

    /// Handles the request first (a service call takes effect), then replaces or delays
    /// the response: the "action happened but the answer was lost" case.
    pub fn after_handling(mut self) -> Self {
        self.after_handling = true;
        self
    }
}

#[derive(Debug)]
struct Shared {
    world: Mutex<World>,
    credential: Credential,
    location_name: String,
    version: String,
    requests: Mutex<Vec<RecordedRequest>>,
    service_calls: Mutex<Vec<ServiceCall>>,
    faults: Mutex<Vec<Fault>>,
    paused: watch::Sender<bool>,
    held: watch::Sender<usize>,
    /// Every event fired, as the WebSocket API sends it (`event_type`, `data`, `context`...).
    events: broadcast::Sender<Value>,
    /// Bumped by [`HomeAssistant::drop_websockets`]: every connection closes.
    websocket_generation: watch::Sender<u64>,
    /// Active `subscribe_events` subscriptions over all connections.
    subscriptions: watch::Sender<usize>,
    /// How many pushes the registered phones got.
    pushed: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Fires an event on the bus, as `hass.bus.async_fire` with the context of `user_id`:
    /// recorded for [`HomeAssistant::fired_events`] and sent to WebSocket subscribers.
    fn fire(&self, event_type: &str, data: Value, user_id: Option<&str>, origin: &str) {
        let mut world = self.world();
        let context = world.new_context(user_id);
        let time_fired = world.now().to_string();
        world.events.push((event_type.to_owned(), data.clone()));
        drop(world);
        let data = if data.is_null() {
            Value::Object(Map::new())
        } else {
            data
        };
        let event = serde_json::json!({
            "event_type": event_type,
            "data": data,
            "origin": origin,
            "time_fired": time_fired,
            "context": {"id": context.id, "parent_id": context.parent_id, "user_id": context.user_id},
        });
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Takes the first fault of the given stage that matches `path`, consuming one use.
    fn take_fault(&self, path: &str, after_handling: bool) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|fault| {
            fault.after_handling == after_handling
                && fault.remaining != Some(0)
                && fault
                    .path_prefix
                    .as_deref()
                    .is_none_or(|prefix| path.starts_with(prefix))
        })?;
        let fault = faults.get_mut(index)?;
        let action = fault.action.clone();
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                faults.remove(index);
            }
        }
        Some(action)
    }
}

/// A simulated Home Assistant. Cheap to clone: clones share the same home.
#[derive(Debug, Clone)]
pub struct HomeAssistant {
    shared: Arc<Shared>,
}

impl HomeAssistant {
    /// A builder with no entities, accepting [`DEFAULT_TOKEN`].
    pub fn builder() -> HomeAssistantBuilder {
        HomeAssistantBuilder {
            credential: Credential::Bearer(DEFAULT_TOKEN.to_owned()),
            entities: Vec::new(),
            areas: Vec::new(),
            scenes: Vec::new(),
            calendar_events: Vec::new(),
            forecasts: Vec::new(),
            todo_items: Vec::new(),
            location_name: "Home".to_owned(),
            version: DEFAULT_VERSION.to_owned(),
            start_time: None,
            mobile_app_devices: Vec::new(),
        }
    }

    /// The demo home, accepting `token`: lights in the living room, kitchen and bedroom
    /// (with brightness), a front-door lock, a coffee-maker switch, a thermostat, a
    /// garage door, temperature and humidity sensors with a day of readings, and a door
    /// sensor.
    pub fn demo(token: impl Into<String>) -> Self {
        let builder = Self::builder().token(token);
        let (credential, location_name, version) = (
            builder.credential.clone(),
            builder.location_name.clone(),
            builder.version.clone(),
        );
        match builder.demo_entities().build() {
            Ok(home) => home,
            // Unreachable: the demo entities are fixed and valid (a test builds them).
            // An empty home is the safe answer rather than a panic.
            Err(_) => Self::from_parts(
                World::new(Clock::System {
                    offset: Duration::ZERO,
                }),
                credential,
                location_name,
                version,
            ),
        }
    }

    /// A home shaped like Home Assistant Core's `demo:` integration (the entities the
    /// end-to-end suite uses, with their ids, names and kinds of state), with the additions of
    /// the suite's configuration (`.ci/ha/configuration.yaml`): `input_boolean.agent_gate_test`,
    /// `script.agent_gate_note`, `scene.agent_gate_evening`, and the areas onboarding creates
    /// (Living Room, Kitchen, Bedroom, with `light.bed_light` in the Bedroom). Accepts `token`.
    pub fn core_demo(token: impl Into<String>) -> Self {
        let builder = demo::core_demo(Self::builder().token(token));
        let (credential, location_name, version) = (
            builder.credential.clone(),
            builder.location_name.clone(),
            builder.version.clone(),
        );
        match builder.build() {
            Ok(home) => home,
            // Unreachable: the entities are fixed and valid (a test builds them).
            Err(_) => Self::from_parts(
                World::new(Clock::System {
                    offset: Duration::ZERO,
                }),
                credential,
                location_name,
                version,
            ),
        }
    }

    fn from_parts(
        world: World,
        credential: Credential,
        location_name: String,
        version: String,
    ) -> Self {
        let (paused, _) = watch::channel(false);
        let (held, _) = watch::channel(0);
        let (events, _) = broadcast::channel(256);
        let (websocket_generation, _) = watch::channel(0);
        let (subscriptions, _) = watch::channel(0);
        let (pushed, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                world: Mutex::new(world),
                credential,
                location_name,
                version,
                requests: Mutex::new(Vec::new()),
                service_calls: Mutex::new(Vec::new()),
                faults: Mutex::new(Vec::new()),
                paused,
                held,
                events,
                websocket_generation,
                subscriptions,
                pushed,
            }),
        }
    }

    /// The axum router serving the API, to mount in another server.
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    /// Serves the API on `addr` (use `127.0.0.1:0` for an ephemeral port). Returns the
    /// bound address and the running server, which stops when dropped.
    pub async fn spawn(
        &self,
        addr: impl ToSocketAddrs,
    ) -> io::Result<(SocketAddr, RunningHomeAssistant)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok((
            local,
            RunningHomeAssistant {
                addr: local,
                stop: Some(stop),
                task: Some(task),
                home: self.clone(),
            },
        ))
    }

    /// The current state object of `entity_id` (as `GET /api/states/<id>` returns it).
    pub fn state(&self, entity_id: &str) -> Option<Value> {
        self.shared
            .world()
            .entities
            .get(entity_id)
            .map(|s| s.to_json())
    }

    /// All state objects.
    pub fn states(&self) -> Vec<Value> {
        self.shared
            .world()
            .entities
            .values()
            .map(|s| s.to_json())
            .collect()
    }

    /// Sets an entity's state and attributes, as a device would report it (creating the
    /// entity if needed). Returns whether anything changed.
    pub fn set_state(
        &self,
        entity_id: &str,
        state: impl Into<String>,
        attributes: Map<String, Value>,
    ) -> Result<bool, SimulatorError> {
        if !valid_entity_id(entity_id) {
            return Err(SimulatorError::InvalidEntityId(entity_id.to_owned()));
        }
        let mut world = self.shared.world();
        let context = world.new_context(None);
        let now = world.now();
        Ok(world
            .set_state(entity_id, &state.into(), attributes, &context, None, now)
            .is_some())
    }

    /// The simulated current time.
    pub fn now(&self) -> Timestamp {
        self.shared.world().now()
    }

    /// Moves the simulated clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.world().clock.advance(by);
    }

    /// Every authenticated service call received, in order.
    pub fn service_calls(&self) -> Vec<ServiceCall> {
        lock(&self.shared.service_calls).clone()
    }

    /// The number of authenticated service calls received.
    pub fn service_call_count(&self) -> usize {
        lock(&self.shared.service_calls).len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Events fired through the API, in order.
    pub fn fired_events(&self) -> Vec<FiredEvent> {
        self.shared
            .world()
            .events
            .iter()
            .map(|(event_type, data)| FiredEvent {
                event_type: event_type.clone(),
                data: data.clone(),
            })
            .collect()
    }

    /// Notifications created with `persistent_notification.create` (their service data).
    pub fn notifications(&self) -> Vec<Map<String, Value>> {
        self.shared.world().notifications.clone()
    }

    /// What the registered phones were sent through `notify.mobile_app_<device>`, in order.
    pub fn mobile_pushes(&self) -> Vec<MobilePush> {
        self.shared.world().pushes.clone()
    }

    /// Waits until the phones got at least `count` pushes; returns them all.
    pub async fn wait_for_pushes(&self, count: usize) -> Vec<MobilePush> {
        let mut pushed = self.shared.pushed.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = pushed.wait_for(|pushed| *pushed >= count).await;
        self.mobile_pushes()
    }

    /// Fires `event_type` with `data` in the context of `user_id` (`None`: no user), as a
    /// phone registered to that user does when one of its notification actions is pressed
    /// (`mobile_app_notification_action` through the app's webhook). Subscribers of the
    /// WebSocket API get it; [`HomeAssistant::fired_events`] lists it.
    pub fn fire_event_as(&self, event_type: &str, data: Value, user_id: Option<&str>) {
        self.shared.fire(event_type, data, user_id, "REMOTE");
    }

    /// Presses the notification action `action` on a phone registered to `user_id`: fires
    /// `mobile_app_notification_action` with `{"action": action}` (see
    /// [`HomeAssistant::fire_event_as`]).
    pub fn press_action(&self, action: &str, user_id: Option<&str>) {
        self.fire_event_as(
            "mobile_app_notification_action",
            serde_json::json!({"action": action}),
            user_id,
        );
    }

    /// The number of active `subscribe_events` subscriptions of WebSocket clients.
    pub fn event_subscriptions(&self) -> usize {
        *self.shared.subscriptions.borrow()
    }

    /// Waits until WebSocket clients hold at least `count` event subscriptions.
    pub async fn wait_for_subscriptions(&self, count: usize) {
        let mut subscriptions = self.shared.subscriptions.subscribe();
        let _ = subscriptions.wait_for(|n| *n >= count).await;
    }

    /// Closes every WebSocket connection (as a Home Assistant restart does); clients may
    /// connect again at once.
    pub fn drop_websockets(&self) {
        self.shared.websocket_generation.send_modify(|g| *g += 1);
    }

    /// Adds a fault; faults are tried in the order they were added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Holds every request that arrives from now on (after recording it, before handling
    /// it) until [`HomeAssistant::resume`].
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Lets held requests (and later ones) through.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// How many requests have been held by [`HomeAssistant::pause`] so far.
    pub fn held_count(&self) -> usize {
        *self.shared.held.borrow()
    }

    /// Waits until at least `count` requests have been held by [`HomeAssistant::pause`].
    pub async fn wait_until_held(&self, count: usize) {
        let mut held = self.shared.held.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = held.wait_for(|held| *held >= count).await;
    }
}

/// A simulator serving on a socket; dropping it stops the server.
#[derive(Debug)]
pub struct RunningHomeAssistant {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    home: HomeAssistant,
}

impl RunningHomeAssistant {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:38123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated home being served.
    pub fn home(&self) -> &HomeAssistant {
        &self.home
    }

    /// Stops accepting connections, lets held requests through, and waits for the
    /// in-flight ones to finish.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.home.resume();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningHomeAssistant {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
