//! Hidden support for the code [`tools!`](crate::tools!) generates: the
//! generic, non-generated bodies of the `Serialize`, `Deserialize` and
//! `JsonSchema` impls of the generated structs. Not a stable API.
//!
//! The generated impls are one-liners that delegate here instead of
//! `#[derive]`s, because derived serde and schemars impls dominate the time
//! `cargo check` spends on a large manifest: with these helpers, expanding
//! 500 tools type-checks several times faster. They behave like the derives
//! with the attributes the generator used (`deny_unknown_fields` on argument
//! structs, optional fields `#[serde(default, skip_serializing_if =
//! "Option::is_none")]`), with serde's own error messages.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde_json::Value;

use crate::tools::{JsonObject, OneOrMany};

/// A field of a generated struct, seen by [`serialize_struct`]: its value,
/// or [`FieldRef::Skip`] for an optional field that is `None`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// An optional field that is `None`: left out.
    Skip,
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// An array of strings.
    Strs(&'a [String]),
    /// An array of integers.
    Ints(&'a [i64]),
    /// An array of numbers.
    Nums(&'a [f64]),
    /// An array of booleans.
    Bools(&'a [bool]),
    /// A JSON object.
    Object(&'a JsonObject),
}

impl serde::Serialize for FieldRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            FieldRef::Skip => s.serialize_none(),
            FieldRef::Str(v) => s.serialize_str(v),
            FieldRef::Int(v) => s.serialize_i64(v),
            FieldRef::Num(v) => s.serialize_f64(v),
            FieldRef::Bool(v) => s.serialize_bool(v),
            FieldRef::Strs(v) => v.serialize(s),
            FieldRef::Ints(v) => v.serialize(s),
            FieldRef::Nums(v) => v.serialize(s),
            FieldRef::Bools(v) => v.serialize(s),
            FieldRef::Object(v) => v.serialize(s),
        }
    }
}

/// The types a field of a generated struct can have (the manifest's argument
/// types, and `Option`s of them for optional fields).
#[doc(hidden)]
pub trait Field {
    /// The value as a [`FieldRef`] for serialisation.
    fn field(&self) -> FieldRef<'_>;

    /// The value of a field from JSON (`None`: the field is absent).
    fn from_json(value: Option<Value>) -> Result<Self, FieldError>
    where
        Self: Sized;
}

/// Why a field could not be deserialised.
#[doc(hidden)]
#[derive(Debug)]
pub enum FieldError {
    /// A required field is absent.
    Missing,
    /// The value has the wrong type (serde's message).
    Invalid(serde_json::Error),
}

fn required<T: serde::de::DeserializeOwned>(value: Option<Value>) -> Result<T, FieldError> {
    match value {
        None => Err(FieldError::Missing),
        Some(v) => serde_json::from_value(v).map_err(FieldError::Invalid),
    }
}

macro_rules! fields {
    ($($ty:ty => |$v:ident| $to:expr;)*) => {$(
        impl Field for $ty {
            fn field(&self) -> FieldRef<'_> {
                let $v = self;
                $to
            }

            fn from_json(value: Option<Value>) -> Result<Self, FieldError> {
                required(value)
            }
        }
    )*};
}

fields! {
    String => |v| FieldRef::Str(v);
    i64 => |v| FieldRef::Int(*v);
    f64 => |v| FieldRef::Num(*v);
    bool => |v| FieldRef::Bool(*v);
    Vec<String> => |v| FieldRef::Strs(v);
    Vec<i64> => |v| FieldRef::Ints(v);
    Vec<f64> => |v| FieldRef::Nums(v);
    Vec<bool> => |v| FieldRef::Bools(v);
    JsonObject => |v| FieldRef::Object(v);
    OneOrMany => |v| match v {
        OneOrMany::One(one) => FieldRef::Str(one),
        OneOrMany::Many(many) => FieldRef::Strs(many),
    };
}

