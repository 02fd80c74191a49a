//! The services the simulated home offers (`GET /api/services`) and what calling them
//! does to the state (`POST /api/services/<domain>/<service>`).
//!
//! Validation follows Home Assistant's service schemas: an unknown service, an unknown
//! field, a missing required field or a value of the wrong type or range is a schema
//! error (HTTP 400); a value the entity itself refuses (an unsupported HVAC mode) is a
//! `HomeAssistantError`, which the REST API lets through as HTTP 500.

use serde_json::{Map, Value, json};

use super::world::{Origin, StateObject, World, valid_entity_id};

/// Why a service call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceError {
    /// The service does not exist (`ServiceNotFound`).
    NotFound,
    /// The service data does not match the service's schema (`vol.Invalid`).
    Invalid(String),
    /// The entity refused the call (`HomeAssistantError`).
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer {
        min: i64,
        max: i64,
    },
    Number {
        min: f64,
        max: f64,
    },
    Text,
    RgbColor,
    /// Any JSON value (a mapping or list checked by the service itself).
    Any,
}

#[derive(Debug)]
struct Field {
    key: &'static str,
    name: &'static str,
    description: &'static str,
    required: bool,
    kind: Kind,
}

#[derive(Debug)]
struct Service {
    domain: &'static str,
    service: &'static str,
    name: &'static str,
    description: &'static str,
    /// Entity services take `entity_id` (and the other target keys) in their data.
    targets: bool,
    /// Extra keys are passed through (the `homeassistant` domain forwards them).
    allow_extra: bool,
    fields: &'static [Field],
}

const TARGET_KEYS: [&str; 5] = ["entity_id", "area_id", "device_id", "floor_id", "label_id"];

const TRANSITION: Field = Field {
    key: "transition",
    name: "Transition",
    description: "Duration it takes to get to the next state, in seconds.",
    required: false,
    kind: Kind::Number {
        min: 0.0,
        max: 300.0,
    },
};

const LIGHT_ON_FIELDS: &[Field] = &[
    TRANSITION,
    Field {
        key: "brightness",
        name: "Brightness value",
        description: "Number indicating brightness, where 0 turns the light off, 1 is the minimum brightness, and 255 is the maximum brightness.",
        required: false,
        kind: Kind::Integer { min: 0, max: 255 },
    },
    Field {
        key: "brightness_pct",
        name: "Brightness",
        description: "Number indicating the percentage of full brightness, where 0 turns the light off, 1 is the minimum brightness, and 100 is the maximum brightness.",
        required: false,
        kind: Kind::Number {
            min: 0.0,
            max: 100.0,
        },
    },
    Field {
        key: "rgb_color",
        name: "Color",
        description: "The color in RGB format. A list of three integers between 0 and 255 representing the values of red, green, and blue.",
        required: false,
        kind: Kind::RgbColor,
    },
    Field {
        key: "color_temp_kelvin",
        name: "Color temperature",
        description: "Color temperature in Kelvin.",
        required: false,
        kind: Kind::Integer {
            min: 1000,
            max: 40000,
        },
    },
];

const LOCK_FIELDS: &[Field] = &[Field {
    key: "code",
    name: "Code",
    description: "Code used to lock or unlock the lock.",
    required: false,
    kind: Kind::Text,
}];

const SCENE_APPLY_FIELDS: &[Field] = &[
    Field {
        key: "entities",
        name: "Entities state",
        description: "List of entities and their target state.",
        required: true,
        kind: Kind::Any,
    },
    TRANSITION,
];

const SCENE_CREATE_FIELDS: &[Field] = &[
    Field {
        key: "scene_id",
        name: "Scene entity ID",
        description: "The entity ID of the new scene.",
        required: true,
        kind: Kind::Text,
    },
    Field {
        key: "entities",
        name: "Entities state",
        description: "List of entities and their target state.",
        required: false,
        kind: Kind::Any,
    },
    Field {
        key: "snapshot_entities",
        name: "Snapshot entities",
        description: "List of entities to be included in the snapshot.",
        required: false,
        kind: Kind::Any,
    },
];

const GROUP_SET_FIELDS: &[Field] = &[
    Field {
        key: "object_id",
        name: "Object ID",
        description: "Object ID of this group.",
        required: true,
        kind: Kind::Text,
    },
    Field {
        key: "name",
        name: "Name",
        description: "Name of the group.",
        required: false,
        kind: Kind::Text,
    },
    Field {
        key: "entities",
        name: "Entities",
        description: "List of all members in the group.",
        required: false,
        kind: Kind::Any,
    },
];

