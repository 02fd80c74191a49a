//! Request text as approvers see it: the one place that decides which characters are hidden
//! (bidirectional controls, invisible and format characters, control characters) and shows
//! them escaped as `\u{202e}`, so that an approver reads what will run. Both the web page
//! and the Telegram and Home Assistant phone messages go through here.
//!
//! Hidden are: control characters (U+0000–001F, U+007F–009F); every format character
//! (general category Cf: soft hyphen U+00AD, zero-width U+200B–200F, the bidirectional
//! embeddings and overrides U+202A–202E and isolates U+2066–2069, word joiner and invisible
//! operators U+2060–2064, U+FEFF, the Arabic and Syriac marks, the tag characters
//! U+E0001–E007F, ...); the line and paragraph separators U+2028/2029; and characters that
//! render as nothing though they are not Cf (combining grapheme joiner U+034F, variation
//! selectors, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors).
//! The table is written out here (Unicode 15), which needs no dependency.

use std::borrow::Cow;
use std::fmt::Write;

use crate::approvals::ApprovalRequest;

/// The warning shown on a request that contains hidden characters.
pub const WARNING: &str = "This request contains hidden characters (right-to-left overrides, invisible or control characters). They are shown escaped as \\u{…}; read it carefully before deciding.";

/// Whether `c` is hidden (see the [module docs](self) for the list).
pub fn is_hidden(c: char) -> bool {
    matches!(
        u32::from(c),
        0x0000..=0x001F
            | 0x007F..=0x009F
            | 0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

fn escape_with(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_hidden(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) && !keep(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` on one line with every hidden character escaped (`\u{202e}`); borrowed when there
/// is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, |_| false)
}

/// Like [`escape`] but keeps line feeds: for a block such as pretty-printed JSON, whose line
/// feeds are its layout (JSON escapes those inside strings itself).
pub fn escape_block(text: &str) -> Cow<'_, str> {
    escape_with(text, |c| c == '\n')
}

/// Whether [`escape`] would change `text`.
pub fn has_hidden(text: &str) -> bool {
    text.chars().any(is_hidden)
}

/// Whether [`escape_block`] would change `text`.
pub fn block_has_hidden(text: &str) -> bool {
    text.chars().any(|c| c != '\n' && is_hidden(c))
}

/// Whether any text of `request` an approver reads contains hidden characters: its tool,
/// signature, agent, request id and rule, and `args` (its arguments as the approver shows them).
pub fn request_has_hidden(request: &ApprovalRequest, args: &str) -> bool {
    [
        &request.tool,
        &request.signature,
        &request.key.agent_id,
        &request.key.request_id,
    ]
    .iter()
    .any(|text| has_hidden(text))
        || request.rule.as_deref().is_some_and(has_hidden)
        || block_has_hidden(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_invisible_and_control_characters_are_escaped() {
        assert_eq!(
            escape("a\u{202e}b\u{2066}c\u{200b}d\u{feff}e\u{ad}f\u{2028}g\u{0}h\u{7f}i\u{85}"),
            "a\\u{202e}b\\u{2066}c\\u{200b}d\\u{feff}e\\u{ad}f\\u{2028}g\\u{0}h\\u{7f}i\\u{85}"
        );
        for c in [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2029}',
            '\u{061c}',
            '\u{2060}',
            '\u{e0041}',
            '\u{fe0f}',
            '\u{3164}',
            '\t',
            '\r',
            '\n',
        ] {
            assert!(is_hidden(c), "U+{:04X}", u32::from(c));
        }
        assert_eq!(
            escape_block("{\n  \"a\": \"\u{202e}\"\n}"),
            "{\n  \"a\": \"\\u{202e}\"\n}"
        );
        assert!(block_has_hidden("x\u{202e}") && !block_has_hidden("a\nb"));
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "light.kitchen",
            "Grüße, 東京, مرحبا, emoji 🔐",
            "a b\u{a0}c",
            "",
        ] {
            assert!(
                matches!(escape(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
            assert!(!has_hidden(text));
        }
    }
}
