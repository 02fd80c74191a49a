//! Validation of `request_id`, the client's idempotency key (1–64 of `[A-Za-z0-9_-]`).
//! Both the client (before sending) and the gateway (on receipt) use it.

use thiserror::Error;

/// The longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Why a `request_id` was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestIdError {
    /// The id was the empty string.
    #[error("request_id must not be empty; use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    Empty,
    /// The id was longer than 64 characters.
    #[error(
        "request_id is {len} characters long, the limit is {MAX_REQUEST_ID_LEN}; use a shorter id"
    )]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The id contained a character outside `[A-Za-z0-9_-]`.
    #[error(
        "request_id contains {ch:?} at position {position}; only A-Z, a-z, 0-9, '_' and '-' are allowed"
    )]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its position (in characters, from 0).
        position: usize,
    },
}

/// Check that `id` is 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_request_id(id: &str) -> Result<(), RequestIdError> {
    if id.is_empty() {
        return Err(RequestIdError::Empty);
    }
    if let Some((position, ch)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(RequestIdError::InvalidChar { ch, position });
    }
    // Only ASCII is left, so bytes == characters.
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(RequestIdError::TooLong { len: id.len() });
    }
    Ok(())
}

/// True when `id` is a valid `request_id`.
pub fn is_valid_request_id(id: &str) -> bool {
    validate_request_id(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet_up_to_64() {
        assert_eq!(validate_request_id("a"), Ok(()));
        assert_eq!(validate_request_id("AZaz09_-"), Ok(()));
        assert_eq!(validate_request_id(&"x".repeat(64)), Ok(()));
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        assert_eq!(validate_request_id(""), Err(RequestIdError::Empty));
        assert_eq!(
            validate_request_id(&"x".repeat(65)),
            Err(RequestIdError::TooLong { len: 65 })
        );
        assert_eq!(
            validate_request_id("ab c"),
            Err(RequestIdError::InvalidChar {
                ch: ' ',
                position: 2
            })
        );
        assert_eq!(
            validate_request_id("é"),
            Err(RequestIdError::InvalidChar {
                ch: 'é',
                position: 0
            })
        );
        for bad in ["a*", "a?", "a[", "a,", "a(", "a.b", "a/b", "a\n"] {
            assert!(!is_valid_request_id(bad), "{bad:?} accepted");
        }
    }
}
