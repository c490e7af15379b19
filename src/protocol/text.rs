//! The clean-up every line passes before the server looks at it.
//!
//! Invalid UTF-8 becomes U+FFFD, control characters (C0 except tab, DEL,
//! C1) are removed so no user can send a terminal escape sequence to another,
//! and trailing blanks are trimmed. Leading and inner blanks are kept.

use std::borrow::Cow;

/// Whitespace in the protocol's sense: space and tab, nothing else.
pub fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Whether clean-up removes `c`: every control character but tab.
pub(crate) fn is_removed(c: char) -> bool {
    (c.is_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// Cleans one raw line (terminator already removed). An empty result means
/// the line is ignored everywhere.
pub fn clean(raw: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(raw);
    let mut text = if text.contains(is_removed) {
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
        fn clean_text_is_unchanged(text in "[a-zA-Z0-9 .,!?éü€\t]{0,64}[a-z]") {
            prop_assert_eq!(clean(text.as_bytes()), text.as_str());
        }
    }
}
