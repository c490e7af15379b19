//! What a clean line asks for, before and after joining.
//!
//! Parsing borrows from the line and never allocates; names are validated
//! later, by whoever needs them, so the error can say which name was bad.

use super::text::is_blank;

/// A line from a user who is in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Text for the room (a plain line, or `//...` with one `/` removed).
    Say(&'a str),
    /// `/me <text>`.
    Me(&'a str),
    /// `/msg <user> <text>`.
    Msg {
        /// The recipient's name as typed.
        to: &'a str,
        /// The message, kept as sent.
        text: &'a str,
    },
    /// `/join <room>`.
    Join(&'a str),
    /// `/who`.
    Who,
    /// `/rooms`.
    Rooms,
    /// `/help`.
    Help,
    /// `/history [N]` or `/history since <id>`.
    History(HistoryAsk<'a>),
    /// `/oper <name> <password>`.
    Oper {
        /// The operator name as typed.
        name: &'a str,
        /// The password as typed (one token).
        password: &'a str,
    },
    /// An operator's command: `/kick`, `/ban`, `/unban`, `/bans`, `/mute`,
    /// `/unmute`.
    Moderate(Moderate<'a>),
    /// `/quit`.
    Quit,
    /// A known command with missing or extra arguments; holds its syntax.
    Usage(&'static str),
    /// A `/word` that is not a command.
    Unknown,
}

/// An operator's command (PROTOCOL.md, Operators and moderation). Who may
/// run it is the session's business; this is only what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderate<'a> {
    /// `/kick <user> [reason]`.
    Kick {
        /// The user as typed.
        user: &'a str,
        /// The rest of the line, kept as sent; empty when none.
        reason: &'a str,
    },
    /// `/ban <user or address> [minutes] [reason]`.
    Ban {
        /// A user in the operator's room, or an address or CIDR prefix.
        target: &'a str,
        /// How long, if given; `None`: until `/unban`.
        minutes: Option<u64>,
        /// The rest of the line, kept as sent; empty when none.
        reason: &'a str,
    },
    /// `/unban <address>`.
    Unban(&'a str),
    /// `/bans`.
    Bans,
    /// `/mute <user> [minutes]`.
    Mute {
        /// The user as typed.
        user: &'a str,
        /// How long, if given; `None`: until `/unmute`.
        minutes: Option<u64>,
    },
    /// `/unmute <user>`.
    Unmute(&'a str),
    /// One of these with missing or extra arguments; holds its syntax.
    Usage(&'static str),
}

impl Moderate<'_> {
    /// Whether it acts on a user in the operator's room, and so needs one.
    pub fn needs_room(&self) -> bool {
        match self {
            Moderate::Kick { .. } | Moderate::Mute { .. } | Moderate::Unmute(_) => true,
            Moderate::Usage(syntax) => {
                matches!(*syntax, KICK_SYNTAX | MUTE_SYNTAX | UNMUTE_SYNTAX)
            }
            Moderate::Ban { .. } | Moderate::Unban(_) | Moderate::Bans => false,
        }
    }
}

/// The syntax of `/oper`, as its usage error shows it.
pub const OPER_SYNTAX: &str = "/oper <name> <password>";
/// The syntax of `/kick`.
pub const KICK_SYNTAX: &str = "/kick <user> [reason]";
/// The syntax of `/ban`.
pub const BAN_SYNTAX: &str = "/ban <user or address> [minutes] [reason]";
/// The syntax of `/unban`.
pub const UNBAN_SYNTAX: &str = "/unban <address>";
/// The syntax of `/bans`.
pub const BANS_SYNTAX: &str = "/bans";
/// The syntax of `/mute`.
pub const MUTE_SYNTAX: &str = "/mute <user> [minutes]";
/// The syntax of `/unmute`.
pub const UNMUTE_SYNTAX: &str = "/unmute <user>";

/// Longest ban or mute, in minutes: a hundred years. A longer one is cut
/// to this, so its end is always a date the protocol can write.
pub const MAX_MINUTES: u64 = 100 * 366 * 24 * 60;

/// Which lines of a room's history `/history` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAsk<'a> {
    /// The last `n`, 1 to [`MAX_HISTORY_ASKED`].
    Last(usize),
    /// Those after the line with this id (opaque, as the server gave it).
    Since(&'a str),
}

/// Most lines `/history N` may ask for (PROTOCOL.md, History).
pub const MAX_HISTORY_ASKED: usize = 1000;

/// Lines `/history` asks for when it does not say (PROTOCOL.md, History).
pub const DEFAULT_HISTORY_ASKED: usize = 20;

/// The syntax of `/history`, as its usage error shows it.
pub const HISTORY_SYNTAX: &str = "/history [N] | /history since <id>";

/// A line from a user who has not joined yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login<'a> {
    /// `JOIN <room> <user>`, names not yet validated.
    Join {
        /// The room name as typed.
        room: &'a str,
        /// The user name as typed.
        user: &'a str,
    },
    /// `/rooms`, answered as in a room.
    Rooms,
    /// `/help`, answered as in a room.
    Help,
    /// `/quit`.
    Quit,
    /// `/rooms`, `/help` or `/quit` with arguments; not a JOIN attempt.
    Usage(&'static str),
    /// A command that works only in a room (`/history`); not a JOIN
    /// attempt.
    InRoomOnly,
    /// `/oper <name> <password>`, as in a room.
    Oper {
        /// The operator name as typed.
        name: &'a str,
        /// The password as typed.
        password: &'a str,
    },
    /// An operator's command; not a JOIN attempt.
    Moderate(Moderate<'a>),
    /// An HTTP request line (`GET / HTTP/1.1`): a browser pointed at a chat
    /// port, to be told where the page is.
    Http,
    /// Anything else: a failed JOIN attempt.
    NotJoin,
}

/// The syntax of `JOIN`, as the welcome line and errors show it.
pub const JOIN_SYNTAX: &str = "JOIN <ROOMNAME> <USERNAME>";

/// Splits off the first token and the blanks after it.
fn token(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(at) => (&s[..at], s[at..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// Parses a clean, non-empty line from a joined user.
pub fn parse(line: &str) -> Command<'_> {
    let Some(body) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    if body.starts_with('/') {
        return Command::Say(body);
    }
    let (word, args) = token(body);
    let none = |cmd, syntax| {
        if args.is_empty() {
            cmd
        } else {
            Command::Usage(syntax)
        }
    };
    // Compared in place, without lower-casing a copy: parsing allocates
    // nothing (`tests/parse_allocations.rs` counts).
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    if is("who") {
        none(Command::Who, "/who")
    } else if is("rooms") {
        none(Command::Rooms, "/rooms")
    } else if is("help") {
        none(Command::Help, "/help")
    } else if is("quit") {
        none(Command::Quit, "/quit")
    } else if is("history") {
        parse_history(args)
    } else if is("oper") {
        // Exactly two arguments (PROTOCOL.md: extra ones are a usage
        // error), so a password holds no blanks.
        match token(args) {
            (name, password) if !name.is_empty() && single(password) => {
                Command::Oper { name, password }
            }
            _ => Command::Usage(OPER_SYNTAX),
        }
    } else if let Some(moderate) = parse_moderate(word, args) {
        Command::Moderate(moderate)
    } else if is("me") {
        if args.is_empty() {
            Command::Usage("/me <text>")
        } else {
            Command::Me(args)
        }
    } else if is("join") {
        match token(args) {
            (room, "") if !room.is_empty() => Command::Join(room),
            _ => Command::Usage("/join <room>"),
        }
    } else if is("msg") {
        match token(args) {
            (to, text) if !to.is_empty() && !text.is_empty() => Command::Msg { to, text },
            _ => Command::Usage("/msg <user> <text>"),
        }
    } else {
        Command::Unknown
    }
}

/// Whether `s` is exactly one token.
fn single(s: &str) -> bool {
    !s.is_empty() && token(s).1.is_empty()
}

/// Minutes as `/ban` and `/mute` take them: decimal digits only, cut to
/// [`MAX_MINUTES`]. `Some(None)` for 0, which means until lifted (a ban
/// or mute of no time at all would do nothing).
fn minutes(s: &str) -> Option<Option<u64>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let m = s.parse::<u64>().map_or(MAX_MINUTES, |m| m.min(MAX_MINUTES));
    Some((m > 0).then_some(m))
}

/// The operators' commands, if `word` is one.
fn parse_moderate<'a>(word: &str, args: &'a str) -> Option<Moderate<'a>> {
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    let (first, rest) = token(args);
    let moderate = if is("kick") {
        if first.is_empty() {
            Moderate::Usage(KICK_SYNTAX)
        } else {
            Moderate::Kick {
                user: first,
                reason: rest,
            }
        }
    } else if is("ban") {
        if first.is_empty() {
            Moderate::Usage(BAN_SYNTAX)
        } else {
            let (second, after) = token(rest);
            match minutes(second) {
                Some(m) => Moderate::Ban {
                    target: first,
                    minutes: m,
                    reason: after,
                },
                None => Moderate::Ban {
                    target: first,
                    minutes: None,
                    reason: rest,
                },
            }
        }
    } else if is("unban") {
        if single(args) {
            Moderate::Unban(first)
        } else {
            Moderate::Usage(UNBAN_SYNTAX)
        }
    } else if is("bans") {
        if args.is_empty() {
            Moderate::Bans
        } else {
            Moderate::Usage(BANS_SYNTAX)
        }
    } else if is("mute") {
        match (first, minutes(rest)) {
            ("", _) => Moderate::Usage(MUTE_SYNTAX),
            (user, _) if rest.is_empty() => Moderate::Mute {
                user,
                minutes: None,
            },
            (user, Some(m)) => Moderate::Mute { user, minutes: m },
            (_, None) => Moderate::Usage(MUTE_SYNTAX),
        }
    } else if is("unmute") {
        if single(args) {
            Moderate::Unmute(first)
        } else {
            Moderate::Usage(UNMUTE_SYNTAX)
        }
    } else {
        return None;
    };
    Some(moderate)
}

/// The arguments of `/history`: none, a count from 1 to
/// [`MAX_HISTORY_ASKED`] in decimal digits, or `since` and an id.
fn parse_history(args: &str) -> Command<'_> {
    let usage = Command::Usage(HISTORY_SYNTAX);
    let (first, rest) = token(args);
    if first.is_empty() {
        return Command::History(HistoryAsk::Last(DEFAULT_HISTORY_ASKED));
    }
    if first.eq_ignore_ascii_case("since") {
        return match token(rest) {
            (id, "") if !id.is_empty() => Command::History(HistoryAsk::Since(id)),
            _ => usage,
        };
    }
    let n = Some(first)
        .filter(|f| rest.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|f| f.parse::<usize>().ok())
        .filter(|n| (1..=MAX_HISTORY_ASKED).contains(n));
    match n {
        Some(n) => Command::History(HistoryAsk::Last(n)),
        None => usage,
    }
}

/// Parses a clean, non-empty line from a user who has not joined.
pub fn parse_login(line: &str) -> Login<'_> {
    if line.starts_with('/') {
        return match parse(line) {
            Command::Rooms => Login::Rooms,
            Command::Help => Login::Help,
            Command::Quit => Login::Quit,
            Command::Usage(syntax @ ("/rooms" | "/help" | "/quit")) => Login::Usage(syntax),
            Command::History(_) | Command::Usage(HISTORY_SYNTAX) => Login::InRoomOnly,
            Command::Oper { name, password } => Login::Oper { name, password },
            Command::Usage(OPER_SYNTAX) => Login::Usage(OPER_SYNTAX),
            Command::Moderate(moderate) => Login::Moderate(moderate),
            _ => Login::NotJoin,
        };
    }
    let (word, args) = token(line.trim_start_matches(is_blank));
    if !word.eq_ignore_ascii_case("JOIN") {
        return if is_http_request(line) {
            Login::Http
        } else {
            Login::NotJoin
        };
    }
    let (room, rest) = token(args);
    let (user, extra) = token(rest);
    if room.is_empty() || user.is_empty() || !extra.is_empty() {
        return Login::NotJoin;
    }
    Login::Join { room, user }
}

/// Whether `line` is an HTTP/1 request line (RFC 9112, section 3): a
/// method token in capitals, a target, and `HTTP/<digit>.<digit>`, each
/// separated by one space.
fn is_http_request(line: &str) -> bool {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let version = version.as_bytes();
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && !target.is_empty()
        && version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_escaped_text() {
        assert_eq!(parse("hello"), Command::Say("hello"));
        assert_eq!(parse("  /who"), Command::Say("  /who"));
        assert_eq!(parse("//who"), Command::Say("/who"));
        assert_eq!(parse("///"), Command::Say("//"));
    }

    #[test]
    fn command_words_ignore_case_and_check_arguments() {
        assert_eq!(parse("/WHO"), Command::Who);
        assert_eq!(parse("/who x"), Command::Usage("/who"));
        assert_eq!(parse("/Rooms"), Command::Rooms);
        assert_eq!(parse("/quit now"), Command::Usage("/quit"));
        assert_eq!(parse("/join"), Command::Usage("/join <room>"));
        assert_eq!(parse("/join a b"), Command::Usage("/join <room>"));
        assert_eq!(parse("/join\t a"), Command::Join("a"));
        assert_eq!(parse("/me"), Command::Usage("/me <text>"));
        assert_eq!(parse("/msg bob"), Command::Usage("/msg <user> <text>"));
        assert_eq!(parse("/nope"), Command::Unknown);
        assert_eq!(
            parse("/history"),
            Command::History(HistoryAsk::Last(DEFAULT_HISTORY_ASKED))
        );
        assert_eq!(
            parse("/HISTORY 1000"),
            Command::History(HistoryAsk::Last(1000))
        );
        assert_eq!(parse("/history 007"), Command::History(HistoryAsk::Last(7)));
        assert_eq!(
            parse("/history SINCE\t a-b-c"),
            Command::History(HistoryAsk::Since("a-b-c"))
        );
        for bad in [
            "/history 0",
            "/history 1001",
            "/history -1",
            "/history +5",
            "/history 5 6",
            "/history x",
            "/history since",
            "/history since a b",
            "/history 99999999999999999999",
        ] {
            assert_eq!(parse(bad), Command::Usage(HISTORY_SYNTAX), "{bad}");
        }
        assert_eq!(parse("/"), Command::Unknown);
    }

    #[test]
    fn text_keeps_inner_blanks() {
        assert_eq!(parse("/me  waves  twice"), Command::Me("waves  twice"));
        assert_eq!(
            parse("/msg \tbob   hi  there"),
            Command::Msg {
                to: "bob",
                text: "hi  there"
            }
        );
    }

    #[test]
    fn login_lines() {
        assert_eq!(
            parse_login("join lobby bob"),
            Login::Join {
                room: "lobby",
                user: "bob"
            }
        );
        assert_eq!(
            parse_login(" \tJoIn\t lobby  bob"),
            Login::Join {
                room: "lobby",
                user: "bob"
            }
        );
        assert_eq!(parse_login("JOIN lobby"), Login::NotJoin);
        assert_eq!(parse_login("JOIN a b c"), Login::NotJoin);
        assert_eq!(parse_login("JOINED a b"), Login::NotJoin);
        assert_eq!(parse_login("/who"), Login::NotJoin);
        assert_eq!(parse_login("/join x"), Login::NotJoin);
        assert_eq!(parse_login("/rooms"), Login::Rooms);
        assert_eq!(parse_login("/help me"), Login::Usage("/help"));
        assert_eq!(parse_login("/QUIT"), Login::Quit);
        assert_eq!(parse_login("/history"), Login::InRoomOnly);
        assert_eq!(parse_login("/history 0"), Login::InRoomOnly);
    }

    #[test]
    fn operator_commands() {
        assert_eq!(
            parse("/OPER root s3cret"),
            Command::Oper {
                name: "root",
                password: "s3cret"
            }
        );
        for bad in [
            "/oper",
            "/oper root",
            "/oper  root  ",
            "/oper root pass word",
        ] {
            assert_eq!(parse(bad), Command::Usage(OPER_SYNTAX), "{bad}");
        }
        let m = |line| match parse(line) {
            Command::Moderate(m) => m,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            m("/kick bob"),
            Moderate::Kick {
                user: "bob",
                reason: ""
            }
        );
        assert_eq!(
            m("/kick  bob  spam,  again "),
            Moderate::Kick {
                user: "bob",
                reason: "spam,  again "
            }
        );
        assert_eq!(m("/kick"), Moderate::Usage(KICK_SYNTAX));
        assert_eq!(
            m("/ban 10.0.0.0/8 30 flood"),
            Moderate::Ban {
                target: "10.0.0.0/8",
                minutes: Some(30),
                reason: "flood"
            }
        );
        assert_eq!(
            m("/ban bob 3x flood"),
            Moderate::Ban {
                target: "bob",
                minutes: None,
                reason: "3x flood"
            }
        );
        assert_eq!(
            m("/ban bob 99999999999999999999999"),
            Moderate::Ban {
                target: "bob",
                minutes: Some(MAX_MINUTES),
                reason: ""
            }
        );
        assert_eq!(m("/ban"), Moderate::Usage(BAN_SYNTAX));
        assert_eq!(
            m("/ban bob 0 for good"),
            Moderate::Ban {
                target: "bob",
                minutes: None,
                reason: "for good"
            }
        );
        assert_eq!(
            m("/mute bob 000"),
            Moderate::Mute {
                user: "bob",
                minutes: None
            }
        );
        assert_eq!(m("/unban ::1"), Moderate::Unban("::1"));
        assert_eq!(m("/unban a b"), Moderate::Usage(UNBAN_SYNTAX));
        assert_eq!(m("/BANS"), Moderate::Bans);
        assert_eq!(m("/bans x"), Moderate::Usage(BANS_SYNTAX));
        assert_eq!(
            m("/mute bob 5"),
            Moderate::Mute {
                user: "bob",
                minutes: Some(5)
            }
        );
        assert_eq!(
            m("/mute bob"),
            Moderate::Mute {
                user: "bob",
                minutes: None
            }
        );
        assert_eq!(m("/mute bob five"), Moderate::Usage(MUTE_SYNTAX));
        assert_eq!(m("/mute bob 5 6"), Moderate::Usage(MUTE_SYNTAX));
        assert_eq!(m("/unmute bob"), Moderate::Unmute("bob"));
        assert_eq!(m("/unmute"), Moderate::Usage(UNMUTE_SYNTAX));
        assert!(Moderate::Usage(KICK_SYNTAX).needs_room());
        assert!(!Moderate::Bans.needs_room());
        assert_eq!(
            parse_login("/oper a b"),
            Login::Oper {
                name: "a",
                password: "b"
            }
        );
        assert_eq!(parse_login("/oper a"), Login::Usage(OPER_SYNTAX));
        assert_eq!(parse_login("/bans"), Login::Moderate(Moderate::Bans));
    }

    #[test]
    fn http_request_lines_are_recognised() {
        assert_eq!(parse_login("GET / HTTP/1.1"), Login::Http);
        assert_eq!(parse_login("POST /ws?x=1 HTTP/1.0"), Login::Http);
        assert_eq!(parse_login("GET / HTTP/11"), Login::NotJoin);
        assert_eq!(parse_login("get / HTTP/1.1"), Login::NotJoin);
        assert_eq!(parse_login("GET  / HTTP/1.1"), Login::NotJoin);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(line in "\\PC{0,64}") {
            let _ = parse(&line);
            let _ = parse_login(&line);
        }

        #[test]
        fn say_text_round_trips(text in "[^/\t ][^\n]{0,40}") {
            prop_assert_eq!(parse(&text), Command::Say(&text));
            let escaped = format!("//{text}");
            prop_assert_eq!(parse(&escaped), Command::Say(&escaped[1..]));
        }
    }
}
