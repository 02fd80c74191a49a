//! The characters a value rendered into a signature may never contain.
//!
//! Validation refuses them in arguments, parsing in manifest literals, and targets in the
//! values they render; signatures are built only from values that passed this check. A leaf
//! module: it depends on no other module of the crate.

/// Characters that may not appear in a value rendered into a signature:
/// glob metacharacters, parentheses, commas and backslash (control characters
/// are refused too, see [`forbidden_char`]). With them a value could change
/// what a policy rule matches, e.g. `light.*` or `a, lock.front_door`.
pub const FORBIDDEN_SIGNATURE_CHARS: &[char] =
    &['*', '?', '[', ']', '{', '}', '!', '(', ')', ',', '\\'];

/// The first character of `value` that may not appear in a signature, if any.
pub fn forbidden_char(value: &str) -> Option<char> {
    value
        .chars()
        .find(|c| FORBIDDEN_SIGNATURE_CHARS.contains(c) || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden() {
        for bad in [
            "light.*", "a?", "[ab]", "{a}", "!a", "a(b)", "a,b", "a\\b", "a\nb", "a\u{7f}",
        ] {
            assert!(forbidden_char(bad).is_some(), "{bad:?}");
        }
        assert_eq!(forbidden_char("light.kitchen_2"), None);
        assert_eq!(forbidden_char("2026-11-20T08:00:00+00:00"), None);
    }
}
