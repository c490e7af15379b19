//! ticker: a bot that counts chatgate's ticks aloud.
//!
//! On every tick it says `tick <n>` in every room that has members on this
//! node, n counting 1, 2, 3… Each instance counts on its own, so the count
//! shows how often the tick reached the instance that got it. Lines, joins
//! and commands are not its business.
//!
//! Settings:
//! - `bot`: the bot's name (default `clock`).
//! - `every-ms`: the tick in milliseconds (default 1000). Passed to chatgate
//!   as it is, so that chatgate's own check of the value can be tested.

use std::cell::{Cell, RefCell};

use chatgate::plugin::host::{self, Level};

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

thread_local! {
    // Instances are single-threaded; `init` fills BOT once per instance.
    static BOT: RefCell<String> = const { RefCell::new(String::new()) };
    static TICKS: Cell<u64> = const { Cell::new(0) };
}

struct Ticker;

impl Guest for Ticker {
    fn init(settings: Vec<(String, String)>) -> Result<Manifest, String> {
        let mut bot = "clock".to_string();
        let mut every = 1000;
        for (key, value) in settings {
            match key.as_str() {
                "bot" => bot = value.trim().to_string(),
                "every-ms" => {
                    every = value.trim().parse().map_err(|_| {
                        format!("`every-ms` is not a number of milliseconds: `{value}`")
                    })?;
                }
                _ => return Err(format!("unknown setting `{key}` (known: bot, every-ms)")),
            }
        }
        BOT.set(bot.clone());
        Ok(Manifest {
            hooks: vec![],
            bots: vec![bot],
            tick_millis: Some(every),
        })
    }

    fn on_join(_request: JoinRequest) -> Admission {
        Admission::Allow
    }

    fn on_message(_message: Message) -> Verdict {
        Verdict::Pass
    }

    fn on_command(_command: Command) -> Answer {
        Answer::Unknown
    }

    fn on_leave(_room: String, _user: String) {}

    fn on_tick(rooms: Vec<String>) {
        let n = TICKS.get() + 1;
        TICKS.set(n);
        let line = format!("tick {n}");
        BOT.with_borrow(|bot| {
            for room in &rooms {
                // A room that emptied since the host listed it, or more
                // rooms than one call may speak in, is worth a log line.
                // Failing the call instead would take back the ticks
                // already said in the other rooms.
                if let Err(error) = host::say(room, bot, &line) {
                    host::log(Level::Warn, &format!("no tick in {room}: {error}"));
                }
            }
        });
    }
}

export!(Ticker);
