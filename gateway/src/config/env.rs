//! `${VAR}` substitution from the environment, with an injectable lookup so tests never touch
//! the process environment.

/// Where `${VAR}` values come from.
///
/// Implemented for [`ProcessEnv`] and for any `Fn(&str) -> Option<String>`, so tests can pass a
/// closure over a map.
pub trait EnvLookup {
    /// The value of the variable, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The process environment (`std::env::var`); a variable that is not valid Unicode counts as
/// unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Why a string could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubstError {
    /// `${NAME}` where `NAME` is not set.
    Unset(String),
    /// `${` not followed by a valid name and `}`.
    Malformed(String),
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `input` (`NAME` = `[A-Za-z_][A-Za-z0-9_]*`); `$${` yields a literal
/// `${`. Returns `Ok(None)` when the string contains no `${` at all (nothing to do).
pub(crate) fn substitute(input: &str, env: &dyn EnvLookup) -> Result<Option<String>, SubstError> {
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` escapes a literal `${`.
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(SubstError::Malformed(
                    "`${` without a closing `}` (write `$${` for a literal `${`)".to_string(),
                ));
            };
            let name = &tail[..end];
            if !is_name(name) {
                return Err(SubstError::Malformed(format!(
                    "`${{{name}}}` is not a valid variable reference: names are letters, digits and `_`, not starting with a digit (write `$${{` for a literal `${{`)"
                )));
            }
            match env.var(name) {
                Some(value) => out.push_str(&value),
                None => return Err(SubstError::Unset(name.to_string())),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("localhost".into()),
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_several_variables() {
        assert_eq!(
            substitute("${HOST}:${PORT}/x", &env),
            Ok(Some("localhost:8080/x".into()))
        );
        assert_eq!(substitute("${EMPTY}", &env), Ok(Some(String::new())));
        assert_eq!(substitute("plain $5 text", &env), Ok(None));
        assert_eq!(
            substitute("a $HOST ${PORT}", &env),
            Ok(Some("a $HOST 8080".into()))
        );
    }

    #[test]
    fn escapes_and_errors() {
        assert_eq!(substitute("$${HOST}", &env), Ok(Some("${HOST}".into())));
        assert_eq!(
            substitute("x${NOPE}y", &env),
            Err(SubstError::Unset("NOPE".into()))
        );
        assert!(matches!(
            substitute("${HOST", &env),
            Err(SubstError::Malformed(_))
        ));
        assert!(matches!(
            substitute("${1X}", &env),
            Err(SubstError::Malformed(_))
        ));
        assert!(matches!(
            substitute("${}", &env),
            Err(SubstError::Malformed(_))
        ));
    }
}
