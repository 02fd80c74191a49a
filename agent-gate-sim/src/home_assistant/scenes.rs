//! Services that act on other entities, as Home Assistant runs them: `scene.apply` and
//! `scene.create` (states given inline or snapshotted), `scene.turn_on` of a created scene,
//! `group.set`, and the expansion of groups named as entity-service targets.
//!
//! A scene sets each entity's state through the entity's own services (Home Assistant's
//! "reproduce state"): `unlocked` on a lock unlocks it, `on` on a light turns it on with the
//! given attributes. Entity ids are lower-cased as `cv.entity_id` does; an invalid one is a
//! schema error (HTTP 400).

use serde_json::{Map, Value, json};

use super::services::{ServiceError, effect};
use super::world::{Context, Origin, StateObject, World, domain_of, valid_entity_id};

fn invalid(key: &str) -> ServiceError {
    ServiceError::Invalid(format!(
        "Entity ID is an invalid entity ID for dictionary value @ data['{key}']"
    ))
}

/// `entities` of a scene: a mapping of entity id to a state or `{state, ...attributes}`,
/// with ids lower-cased.
fn scene_states(value: Option<&Value>) -> Result<Map<String, Value>, ServiceError> {
    let Some(value) = value else {
        return Ok(Map::new());
    };
    let Value::Object(map) = value else {
        return Err(ServiceError::Invalid(
            "expected a dictionary for dictionary value @ data['entities']".into(),
        ));
    };
    let mut out = Map::new();
    for (id, state) in map {
        let id = id.to_lowercase();
        if !valid_entity_id(&id) {
            return Err(invalid("entities"));
        }
        out.insert(id, state.clone());
    }
    Ok(out)
}

/// A list of entity ids (a list or a comma-separated string), lower-cased and checked.
fn entity_list(value: Option<&Value>, key: &str) -> Result<Vec<String>, ServiceError> {
    let ids: Vec<String> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => text.split(',').map(|id| id.trim().to_lowercase()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|id| id.trim().to_lowercase())
                    .ok_or_else(|| invalid(key))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(key)),
    };
    if ids.iter().any(|id| !valid_entity_id(id)) {
        return Err(invalid(key));
    }
    Ok(ids)
}

/// The service that brings an entity of `domain` to `state`, if there is one.
fn reproduce_service(domain: &str, state: &str) -> Option<(&'static str, &'static str)> {
    Some(match (domain, state) {
        ("lock", "locked") => ("lock", "lock"),
        ("lock", "unlocked") => ("lock", "unlock"),
        ("light", "on") => ("light", "turn_on"),
        ("light", "off") => ("light", "turn_off"),
        ("switch", "on") => ("switch", "turn_on"),
        ("switch", "off") => ("switch", "turn_off"),
        ("input_boolean", "on") => ("input_boolean", "turn_on"),
        ("input_boolean", "off") => ("input_boolean", "turn_off"),
        ("cover", "open") => ("cover", "open_cover"),
        ("cover", "closed") => ("cover", "close_cover"),
        ("climate", _) => ("climate", "set_hvac_mode"),
        _ => return None,
    })
}