const GET_FORECASTS_FIELDS: &[Field] = &[Field {
    key: "type",
    name: "Forecast type",
    description: "The scope of the weather forecast.",
    required: true,
    kind: Kind::Text,
}];

const GET_EVENTS_FIELDS: &[Field] = &[
    Field {
        key: "start_date_time",
        name: "Start time",
        description: "Returns active events after this time (exclusive). When not set, defaults to now.",
        required: false,
        kind: Kind::Text,
    },
    Field {
        key: "end_date_time",
        name: "End time",
        description: "Returns active events before this time (exclusive). Cannot be used with 'duration'.",
        required: false,
        kind: Kind::Text,
    },
    Field {
        key: "duration",
        name: "Duration",
        description: "Returns active events from start_date_time until the specified duration.",
        required: false,
        kind: Kind::Any,
    },
];

const GET_ITEMS_FIELDS: &[Field] = &[Field {
    key: "status",
    name: "Status",
    description: "Only return to-do items with the specified statuses. Returns not completed actions by default.",
    required: false,
    kind: Kind::Any,
}];

/// A script from configuration, called by its own name (`script.agent_gate_note`).
const SCRIPT_RUN: Service = Service {
    domain: "script",
    service: "",
    name: "",
    description: "",
    targets: false,
    allow_extra: true,
    fields: &[],
};