/// Optional fields: skipped when `None`; absent or `null` reads as `None`.
impl<T: Field> Field for Option<T> {
    fn field(&self) -> FieldRef<'_> {
        match self {
            Some(v) => v.field(),
            None => FieldRef::Skip,
        }
    }

    fn from_json(value: Option<Value>) -> Result<Self, FieldError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            some => T::from_json(some).map(Some),
        }
    }
}

/// The body of a generated `Serialize` impl: a struct `name` whose fields
/// are named `keys` and hold `values`, in order, leaving out optional fields
/// that are `None`.
#[doc(hidden)]
pub fn serialize_struct<S: Serializer>(
    serializer: S,
    name: &'static str,
    keys: &[&'static str],
    values: &[&dyn Field],
) -> Result<S::Ok, S::Error> {
    let fields = keys.iter().zip(values.iter().map(|v| v.field()));
    let len = fields
        .clone()
        .filter(|(_, v)| !matches!(v, FieldRef::Skip))
        .count();
    let mut s = serializer.serialize_struct(name, len)?;
    for (key, value) in fields {
        match value {
            FieldRef::Skip => s.skip_field(key)?,
            value => s.serialize_field(key, &value)?,
        }
    }
    s.end()
}

/// The body of a generated `Debug` impl: formats like `#[derive(Debug)]`.
#[doc(hidden)]
pub fn debug_struct(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    keys: &[&str],
    values: &[&dyn fmt::Debug],
) -> fmt::Result {
    let mut s = f.debug_struct(name);
    for (key, value) in keys.iter().zip(values) {
        s.field(key, value);
    }
    s.finish()
}

/// The body of a generated `PartialEq` impl: field by field, like
/// `#[derive(PartialEq)]`.
#[doc(hidden)]
pub fn fields_eq(a: &[&dyn Field], b: &[&dyn Field]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.field() == b.field())
}

/// The fields of a struct being deserialised by a generated `Deserialize`
/// impl: read as a JSON object once ([`Fields::deserialize`]), then taken
/// one by one ([`Fields::take`]); the first error is reported by
/// [`Fields::finish`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Fields {
    fields: &'static [&'static str],
    values: Vec<Option<Value>>,
    error: Option<(&'static str, FieldError)>,
}

struct FieldsVisitor {
    name: &'static str,
    fields: &'static [&'static str],
    deny_unknown: bool,
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", self.name)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut values: Vec<Option<Value>> = vec![None; self.fields.len()];
        while let Some(key) = map.next_key::<String>()? {
            match self.fields.iter().position(|f| *f == key) {
                Some(i) => {
                    if values[i].is_some() {
                        return Err(de::Error::duplicate_field(self.fields[i]));
                    }
                    values[i] = Some(map.next_value()?);
                }
                None if self.deny_unknown => {
                    return Err(de::Error::unknown_field(&key, self.fields));
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(Fields {
            fields: self.fields,
            values,
            error: None,
        })
    }
}

impl Fields {
    /// Reads struct `name` with `fields` from `deserializer` (a map; unknown
    /// keys are an error when `deny_unknown`, else ignored; a repeated key is
    /// an error).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        name: &'static str,
        fields: &'static [&'static str],
        deny_unknown: bool,
    ) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            name,
            fields,
            FieldsVisitor {
                name,
                fields,
                deny_unknown,
            },
        )
    }

    /// The value of field `name` (one of the `fields` given to
    /// [`Fields::deserialize`]). On an error, returns a default value and
    /// remembers the error for [`Fields::finish`].
    pub fn take<T: Field + Default>(&mut self, name: &'static str) -> T {
        let value = self
            .fields
            .iter()
            .position(|f| *f == name)
            .and_then(|i| self.values.get_mut(i))
            .and_then(Option::take);
        match T::from_json(value) {
            Ok(v) => v,
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some((name, e));
                }
                T::default()
            }
        }
    }

    /// `value`, or the first error [`Fields::take`] met, as serde reports
    /// it: "missing field `x`" or serde_json's "invalid type: ..." message.
    pub fn finish<T, E: de::Error>(self, value: T) -> Result<T, E> {
        match self.error {
            None => Ok(value),
            Some((name, FieldError::Missing)) => Err(E::missing_field(name)),
            Some((_, FieldError::Invalid(e))) => Err(E::custom(e)),
        }
    }
}

