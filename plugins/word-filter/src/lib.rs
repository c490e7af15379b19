//! word-filter: keeps listed words out of what is said in rooms.
//!
//! Settings:
//! - `words` (required): the words, comma-separated. Matching ignores case
//!   and finds a word anywhere in a line, also inside a longer word.
//! - `mode`: `mask` (the default) rewrites every occurrence as `*`, one per
//!   character; `drop` drops the whole line.
//! - `reason`: in `drop` mode, what the sender is told (default
//!   `watch your language`); an empty reason drops the line silently.
//!
//! It has no bots and no tick; joins are allowed and commands are not its.

use std::cell::RefCell;

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

use chatgate::plugin::types::Hook;

/// What to do with a line that has a listed word.
enum Mode {
    Mask,
    Drop(Option<String>),
}

struct Filter {
    /// Each word as case-folded characters, longest first so that when two
    /// words start at the same place the longer one is masked whole.
    words: Vec<Vec<char>>,
    mode: Mode,
}

thread_local! {
    // Instances are single-threaded; `init` fills this once per instance.
    static FILTER: RefCell<Option<Filter>> = const { RefCell::new(None) };
}

/// Case-folds one character. Comparing character by character (rather than
/// lower-casing whole strings and comparing bytes) keeps positions in the
/// original text valid: a few characters lower-case to more than one (`İ`),
/// and those are left as they are so the lengths still line up.
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

impl Filter {
    fn from_settings(settings: Vec<(String, String)>) -> Result<Self, String> {
        let mut words = Vec::new();
        let mut mode = "mask".to_string();
        let mut reason = "watch your language".to_string();
        for (key, value) in settings {
            match key.as_str() {
                "words" => {
                    words = value
                        .split(',')
                        .map(str::trim)
                        .filter(|w| !w.is_empty())
                        .map(|w| w.chars().map(fold).collect::<Vec<_>>())
                        .collect();
                }
                "mode" => mode = value.trim().to_string(),
                "reason" => reason = value.trim().to_string(),
                _ => {
                    return Err(format!(
                        "unknown setting `{key}` (known: words, mode, reason)"
                    ));
                }
            }
        }
        if words.is_empty() {
            return Err("setting `words` lists no words".to_string());
        }
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        words.dedup();
        let mode = match mode.as_str() {
            "mask" => Mode::Mask,
            "drop" => Mode::Drop((!reason.is_empty()).then_some(reason)),
            other => return Err(format!("unknown mode `{other}`: use `mask` or `drop`")),
        };
        Ok(Filter { words, mode })
    }

    /// How many characters of the longest listed word that `text` starts
    /// with, if it starts with one.
    fn match_at(&self, text: &[char]) -> Option<usize> {
        self.words
            .iter()
            .find(|word| {
                word.len() <= text.len() && word.iter().zip(text).all(|(w, &t)| *w == fold(t))
            })
            .map(Vec::len)
    }

    /// The text with every listed word masked, or `None` if it has none.
    fn mask(&self, text: &str) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut masked = false;
        let mut at = 0;
        while at < chars.len() {
            match self.match_at(&chars[at..]) {
                Some(len) => {
                    out.extend(std::iter::repeat_n('*', len));
                    at += len;
                    masked = true;
                }
                None => {
                    out.push(chars[at]);
                    at += 1;
                }
            }
        }
        masked.then_some(out)
    }

    fn has_word(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        (0..chars.len()).any(|at| self.match_at(&chars[at..]).is_some())
    }

    fn judge(&self, text: &str) -> Verdict {
        match &self.mode {
            Mode::Mask => self.mask(text).map_or(Verdict::Pass, Verdict::Rewrite),
            Mode::Drop(reason) if self.has_word(text) => Verdict::Drop(reason.clone()),
            Mode::Drop(_) => Verdict::Pass,
        }
    }
}

struct WordFilter;

impl Guest for WordFilter {
    fn init(settings: Vec<(String, String)>) -> Result<Manifest, String> {
        let filter = Filter::from_settings(settings)?;
        FILTER.set(Some(filter));
        Ok(Manifest {
            hooks: vec![Hook::Message],
            bots: Vec::new(),
            tick_millis: None,
        })
    }

    fn on_join(_request: JoinRequest) -> Admission {
        Admission::Allow
    }

    fn on_message(message: Message) -> Verdict {
        FILTER.with_borrow(|filter| match filter {
            Some(filter) => filter.judge(&message.text),
            // The host calls no hook before a successful init.
            None => Verdict::Pass,
        })
    }

    fn on_command(_command: Command) -> Answer {
        Answer::Unknown
    }

    fn on_leave(_room: String, _user: String) {}

    fn on_tick(_rooms: Vec<String>) {}
}

export!(WordFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(settings: &[(&str, &str)]) -> Result<Filter, String> {
        Filter::from_settings(
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn masks_every_occurrence_ignoring_case() {
        let f = filter(&[("words", "darn, heck")]).unwrap();
        assert_eq!(
            f.mask("Darn it, DARN, heck!").as_deref(),
            Some("**** it, ****, ****!")
        );
        assert_eq!(f.mask("all good"), None);
    }

    #[test]
    fn masks_by_characters_not_bytes() {
        let f = filter(&[("words", "ÄRGER,猫")]).unwrap();
        assert_eq!(
            f.mask("so ein ärger 猫猫").as_deref(),
            Some("so ein ***** **")
        );
    }

    #[test]
    fn longer_word_wins_where_two_start() {
        let f = filter(&[("words", "ab,abcd")]).unwrap();
        assert_eq!(f.mask("xabcdx ab").as_deref(), Some("x****x **"));
    }

    #[test]
    fn drop_mode_gives_the_reason() {
        let f = filter(&[("words", "darn"), ("mode", "drop")]).unwrap();
        assert!(matches!(f.judge("oh DARN"), Verdict::Drop(Some(r)) if r == "watch your language"));
        assert!(matches!(f.judge("fine"), Verdict::Pass));
        let silent = filter(&[("words", "darn"), ("mode", "drop"), ("reason", "")]).unwrap();
        assert!(matches!(silent.judge("darn"), Verdict::Drop(None)));
    }

    #[test]
    fn bad_settings_fail() {
        let error = |settings: &[(&str, &str)]| filter(settings).err().unwrap();
        assert!(error(&[]).contains("no words"));
        assert!(error(&[("words", " , ")]).contains("no words"));
        assert!(error(&[("words", "x"), ("mode", "shout")]).contains("unknown mode"));
        assert!(error(&[("words", "x"), ("word", "y")]).contains("unknown setting"));
    }
}