const SERVICES: &[Service] = &[
    Service {
        domain: "weather",
        service: "get_forecasts",
        name: "Get forecasts",
        description: "Get weather forecasts.",
        targets: true,
        allow_extra: false,
        fields: GET_FORECASTS_FIELDS,
    },
    Service {
        domain: "calendar",
        service: "get_events",
        name: "Get events",
        description: "Get events on a calendar within a time range.",
        targets: true,
        allow_extra: false,
        fields: GET_EVENTS_FIELDS,
    },
    Service {
        domain: "todo",
        service: "get_items",
        name: "Get to-do list items",
        description: "Gets items on a to-do list.",
        targets: true,
        allow_extra: false,
        fields: GET_ITEMS_FIELDS,
    },
    Service {
        domain: "script",
        service: "turn_on",
        name: "Turn on",
        description: "Runs the sequence of actions defined in a script.",
        targets: true,
        allow_extra: true,
        fields: &[],
    },
    Service {
        domain: "script",
        service: "turn_off",
        name: "Turn off",
        description: "Stops a running script.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "scene",
        service: "turn_on",
        name: "Activate",
        description: "Activates a scene.",
        targets: true,
        allow_extra: false,
        fields: &[TRANSITION],
    },
    Service {
        domain: "scene",
        service: "apply",
        name: "Apply",
        description: "Activates a scene with configuration.",
        targets: false,
        allow_extra: false,
        fields: SCENE_APPLY_FIELDS,
    },
    Service {
        domain: "scene",
        service: "create",
        name: "Create",
        description: "Creates a new scene.",
        targets: false,
        allow_extra: false,
        fields: SCENE_CREATE_FIELDS,
    },
    Service {
        domain: "group",
        service: "set",
        name: "Set",
        description: "Creates/Updates a group.",
        targets: false,
        allow_extra: false,
        fields: GROUP_SET_FIELDS,
    },
    Service {
        domain: "homeassistant",
        service: "turn_on",
        name: "Generic turn on",
        description: "Generic action to turn devices on under any domain.",
        targets: true,
        allow_extra: true,
        fields: &[],
    },
    Service {
        domain: "homeassistant",
        service: "turn_off",
        name: "Generic turn off",
        description: "Generic action to turn devices off under any domain.",
        targets: true,
        allow_extra: true,
        fields: &[],
    },
    Service {
        domain: "homeassistant",
        service: "toggle",
        name: "Generic toggle",
        description: "Generic action to toggle devices on/off under any domain.",
        targets: true,
        allow_extra: true,
        fields: &[],
    },
    Service {
        domain: "homeassistant",
        service: "update_entity",
        name: "Update entity",
        description: "Forces one or more entities to update their data.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "persistent_notification",
        service: "create",
        name: "Create",
        description: "Shows a notification on the notifications panel.",
        targets: false,
        allow_extra: false,
        fields: &[
            Field {
                key: "message",
                name: "Message",
                description: "Message body of the notification.",
                required: true,
                kind: Kind::Text,
            },
            Field {
                key: "title",
                name: "Title",
                description: "Optional title of the notification.",
                required: false,
                kind: Kind::Text,
            },
            Field {
                key: "notification_id",
                name: "Notification ID",
                description: "ID of the notification. This new notification will overwrite an existing notification with the same ID.",
                required: false,
                kind: Kind::Text,
            },
        ],
    },
    Service {
        domain: "light",
        service: "turn_on",
        name: "Turn on",
        description: "Turns on one or more lights and adjusts their properties, even when they are turned on already.",
        targets: true,
        allow_extra: false,
        fields: LIGHT_ON_FIELDS,
    },
    Service {
        domain: "light",
        service: "turn_off",
        name: "Turn off",
        description: "Turns off one or more lights.",
        targets: true,
        allow_extra: false,
        fields: &[TRANSITION],
    },
    Service {
        domain: "light",
        service: "toggle",
        name: "Toggle",
        description: "Toggles one or more lights, from on to off, or off to on, based on their current state.",
        targets: true,
        allow_extra: false,
        fields: LIGHT_ON_FIELDS,
    },
    Service {
        domain: "switch",
        service: "turn_on",
        name: "Turn on",
        description: "Turns a switch on.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "switch",
        service: "turn_off",
        name: "Turn off",
        description: "Turns a switch off.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "switch",
        service: "toggle",
        name: "Toggle",
        description: "Toggles a switch on/off.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "input_boolean",
        service: "turn_on",
        name: "Turn on",
        description: "Turns on the helper.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "input_boolean",
        service: "turn_off",
        name: "Turn off",
        description: "Turns off the helper.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "input_boolean",
        service: "toggle",
        name: "Toggle",
        description: "Toggles the helper on/off.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "lock",
        service: "lock",
        name: "Lock",
        description: "Locks a lock.",
        targets: true,
        allow_extra: false,
        fields: LOCK_FIELDS,
    },
    Service {
        domain: "lock",
        service: "unlock",
        name: "Unlock",
        description: "Unlocks a lock.",
        targets: true,
        allow_extra: false,
        fields: LOCK_FIELDS,
    },
    Service {
        domain: "cover",
        service: "open_cover",
        name: "Open",
        description: "Opens a cover.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "cover",
        service: "close_cover",
        name: "Close",
        description: "Closes a cover.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "cover",
        service: "toggle",
        name: "Toggle",
        description: "Toggles a cover open/closed.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "cover",
        service: "set_cover_position",
        name: "Set position",
        description: "Moves a cover to a specific position.",
        targets: true,
        allow_extra: false,
        fields: &[Field {
            key: "position",
            name: "Position",
            description: "Target position.",
            required: true,
            kind: Kind::Integer { min: 0, max: 100 },
        }],
    },
    Service {
        domain: "climate",
        service: "set_temperature",
        name: "Set target temperature",
        description: "Sets the temperature setpoint.",
        targets: true,
        allow_extra: false,
        fields: &[
            Field {
                key: "temperature",
                name: "Target temperature",
                description: "The temperature setpoint.",
                required: true,
                kind: Kind::Number {
                    min: 0.0,
                    max: 250.0,
                },
            },
            Field {
                key: "hvac_mode",
                name: "HVAC mode",
                description: "HVAC operation mode.",
                required: false,
                kind: Kind::Text,
            },
        ],
    },
    Service {
        domain: "climate",
        service: "set_hvac_mode",
        name: "Set HVAC mode",
        description: "Sets HVAC operation mode.",
        targets: true,
        allow_extra: false,
        fields: &[Field {
            key: "hvac_mode",
            name: "HVAC mode",
            description: "HVAC operation mode.",
            required: true,
            kind: Kind::Text,
        }],
    },
    Service {
        domain: "climate",
        service: "turn_on",
        name: "Turn on",
        description: "Turns climate device on.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
    Service {
        domain: "climate",
        service: "turn_off",
        name: "Turn off",
        description: "Turns climate device off.",
        targets: true,
        allow_extra: false,
        fields: &[],
    },
];

/// Domains whose services exist whatever entities the home has.
const CORE_DOMAINS: [&str; 2] = ["homeassistant", "persistent_notification"];

fn domain_loaded(world: &World, domain: &str) -> bool {
    CORE_DOMAINS.contains(&domain) || world.entities.values().any(|e| e.domain() == domain)
}

fn find(world: &World, domain: &str, service: &str) -> Option<&'static Service> {
    SERVICES
        .iter()
        .find(|s| s.domain == domain && s.service == service)
        .filter(|s| domain_loaded(world, s.domain))
        .or_else(|| {
            (domain == "script" && world.entities.contains_key(&format!("script.{service}")))
                .then_some(&SCRIPT_RUN)
        })
}

