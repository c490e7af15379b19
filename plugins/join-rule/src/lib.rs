//! join-rule: decides who may join which room.
//!
//! Settings (at least one rule is required):
//! - `deny`: user names, comma-separated, that may join no room at all.
//!   They are told `that name is not welcome here`.
//! - `members.<room>`: user names, comma-separated, that alone may join
//!   `<room>`; anyone else is told `<room> is for members only`. Give one
//!   such key per members-only room. An empty list closes the room.
//!
//! Room and user names are compared without regard to case, as chatgate
//! compares them. Lines and commands are not its business.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

use chatgate::plugin::types::Hook;

#[derive(Default)]
struct Rules {
    /// Lower-cased names that may not join anywhere.
    deny: HashSet<String>,
    /// Lower-cased room name to the lower-cased names it admits.
    members: HashMap<String, HashSet<String>>,
}

thread_local! {
    // Instances are single-threaded; `init` fills this once per instance.
    static RULES: RefCell<Rules> = RefCell::new(Rules::default());
}

/// A comma-separated list of names, lower-cased for comparison.
fn names(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_lowercase)
}

impl Rules {
    fn from_settings(settings: Vec<(String, String)>) -> Result<Self, String> {
        let mut rules = Rules::default();
        let mut members_keys = 0;
        for (key, value) in settings {
            if key == "deny" {
                rules.deny.extend(names(&value));
            } else if let Some(room) = key.strip_prefix("members.") {
                let room = room.trim();
                if room.is_empty() {
                    return Err(format!("setting `{key}` names no room"));
                }
                members_keys += 1;
                // Keys that differ only in case name the same room, so
                // their lists add up rather than one hiding the other.
                rules
                    .members
                    .entry(room.to_lowercase())
                    .or_default()
                    .extend(names(&value));
            } else {
                // A misspelt rule would otherwise let people in unnoticed.
                return Err(format!(
                    "unknown setting `{key}` (known: deny, members.<room>)"
                ));
            }
        }
        if rules.deny.is_empty() && members_keys == 0 {
            return Err("no rule given: set `deny` or a `members.<room>`".to_string());
        }
        Ok(rules)
    }

    fn admit(&self, request: &JoinRequest) -> Admission {
        let user = request.user.to_lowercase();
        if self.deny.contains(&user) {
            return Admission::Refuse("that name is not welcome here".to_string());
        }
        match self.members.get(&request.room.to_lowercase()) {
            Some(members) if !members.contains(&user) => {
                Admission::Refuse(format!("{} is for members only", request.room))
            }
            _ => Admission::Allow,
        }
    }
}

struct JoinRule;

impl Guest for JoinRule {
    fn init(settings: Vec<(String, String)>) -> Result<Manifest, String> {
        let rules = Rules::from_settings(settings)?;
        RULES.set(rules);
        Ok(Manifest {
            hooks: vec![Hook::Join],
            bots: Vec::new(),
            tick_millis: None,
        })
    }

    fn on_join(request: JoinRequest) -> Admission {
        RULES.with_borrow(|rules| rules.admit(&request))
    }

    fn on_message(_message: Message) -> Verdict {
        Verdict::Pass
    }

    fn on_command(_command: Command) -> Answer {
        Answer::Unknown
    }

    fn on_leave(_room: String, _user: String) {}

    fn on_tick(_rooms: Vec<String>) {}
}

export!(JoinRule);

#[cfg(test)]
mod tests {
    use super::*;
    use chatgate::plugin::types::Transport;

    fn rules(settings: &[(&str, &str)]) -> Result<Rules, String> {
        Rules::from_settings(
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn join(rules: &Rules, room: &str, user: &str) -> Option<String> {
        let request = JoinRequest {
            room: room.into(),
            user: user.into(),
            transport: Transport::Tcp,
            address: "127.0.0.1".into(),
        };
        match rules.admit(&request) {
            Admission::Allow => None,
            Admission::Refuse(reason) => Some(reason),
        }
    }

    #[test]
    fn deny_and_members_ignore_case() {
        let r = rules(&[
            ("deny", "Mallory, eve"),
            ("members.Staff", "alice,Bob"),
            ("members.staff", "carol"),
        ])
        .unwrap();
        let unwelcome = Some("that name is not welcome here".to_string());
        assert_eq!(join(&r, "lobby", "MALLORY"), unwelcome);
        assert_eq!(join(&r, "STAFF", "Eve"), unwelcome);
        assert_eq!(join(&r, "lobby", "dave"), None);
        assert_eq!(join(&r, "sTaFf", "bob"), None);
        assert_eq!(join(&r, "staff", "Carol"), None);
        assert_eq!(
            join(&r, "sTaFf", "dave").as_deref(),
            Some("sTaFf is for members only")
        );
    }

    #[test]
    fn needs_a_rule() {
        assert!(rules(&[]).is_err());
        assert!(rules(&[("deny", " ,")]).is_err());
        assert!(rules(&[("member.staff", "alice")]).is_err());
        assert!(rules(&[("members.", "alice")]).is_err());
        // An empty member list is a rule: the room admits nobody.
        let closed = rules(&[("members.vault", "")]).unwrap();
        assert!(join(&closed, "vault", "alice").is_some());
    }
}