/// Brings every entity of `states` that exists to its target state; returns what changed.
fn reproduce(
    world: &mut World,
    states: &Map<String, Value>,
    context: &Context,
    origin: &Origin,
) -> Result<Vec<StateObject>, ServiceError> {
    let mut changed = Vec::new();
    for (entity_id, target) in states {
        let Some(current) = world.entities.get(entity_id).cloned() else {
            continue;
        };
        let (state, mut data) = match target {
            Value::String(state) => (state.clone(), Map::new()),
            Value::Object(map) => {
                let mut data = map.clone();
                match data.remove("state") {
                    Some(Value::String(state)) => (state, data),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let Some((domain, service)) = reproduce_service(current.domain(), &state) else {
            continue;
        };
        if domain == "climate" {
            data.insert("hvac_mode".into(), Value::String(state.clone()));
        }
        if let Some((state, attributes)) = effect(world, &current, domain, service, &data)? {
            let now = world.now();
            if let Some(new) =
                world.set_state(entity_id, &state, attributes, context, Some(origin), now)
            {
                changed.push(new);
            }
        }
    }
    Ok(changed)
}

/// `scene.apply`: sets the given states now.
pub(crate) fn apply(
    world: &mut World,
    data: &Map<String, Value>,
    context: &Context,
    origin: &Origin,
) -> Result<Vec<StateObject>, ServiceError> {
    let states = scene_states(data.get("entities"))?;
    reproduce(world, &states, context, origin)
}

/// `scene.create`: stores a scene (`scene.<scene_id>`) of the given states and of snapshots
/// of the current ones.
pub(crate) fn create(
    world: &mut World,
    data: &Map<String, Value>,
    context: &Context,
    origin: &Origin,
) -> Result<Vec<StateObject>, ServiceError> {
    let scene_id = data
        .get("scene_id")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .unwrap_or_default();
    let entity_id = format!("scene.{scene_id}");
    if !valid_entity_id(&entity_id) {
        return Err(ServiceError::Invalid(
            "invalid slug for dictionary value @ data['scene_id']".into(),
        ));
    }
    let mut states = scene_states(data.get("entities"))?;
    for id in entity_list(data.get("snapshot_entities"), "snapshot_entities")? {
        if let Some(current) = world.entities.get(&id) {
            let mut snapshot = current.attributes.clone();
            snapshot.insert("state".into(), Value::String(current.state.clone()));
            states.insert(id, Value::Object(snapshot));
        }
    }
    if states.is_empty() {
        return Err(ServiceError::Invalid(
            "Either `entities` or `snapshot_entities` must be specified".into(),
        ));
    }
    let members: Vec<Value> = states.keys().cloned().map(Value::String).collect();
    world.scenes.insert(entity_id.clone(), states);
    let mut attributes = Map::new();
    attributes.insert("entity_id".into(), Value::Array(members));
    attributes.insert("friendly_name".into(), Value::String(scene_id));
    let now = world.now();
    Ok(world
        .set_state(
            &entity_id,
            "unknown",
            attributes,
            context,
            Some(origin),
            now,
        )
        .into_iter()
        .collect())
}

/// `scene.turn_on` of one scene: its stored states (scenes from configuration without stored
/// states change only their own last-activated time).
pub(crate) fn activate(
    world: &mut World,
    scene: &str,
    context: &Context,
    origin: &Origin,
) -> Result<Vec<StateObject>, ServiceError> {
    let states = world.scenes.get(scene).cloned().unwrap_or_default();
    let mut changed = reproduce(world, &states, context, origin)?;
    if let Some(current) = world.entities.get(scene).cloned() {
        let now = world.now();
        let activated = now.to_string();
        if let Some(new) = world.set_state(
            scene,
            &activated,
            current.attributes,
            context,
            Some(origin),
            now,
        ) {
            changed.push(new);
        }
    }
    Ok(changed)
}

/// `group.set`: creates or updates `group.<object_id>` with its members.
pub(crate) fn set_group(
    world: &mut World,
    data: &Map<String, Value>,
    context: &Context,
    origin: &Origin,
) -> Result<Vec<StateObject>, ServiceError> {
    let object_id = data
        .get("object_id")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .unwrap_or_default();
    let entity_id = format!("group.{object_id}");
    if !valid_entity_id(&entity_id) {
        return Err(ServiceError::Invalid(
            "invalid slug for dictionary value @ data['object_id']".into(),
        ));
    }
    let members = entity_list(data.get("entities"), "entities")?;
    let any_on = members.iter().any(|id| {
        world
            .entities
            .get(id)
            .is_some_and(|e| matches!(e.state.as_str(), "on" | "open" | "unlocked"))
    });
    let mut attributes = world
        .entities
        .get(&entity_id)
        .map(|e| e.attributes.clone())
        .unwrap_or_default();
    attributes.insert("entity_id".into(), json!(members));
    if let Some(name) = data.get("name").and_then(Value::as_str) {
        attributes.insert("friendly_name".into(), Value::String(name.to_owned()));
    }
    let state = if any_on { "on" } else { "off" };
    let now = world.now();
    Ok(world
        .set_state(&entity_id, state, attributes, context, Some(origin), now)
        .into_iter()
        .collect())
}

/// Entity ids with every `group.*` that exists replaced by its members (once each, in
/// order), as entity services expand groups.
pub(crate) fn expand_groups(world: &World, ids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let members = (domain_of(&id) == "group")
            .then(|| world.entities.get(&id))
            .flatten()
            .and_then(|group| group.attributes.get("entity_id"))
            .and_then(Value::as_array);
        match members {
            Some(members) => {
                for member in members.iter().filter_map(Value::as_str) {
                    if !out.iter().any(|o| o == member) {
                        out.push(member.to_owned());
                    }
                }
            }
            None => {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}
