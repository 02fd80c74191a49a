//! The parts of the simulated home beyond entity states: areas (Home Assistant keeps them in
//! its registries; templates reach them with `areas()`, `area_name()`, `area_entities()`),
//! calendar events (`/api/calendars`, `calendar.get_events`), weather forecasts
//! (`weather.get_forecasts`) and to-do items (`todo.get_items`): what the services that
//! answer with data (`?return_response`) answer.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::services::ServiceError;
use super::world::World;
use crate::time::Timestamp;

/// An area of the home and the entities in it.
#[derive(Debug, Clone)]
pub(crate) struct Area {
    pub id: String,
    pub name: String,
    pub entities: Vec<String>,
}

/// A calendar event at fixed instants.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub start: Timestamp,
    pub end: Timestamp,
    pub summary: String,
    pub description: Option<String>,
    pub location: Option<String>,
}

impl Event {
    /// Whether the event overlaps `[start, end)` (`DemoCalendar.async_get_events`).
    fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        self.start < end && self.end >= start
    }

    /// The REST API's form (`/api/calendars/<entity_id>`): `{"dateTime": ...}` instants
    /// and every field, `null` when unset.
    pub fn to_api_json(&self) -> Value {
        json!({
            "start": {"dateTime": self.start.to_string()},
            "end": {"dateTime": self.end.to_string()},
            "summary": self.summary,
            "description": self.description,
            "location": self.location,
            "uid": null,
            "recurrence_id": null,
            "rrule": null,
        })
    }

    /// The service response's form (`calendar.get_events`): ISO strings, unset fields left out.
    fn to_service_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("start".into(), self.start.to_string().into());
        out.insert("end".into(), self.end.to_string().into());
        out.insert("summary".into(), self.summary.clone().into());
        if let Some(description) = &self.description {
            out.insert("description".into(), description.clone().into());
        }
        if let Some(location) = &self.location {
            out.insert("location".into(), location.clone().into());
        }
        Value::Object(out)
    }
}

/// The calendar entities, as `GET /api/calendars` lists them: sorted by name.
pub(crate) fn calendars(world: &World) -> Value {
    let mut list: Vec<(String, String)> = world
        .entities
        .values()
        .filter(|e| e.domain() == "calendar")
        .map(|e| (e.name(), e.entity_id.clone()))
        .collect();
    list.sort();
    Value::Array(
        list.into_iter()
            .map(|(name, entity_id)| json!({"name": name, "entity_id": entity_id}))
            .collect(),
    )
}

/// `CalendarEventView.get`: `None` for Home Assistant's bare 400 (unknown calendar, a
/// missing or unparsable `start`/`end`, start after end); `Err(())` for the 500 of the demo
/// calendar's `assert start_date < end_date` when they are equal.
pub(crate) fn events_in(
    world: &World,
    entity_id: &str,
    start: Option<&str>,
    end: Option<&str>,
) -> Option<Result<Value, ()>> {
    if !entity_id.starts_with("calendar.") || !world.entities.contains_key(entity_id) {
        return None;
    }
    let start = Timestamp::parse(start?)?;
    let end = Timestamp::parse(end?)?;
    if start > end {
        return None;
    }
    if start == end {
        return Some(Err(()));
    }
    let events = world.calendar_events.get(entity_id);
    Some(Ok(Value::Array(
        events
            .into_iter()
            .flatten()
            .filter(|e| e.overlaps(start, end))
            .map(Event::to_api_json)
            .collect(),
    )))
}

/// The services that answer with data: Home Assistant's `SupportsResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Responds {
    /// The service has no response (`?return_response` is a 400).
    No,
    /// The service may answer (scripts).
    Optionally,
    /// The service must be asked for its answer (without `?return_response`: 400).
    Only,
}

/// Whether `domain.service` answers with data.
pub(crate) fn responds(domain: &str, service: &str) -> Responds {
    match (domain, service) {
        ("weather", "get_forecasts") | ("calendar", "get_events") | ("todo", "get_items") => {
            Responds::Only
        }
        ("script", "turn_on" | "turn_off" | "toggle" | "reload") => Responds::No,
        ("script", _) => Responds::Optionally,
        _ => Responds::No,
    }
}

