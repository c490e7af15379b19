//! The clean-up every line passes before the server looks at it, and the
//! whitespace rule for the text of messages.
//!
//! Invalid UTF-8 becomes U+FFFD. Removed are the characters that let one
//! user's line act on another user's screen (PROTOCOL.md, "Framing"):
//! control characters (C0 except tab, DEL, C1), so no terminal escape
//! sequence gets through; the line and paragraph separators, which start a
//! new visual line; and the bidirectional embedding, override and isolate
//! controls, which could reverse the text after a message (the name of the
//! next line included). Zero-width joiners, LRM/RLM and right-to-left
//! letters stay: they only shape the user's own text. Trailing blanks are
//! trimmed; leading and inner blanks are kept.
//!
//! In the text of a message, [`put_squeezed`] turns tabs into spaces and
//! shortens long runs of spaces, so no message can push text onto what
//! looks like the start of a new line of an 80-column terminal.

use std::borrow::Cow;

/// Whitespace in the protocol's sense: space and tab, nothing else.
pub fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Longest run of spaces a message keeps; a longer one is shortened to
/// this. Enough to align a little ASCII art, too few to fill a row.
pub const MAX_SPACE_RUN: usize = 8;

/// Whether clean-up removes `c`: every control character but tab, the line
/// and paragraph separators, and the bidi embedding, override and isolate
/// controls.
pub(crate) fn is_removed(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `bytes` holds more than [`MAX_SPACE_RUN`] spaces in a row. Looks
/// only at the spaces (found with `memchr`), which are few in most text.
fn has_long_space_run(bytes: &[u8]) -> bool {
    let mut run = 0;
    let mut last = usize::MAX;
    for at in memchr::memchr_iter(b' ', bytes) {
        run = if last.wrapping_add(1) == at {
            run + 1
        } else {
            1
        };
        if run > MAX_SPACE_RUN {
            return true;
        }
        last = at;
    }
    false
}

/// Appends the text of a message to `out` under the whitespace rule: each
/// tab becomes one space, then every run of more than [`MAX_SPACE_RUN`]
/// spaces is shortened to that many. Text that needs neither is copied as
/// it is, without looking at each byte twice.
pub fn put_squeezed(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if memchr::memchr(b'\t', bytes).is_none() && !has_long_space_run(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut run = 0;
    for &b in bytes {
        if b == b' ' || b == b'\t' {
            run += 1;
            if run <= MAX_SPACE_RUN {
                out.push(b' ');
            }
        } else {
            run = 0;
            out.push(b);
        }
    }
}

/// Longest reason a kick, ban or mute keeps, in bytes: it is repeated in
/// lines to the room and, for a ban, kept in the bans file or bucket.
pub const MAX_REASON: usize = 200;

/// An operator's reason as it is kept and shown: under the whitespace rule
/// of messages, and cut to [`MAX_REASON`] bytes at a character boundary.
pub fn reason(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    put_squeezed(&mut out, text);
    // Squeezing only turns tabs into spaces and drops spaces: still UTF-8.
    let mut out = String::from_utf8(out).unwrap_or_default();
    let mut end = out.len().min(MAX_REASON);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// Cleans one raw line (terminator already removed). An empty result means
/// the line is ignored everywhere.
pub fn clean(raw: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(raw);
    // Most lines are printable ASCII, where a byte test settles it; only
    // other lines are looked at character by character.
    let plain = text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\t'));
    let mut text = if !plain && text.contains(is_removed) {
        Cow::Owned(text.chars().filter(|&c| !is_removed(c)).collect())
    } else {
        text
    };
    let keep = text.trim_end_matches(is_blank).len();
    match &mut text {
        Cow::Borrowed(s) => *s = &s[..keep],
        Cow::Owned(s) => s.truncate(keep),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_squeezed_and_cut_at_a_character() {
        assert_eq!(reason("a\tb           c"), "a b        c");
        let long = "é".repeat(MAX_REASON);
        let cut = reason(&long);
        assert!(cut.len() <= MAX_REASON && cut.len() >= MAX_REASON - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
    use proptest::prelude::*;

    #[test]
    fn strips_escape_sequences_but_keeps_their_text() {
        assert_eq!(clean(b"\x1b[31mred\x1b[0m"), "[31mred[0m");
    }

    #[test]
    fn removes_c1_and_del_keeps_tab() {
        assert_eq!(clean("a\u{85}b\u{7f}c\td".as_bytes()), "abc\td");
    }

    #[test]
    fn removes_line_separators_and_bidi_controls_keeps_joiners_and_marks() {
        let hostile = "a\u{2028}b\u{2029}c\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}d\u{2066}\u{2067}\u{2068}\u{2069}e";
        assert_eq!(clean(hostile.as_bytes()), "abcde");
        let kept = "\u{1f468}\u{200d}\u{1f469} \u{200e}x\u{200f} \u{5e9}\u{5dc}\u{5d5}\u{5dd}";
        assert_eq!(clean(kept.as_bytes()), kept);
    }

    fn squeezed(text: &str) -> String {
        let mut out = Vec::new();
        put_squeezed(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tabs_become_spaces_and_long_runs_shrink_to_eight() {
        assert_eq!(squeezed("a\tb"), "a b");
        assert_eq!(
            squeezed(&format!("ok{}bob: hi", " ".repeat(69))),
            "ok        bob: hi"
        );
        assert_eq!(squeezed(&format!("{}x", " ".repeat(8))), "        x");
        assert_eq!(squeezed("\t\t\t\t \t \t \tx"), "        x");
        assert_eq!(squeezed("plain  text"), "plain  text");
    }

    #[test]
    fn invalid_utf8_becomes_replacement() {
        assert_eq!(clean(b"caf\xe9 ok"), "caf\u{fffd} ok");
    }

    #[test]
    fn trims_trailing_blanks_only() {
        assert_eq!(clean(b"  hi \t there \t "), "  hi \t there");
        assert_eq!(clean(b" \t \x07"), "");
    }

    proptest! {
        #[test]
        fn result_has_no_controls_and_no_trailing_blanks(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let out = clean(&raw);
            prop_assert!(!out.contains(is_removed));
            prop_assert!(!out.ends_with(is_blank));
        }

        #[test]
        fn squeezed_text_has_no_tab_and_no_long_run(text in "[ \ta-z\u{5d0}]{0,80}") {
            let out = squeezed(&text);
            prop_assert!(!out.contains('\t'));
            prop_assert!(!out.contains(&" ".repeat(MAX_SPACE_RUN + 1)));
            let words = |s: &str| s.split([' ', '\t']).filter(|w| !w.is_empty()).map(str::to_owned).collect::<Vec<_>>();
            prop_assert_eq!(words(&out), words(&text));
        }

        #[test]
        fn result_has_no_separators_or_bidi_controls(text in "[a\u{2028}\u{2029}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200d}\u{200e}]{0,40}") {
            let out = clean(text.as_bytes());
            prop_assert!(!out.contains(is_removed));
            prop_assert_eq!(out.chars().filter(|c| *c == 'a' || *c == '\u{200d}' || *c == '\u{200e}').count(),
                text.chars().filter(|c| *c == 'a' || *c == '\u{200d}' || *c == '\u{200e}').count());
        }

        #[test]
        fn clean_text_is_unchanged(text in "[a-zA-Z0-9 .,!?éü€\t]{0,64}[a-z]") {
            prop_assert_eq!(clean(text.as_bytes()), text.as_str());
        }
    }
}