/// The entity ids a call targets (`entity_id` of its data), for its `service_response`.
pub(crate) fn targeted(
    world: &World,
    domain: &str,
    service: &str,
    data: &Map<String, Value>,
) -> Result<Vec<String>, ServiceError> {
    let found = find(world, domain, service).ok_or(ServiceError::NotFound)?;
    targets(world, found, data)
}

/// Runs script `script.<name>` (it turns on, runs its sequence, turns off) and fires the
/// event the suite's script fires.
fn run_script(
    world: &mut World,
    entity_id: &str,
    context: &super::world::Context,
    origin: &Origin,
) -> Vec<StateObject> {
    let Some(current) = world.entities.get(entity_id).cloned() else {
        return Vec::new();
    };
    let now = world.now();
    let mut attributes = current.attributes.clone();
    attributes.insert("last_triggered".into(), Value::String(now.to_string()));
    attributes.insert("current".into(), Value::from(1));
    let mut changed = Vec::new();
    if let Some(on) = world.set_state(
        entity_id,
        "on",
        attributes.clone(),
        context,
        Some(origin),
        now,
    ) {
        changed.push(on);
    }
    let event = format!("{}_ran", entity_id.trim_start_matches("script."));
    world.events.push((event, Value::Object(Map::new())));
    attributes.insert("current".into(), Value::from(0));
    let now = world.now();
    if let Some(off) = world.set_state(entity_id, "off", attributes, context, Some(origin), now) {
        changed.push(off);
    }
    changed
}

/// Whether `domain.service` exists in this home.
pub(crate) fn exists(world: &World, domain: &str, service: &str) -> bool {
    find(world, domain, service).is_some()
}

/// `GET /api/services`: one `{domain, services}` object per loaded domain.
pub(crate) fn describe(world: &World) -> Value {
    let mut domains: Vec<(&str, Map<String, Value>)> = Vec::new();
    for service in SERVICES.iter().filter(|s| domain_loaded(world, s.domain)) {
        let index = match domains.iter().position(|(d, _)| *d == service.domain) {
            Some(index) => index,
            None => {
                domains.push((service.domain, Map::new()));
                domains.len() - 1
            }
        };
        let mut fields = Map::new();
        for field in service.fields {
            let mut description = Map::new();
            if field.required {
                description.insert("required".into(), Value::Bool(true));
            }
            description.insert("selector".into(), selector(field.kind));
            description.insert("name".into(), field.name.into());
            description.insert("description".into(), field.description.into());
            fields.insert(field.key.into(), Value::Object(description));
        }
        let mut description = Map::new();
        description.insert("name".into(), service.name.into());
        description.insert("description".into(), service.description.into());
        description.insert("fields".into(), Value::Object(fields));
        if service.targets {
            let target = if service.domain == "homeassistant" {
                json!({"entity": [{}]})
            } else {
                json!({"entity": [{"domain": [service.domain]}]})
            };
            description.insert("target".into(), target);
        }
        match super::extras::responds(service.domain, service.service) {
            super::extras::Responds::Only => {
                description.insert("response".into(), json!({"optional": false}));
            }
            super::extras::Responds::Optionally => {
                description.insert("response".into(), json!({"optional": true}));
            }
            super::extras::Responds::No => {}
        }
        if let Some((_, services)) = domains.get_mut(index) {
            services.insert(service.service.into(), Value::Object(description));
        }
    }
    // Each script from configuration is a service of its own, which may answer.
    for script in world.entities.values().filter(|e| e.domain() == "script") {
        let name = script.entity_id.trim_start_matches("script.");
        if let Some((_, services)) = domains.iter_mut().find(|(d, _)| *d == "script") {
            services.insert(
                name.into(),
                json!({"name": script.name(), "description": "", "fields": {}, "response": {"optional": true}}),
            );
        }
    }
    Value::Array(
        domains
            .into_iter()
            .map(|(domain, services)| json!({"domain": domain, "services": services}))
            .collect(),
    )
}

