//! Targets: finding every thing a call can affect (`[tools.<name>.targets]`) and the
//! signatures the policy judges, one per target.
//!
//! A blocklist of keys cannot keep up with a service's schemas (Home Assistant's
//! `scene.apply` takes `entities`, `group.set` takes `entities`, integrations add more),
//! so the policy judges what a call *affects*: every target-shaped string anywhere in the
//! scanned arguments, as a value or as an object key, at any depth.

use serde_json::{Map, Value};

use crate::forbidden::forbidden_char;
use crate::model::{Targets, Tool};
use crate::signature::scalar_text;
use crate::validate::{ArgError, ArgsError, ValidArgs};

/// What a call affects and the signatures that judge it ([`Tool::judged`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    /// Every target the call affects, normalised, each once, in the order found (empty for
    /// tools without `targets` and for calls that name none).
    pub targets: Vec<String>,
    /// The signatures to judge, each once: one per target (and per target's own kind for a
    /// generic action, see [`crate::Dispatch`]); one with an empty slot when there is no
    /// target; the plain signature for tools without `targets`. Never empty.
    pub signatures: Vec<String>,
}

impl Tool {
    /// Validates `args` ([`Tool::validate_args`]) and finds what the call affects: the
    /// targets and one signature per target. A call that selects its targets in a way the
    /// policy cannot see (a refused key such as `area_id`, or a value such as `all`) is an
    /// error, as is a target that could not appear in a signature.
    pub fn judged(&self, args: &Map<String, Value>) -> Result<Judged, ArgsError> {
        self.validate(args)?.judged()
    }
}

impl ValidArgs<'_> {
    /// What validated arguments affect and the signatures that judge them (see
    /// [`Tool::judged`]; only the target scan can still fail).
    pub fn judged(&self) -> Result<Judged, ArgsError> {
        let tool = self.tool();
        let args = self.args();
        tool.judge_targets(args)
    }
}

impl Tool {
    fn judge_targets(&self, args: &Map<String, Value>) -> Result<Judged, ArgsError> {
        let Some(spec) = &self.targets else {
            return Ok(Judged {
                targets: Vec::new(),
                signatures: vec![self.render_signature(args)],
            });
        };
        let mut scan = Scan {
            tool: &self.name,
            spec,
            targets: Vec::new(),
            errors: Vec::new(),
        };
        for name in &spec.args {
            if let Some(value) = args.get(name) {
                let under_slot = *name == spec.slot;
                scan.value(name, name, value, under_slot);
            }
        }
        if !scan.errors.is_empty() {
            return Err(ArgsError {
                tool: self.name.clone(),
                errors: scan.errors,
            });
        }
        let targets = scan.targets;
        let mut signatures: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !signatures.contains(&s) {
                signatures.push(s);
            }
        };
        if targets.is_empty() {
            push(self.signature_with(args, &[(spec.slot.as_str(), "")]));
        }
        let generic = spec.dispatch.as_ref().filter(|d| {
            args.get(&d.arg)
                .and_then(scalar_text)
                .is_some_and(|v| d.values.contains(&v))
        });
        for target in &targets {
            push(self.signature_with(args, &[(spec.slot.as_str(), target.as_str())]));
            if let Some(dispatch) = generic
                && let Some(kind) = Targets::kind_of(target)
            {
                push(self.signature_with(
                    args,
                    &[
                        (spec.slot.as_str(), target.as_str()),
                        (dispatch.arg.as_str(), kind),
                    ],
                ));
            }
        }
        Ok(Judged {
            targets,
            signatures,
        })
    }

    /// The signature policies judge, e.g. `ha_call_service(light.turn_on, light.bedroom)`
    /// for the template `{domain}.{service}, {entity_id}`.
    ///
    /// Without a template the signature is the bare tool name (`ha_get_states`).
    /// An absent optional argument renders as the empty string. The arguments
    /// are validated first with [`Tool::validate_args`] (so a value with a
    /// forbidden character never reaches a signature); the error is that of
    /// validation.
    ///
    /// A tool with `targets` has one signature per target ([`Tool::judged`] gives them all);
    /// this is the first of them.
    pub fn signature(&self, args: &Map<String, Value>) -> Result<String, ArgsError> {
        let judged = self.judged(args)?;
        Ok(judged
            .signatures
            .into_iter()
            .next()
            .unwrap_or_else(|| self.render_signature(args)))
    }
}

/// One pass over the scanned arguments.
struct Scan<'a> {
    tool: &'a str,
    spec: &'a Targets,
    targets: Vec<String>,
    errors: Vec<ArgError>,
}

