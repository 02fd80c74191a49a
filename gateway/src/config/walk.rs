//! A small checked walk over a YAML tree: typed getters that record every problem (with its key
//! path) instead of stopping at the first, unknown-key detection with "did you mean", and the
//! `${VAR}` pass over the whole tree.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::env::{EnvLookup, SubstError, substitute};
use super::error::{ConfigError, Issue};
use super::secret::Secret;

/// Which string values get their `${VAR}` substituted, by key path (e.g. `gateway.port`,
/// `agents[0].id`); the others stay as written and are not to be read.
pub(crate) type Resolve = fn(&str) -> bool;

/// Every key: what loading a whole file resolves.
pub(crate) fn every_key(_: &str) -> bool {
    true
}

/// Reads a file and parses it as YAML, substituting `${VAR}` in every string value.
pub(crate) fn read_yaml(file: &Path, env: &dyn EnvLookup) -> Result<(Value, Ctx), ConfigError> {
    read_yaml_resolving(file, env, every_key)
}

/// Like [`read_yaml`], but substitutes only in the keys `resolve` accepts.
pub(crate) fn read_yaml_resolving(
    file: &Path,
    env: &dyn EnvLookup,
    resolve: Resolve,
) -> Result<(Value, Ctx), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_yaml_resolving(&text, file, env, resolve)
}

/// Parses YAML text (attributed to `file` in messages), substituting `${VAR}` in every string.
pub(crate) fn parse_yaml(
    text: &str,
    file: &Path,
    env: &dyn EnvLookup,
) -> Result<(Value, Ctx), ConfigError> {
    parse_yaml_resolving(text, file, env, every_key)
}

/// Like [`parse_yaml`], but substitutes only in the keys `resolve` accepts.
pub(crate) fn parse_yaml_resolving(
    text: &str,
    file: &Path,
    env: &dyn EnvLookup,
    resolve: Resolve,
) -> Result<(Value, Ctx), ConfigError> {
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        file: file.to_path_buf(),
        location: e.location().map(|l| (l.line(), l.column())),
        message: strip_location(&e.to_string()),
    })?;
    let mut ctx = Ctx::new(file);
    substitute_tree(&mut ctx, &mut value, "", env, resolve);
    Ok((value, ctx))
}

fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

/// Collects the problems found while walking one file.
pub(crate) struct Ctx {
    file: PathBuf,
    pub(crate) issues: Vec<Issue>,
    pub(crate) warnings: Vec<Issue>,
    /// Paths whose `${VAR}` substitution failed: already reported, so getters stay silent.
    poisoned: HashSet<String>,
}

