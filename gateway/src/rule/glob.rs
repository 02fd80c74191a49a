//! Glob patterns over signatures, with the semantics of Python's `fnmatch` (case-sensitive):
//!
//! - `*` matches any run of characters, including none and including `(`, `,`, `)` and spaces;
//! - `?` matches exactly one character;
//! - `[abc]`, `[a-z]` match one character of the set, `[!abc]` one character not in it; a `]`
//!   right after `[` or `[!` is part of the set. An unclosed `[` is rejected at load time (where
//!   `fnmatch` would silently treat it as a literal).
//! - every other character matches itself.
//!
//! Patterns are compiled once at load. Matching allocates nothing: the pattern is split at its
//! stars into fixed-width segments; the first must match at the start, the last at the end, and
//! the middle ones are found leftmost in order (which is exact for star-separated segments).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// A literal run of characters.
    Lit(Box<str>),
    /// `?`.
    Any,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Box<[(char, char)]>,
    },
}

impl Atom {
    fn class_matches(negated: bool, ranges: &[(char, char)], c: char) -> bool {
        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated
    }
}

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    /// Star-separated segments, in order.
    segments: Box<[Box<[Atom]>]>,
    /// Whether the pattern starts with `*` (so the first segment may float).
    leading_star: bool,
    /// Whether the pattern ends with `*` (so the last segment may float).
    trailing_star: bool,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("the pattern is empty; use \"*\" to match every signature")]
    Empty,
    /// A `[` without its `]`.
    #[error(
        "`[` at character {0} has no closing `]`; character classes are written `[abc]`, `[a-z]` or `[!abc]`"
    )]
    UnclosedClass(usize),
    /// A range such as `[z-a]`.
    #[error("the range `{0}-{1}` is reversed; write `[{1}-{0}]`")]
    ReversedRange(char, char),
    /// A control character.
    #[error("the pattern contains a control character, which no signature can contain")]
    ControlChar,
}

impl Pattern {
    /// Compiles a pattern.
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        if source.chars().any(char::is_control) {
            return Err(PatternError::ControlChar);
        }
        let chars: Vec<char> = source.chars().collect();
        let mut segments: Vec<Box<[Atom]>> = Vec::new();
        let mut current: Vec<Atom> = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, current: &mut Vec<Atom>| {
            if !lit.is_empty() {
                current.push(Atom::Lit(std::mem::take(lit).into_boxed_str()));
            }
        };
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            match c {
                '*' => {
                    flush(&mut lit, &mut current);
                    segments.push(std::mem::take(&mut current).into_boxed_slice());
                    i += 1;
                }
                '?' => {
                    flush(&mut lit, &mut current);
                    current.push(Atom::Any);
                    i += 1;
                }
                '[' => {
                    flush(&mut lit, &mut current);
                    let (atom, next) = parse_class(&chars, i)?;
                    current.push(atom);
                    i = next;
                }
                other => {
                    lit.push(other);
                    i += 1;
                }
            }
        }
        flush(&mut lit, &mut current);
        segments.push(current.into_boxed_slice());
        // `a**b` produces an empty middle segment: harmless, but drop it (keep first and last,
        // whose emptiness encodes a leading / trailing star).
        let leading_star = source.starts_with('*');
        let trailing_star = source.ends_with('*') && segments.len() > 1;
        let last = segments.len() - 1;
        let segments: Vec<Box<[Atom]>> = segments
            .into_iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || *i == last || !s.is_empty())
            .map(|(_, s)| s)
            .collect();
        Ok(Pattern {
            source: source.into(),
            segments: segments.into_boxed_slice(),
            leading_star,
            trailing_star,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern contains no wildcard at all (it matches exactly one signature).
    pub fn is_literal(&self) -> bool {
        self.segments.len() == 1
            && self
                .segments
                .first()
                .is_some_and(|s| s.iter().all(|a| matches!(a, Atom::Lit(_))))
    }

    /// The literal text every matching signature starts with (empty if the pattern starts with
    /// a wildcard).
    pub fn literal_prefix(&self) -> &str {
        match self.segments.first().and_then(|s| s.first()) {
            Some(Atom::Lit(l)) => l,
            _ => "",
        }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let n = self.segments.len();
        if n == 1 {
            return match self.segments.first() {
                Some(seg) => match_at(seg, text, 0) == Some(text.len()),
                None => text.is_empty(),
            };
        }
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return false;
        };
        // First segment anchored at the start (empty when the pattern starts with `*`).
        let Some(mut cursor) = match_at(first, text, 0) else {
            return false;
        };
        // Last segment anchored at the end.
        let Some(tail_start) = match_suffix(last, text) else {
            return false;
        };
        if tail_start < cursor {
            return false;
        }
        let middle = self.segments.get(1..n - 1).unwrap_or(&[]);
        let window = &text[..tail_start];
        for seg in middle {
            match find(seg, window, cursor) {
                Some(end) => cursor = end,
                None => return false,
            }
        }
        debug_assert!(!self.leading_star || first.is_empty());
        debug_assert!(!self.trailing_star || last.is_empty());
        true
    }
}

