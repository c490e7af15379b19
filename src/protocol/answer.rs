//! Answers to one connection, in the form it gets: lines ([`reply`]) or
//! JSON events ([`json`]). Both forms pick the same content (the same
//! names for `/who`, the same lines for `/history`) and keep to the same
//! budget, so a client sees the same answer whichever it asked for.

use bytes::Bytes;

use super::json::{self, Event, Format, NoticeCode, Said, Time};
use super::names::Name;
use super::reply;
use crate::history::Page;

/// The welcome: two lines, or one `welcome` event.
pub fn welcome(format: Format) -> Vec<Bytes> {
    match format {
        Format::Lines => vec![reply::WELCOME, reply::WELCOME_USAGE],
        Format::Json => vec![
            Event::Welcome {
                usage: super::command::JOIN_SYNTAX,
            }
            .encode(),
        ],
    }
}

/// `ERROR <why>`.
pub fn error(format: Format, why: &str) -> Bytes {
    match format {
        Format::Lines => reply::error(why),
        Format::Json => Event::Error { text: why }.encode(),
    }
}

/// `ERROR usage: <syntax>`.
pub fn usage(format: Format, syntax: &str) -> Bytes {
    match format {
        Format::Lines => reply::usage(syntax),
        Format::Json => Event::Error {
            text: &format!("usage: {syntax}"),
        }
        .encode(),
    }
}

/// Any other `*** <text>` answer: a line, or an `info` event.
pub fn info(format: Format, text: &str) -> Bytes {
    match format {
        Format::Lines => reply::info(text),
        Format::Json => Event::Info { text }.encode(),
    }
}

/// A server notice.
pub fn notice(format: Format, code: NoticeCode) -> Bytes {
    match format {
        Format::Lines => reply::notice(code),
        Format::Json => json::notice(code),
    }
}

/// `/who`'s answer, at most `budget` bytes (0: no budget).
pub fn who(format: Format, room: Name, users: Vec<Name>, budget: usize) -> Bytes {
    if format == Format::Lines {
        return reply::who(room, users, budget);
    }
    let (mut users, total) = reply::who_listed(room, users, budget);
    loop {
        let event = Event::Who {
            room: room.as_str(),
            users: users.iter().map(Name::as_str).collect(),
            total,
        }
        .encode();
        if fits(&event, budget) || users.is_empty() {
            return event;
        }
        users.pop();
    }
}

/// `/rooms`'s answer, at most `budget` bytes (0: no budget).
pub fn rooms(format: Format, rooms: Vec<(Name, usize)>, budget: usize) -> Bytes {
    if format == Format::Lines {
        return reply::rooms(rooms, budget);
    }
    let (mut rooms, total) = reply::rooms_listed(rooms, budget);
    loop {
        let event = Event::Rooms {
            rooms: rooms
                .iter()
                .map(|(room, count)| json::RoomCount {
                    room: room.as_str(),
                    count: *count,
                })
                .collect(),
            total,
        }
        .encode();
        if fits(&event, budget) || rooms.is_empty() {
            return event;
        }
        // The smallest room listed goes first, as the lines would drop it.
        let smallest = (0..rooms.len()).min_by(|&a, &b| {
            rooms[a]
                .1
                .cmp(&rooms[b].1)
                .then_with(|| rooms[b].0.as_str().cmp(rooms[a].0.as_str()))
        });
        if let Some(i) = smallest {
            rooms.remove(i);
        }
    }
}

/// `/help`'s answer.
pub fn help(format: Format) -> Vec<Bytes> {
    let lines = reply::help();
    match format {
        Format::Lines => lines,
        Format::Json => {
            let texts: Vec<&str> = lines
                .iter()
                .map(|l| {
                    std::str::from_utf8(l)
                        .unwrap_or_default()
                        .trim_end()
                        .trim_start_matches("*** ")
                })
                .collect();
            vec![Event::Help { lines: texts }.encode()]
        }
    }
}