impl Ctx {
    pub(crate) fn new(file: &Path) -> Self {
        Ctx {
            file: file.to_path_buf(),
            issues: Vec::new(),
            warnings: Vec::new(),
            poisoned: HashSet::new(),
        }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    fn issue(&self, path: &str, message: impl Into<String>) -> Issue {
        Issue {
            file: self.file.clone(),
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// Records an error at `path`.
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        let issue = self.issue(path, message);
        self.issues.push(issue);
    }

    /// Records a warning at `path`.
    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>) {
        let issue = self.issue(path, message);
        self.warnings.push(issue);
    }

    /// `Ok(value)` when no error was recorded, else every error.
    pub(crate) fn finish<T>(self, value: T) -> Result<(T, Vec<Issue>), ConfigError> {
        if self.issues.is_empty() {
            Ok((value, self.warnings))
        } else {
            Err(ConfigError::Invalid {
                file: self.file,
                issues: self.issues,
            })
        }
    }

    fn present<'a>(&self, f: &Field<'a>) -> Option<&'a Value> {
        if self.poisoned.contains(&f.path) {
            return None;
        }
        f.value
    }

    fn absent_required(&mut self, f: &Field<'_>, expected: &str) {
        if f.value.is_none() && !self.poisoned.contains(&f.path) {
            self.error(&f.path, format!("missing: expected {expected}"));
        }
    }

    /// The field as a mapping; `None` (and an error unless absent) otherwise.
    pub(crate) fn obj<'a>(&mut self, f: &Field<'a>) -> Option<Obj<'a>> {
        match self.present(f)? {
            Value::Mapping(map) => Some(Obj {
                path: f.path.clone(),
                map,
            }),
            other => {
                self.error(
                    &f.path,
                    format!("expected a mapping, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// Like [`Ctx::obj`], but a missing field is an error.
    pub(crate) fn req_obj<'a>(&mut self, f: &Field<'a>) -> Option<Obj<'a>> {
        self.absent_required(f, "a mapping");
        self.obj(f)
    }

    /// The field as a list of fields; `None` (and an error unless absent) otherwise.
    pub(crate) fn list<'a>(&mut self, f: &Field<'a>) -> Option<Vec<Field<'a>>> {
        match self.present(f)? {
            Value::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Field {
                        path: format!("{}[{i}]", f.path),
                        value: if v.is_null() { None } else { Some(v) },
                    })
                    .collect(),
            ),
            other => {
                self.error(&f.path, format!("expected a list, got {}", describe(other)));
                None
            }
        }
    }

    /// The field as a string (numbers and booleans are not silently converted).
    pub(crate) fn string(&mut self, f: &Field<'_>) -> Option<String> {
        match self.present(f)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let hint = if matches!(other, Value::Number(_) | Value::Bool(_)) {
                    " (put it in quotes)"
                } else {
                    ""
                };
                self.error(
                    &f.path,
                    format!("expected a string, got {}{hint}", describe(other)),
                );
                None
            }
        }
    }

    /// The field as a boolean (`true` / `false`; strings such as "yes" are refused).
    pub(crate) fn boolean(&mut self, f: &Field<'_>) -> Option<bool> {
        match self.present(f)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    &f.path,
                    format!("expected true or false, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// Like [`Ctx::string`], but a missing field is an error.
    pub(crate) fn req_string(&mut self, f: &Field<'_>) -> Option<String> {
        self.absent_required(f, "a string");
        self.string(f)
    }

    /// A required non-empty string, e.g. a URL or a name.
    pub(crate) fn req_nonempty(&mut self, f: &Field<'_>) -> Option<String> {
        let s = self.req_string(f)?;
        if s.trim().is_empty() {
            self.error(&f.path, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A required, non-empty secret. Messages describe only the type, never the value.
    pub(crate) fn secret(&mut self, f: &Field<'_>) -> Option<Secret> {
        self.absent_required(f, "a non-empty string (a secret)");
        match self.present(f)? {
            Value::String(s) if s.is_empty() => {
                self.error(
                    &f.path,
                    "must not be empty (if it comes from ${VAR}, that variable is set but empty)",
                );
                None
            }
            Value::String(s) => Some(Secret::new(s.clone())),
            other => {
                self.error(
                    &f.path,
                    format!(
                        "expected a string (a secret), got {}; put the value in quotes",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`; strings holding an integer (e.g. from `${VAR}`) are accepted.
    pub(crate) fn int(&mut self, f: &Field<'_>, min: i64, max: i64) -> Option<i64> {
        let value = self.present(f)?;
        let parsed = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let range = if min == i64::MIN && max == i64::MAX {
                    "an integer".to_string()
                } else if min == 1 && max == i64::MAX {
                    "a positive integer".to_string()
                } else if max == i64::MAX {
                    format!("an integer >= {min}")
                } else {
                    format!("an integer {min}-{max}")
                };
                self.error(
                    &f.path,
                    format!("expected {range}, got {}", describe(value)),
                );
                None
            }
        }
    }

    /// Like [`Ctx::int`], but a missing field is an error.
    pub(crate) fn req_int(&mut self, f: &Field<'_>, min: i64, max: i64) -> Option<i64> {
        self.absent_required(f, "an integer");
        self.int(f, min, max)
    }

    /// A TCP port (1-65535).
    pub(crate) fn port(&mut self, f: &Field<'_>) -> Option<u16> {
        self.int(f, 1, 65535).and_then(|n| u16::try_from(n).ok())
    }

    /// A positive number of seconds (integer or decimal; strings holding one are accepted).
    pub(crate) fn seconds(&mut self, f: &Field<'_>) -> Option<std::time::Duration> {
        let value = self.present(f)?;
        let parsed = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(secs) if secs > 0.0 && secs <= 86_400.0 => {
                Some(std::time::Duration::from_secs_f64(secs))
            }
            _ => {
                self.error(
                    &f.path,
                    format!(
                        "expected a number of seconds greater than 0 and at most 86400, got {}",
                        describe(value)
                    ),
                );
                None
            }
        }
    }
}

/// A key of a mapping being walked: its path and value (`None` when absent or null).
pub(crate) struct Field<'a> {
    pub(crate) path: String,
    pub(crate) value: Option<&'a Value>,
}

/// A mapping being walked.
pub(crate) struct Obj<'a> {
    pub(crate) path: String,
    map: &'a Mapping,
}

impl<'a> Obj<'a> {
    /// The root of a document (an empty document counts as an empty mapping).
    pub(crate) fn root(ctx: &mut Ctx, value: &'a Value) -> Option<Obj<'a>> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        match value {
            Value::Null => Some(Obj {
                path: String::new(),
                map: EMPTY.get_or_init(Mapping::new),
            }),
            Value::Mapping(map) => Some(Obj {
                path: String::new(),
                map,
            }),
            other => {
                ctx.error(
                    "",
                    format!(
                        "expected a mapping of keys at the top level, got {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// The field named `key`.
    pub(crate) fn field(&self, key: &str) -> Field<'a> {
        Field {
            path: join(&self.path, key),
            value: self.map.get(key).filter(|v| !v.is_null()),
        }
    }

    /// Whether the key is present with a non-null value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// Every entry, keys rendered as strings (a non-scalar key is reported and skipped).
    pub(crate) fn entries(&self, ctx: &mut Ctx) -> Vec<(String, Field<'a>)> {
        let mut out = Vec::new();
        for (k, v) in self.map {
            match scalar_key(k) {
                Some(key) => out.push((
                    key.clone(),
                    Field {
                        path: join(&self.path, &key),
                        value: if v.is_null() { None } else { Some(v) },
                    },
                )),
                None => ctx.error(&self.path, format!("keys must be strings, got {}", kind(k))),
            }
        }
        out
    }

    /// Reports every key not in `allowed`, with the closest allowed key as a suggestion.
    pub(crate) fn check_keys(&self, ctx: &mut Ctx, allowed: &[&str]) {
        for k in self.map.keys() {
            let Some(key) = scalar_key(k) else {
                ctx.error(&self.path, format!("keys must be strings, got {}", kind(k)));
                continue;
            };
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint = match suggest(&key, allowed.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            ctx.error(
                &join(&self.path, &key),
                format!(
                    "unknown key `{key}`{hint}; expected one of: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

fn scalar_key(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The candidate closest to `word`, when it is close enough to be a plausible typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(word, c)))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// The kind of a value, without its content (for secrets).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A short description of a (non-secret) value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let short: String = s.chars().take(60).collect();
            if short.len() < s.len() {
                format!("{short:?}...")
            } else {
                format!("{s:?}")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

/// Substitutes `${VAR}` in every string value of the tree (not in keys) whose path `resolve`
/// accepts. A failed substitution is reported once and its path poisoned, so no second,
/// confusing error follows for it.
fn substitute_tree(
    ctx: &mut Ctx,
    value: &mut Value,
    path: &str,
    env: &dyn EnvLookup,
    resolve: Resolve,
) {
    match value {
        Value::String(_) if !resolve(path) => {}
        Value::String(s) => match substitute(s, env) {
            Ok(Some(new)) => *s = new,
            Ok(None) => {}
            Err(e) => {
                let message = match e {
                    SubstError::Unset(name) => format!(
                        "environment variable {name} is not set (export it, or write the value in the file)"
                    ),
                    SubstError::Malformed(m) => m,
                };
                ctx.error(path, message);
                ctx.poisoned.insert(path.to_string());
            }
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_tree(ctx, item, &format!("{path}[{i}]"), env, resolve);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = scalar_key(k).unwrap_or_else(|| "?".to_string());
                substitute_tree(ctx, v, &join(path, &key), env, resolve);
            }
        }
        Value::Tagged(tagged) => substitute_tree(ctx, &mut tagged.value, path, env, resolve),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