/// The `service_response` of a call that asked for it: one object per targeted entity of
/// the service's domain, keyed by entity id (`{}` for a script).
pub(crate) fn service_response(
    world: &World,
    domain: &str,
    service: &str,
    entity_ids: &[String],
    data: &Map<String, Value>,
) -> Result<Value, ServiceError> {
    if domain == "script" {
        return Ok(json!({}));
    }
    let mut out = Map::new();
    let targeted = entity_ids
        .iter()
        .filter(|id| id.split('.').next() == Some(domain) && world.entities.contains_key(*id));
    for entity_id in targeted {
        let answer = match (domain, service) {
            ("weather", "get_forecasts") => {
                let kind = data.get("type").and_then(Value::as_str).unwrap_or("daily");
                let step = match kind {
                    "daily" => Duration::from_secs(86_400),
                    "twice_daily" => Duration::from_secs(43_200),
                    "hourly" => Duration::from_secs(3_600),
                    other => {
                        return Err(ServiceError::Invalid(format!(
                            "value must be one of ['daily', 'hourly', 'twice_daily'] for dictionary value @ data['type'], got {other:?}"
                        )));
                    }
                };
                let now = world.now();
                let forecast: Vec<Value> = world
                    .forecasts
                    .get(entity_id)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, entry)| {
                        let mut entry = entry.clone();
                        let at = now.plus(step * u32::try_from(i).unwrap_or(u32::MAX));
                        entry.insert("datetime".into(), at.to_string().into());
                        Value::Object(entry)
                    })
                    .collect();
                json!({"forecast": forecast})
            }
            ("calendar", "get_events") => {
                let (start, end) = event_window(world, data)?;
                let events: Vec<Value> = world
                    .calendar_events
                    .get(entity_id)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.overlaps(start, end))
                    .map(Event::to_service_json)
                    .collect();
                json!({"events": events})
            }
            ("todo", "get_items") => {
                let statuses: Option<Vec<&str>> = match data.get("status") {
                    None => None,
                    Some(Value::String(one)) => Some(vec![one.as_str()]),
                    Some(Value::Array(many)) => {
                        Some(many.iter().filter_map(Value::as_str).collect())
                    }
                    Some(_) => {
                        return Err(ServiceError::Invalid(
                            "expected a list for dictionary value @ data['status']".into(),
                        ));
                    }
                };
                let items: Vec<Value> = world
                    .todo_items
                    .get(entity_id)
                    .into_iter()
                    .flatten()
                    .filter(|item| {
                        statuses.as_ref().is_none_or(|wanted| {
                            item.get("status")
                                .and_then(Value::as_str)
                                .is_some_and(|s| wanted.contains(&s))
                        })
                    })
                    .map(|item| Value::Object(item.clone()))
                    .collect();
                json!({"items": items})
            }
            _ => continue,
        };
        out.insert(entity_id.clone(), answer);
    }
    Ok(Value::Object(out))
}

/// `calendar.get_events`' window: `start_date_time` (default now) until `end_date_time`,
/// or for `duration` (`{"hours": 24}` or `"HH:MM:SS"`); one of them is required.
fn event_window(
    world: &World,
    data: &Map<String, Value>,
) -> Result<(Timestamp, Timestamp), ServiceError> {
    let parse = |key: &str| -> Result<Option<Timestamp>, ServiceError> {
        match data.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Timestamp::parse(text).map(Some).ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "Invalid datetime specified: {text} for dictionary value @ data['{key}']"
                ))
            }),
            Some(_) => Err(ServiceError::Invalid(format!(
                "expected a datetime for dictionary value @ data['{key}']"
            ))),
        }
    };
    let start = parse("start_date_time")?.unwrap_or_else(|| world.now());
    let end = match (parse("end_date_time")?, data.get("duration")) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::Invalid(
                "two or more values in the same group of exclusion 'end_or_duration'".into(),
            ));
        }
        (Some(end), None) => end,
        (None, Some(duration)) => start.plus(parse_duration(duration).ok_or_else(|| {
            ServiceError::Invalid(
                "offset should be format 'HH:MM', 'HH:MM:SS' or 'HH:MM:SS.F' for dictionary value @ data['duration']".into(),
            )
        })?),
        (None, None) => {
            return Err(ServiceError::Invalid(
                "must contain at least one of end_date_time, duration.".into(),
            ));
        }
    };
    if end <= start {
        return Err(ServiceError::Invalid(
            "Expected end time to be after start time".into(),
        ));
    }
    Ok((start, end))
}

/// A `cv.time_period`: `{"days": .., "hours": .., "minutes": .., "seconds": ..}` or
/// `"HH:MM[:SS]"`.
fn parse_duration(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Object(parts) => {
            let mut total = 0.0;
            for (key, part) in parts {
                let unit = match key.as_str() {
                    "days" => 86_400.0,
                    "hours" => 3_600.0,
                    "minutes" => 60.0,
                    "seconds" => 1.0,
                    "milliseconds" => 0.001,
                    _ => return None,
                };
                total += part.as_f64()? * unit;
            }
            total
        }
        Value::String(text) => {
            let parts: Vec<f64> = text
                .split(':')
                .map(|p| p.trim().parse::<f64>().ok())
                .collect::<Option<_>>()?;
            match parts.as_slice() {
                [h, m] => h * 3_600.0 + m * 60.0,
                [h, m, s] => h * 3_600.0 + m * 60.0 + s,
                _ => return None,
            }
        }
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&json!({"hours": 24})),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration(&json!("01:30")),
            Some(Duration::from_secs(5_400))
        );
        assert_eq!(parse_duration(&json!({"weeks": 1})), None);
        assert_eq!(parse_duration(&json!("x")), None);
    }
}