fn parse_class(chars: &[char], open: usize) -> Result<(Atom, usize), PatternError> {
    let mut i = open + 1;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(PatternError::UnclosedClass(open + 1));
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        if chars.get(i + 1) == Some(&'-')
            && let Some(&hi) = chars.get(i + 2)
            && hi != ']'
        {
            if hi < c {
                return Err(PatternError::ReversedRange(c, hi));
            }
            ranges.push((c, hi));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    Ok((
        Atom::Class {
            negated,
            ranges: ranges.into_boxed_slice(),
        },
        i,
    ))
}

/// Matches `seg` starting at byte `start`; returns the end byte position.
#[inline]
fn match_at(seg: &[Atom], text: &str, start: usize) -> Option<usize> {
    let mut pos = start;
    for atom in seg {
        let rest = text.get(pos..)?;
        match atom {
            Atom::Lit(l) => {
                if !rest.starts_with(&**l) {
                    return None;
                }
                pos += l.len();
            }
            Atom::Any => pos += rest.chars().next()?.len_utf8(),
            Atom::Class { negated, ranges } => {
                let c = rest.chars().next()?;
                if !Atom::class_matches(*negated, ranges, c) {
                    return None;
                }
                pos += c.len_utf8();
            }
        }
    }
    Some(pos)
}

/// Matches `seg` so that it ends at the end of `text`; returns its start byte position.
fn match_suffix(seg: &[Atom], text: &str) -> Option<usize> {
    let mut end = text.len();
    for atom in seg.iter().rev() {
        let head = text.get(..end)?;
        match atom {
            Atom::Lit(l) => {
                if !head.ends_with(&**l) {
                    return None;
                }
                end -= l.len();
            }
            Atom::Any => end -= head.chars().next_back()?.len_utf8(),
            Atom::Class { negated, ranges } => {
                let c = head.chars().next_back()?;
                if !Atom::class_matches(*negated, ranges, c) {
                    return None;
                }
                end -= c.len_utf8();
            }
        }
    }
    Some(end)
}

/// Finds the leftmost match of `seg` in `text` at or after byte `from`; returns its end.
fn find(seg: &[Atom], text: &str, from: usize) -> Option<usize> {
    // Fast path: a segment starting with a literal can only start where that literal occurs.
    if let Some(Atom::Lit(l)) = seg.first() {
        let mut at = from;
        while let Some(off) = text.get(at..)?.find(&**l) {
            let start = at + off;
            if let Some(end) = match_at(seg, text, start) {
                return Some(end);
            }
            at = start + text.get(start..)?.chars().next()?.len_utf8();
        }
        return None;
    }
    let mut start = from;
    loop {
        if let Some(end) = match_at(seg, text, start) {
            return Some(end);
        }
        start += text.get(start..)?.chars().next()?.len_utf8();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::new(p).unwrap().matches(t)
    }

    #[test]
    fn fnmatch_semantics() {
        assert!(m("*", ""));
        assert!(m("*", "ha_get_states"));
        assert!(m("ha_get_*", "ha_get_state(sensor.temp)"));
        assert!(!m("ha_get_*", "ha_call_service(x.y, z)"));
        assert!(m(
            "ha_call_service(lock.*)",
            "ha_call_service(lock.lock, lock.front_door)"
        ));
        assert!(!m(
            "ha_call_service(lock.*)",
            "ha_call_service(light.turn_on, lock.x)"
        ));
        assert!(m("ha_call_service*", "ha_call_service"));
        assert!(m(
            "*(*, light.*)",
            "ha_call_service(light.turn_on, light.bedroom)"
        ));
        assert!(!m("*(*, light.*)", "ha_call_service(light.turn_on, )"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("x[0-9]", "x5"));
        assert!(!m("x[0-9]", "xa"));
        assert!(m("x[!0-9]", "xa"));
        assert!(m("x[]]", "x]"));
        assert!(m("x[!]]", "xa"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYc_"));
        assert!(m("a**c", "ac"));
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("Light", "Light"));
        assert!(!m("light", "Light"));
        assert!(!m("exact", "exact2"));
    }

    #[test]
    fn errors() {
        assert_eq!(Pattern::new(""), Err(PatternError::Empty));
        assert_eq!(Pattern::new("a[bc"), Err(PatternError::UnclosedClass(2)));
        assert_eq!(
            Pattern::new("[z-a]"),
            Err(PatternError::ReversedRange('z', 'a'))
        );
        assert_eq!(Pattern::new("a\nb"), Err(PatternError::ControlChar));
    }

    #[test]
    fn literal_info() {
        let p = Pattern::new("ha_get_state(sensor.temp)").unwrap();
        assert!(p.is_literal());
        let p = Pattern::new("ha_get_*").unwrap();
        assert!(!p.is_literal());
        assert_eq!(p.literal_prefix(), "ha_get_");
    }
}
