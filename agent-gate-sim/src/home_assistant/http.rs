//! The HTTP side of the simulator: routes, authentication, request recording, fault
//! injection and pausing, and the response shapes of Home Assistant's views.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::extras::{self, Responds};
use super::mobile_app;
use super::services::{self, ServiceError};
use super::template;
use super::world::valid_entity_id;
use super::{Credential, FaultAction, RecordedRequest, ServiceCall, Shared, USER_ID, lock};
use crate::time::Timestamp;

type SharedState = Arc<Shared>;

const ONE_DAY: Duration = Duration::from_secs(86_400);
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The body aiohttp gives a bare HTTP error of `status`.
pub(super) fn plain_error_body(status: u16) -> String {
    if status == 500 {
        return "500 Internal Server Error\n\nServer got itself in trouble".to_owned();
    }
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    format!("{status}: {reason}")
}

fn plain_error(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        plain_error_body(status.as_u16()),
    )
        .into_response()
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    json_response(status, json!({"message": text.into()}))
}

pub(super) fn router(shared: SharedState) -> Router {
    Router::new()
        .route("/api/", get(api_status))
        .route("/api/config", get(config))
        .route("/api/states", get(states))
        .route(
            "/api/states/{entity_id}",
            get(entity_state).post(set_entity_state),
        )
        .route("/api/services", get(services_list))
        .route("/api/services/{domain}/{service}", post(call_service))
        .route("/api/history/period", get(history_now))
        .route("/api/history/period/{datetime}", get(history_from))
        .route("/api/logbook", get(logbook_today))
        .route("/api/logbook/{datetime}", get(logbook_from))
        .route("/api/template", post(render_template))
        .route("/api/calendars", get(calendars))
        .route("/api/calendars/{entity_id}", get(calendar_events))
        .route("/api/events/{event_type}", post(fire_event))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        // The frontend is served without authentication (a common health-check target); the
        // WebSocket API authenticates in its own handshake.
        .route("/", get(frontend))
        .route("/api/websocket", get(super::websocket::upgrade))
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { plain_error(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults_and_pause,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// Records the request (the path as the server received it, headers, body), then passes
/// it on.
async fn record(State(shared): State<SharedState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain_error(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Under `Router::nest`, the URI the server received is kept in `OriginalUri`.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    lock(&shared.requests).push(RecordedRequest {
        method: parts.method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Holds the request while paused, then applies injected faults around the handler.
async fn faults_and_pause(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    if *shared.paused.borrow() {
        let mut paused = shared.paused.subscribe();
        shared.held.send_modify(|held| *held += 1);
        // The sender lives in `shared`, which this task holds: the channel stays open.
        let _ = paused.wait_for(|paused| !*paused).await;
    }
    let path = request.uri().path().to_owned();
    match shared.take_fault(&path, false) {
        Some(FaultAction::Respond {
            status,
            content_type,
            body,
        }) => return fault_response(status, &content_type, body),
        Some(FaultAction::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let response = next.run(request).await;
    match shared.take_fault(&path, true) {
        Some(FaultAction::Respond {
            status,
            content_type,
            body,
        }) => fault_response(status, &content_type, body),
        Some(FaultAction::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        None => response,
    }
}

fn fault_response(status: u16, content_type: &str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8"));
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Requires the configured credential on matched routes (as Home Assistant's views do).
async fn authenticate(State(shared): State<SharedState>, request: Request, next: Next) -> Response {
    if credential_ok(&shared.credential, request.headers(), request.uri()) {
        next.run(request).await
    } else {
        plain_error(StatusCode::UNAUTHORIZED)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn credential_ok(credential: &Credential, headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let header_value = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    match credential {
        Credential::Bearer(token) => header_value("authorization")
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .is_some_and(|given| constant_time_eq(given, token.as_bytes())),
        Credential::Header { name, value } => {
            header_value(name).is_some_and(|given| constant_time_eq(given, value.as_bytes()))
        }
        Credential::Query { name, value } => Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| {
                pairs
                    .iter()
                    .any(|(k, v)| k == name && constant_time_eq(v.as_bytes(), value.as_bytes()))
            })
            .unwrap_or(false),
        Credential::Basic { username, password } => {
            let expected = format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            );
            header_value("authorization")
                .is_some_and(|given| constant_time_eq(given, expected.as_bytes()))
        }
    }
}

/// Standard base64 with padding (RFC 4648), for comparing basic-auth headers.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `?return_response` is present (whatever its value).
fn response_requested(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, _)| k == "return_response")
}

/// Query parameters in order, with Home Assistant's `request.query.get` semantics.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

async fn frontend() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>Home Assistant</title></head><body>Home Assistant (simulated)</body></html>",
    )
        .into_response()
}

async fn api_status() -> Response {
    message(StatusCode::OK, "API running.")
}

async fn config(State(shared): State<SharedState>) -> Response {
    let world = shared.world();
    let mut components: Vec<String> = [
        "api",
        "auth",
        "config",
        "frontend",
        "history",
        "http",
        "logbook",
        "recorder",
        "websocket_api",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    for entity in world.entities.values() {
        if !components.iter().any(|c| c == entity.domain()) {
            components.push(entity.domain().to_owned());
        }
    }
    components.sort();
    json_response(
        StatusCode::OK,
        json!({
            "allowlist_external_dirs": ["/config/www", "/media"],
            "allowlist_external_urls": [],
            "components": components,
            "config_dir": "/config",
            "config_source": "storage",
            "country": "GB",
            "currency": "EUR",
            "debug": false,
            "elevation": 12,
            "external_url": null,
            "internal_url": null,
            "language": "en",
            "latitude": 52.3731,
            "location_name": shared.location_name,
            "longitude": 4.8922,
            "radius": 100,
            "recovery_mode": false,
            "safe_mode": false,
            "state": "RUNNING",
            "time_zone": "UTC",
            "unit_system": {
                "length": "km",
                "accumulated_precipitation": "mm",
                "area": "m²",
                "mass": "g",
                "pressure": "Pa",
                "temperature": "°C",
                "volume": "L",
                "wind_speed": "m/s",
            },
            "version": shared.version,
            "whitelist_external_dirs": ["/config/www", "/media"],
        }),
    )
}

async fn states(State(shared): State<SharedState>) -> Response {
    let world = shared.world();
    json_response(
        StatusCode::OK,
        Value::Array(world.entities.values().map(|s| s.to_json()).collect()),
    )
}

async fn entity_state(
    State(shared): State<SharedState>,
    Path(entity_id): Path<String>,
) -> Response {
    match shared.world().entities.get(&entity_id) {
        Some(state) => json_response(StatusCode::OK, state.to_json()),
        None => message(StatusCode::NOT_FOUND, "Entity not found."),
    }
}

async fn set_entity_state(
    State(shared): State<SharedState>,
    Path(entity_id): Path<String>,
    body: Bytes,
) -> Response {
    let data: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            // `json_loads` raising is not caught by the view: aiohttp answers 500.
            Err(_) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR),
        }
    };
    let Some(Value::Object(data)) = data else {
        return message(
            StatusCode::BAD_REQUEST,
            "State data should be a JSON object",
        );
    };
    let Some(state) = data.get("state").filter(|s| !s.is_null()) else {
        return message(StatusCode::BAD_REQUEST, "No state attribute specified.");
    };
    if !valid_entity_id(&entity_id) {
        return message(StatusCode::BAD_REQUEST, "Invalid entity ID specified.");
    }
    let state = match state {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if state.chars().count() > 255 {
        return message(StatusCode::BAD_REQUEST, "Invalid state specified.");
    }
    let attributes = match data.get("attributes") {
        Some(Value::Object(attributes)) => attributes.clone(),
        _ => Map::new(),
    };
    let mut world = shared.world();
    let is_new = !world.entities.contains_key(&entity_id);
    let context = world.new_context(Some(USER_ID));
    let now = world.now();
    world.set_state(&entity_id, &state, attributes, &context, None, now);
    let Some(state) = world.entities.get(&entity_id) else {
        return plain_error(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let status = if is_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = json_response(status, state.to_json());
    if let Ok(location) = HeaderValue::from_str(&format!("/api/states/{entity_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn services_list(State(shared): State<SharedState>) -> Response {
    json_response(StatusCode::OK, services::describe(&shared.world()))
}

async fn call_service(
    State(shared): State<SharedState>,
    Path((domain, service)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let data: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            Err(_) => return message(StatusCode::BAD_REQUEST, "Data should be valid JSON."),
        }
    };
    lock(&shared.service_calls).push(ServiceCall {
        domain: domain.clone(),
        service: service.clone(),
        data: data.clone().unwrap_or(Value::Null),
    });
    let mut world = shared.world();
    if domain == "notify"
        && let Some(device) = mobile_app::device_of(&world.mobile_app_devices, &service)
    {
        if response_requested(&params) {
            return message(
                StatusCode::BAD_REQUEST,
                "Service does not support responses. Remove return_response from request.",
            );
        }
        return match mobile_app::push(device, data) {
            Ok(push) => {
                world.pushes.push(push);
                drop(world);
                shared.pushed.send_modify(|n| *n += 1);
                json_response(StatusCode::OK, json!([]))
            }
            Err(reason) => {
                tracing::warn!(%domain, %service, %reason, "simulated Home Assistant: invalid service data");
                plain_error(StatusCode::BAD_REQUEST)
            }
        };
    }
    if !services::exists(&world, &domain, &service) {
        tracing::warn!(%domain, %service, "simulated Home Assistant: unable to find service {domain}.{service}");
        return plain_error(StatusCode::BAD_REQUEST);
    }
    // `?return_response` counts by its presence, whatever its value (`request.query`).
    let response_requested = Params(params).has("return_response");
    match (extras::responds(&domain, &service), response_requested) {
        (Responds::No, true) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Service does not support responses. Remove return_response from request.",
            );
        }
        (Responds::Only, false) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Service call requires responses but caller did not ask for responses. Add ?return_response to query parameters.",
            );
        }
        _ => {}
    }
    let fields = match &data {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let result =
        services::call(&mut world, &domain, &service, data, Some(USER_ID)).and_then(|changed| {
            if !response_requested {
                return Ok((changed, Value::Null));
            }
            let entity_ids = services::targeted(&world, &domain, &service, &fields)?;
            let response =
                extras::service_response(&world, &domain, &service, &entity_ids, &fields)?;
            Ok((changed, response))
        });
    match result {
        Ok((changed, response)) => {
            let changed = Value::Array(changed.iter().map(|s| s.to_json()).collect());
            if response_requested {
                json_response(
                    StatusCode::OK,
                    json!({"changed_states": changed, "service_response": response}),
                )
            } else {
                json_response(StatusCode::OK, changed)
            }
        }
        // Home Assistant answers these with a bare status and logs the reason.
        Err(ServiceError::NotFound) => {
            tracing::warn!(%domain, %service, "simulated Home Assistant: unable to find service {domain}.{service}");
            plain_error(StatusCode::BAD_REQUEST)
        }
        Err(ServiceError::Invalid(reason)) => {
            tracing::warn!(%domain, %service, %reason, "simulated Home Assistant: invalid service data");
            plain_error(StatusCode::BAD_REQUEST)
        }
        Err(ServiceError::Failed(reason)) => {
            tracing::error!(%domain, %service, %reason, "simulated Home Assistant: error executing service");
            plain_error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn history_now(
    State(shared): State<SharedState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    history(&shared, None, &Params(params))
}

async fn history_from(
    State(shared): State<SharedState>,
    Path(datetime): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    history(&shared, Some(&datetime), &Params(params))
}

/// `HistoryPeriodView.get`.
fn history(shared: &Shared, datetime: Option<&str>, params: &Params) -> Response {
    let start = match datetime {
        Some(text) => match Timestamp::parse(text) {
            Some(start) => Some(start),
            None => return message(StatusCode::BAD_REQUEST, "Invalid datetime"),
        },
        None => None,
    };
    let entity_ids: Vec<String> = params
        .get("filter_entity_id")
        .map(|ids| {
            ids.trim()
                .to_lowercase()
                .split(',')
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if entity_ids.iter().all(String::is_empty) {
        return message(StatusCode::BAD_REQUEST, "filter_entity_id is missing");
    }
    let world = shared.world();
    if entity_ids
        .iter()
        .any(|id| !world.entities.contains_key(id) && !valid_entity_id(id))
    {
        return message(StatusCode::BAD_REQUEST, "Invalid filter_entity_id");
    }
    let now = world.now();
    let start = start.unwrap_or_else(|| now.minus(ONE_DAY));
    if start > now {
        return json_response(StatusCode::OK, json!([]));
    }
    let end = match params.get("end_time").filter(|t| !t.is_empty()) {
        Some(text) => match Timestamp::parse(text) {
            Some(end) => end,
            None => return message(StatusCode::BAD_REQUEST, "Invalid end_time"),
        },
        None => start.plus(ONE_DAY),
    };
    let initial = !params.has("skip_initial_state");
    let significant_only = params.get("significant_changes_only").unwrap_or("1") != "0";
    let minimal = params.has("minimal_response");
    let attributes = !params.has("no_attributes");
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for entity_id in &entity_ids {
        if seen.contains(entity_id) {
            continue;
        }
        seen.push(entity_id.clone());
        let states = world.history(entity_id, start, end, initial, significant_only);
        if states.is_empty() {
            continue;
        }
        let rows: Vec<Value> = states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                if minimal && i > 0 {
                    json!({"state": state.state, "last_changed": state.last_changed.to_string()})
                } else {
                    state.to_history_json(attributes)
                }
            })
            .collect();
        out.push(Value::Array(rows));
    }
    json_response(StatusCode::OK, Value::Array(out))
}

async fn logbook_today(
    State(shared): State<SharedState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    logbook(&shared, None, &Params(params))
}

async fn logbook_from(
    State(shared): State<SharedState>,
    Path(datetime): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    logbook(&shared, Some(&datetime), &Params(params))
}

/// `LogbookView.get`: state changes (not attribute-only updates, not entities with a unit
/// of measurement, not an entity's creation) between the start and the end.
fn logbook(shared: &Shared, datetime: Option<&str>, params: &Params) -> Response {
    let world = shared.world();
    let start = match datetime {
        Some(text) => match Timestamp::parse(text) {
            Some(start) => start,
            None => return message(StatusCode::BAD_REQUEST, "Invalid datetime"),
        },
        None => world.now().start_of_day(),
    };
    let period = match params.get("period") {
        None => 1,
        // `int(period_str)` raising is not caught by the view: aiohttp answers 500.
        Some(text) => match text.trim().parse::<i64>() {
            Ok(period) => period,
            Err(_) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR),
        },
    };
    let entity_ids: Option<Vec<String>> = match params.get("entity").filter(|e| !e.is_empty()) {
        Some(text) => {
            let ids: Vec<String> = text.split(',').map(|id| id.trim().to_lowercase()).collect();
            if ids.iter().any(|id| !valid_entity_id(id)) {
                // `InvalidEntityFormatError` escapes the view: aiohttp answers 500.
                return plain_error(StatusCode::INTERNAL_SERVER_ERROR);
            }
            Some(ids)
        }
        None => None,
    };
    let (start, end) = match params.get("end_time") {
        None => {
            let days = u32::try_from(period.saturating_sub(1).max(0)).unwrap_or(u32::MAX);
            let first = start.minus(ONE_DAY * days);
            let span = u32::try_from(period.max(0)).unwrap_or(u32::MAX);
            (first, first.plus(ONE_DAY * span))
        }
        Some(text) => match Timestamp::parse(text) {
            Some(end) => (start, end),
            None => return message(StatusCode::BAD_REQUEST, "Invalid end_time"),
        },
    };
    let context_id = params.get("context_id");
    if entity_ids.is_some() && context_id.is_some() {
        return message(
            StatusCode::BAD_REQUEST,
            "Can't combine entity with context_id",
        );
    }
    let entries: Vec<Value> = world
        .changes
        .iter()
        .filter(|change| change.new.last_updated >= start && change.new.last_updated < end)
        .filter(|change| {
            change
                .old_state
                .as_ref()
                .is_some_and(|old| *old != change.new.state)
        })
        .filter(|change| !change.new.attributes.contains_key("unit_of_measurement"))
        .filter(|change| {
            entity_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&change.new.entity_id))
        })
        .filter(|change| context_id.is_none_or(|id| change.new.context.id == id))
        .map(|change| {
            let state = &change.new;
            let mut entry = Map::new();
            entry.insert("when".into(), state.last_updated.to_string().into());
            entry.insert("state".into(), state.state.clone().into());
            entry.insert("entity_id".into(), state.entity_id.clone().into());
            entry.insert("name".into(), state.name().into());
            if let Some(Value::String(icon)) = state.attributes.get("icon") {
                entry.insert("icon".into(), icon.clone().into());
            }
            if let Some(origin) = &change.origin {
                if let Some(user_id) = &state.context.user_id {
                    entry.insert("context_user_id".into(), user_id.clone().into());
                }
                entry.insert("context_event_type".into(), "call_service".into());
                entry.insert("context_domain".into(), origin.domain.clone().into());
                entry.insert("context_service".into(), origin.service.clone().into());
            }
            Value::Object(entry)
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(entries))
}

/// `APITemplateView.post`: the rendered text as text/plain.
async fn render_template(State(shared): State<SharedState>, body: Bytes) -> Response {
    let data: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            Err(error) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    format!("Error rendering template: {error}"),
                );
            }
        }
    };
    let Some(Value::Object(data)) = data else {
        return message(
            StatusCode::BAD_REQUEST,
            "Template data should be a JSON object",
        );
    };
    let template = match data.get("template") {
        Some(Value::String(template)) => template.clone(),
        // `data["template"]` raising KeyError is not caught by the view: aiohttp answers 500.
        None => return plain_error(StatusCode::INTERNAL_SERVER_ERROR),
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Error rendering template: TypeError: Can't compile non template nodes",
            );
        }
    };
    let variables = match data.get("variables") {
        Some(Value::Object(variables)) => variables.clone(),
        _ => Map::new(),
    };
    match template::render(&shared.world(), &template, &variables) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(error) => message(
            StatusCode::BAD_REQUEST,
            format!("Error rendering template: {error}"),
        ),
    }
}

/// `CalendarListView.get`.
async fn calendars(State(shared): State<SharedState>) -> Response {
    json_response(StatusCode::OK, extras::calendars(&shared.world()))
}

/// `CalendarEventView.get`: a bare 400 (empty body) for an unknown calendar or a missing,
/// unparsable or reversed window.
async fn calendar_events(
    State(shared): State<SharedState>,
    Path(entity_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    match extras::events_in(
        &shared.world(),
        &entity_id,
        params.get("start"),
        params.get("end"),
    ) {
        Some(Ok(events)) => json_response(StatusCode::OK, events),
        Some(Err(())) => plain_error(StatusCode::INTERNAL_SERVER_ERROR),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// `APIEventView.post`.
async fn fire_event(
    State(shared): State<SharedState>,
    Path(event_type): Path<String>,
    body: Bytes,
) -> Response {
    let data = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => value,
            Err(_) => return message(StatusCode::BAD_REQUEST, "Event data should be valid JSON."),
        }
    };
    if !data.is_null() && !data.is_object() {
        return message(
            StatusCode::BAD_REQUEST,
            "Event data should be a JSON object",
        );
    }
    shared.fire(&event_type, data, Some(USER_ID), "REMOTE");
    message(StatusCode::OK, format!("Event {event_type} fired."))
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }
}