fn selector(kind: Kind) -> Value {
    match kind {
        Kind::Integer { min, max } => json!({"number": {"min": min, "max": max, "step": 1}}),
        Kind::Number { min, max } => json!({"number": {"min": min, "max": max}}),
        Kind::Text => json!({"text": null}),
        Kind::RgbColor => json!({"color_rgb": null}),
        Kind::Any => json!({"object": null}),
    }
}

fn check_value(kind: Kind, key: &str, value: &Value) -> Result<(), ServiceError> {
    let ok = match kind {
        Kind::Integer { min, max } => value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            })
            .is_some_and(|v| (min..=max).contains(&v)),
        Kind::Number { min, max } => value.as_f64().is_some_and(|v| (min..=max).contains(&v)),
        Kind::Text => value.is_string() || value.is_number(),
        Kind::RgbColor => value.as_array().is_some_and(|items| {
            items.len() == 3 && items.iter().all(|c| c.as_u64().is_some_and(|c| c <= 255))
        }),
        Kind::Any => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "invalid value for dictionary value @ data['{key}']"
        )))
    }
}

fn validate(service: &Service, data: &Map<String, Value>) -> Result<(), ServiceError> {
    for (key, value) in data {
        if service.targets && TARGET_KEYS.contains(&key.as_str()) {
            continue;
        }
        match service.fields.iter().find(|f| f.key == key) {
            Some(field) => check_value(field.kind, key, value)?,
            None if service.allow_extra => {}
            None => {
                return Err(ServiceError::Invalid(format!(
                    "extra keys not allowed @ data['{key}']"
                )));
            }
        }
    }
    if let Some(missing) = service
        .fields
        .iter()
        .find(|f| f.required && !data.contains_key(f.key))
    {
        return Err(ServiceError::Invalid(format!(
            "required key not provided @ data['{}']",
            missing.key
        )));
    }
    Ok(())
}

/// The entity ids named by `entity_id` (a string, comma-separated string, list, or `all`).
fn targets(
    world: &World,
    service: &Service,
    data: &Map<String, Value>,
) -> Result<Vec<String>, ServiceError> {
    let invalid = || {
        ServiceError::Invalid(
            "Entity ID is an invalid entity ID for dictionary value @ data['entity_id']".into(),
        )
    };
    let raw: Vec<String> = match data.get("entity_id") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) if text.trim().eq_ignore_ascii_case("all") => {
            return Ok(world
                .entities
                .values()
                .filter(|e| service.domain == "homeassistant" || e.domain() == service.domain)
                .map(|e| e.entity_id.clone())
                .collect());
        }
        Some(Value::String(text)) => text.split(',').map(|id| id.trim().to_lowercase()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|id| id.trim().to_lowercase())
                    .ok_or_else(invalid)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid()),
    };
    if raw.iter().any(|id| !valid_entity_id(id)) {
        return Err(invalid());
    }
    // Entity services expand groups to their members, as Home Assistant does.
    Ok(super::scenes::expand_groups(world, raw))
}

