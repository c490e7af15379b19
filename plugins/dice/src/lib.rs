//! dice: a bot that rolls dice for the room.
//!
//! `/roll NdM` rolls N dice of M sides (N from 1 to 100, M from 2 to 1000;
//! plain `/roll` is 1d6) and the bot says the result in the sender's room,
//! for everyone to see: `alice rolls 3d6: 2 + 5 + 1 = 8`. Other commands
//! are not its; lines and joins pass untouched.
//!
//! Settings:
//! - `bot`: the bot's name (default `dice`). It must be a valid user name;
//!   chatgate checks it and keeps users from taking it.

use std::cell::{Cell, RefCell};

use chatgate::plugin::host;

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

use chatgate::plugin::types::Hook;

const USAGE: &str = "usage: /roll NdM, N up to 100, M from 2 to 1000";

thread_local! {
    // Instances are single-threaded; `init` fills these once per instance.
    static BOT: RefCell<String> = const { RefCell::new(String::new()) };
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A seed that differs between instances. The clock alone would not do:
/// the host starts several instances at once, often in the same
/// millisecond. std's `RandomState` is keyed from WASI's random source,
/// which gives every instance its own keys without another crate.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(host::now_millis())
}

/// splitmix64: small, fast, and good enough for dice (not for secrets).
fn next_random() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// One die of `sides` sides: 1 to `sides`. The modulo's bias is below
/// 1000 in 2^64, far under anything a room could notice.
fn roll(sides: u32) -> u32 {
    (next_random() % u64::from(sides)) as u32 + 1
}

/// A plain decimal number: digits only, so `+3` or ` 3` is not one.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `NdM` as (count, sides), within bounds; no arguments is 1d6.
fn parse(args: &str) -> Option<(u32, u32)> {
    let args = args.trim();
    if args.is_empty() {
        return Some((1, 6));
    }
    let (count, sides) = args.split_once(['d', 'D'])?;
    let (count, sides) = (number(count)?, number(sides)?);
    ((1..=100).contains(&count) && (2..=1000).contains(&sides)).then_some((count, sides))
}

/// The bot's line: `alice rolls 3d6: 2 + 5 + 1 = 8`, or for a single die
/// just `alice rolls 1d20: 17`.
fn describe(user: &str, count: u32, sides: u32) -> String {
    let dice: Vec<u32> = (0..count).map(|_| roll(sides)).collect();
    let head = format!("{user} rolls {count}d{sides}:");
    if let [only] = dice[..] {
        return format!("{head} {only}");
    }
    let total: u32 = dice.iter().sum();
    let terms: Vec<String> = dice.iter().map(u32::to_string).collect();
    format!("{head} {} = {total}", terms.join(" + "))
}

struct Dice;

impl Guest for Dice {
    fn init(settings: Vec<(String, String)>) -> Result<Manifest, String> {
        let mut bot = "dice".to_string();
        for (key, value) in settings {
            match key.as_str() {
                "bot" => bot = value.trim().to_string(),
                _ => return Err(format!("unknown setting `{key}` (known: bot)")),
            }
        }
        RNG.set(seed());
        BOT.set(bot.clone());
        Ok(Manifest {
            hooks: vec![Hook::Command],
            bots: vec![bot],
            tick_millis: None,
        })
    }

    fn on_join(_request: JoinRequest) -> Admission {
        Admission::Allow
    }

    fn on_message(_message: Message) -> Verdict {
        Verdict::Pass
    }

    fn on_command(command: Command) -> Answer {
        if command.name != "roll" {
            return Answer::Unknown;
        }
        let Some((count, sides)) = parse(&command.args) else {
            return Answer::Handled(vec![USAGE.to_string()]);
        };
        let line = describe(&command.user, count, sides);
        let said = BOT.with_borrow(|bot| host::say(&command.room, bot, &line));
        match said {
            // Everyone, the sender too, sees the bot's line; nothing more
            // to tell the sender alone.
            Ok(()) => Answer::Handled(Vec::new()),
            Err(error) => Answer::Handled(vec![format!("the dice could not be rolled: {error}")]),
        }
    }

    fn on_leave(_room: String, _user: String) {}

    fn on_tick(_rooms: Vec<String>) {}
}

export!(Dice);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_within_bounds() {
        assert_eq!(parse(""), Some((1, 6)));
        assert_eq!(parse(" 3d6 "), Some((3, 6)));
        assert_eq!(parse("100D1000"), Some((100, 1000)));
        for bad in [
            "0d6", "101d6", "1d1", "1d1001", "d6", "2d", "+2d6", "2 d6", "2d6d6", "x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn describes_rolls() {
        RNG.set(42);
        let one = describe("alice", 1, 20);
        let value: u32 = one
            .strip_prefix("alice rolls 1d20: ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&value));

        let many = describe("bob", 3, 6);
        let (dice, total) = many
            .strip_prefix("bob rolls 3d6: ")
            .unwrap()
            .split_once(" = ")
            .unwrap();
        let dice: Vec<u32> = dice.split(" + ").map(|d| d.parse().unwrap()).collect();
        assert_eq!(dice.len(), 3);
        assert!(dice.iter().all(|d| (1..=6).contains(d)));
        assert_eq!(dice.iter().sum::<u32>(), total.parse().unwrap());
    }
}