/// `/history`'s answer for `room`: the lines of `page`, as many of the
/// newest as fit `budget` bytes (0: no budget) with the header and end;
/// when some do not, the answer says some are missing.
pub fn history(format: Format, room: Name, page: &Page, budget: usize) -> Vec<Bytes> {
    let budget = if budget == 0 { usize::MAX } else { budget };
    match format {
        Format::Lines => {
            let mut left =
                budget.saturating_sub(reply::MAX_HISTORY_HEADER + reply::END_OF_HISTORY.len());
            let fitting = page
                .lines
                .iter()
                .rev()
                .take_while(|line| {
                    let size = line.text.len() + reply::HISTORY_LINE_EXTRA;
                    let fits = size <= left;
                    left = left.saturating_sub(size);
                    fits
                })
                .count();
            let shown = &page.lines[page.lines.len() - fitting..];
            let complete = page.complete && fitting == page.lines.len();
            std::iter::once(reply::history_header(room, shown.len(), complete))
                .chain(shown.iter().map(|l| reply::history_line(l.at, &l.text)))
                .chain([reply::END_OF_HISTORY])
                .collect()
        }
        Format::Json => {
            let texts: Vec<String> = page
                .lines
                .iter()
                .map(|l| String::from_utf8_lossy(&l.text).into_owned())
                .collect();
            let said: Vec<Said<'_>> = page
                .lines
                .iter()
                .zip(&texts)
                .filter_map(|(line, text)| {
                    let (kind, user, text) = json::split_said(text.as_bytes())?;
                    Some(Said {
                        kind,
                        room: room.as_str(),
                        user,
                        text,
                        time: Time(line.at),
                        id: line.id.clone(),
                    })
                })
                .collect();
            // Each line's share of the event, to leave out the oldest that
            // do not fit without encoding the event again and again.
            let sizes: Vec<usize> = said
                .iter()
                .map(|s| {
                    let mut buf = Vec::new();
                    s.put(&mut buf);
                    buf.len()
                })
                .collect();
            let mut left = budget.saturating_sub(MAX_HISTORY_EVENT_EXTRA);
            let fitting = sizes
                .iter()
                .rev()
                .take_while(|&&size| {
                    let fits = size <= left;
                    left = left.saturating_sub(size);
                    fits
                })
                .count();
            let complete = page.complete && fitting == page.lines.len();
            let lines = said.into_iter().skip(sizes.len() - fitting).collect();
            vec![
                Event::History {
                    room: room.as_str(),
                    lines,
                    complete,
                }
                .encode(),
            ]
        }
    }
}

/// What a `history` event adds to its lines: its fields and a room name.
const MAX_HISTORY_EVENT_EXTRA: usize = 96;

/// Whether an answer keeps to `budget` (0: no budget).
fn fits(answer: &[u8], budget: usize) -> bool {
    budget == 0 || answer.len() <= budget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn value(bytes: &Bytes) -> serde_json::Value {
        serde_json::from_slice(bytes.strip_suffix(b"\r\n").unwrap()).unwrap()
    }

    #[test]
    fn both_forms_list_the_same_names() {
        let users: Vec<Name> = (0..150).map(|i| n(&format!("u{i:03}"))).collect();
        let line = who(Format::Lines, n("r"), users.clone(), 0);
        let event = value(&who(Format::Json, n("r"), users, 0));
        assert_eq!(event["total"], 150);
        let listed: Vec<String> = event["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed.len(), 100);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with(&format!("{}\r\n", listed.join(", "))));
    }

    #[test]
    fn json_answers_keep_to_the_budget() {
        let users: Vec<Name> = (0..100).map(|i| n(&format!("user{i:03}"))).collect();
        let event = who(Format::Json, n("r"), users, 300);
        assert!(event.len() <= 300);
        assert!(value(&event)["users"].as_array().unwrap().len() < 100);
        let rooms: Vec<(Name, usize)> = (0..100).map(|i| (n(&format!("r{i:03}")), i)).collect();
        let event = super::rooms(Format::Json, rooms, 300);
        assert!(event.len() <= 300);
    }
}