/// The body of a generated `JsonSchema::json_schema`: the manifest's JSON
/// Schema of the tool or type, embedded by the generator as JSON text.
#[doc(hidden)]
pub fn schema(json: &str) -> schemars::Schema {
    serde_json::from_str(json).unwrap_or_else(|e| {
        // The text is written by the generator with serde_json, so this does
        // not happen; say so in the schema rather than panic.
        schemars::json_schema!({
            "description": format!("agent-gate: the embedded schema is invalid: {e}")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Default)]
    struct S {
        id: String,
        level: Option<i64>,
        tags: Option<Vec<String>>,
        extra: JsonObject,
    }

    const FIELDS: &[&str] = &["id", "level", "tags", "extra"];

    impl serde::Serialize for S {
        fn serialize<Ser: Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
            serialize_struct(
                s,
                "S",
                FIELDS,
                &[&self.id, &self.level, &self.tags, &self.extra],
            )
        }
    }

    impl<'de> serde::Deserialize<'de> for S {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let mut f = Fields::deserialize(d, "S", FIELDS, true)?;
            let v = S {
                id: f.take("id"),
                level: f.take("level"),
                tags: f.take("tags"),
                extra: f.take("extra"),
            };
            f.finish(v)
        }
    }

    fn de(v: Value) -> Result<S, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip_skips_none() {
        let s = de(json!({"id": "a", "level": null, "tags": ["x"], "extra": {"k": 1}})).unwrap();
        assert_eq!(s.level, None);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"id": "a", "tags": ["x"], "extra": {"k": 1}})
        );
        let text = serde_json::to_string(&S {
            level: Some(3),
            ..S::default()
        })
        .unwrap();
        assert_eq!(text, r#"{"id":"","level":3,"extra":{}}"#);
        let back: S = serde_json::from_str(&text).unwrap();
        assert_eq!(back.level, Some(3));
    }

    #[test]
    fn errors_read_like_serde_derives() {
        assert_eq!(
            de(json!({"level": 1, "extra": {}})).unwrap_err(),
            "missing field `id`"
        );
        assert_eq!(
            de(json!({"id": 1, "extra": {}})).unwrap_err(),
            "invalid type: integer `1`, expected a string"
        );
        assert_eq!(
            de(json!({"id": "a", "extra": {}, "x": 1})).unwrap_err(),
            "unknown field `x`, expected one of `id`, `level`, `tags`, `extra`"
        );
        assert_eq!(
            de(json!(["a"])).unwrap_err(),
            "invalid type: sequence, expected struct S"
        );
        let dup = serde_json::from_str::<S>(r#"{"id": "a", "id": "b", "extra": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(dup.starts_with("duplicate field `id`"), "{dup}");
    }

    #[test]
    fn unknown_fields_are_ignored_unless_denied() {
        let mut f = Fields::deserialize(json!({"id": "a", "x": 1}), "S", FIELDS, false).unwrap();
        let id: String = f.take("id");
        assert_eq!(f.finish::<_, serde_json::Error>(id).unwrap(), "a");
    }

    #[test]
    fn schema_text_becomes_a_schema() {
        let s = schema(r#"{"type": "object"}"#);
        assert_eq!(s.as_value(), &json!({"type": "object"}));
        let bad = schema("{");
        assert!(
            bad.as_value()["description"]
                .as_str()
                .unwrap()
                .contains("invalid")
        );
    }
}
