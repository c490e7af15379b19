//! hostile: a plugin that misbehaves on purpose, so that tests and
//! benchmarks can check that chatgate contains it (time budget, memory cap,
//! traps, size limits, effect limits, manifest and init checks).
//!
//! Settings:
//! - `mode` (required), one of:
//!   - `loop`: `on-message` and `on-join` never return.
//!   - `memory`: `on-message` allocates until the instance runs out.
//!   - `trap`: `on-message` and `on-join` trap.
//!   - `sleep`: `on-message` sleeps for an hour, in WASI's clock (the host).
//!   - `huge`: `/long` has the bot (`bot`, default `flood`) say a thousand
//!     lines of 20,000 bytes; `on-message` rewrites every line to 4 MiB of text and
//!     `on-command` answers one line of 1 MiB.
//!   - `flood`: `on-message` and `on-command` have the bot say 1000 lines in
//!     the room, and a tick every second does the same in every room.
//!   - `bad-init`: `init` fails with `refusing to start`.
//!   - `bad-bot`: the manifest declares the bot `not a valid name!`.
//!   - `pass`: behaves, doing nothing at all (a pass-through plugin, to
//!     measure what a plugin call costs).
//! - `bot`: in `flood` mode, the bot's name (default `flood`).
//!
//! Hooks a mode does not mention behave as in `pass`.

use std::cell::{Cell, RefCell};
use std::hint::black_box;

use chatgate::plugin::host;

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

use chatgate::plugin::types::Hook;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Loop,
    Memory,
    Trap,
    Huge,
    Flood,
    Sleep,
    Pass,
}

thread_local! {
    // Instances are single-threaded; `init` fills these once per instance.
    static MODE: Cell<Mode> = const { Cell::new(Mode::Pass) };
    static BOT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Spins until the host interrupts it. `black_box` keeps the optimizer
/// from reasoning about the loop; it has to burn real time.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB at a time and writes to every page of it, so the memory
/// is really grown and used, until an allocation fails and the instance
/// aborts. Keeping every block alive makes sure none can be reused.
fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for page in block.iter_mut().step_by(4096) {
            *page = 1;
        }
        kept.push(black_box(block));
    }
}

/// Has the bot say 1000 lines in `room`. The host refuses all but the
/// first few; the errors are ignored, since trying is the point.
fn flood(room: &str) {
    BOT.with_borrow(|bot| {
        for n in 1..=1000 {
            let _ = host::say(room, bot, &format!("flood {n}"));
        }
    });
}

struct Hostile;

impl Guest for Hostile {
    fn init(settings: Vec<(String, String)>) -> Result<Manifest, String> {
        let mut mode = None;
        let mut bot = "flood".to_string();
        for (key, value) in settings {
            match key.as_str() {
                "mode" => mode = Some(value.trim().to_string()),
                "bot" => bot = value.trim().to_string(),
                // A fixture: extra settings are no reason to stop.
                _ => {}
            }
        }
        let mut manifest = Manifest {
            hooks: vec![Hook::Join, Hook::Message, Hook::Command, Hook::Leave],
            bots: Vec::new(),
            tick_millis: None,
        };
        let mode = match mode.as_deref() {
            Some("loop") => Mode::Loop,
            Some("memory") => Mode::Memory,
            Some("trap") => Mode::Trap,
            Some("huge") => {
                manifest.bots.push(bot.clone());
                Mode::Huge
            }
            Some("sleep") => Mode::Sleep,
            Some("flood") => {
                manifest.bots.push(bot.clone());
                manifest.tick_millis = Some(1000);
                Mode::Flood
            }
            Some("bad-init") => return Err("refusing to start".to_string()),
            Some("bad-bot") => {
                manifest.bots.push("not a valid name!".to_string());
                Mode::Pass
            }
            Some("pass") => Mode::Pass,
            Some(other) => return Err(format!("unknown mode `{other}`")),
            None => return Err("setting `mode` is required".to_string()),
        };
        MODE.set(mode);
        BOT.set(bot);
        Ok(manifest)
    }

    fn on_join(_request: JoinRequest) -> Admission {
        match MODE.get() {
            Mode::Loop => spin(),
            Mode::Trap => panic!("hostile plugin traps on purpose"),
            _ => Admission::Allow,
        }
    }

    fn on_message(message: Message) -> Verdict {
        match MODE.get() {
            Mode::Loop => spin(),
            Mode::Memory => exhaust_memory(),
            Mode::Trap => panic!("hostile plugin traps on purpose"),
            Mode::Huge => Verdict::Rewrite("x".repeat(4 << 20)),
            // Blocked in the host (WASI's clock), where no deadline on
            // guest code reaches it.
            Mode::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Verdict::Pass
            }
            Mode::Flood => {
                flood(&message.room);
                Verdict::Pass
            }
            Mode::Pass => Verdict::Pass,
        }
    }

    fn on_command(command: Command) -> Answer {
        match MODE.get() {
            // Lines of 20,000 bytes: the most a line may be.
            Mode::Huge if command.name == "long" => {
                for _ in 0..1000 {
                    let bot = BOT.with_borrow(Clone::clone);
                    let _ = host::say(&command.room, &bot, &"y".repeat(20_000));
                }
                Answer::Handled(Vec::new())
            }
            Mode::Huge => Answer::Handled(vec!["x".repeat(1 << 20)]),
            Mode::Flood => {
                flood(&command.room);
                Answer::Handled(Vec::new())
            }
            _ => Answer::Unknown,
        }
    }

    fn on_leave(_room: String, _user: String) {}

    fn on_tick(rooms: Vec<String>) {
        if MODE.get() == Mode::Flood {
            for room in &rooms {
                flood(room);
            }
        }
    }
}

export!(Hostile);