/// Calls a service: validates the data, applies the effect to every targeted entity of
/// the service's domain that exists (others are skipped, as Home Assistant does) and
/// returns the states that changed.
pub(crate) fn call(
    world: &mut World,
    domain: &str,
    service_name: &str,
    data: Option<Value>,
    user_id: Option<&str>,
) -> Result<Vec<StateObject>, ServiceError> {
    let service = find(world, domain, service_name).ok_or(ServiceError::NotFound)?;
    let data = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ServiceError::Invalid(
                "expected a dictionary for service data".into(),
            ));
        }
    };
    validate(service, &data)?;
    let entity_ids = targets(world, service, &data)?;
    let context = world.new_context(user_id);
    let origin = Origin {
        domain: domain.to_owned(),
        service: service_name.to_owned(),
    };
    let mut fields = data;
    for key in TARGET_KEYS {
        fields.remove(key);
    }
    if domain == "persistent_notification" {
        world.notifications.push(fields);
        return Ok(Vec::new());
    }
    if domain == "script" && !matches!(service_name, "turn_on" | "turn_off") {
        let entity_id = format!("script.{service_name}");
        return Ok(run_script(world, &entity_id, &context, &origin));
    }
    if (domain, service_name) == ("script", "turn_on") {
        let mut changed = Vec::new();
        for entity_id in entity_ids.iter().filter(|id| id.starts_with("script.")) {
            changed.extend(run_script(world, entity_id, &context, &origin));
        }
        return Ok(changed);
    }
    match (domain, service_name) {
        ("scene", "apply") => return super::scenes::apply(world, &fields, &context, &origin),
        ("scene", "create") => return super::scenes::create(world, &fields, &context, &origin),
        ("group", "set") => return super::scenes::set_group(world, &fields, &context, &origin),
        _ => {}
    }
    let mut changed = Vec::new();
    for entity_id in entity_ids {
        let Some(current) = world.entities.get(&entity_id).cloned() else {
            continue;
        };
        if current.domain() == "scene" && domain == "scene" && service_name == "turn_on" {
            changed.extend(super::scenes::activate(
                world, &entity_id, &context, &origin,
            )?);
            continue;
        }
        let (entity_domain, entity_service) = if domain == "homeassistant" {
            match generic_service(current.domain(), service_name) {
                Some(target) => target,
                None => continue,
            }
        } else if current.domain() == domain {
            (domain, service_name)
        } else {
            continue;
        };
        if domain == "homeassistant"
            && let Some(target) = SERVICES
                .iter()
                .find(|s| s.domain == entity_domain && s.service == entity_service)
        {
            validate(target, &fields)?;
        }
        if let Some((state, attributes)) =
            effect(world, &current, entity_domain, entity_service, &fields)?
        {
            let now = world.now();
            if let Some(new) =
                world.set_state(&entity_id, &state, attributes, &context, Some(&origin), now)
            {
                changed.push(new);
            }
        }
    }
    Ok(changed)
}

/// What `homeassistant.<service>` calls for an entity of `entity_domain`.
fn generic_service(entity_domain: &str, service: &str) -> Option<(&'static str, &'static str)> {
    let target = match (entity_domain, service) {
        ("light", "turn_on") => ("light", "turn_on"),
        ("light", "turn_off") => ("light", "turn_off"),
        ("light", "toggle") => ("light", "toggle"),
        ("switch", "turn_on") => ("switch", "turn_on"),
        ("switch", "turn_off") => ("switch", "turn_off"),
        ("switch", "toggle") => ("switch", "toggle"),
        ("input_boolean", "turn_on") => ("input_boolean", "turn_on"),
        ("input_boolean", "turn_off") => ("input_boolean", "turn_off"),
        ("input_boolean", "toggle") => ("input_boolean", "toggle"),
        ("cover", "turn_on") => ("cover", "open_cover"),
        ("cover", "turn_off") => ("cover", "close_cover"),
        ("cover", "toggle") => ("cover", "toggle"),
        ("climate", "turn_on") => ("climate", "turn_on"),
        ("climate", "turn_off") => ("climate", "turn_off"),
        _ => return None,
    };
    Some(target)
}

pub(crate) type Effect = Option<(String, Map<String, Value>)>;

/// The new state and attributes of `entity` after `domain.service` with `data`.
pub(crate) fn effect(
    world: &mut World,
    entity: &StateObject,
    domain: &str,
    service: &str,
    data: &Map<String, Value>,
) -> Result<Effect, ServiceError> {
    let mut attributes = entity.attributes.clone();
    let is_on = entity.state == "on";
    let state = match (domain, service) {
        ("light", "turn_on") => return Ok(Some(light_on(world, entity, data))),
        ("light", "turn_off") => return Ok(Some(light_off(world, entity))),
        ("light", "toggle") if is_on => return Ok(Some(light_off(world, entity))),
        ("light", "toggle") => return Ok(Some(light_on(world, entity, data))),
        ("switch" | "input_boolean", "turn_on") => "on",
        ("switch" | "input_boolean", "turn_off") => "off",
        ("switch" | "input_boolean", "toggle") => {
            if is_on {
                "off"
            } else {
                "on"
            }
        }
        ("lock", "lock") => "locked",
        ("lock", "unlock") => "unlocked",
        ("cover", "open_cover") => cover_position(&mut attributes, 100),
        ("cover", "close_cover") => cover_position(&mut attributes, 0),
        ("cover", "toggle") if entity.state == "closed" => cover_position(&mut attributes, 100),
        ("cover", "toggle") => cover_position(&mut attributes, 0),
        ("cover", "set_cover_position") => {
            let position = data.get("position").and_then(Value::as_i64).unwrap_or(0);
            cover_position(&mut attributes, position)
        }
        ("climate", "set_temperature") => {
            if let Some(temperature) = data.get("temperature") {
                attributes.insert("temperature".into(), temperature.clone());
            }
            match data.get("hvac_mode") {
                Some(mode) => return Ok(Some((check_hvac_mode(entity, mode)?, attributes))),
                None => return Ok(Some((entity.state.clone(), attributes))),
            }
        }
        ("climate", "set_hvac_mode") => {
            let mode = data.get("hvac_mode").unwrap_or(&Value::Null);
            return Ok(Some((check_hvac_mode(entity, mode)?, attributes)));
        }
        ("climate", "turn_on") if entity.state == "off" => {
            let modes = entity
                .attributes
                .get("hvac_modes")
                .and_then(Value::as_array);
            let mode = modes
                .and_then(|modes| {
                    modes
                        .iter()
                        .filter_map(Value::as_str)
                        .find(|mode| *mode != "off")
                })
                .unwrap_or("heat");
            return Ok(Some((mode.to_owned(), attributes)));
        }
        ("climate", "turn_on") => return Ok(Some((entity.state.clone(), attributes))),
        ("climate", "turn_off") => "off",
        _ => return Ok(None),
    };
    Ok(Some((state.to_owned(), attributes)))
}

