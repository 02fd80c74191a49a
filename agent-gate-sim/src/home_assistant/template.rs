//! A small subset of Home Assistant's Jinja2 templates, enough for `POST /api/template`:
//! plain text, and `{{ ... }}` expressions calling `states('x.y')`,
//! `state_attr('x.y', 'attr')`, `is_state('x.y', 'value')`, `areas()`,
//! `area_name('area_id')` or `area_entities('area_id')`, or naming a variable of the
//! request's `variables` (an unknown name renders as nothing, as Jinja2's `Undefined` does).
//! Values print the way Python prints them (`None`, `True`, `[255, 0, 0]`), as Home
//! Assistant's output does. The one statement template rendered is `ha_get_areas`' (the
//! areas with their entities as JSON, [`AREAS_TEMPLATE`]). Anything else is refused with an
//! error, which the API returns as HTTP 400.

use serde_json::{Map, Value, json};

use super::world::World;

/// The template of `tools.toml`'s `ha_get_areas` (kept equal to it: the end-to-end suite
/// runs that tool against the simulator and a real Home Assistant).
pub(crate) const AREAS_TEMPLATE: &str = "{%- set ns = namespace(areas=[]) -%}{%- for area_id in areas() -%}{%- set ns.areas = ns.areas + [{\"area_id\": area_id, \"name\": area_name(area_id), \"entities\": area_entities(area_id)}] -%}{%- endfor -%}{{ ns.areas | to_json }}";

/// Renders `template` with `variables`; the error is the text after
/// `Error rendering template: `.
pub(crate) fn render(
    world: &World,
    template: &str,
    variables: &Map<String, Value>,
) -> Result<String, String> {
    if template == AREAS_TEMPLATE {
        let areas: Vec<Value> = world
            .areas
            .iter()
            .map(|a| json!({"area_id": a.id, "name": a.name, "entities": a.entities}))
            .collect();
        return Ok(Value::Array(areas).to_string());
    }
    if !template.contains("{{") && !template.contains("{%") && !template.contains("{#") {
        return Ok(template.to_owned());
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = find_open(rest) {
        let (text, tail) = rest.split_at(open);
        out.push_str(text);
        if !tail.starts_with("{{") {
            return Err(format!(
                "TemplateSyntaxError: statements and comments ({{% %}}, {{# #}}) are not supported by the simulated Home Assistant: {}",
                excerpt(tail)
            ));
        }
        let inner = &tail[2..];
        let Some(close) = inner.find("}}") else {
            return Err("TemplateSyntaxError: unexpected end of template, expected 'end of print statement'.".into());
        };
        out.push_str(&evaluate(world, inner[..close].trim(), variables)?);
        rest = &inner[close + 2..];
    }
    out.push_str(rest);
    Ok(out.trim().to_owned())
}

fn find_open(text: &str) -> Option<usize> {
    ["{{", "{%", "{#"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
}

fn excerpt(text: &str) -> String {
    text.chars().take(40).collect()
}

fn evaluate(
    world: &World,
    expression: &str,
    variables: &Map<String, Value>,
) -> Result<String, String> {
    let unsupported = || {
        format!(
            "UndefinedError: unsupported expression '{}' (the simulated Home Assistant renders only variables, states('<entity_id>'), state_attr('<entity_id>', '<attribute>'), is_state('<entity_id>', '<state>'), areas(), area_name('<area_id>') and area_entities('<area_id>'))",
            excerpt(expression)
        )
    };
    if expression.matches('(').count() != expression.matches(')').count() {
        return Err("TemplateSyntaxError: unexpected '}', expected ')'".to_owned());
    }
    let is_name = !expression.is_empty()
        && expression
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !expression.as_bytes()[0].is_ascii_digit();
    if is_name {
        return Ok(variables
            .get(expression)
            .map(python_str)
            .unwrap_or_default());
    }
    let area = |area_id: &str| world.areas.iter().find(|a| a.id == area_id);
    let (name, args) = parse_call(expression).ok_or_else(unsupported)?;
    let state = |entity_id: &str| world.entities.get(&entity_id.to_lowercase());
    match (name, args.as_slice()) {
        ("states", [entity_id]) => {
            Ok(state(entity_id).map_or_else(|| "unknown".to_owned(), |s| s.state.clone()))
        }
        ("state_attr", [entity_id, attribute]) => Ok(state(entity_id)
            .and_then(|s| s.attributes.get(attribute.as_str()))
            .map_or_else(|| "None".to_owned(), python_str)),
        ("is_state", [entity_id, value]) => {
            let matches = state(entity_id).is_some_and(|s| &s.state == value);
            Ok(if matches { "True" } else { "False" }.to_owned())
        }
        ("areas", []) => Ok(python_repr(&json!(
            world.areas.iter().map(|a| a.id.clone()).collect::<Vec<_>>()
        ))),
        ("area_name", [area_id]) => {
            Ok(area(area_id).map_or_else(|| "None".to_owned(), |a| a.name.clone()))
        }
        ("area_entities", [area_id]) => Ok(python_repr(&json!(
            area(area_id)
                .map(|a| a.entities.clone())
                .unwrap_or_default()
        ))),
        ("states" | "state_attr" | "is_state" | "areas" | "area_name" | "area_entities", _) => {
            Err(format!(
                "TypeError: {name}() got the wrong number of arguments in '{}'",
                excerpt(expression)
            ))
        }
        _ => Err(unsupported()),
    }
}

/// `name('a', "b")` → `("name", ["a", "b"])`.
fn parse_call(expression: &str) -> Option<(&str, Vec<String>)> {
    let open = expression.find('(')?;
    let name = expression[..open].trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let inner = expression[open + 1..].trim_end().strip_suffix(')')?;
    let mut args = Vec::new();
    let mut chars = inner.trim().chars().peekable();
    while let Some(quote) = chars.next() {
        if quote != '\'' && quote != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                c if c == quote => break,
                c => value.push(c),
            }
        }
        args.push(value);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
    Some((name, args))
}

/// Python's `str()` of a JSON value.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => python_repr(other),
    }
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_repr(&Value::from(k.clone())),
                    python_repr(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
