//! Agent tokens at rest: [`TokenDigest`], the SHA-256 of an agent token, which is all the
//! gateway keeps of it and what it compares; the `token_sha256` hex form of `config.yaml`; and
//! minting a fresh token ([`new_token`], for `agent-gate token new`).
//!
//! A presented token is hashed once and its digest compared with every stored digest in
//! constant time ([`TokenDigest::ct_eq`]): the comparison takes as long whatever the stored
//! token's length, and which bytes differ does not show in its timing.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Number of hex digits of a `token_sha256` value.
pub const TOKEN_SHA256_HEX_LEN: usize = 64;

/// The prefix of tokens made by [`new_token`]: it tells a token from its digest at a glance
/// (and to secret scanners).
pub const NEW_TOKEN_PREFIX: &str = "agt_";

/// The SHA-256 digest of an agent token.
///
/// `Debug` prints `TokenDigest(***)`: the digest of a live token is never logged (it is as good
/// as the token to anyone who can replay a digest comparison offline against guesses). Equality
/// is constant-time.
#[derive(Clone)]
pub struct TokenDigest([u8; 32]);

/// Why a `token_sha256` value is not a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestHexError {
    /// Not 64 characters long.
    #[error("{0} characters instead of {TOKEN_SHA256_HEX_LEN}")]
    Length(usize),
    /// 64 characters, but not all hex digits.
    #[error("a character that is not a hex digit (0-9, a-f)")]
    NotHex,
}

impl TokenDigest {
    /// The digest of a token (as configured or as presented by an agent).
    pub fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses 64 hex digits (either case), the `token_sha256` form.
    pub fn from_hex(hex: &str) -> Result<Self, DigestHexError> {
        let chars = hex.chars().count();
        if chars != TOKEN_SHA256_HEX_LEN {
            return Err(DigestHexError::Length(chars));
        }
        if hex.len() != TOKEN_SHA256_HEX_LEN {
            // 64 characters, some of them not ASCII.
            return Err(DigestHexError::NotHex);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(DigestHexError::NotHex);
            };
            *byte = (high << 4) | low;
        }
        Ok(TokenDigest(bytes))
    }

    /// The digest as 64 lowercase hex digits (what `token_sha256` takes). Only for printing the
    /// digest of a token just made, never of a configured one.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(TOKEN_SHA256_HEX_LEN);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &TokenDigest) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}

impl Eq for TokenDigest {}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(***)")
    }
}

/// A fresh random agent token: [`NEW_TOKEN_PREFIX`] and 256 random bits as hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut token = String::from(NEW_TOKEN_PREFIX);
    token.push_str(&TokenDigest(bytes).to_hex());
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_a_known_token() {
        // `printf %s abc | sha256sum`
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(TokenDigest::of("abc").to_hex(), hex);
        assert_eq!(TokenDigest::from_hex(hex), Ok(TokenDigest::of("abc")));
        assert_eq!(
            TokenDigest::from_hex(&hex.to_ascii_uppercase()),
            Ok(TokenDigest::of("abc"))
        );
        assert_ne!(TokenDigest::of("abc"), TokenDigest::of("abd"));
    }

    #[test]
    fn malformed_hex_is_refused() {
        assert_eq!(TokenDigest::from_hex("abc"), Err(DigestHexError::Length(3)));
        let not_hex = format!("{}g", "0".repeat(63));
        assert_eq!(TokenDigest::from_hex(&not_hex), Err(DigestHexError::NotHex));
        // 64 characters, but some of them multi-byte: never sliced mid-character.
        let wide = format!("{}é", "0".repeat(63));
        assert_eq!(TokenDigest::from_hex(&wide), Err(DigestHexError::NotHex));
    }

    #[test]
    fn debug_redacts_and_new_tokens_differ() {
        assert_eq!(format!("{:?}", TokenDigest::of("x")), "TokenDigest(***)");
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(NEW_TOKEN_PREFIX));
        assert_eq!(a.len(), NEW_TOKEN_PREFIX.len() + 64);
    }
}