impl Scan<'_> {
    /// Scans `value` found at `at` (a path such as `data.scene.entities`) of argument `arg`;
    /// `under_slot`: the value is the slot argument or sits under a key named like it.
    fn value(&mut self, arg: &str, at: &str, value: &Value, under_slot: bool) {
        match value {
            Value::String(text) => self.text(arg, at, text, under_slot),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(arg, &format!("{at}[{i}]"), item, under_slot);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let key_at = format!("{at}.{key}");
                    let normal = self.normalise(key);
                    if let Some(refused) = self.spec.refuse_keys.iter().find(|k| **k == normal) {
                        self.errors.push(ArgError::RefusedTarget {
                            tool: self.tool.to_owned(),
                            arg: arg.to_owned(),
                            at: key_at.clone(),
                            what: format!("selects what it affects by `{refused}`"),
                            fix: format!(
                                "the policy judges each {slot} a call affects, and `{refused}` hides them: name the {slot}s instead (in `{slot}`)",
                                slot = self.spec.slot
                            ),
                        });
                        continue;
                    }
                    self.text(arg, &key_at, key, false);
                    self.value(arg, &key_at, item, normal == self.spec.slot);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// A string: one or several (split at the separator) candidate targets.
    fn text(&mut self, arg: &str, at: &str, text: &str, under_slot: bool) {
        let parts: Vec<&str> = match &self.spec.separator {
            Some(separator) => text.split(separator.as_str()).collect(),
            None => vec![text],
        };
        for part in parts {
            let normal = self.normalise(part);
            if under_slot && self.spec.refuse_values.contains(&normal) {
                self.errors.push(ArgError::RefusedTarget {
                    tool: self.tool.to_owned(),
                    arg: arg.to_owned(),
                    at: at.to_owned(),
                    what: format!("names every or no target at once (`{normal}`)"),
                    fix: format!(
                        "the policy judges each {slot} a call affects: list the {slot}s instead",
                        slot = self.spec.slot
                    ),
                });
                continue;
            }
            if !self.spec.pattern.is_match(&normal) {
                continue;
            }
            if let Some(ch) = forbidden_char(&normal) {
                self.errors.push(ArgError::ForbiddenChar {
                    tool: self.tool.to_owned(),
                    arg: at.to_owned(),
                    ch,
                    value: crate::validate::shown(part),
                });
                continue;
            }
            if !self.targets.contains(&normal) {
                self.targets.push(normal);
            }
        }
    }

    /// Trimmed (white space and control characters, a superset of what the service strips)
    /// and lower-cased when the spec says so.
    fn normalise(&self, text: &str) -> String {
        let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c.is_control());
        if self.spec.lowercase {
            trimmed.to_lowercase()
        } else {
            trimmed.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Manifest;

    const SOURCE: &str = r#"
[services.ha]
description = "HA"

[tools.call]
service = "ha"
description = "Call a service."
signature = "{domain}.{service}, {entity_id}"
http = { method = "POST", path = "/s/{domain}/{service}", body = ["entity_id"], body_merge = "data" }
targets = { slot = "entity_id", args = ["entity_id", "data"], pattern = '^[a-z0-9_]+\.[a-z0-9_]+$', lowercase = true, separator = ",", refuse_keys = ["area_id"], refuse_values = ["all"], dispatch = { arg = "domain", values = ["homeassistant"] } }
args.domain = { type = "string", pattern = "^[a-z_]+$" }
args.service = { type = "string", pattern = "^[a-z_]+$" }
args.entity_id = { type = "string", required = false, or_list = true, pattern = '^[a-z0-9_]+\.[a-z0-9_]+$' }
args.data = { type = "object", required = false }
"#;

    fn judged(args: serde_json::Value) -> Result<super::Judged, crate::ArgsError> {
        let loaded = Manifest::from_str(SOURCE, "tools.toml").unwrap();
        let tool = loaded.manifest.tool("call").unwrap().clone();
        tool.judged(args.as_object().unwrap())
    }

    #[test]
    fn every_target_gets_its_signature_in_order_once() {
        let j = judged(json!({
            "domain": "light", "service": "turn_on",
            "entity_id": ["light.a", "light.b"],
            "data": {"x": [" LIGHT.B ", {"light.c": "sensor.d, light.a"}]}
        }))
        .unwrap();
        assert_eq!(j.targets, ["light.a", "light.b", "light.c", "sensor.d"]);
        assert_eq!(
            j.signatures,
            [
                "call(light.turn_on, light.a)",
                "call(light.turn_on, light.b)",
                "call(light.turn_on, light.c)",
                "call(light.turn_on, sensor.d)"
            ]
        );
    }

    #[test]
    fn no_target_is_one_signature_with_an_empty_slot() {
        let j = judged(json!({"domain": "light", "service": "turn_on", "data": {"x": "2.5 kg"}}))
            .unwrap();
        assert!(j.targets.is_empty());
        assert_eq!(j.signatures, ["call(light.turn_on, )"]);
    }

    #[test]
    fn generic_actions_are_judged_under_the_target_s_kind_too() {
        let j = judged(
            json!({"domain": "homeassistant", "service": "turn_off", "entity_id": "lock.door"}),
        )
        .unwrap();
        assert_eq!(
            j.signatures,
            [
                "call(homeassistant.turn_off, lock.door)",
                "call(lock.turn_off, lock.door)"
            ]
        );
    }

    #[test]
    fn refused_keys_and_values_name_where_they_are() {
        let e =
            judged(json!({"domain": "a", "service": "b", "data": {"x": [{"Area_ID ": "hall"}]}}))
                .unwrap_err();
        let [crate::ArgError::RefusedTarget { at, .. }] = &e.errors[..] else {
            panic!("{e:?}")
        };
        assert_eq!(at, "data.x[0].Area_ID ");
        assert!(
            e.to_string()
                .contains("selects what it affects by `area_id`"),
            "{e}"
        );
        let e =
            judged(json!({"domain": "a", "service": "b", "data": {"y": {"entity_id": " ALL"}}}))
                .unwrap_err();
        assert!(
            e.to_string()
                .contains("names every or no target at once (`all`)"),
            "{e}"
        );
        // `all` elsewhere is plain data
        assert!(judged(json!({"domain": "a", "service": "b", "data": {"mode": "all"}})).is_ok());
    }
}