fn check_hvac_mode(entity: &StateObject, mode: &Value) -> Result<String, ServiceError> {
    let wanted = mode.as_str().unwrap_or_default();
    let supported = entity
        .attributes
        .get("hvac_modes")
        .and_then(Value::as_array)
        .is_some_and(|modes| modes.iter().any(|m| m.as_str() == Some(wanted)));
    if supported {
        Ok(wanted.to_owned())
    } else {
        Err(ServiceError::Failed(format!(
            "HVAC mode {wanted} is not valid for {}",
            entity.entity_id
        )))
    }
}

fn cover_position(attributes: &mut Map<String, Value>, position: i64) -> &'static str {
    if attributes.contains_key("current_position") {
        attributes.insert("current_position".into(), Value::from(position));
    }
    if position > 0 { "open" } else { "closed" }
}

fn light_on(
    world: &mut World,
    entity: &StateObject,
    data: &Map<String, Value>,
) -> (String, Map<String, Value>) {
    let mut attributes = entity.attributes.clone();
    let requested = data
        .get("brightness")
        .and_then(|b| b.as_f64())
        .map(|b| b.round() as i64)
        .or_else(|| {
            data.get("brightness_pct")
                .and_then(Value::as_f64)
                .map(|pct| (pct * 255.0 / 100.0).round() as i64)
        });
    if requested == Some(0) {
        return light_off(world, entity);
    }
    if attributes.contains_key("brightness") {
        let brightness = match requested {
            Some(b) => Value::from(b),
            None if entity.state == "on" => attributes
                .get("brightness")
                .cloned()
                .unwrap_or(Value::from(255)),
            None => world
                .remembered_brightness
                .get(&entity.entity_id)
                .cloned()
                .unwrap_or(Value::from(255)),
        };
        attributes.insert("brightness".into(), brightness);
    }
    for key in ["rgb_color", "color_temp_kelvin"] {
        if let Some(value) = data.get(key) {
            attributes.insert(key.into(), value.clone());
        }
    }
    normalize_light("on", &mut attributes);
    ("on".to_owned(), attributes)
}

/// Keeps a light's attributes consistent with its state, as Home Assistant's light
/// entity does: `color_mode` is the first supported mode while on and `null` while off,
/// `brightness` is `null` while off.
pub(crate) fn normalize_light(state: &str, attributes: &mut Map<String, Value>) {
    let on = state == "on";
    if attributes.contains_key("color_mode") {
        let mode = if on {
            attributes
                .get("supported_color_modes")
                .and_then(Value::as_array)
                .and_then(|modes| modes.first())
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        attributes.insert("color_mode".into(), mode);
    }
    if let Some(brightness) = attributes.get_mut("brightness") {
        if !on {
            *brightness = Value::Null;
        } else if brightness.is_null() {
            *brightness = Value::from(255);
        }
    }
}

fn light_off(world: &mut World, entity: &StateObject) -> (String, Map<String, Value>) {
    let mut attributes = entity.attributes.clone();
    if let Some(brightness) = attributes.get("brightness").filter(|b| !b.is_null()) {
        world
            .remembered_brightness
            .insert(entity.entity_id.clone(), brightness.clone());
    }
    normalize_light("off", &mut attributes);
    ("off".to_owned(), attributes)
}
