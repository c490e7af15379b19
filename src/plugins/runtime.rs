//! The sandbox: wasmtime, the `chatgate:plugin` world's bindings, and the
//! limits every call runs under.
//!
//! One [`Runtime`] (one wasmtime engine) serves every plugin. Its epoch is
//! advanced by a thread every [`EPOCH_TICK`], which is what ends a call
//! that overruns its time budget: each store is given a deadline a budget's
//! worth of ticks ahead before each call. Each instance has its own store
//! with a [`ResourceLimiter`] that caps all of its memories together.
//!
//! WASI is linked with an empty context: a component built by a standard
//! toolchain imports WASI for its standard library, but it gets no
//! preopened directory, no environment, no arguments, no network and no
//! standard input; what it prints goes nowhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::hooks::Effect;
use crate::hub::Hub;
use crate::protocol::MAX_LINE;
use crate::protocol::names::{Name, RoomName, UserName};
use crate::protocol::text::clean;

// Exports are called asynchronously: a guest's standard library may use
// WASI's blocking I/O (a panic message to stderr, say), which wasmtime-wasi
// implements on tokio and can only run from a task, on the guest's fiber.
wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    exports: { default: async },
});

pub use self::chatgate::plugin::host::Level;
pub use self::chatgate::plugin::types as wit;

/// How often the epoch advances: the resolution of the time budget. A call
/// is stopped between one and two ticks after its budget is spent.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Time an instance has to start: instantiation and `init` together. More
/// than a call's budget, as an interpreter's start-up (a Python plugin
/// sets up its heap) takes tens of milliseconds.
pub const START_BUDGET: Duration = Duration::from_secs(1);

/// Most bots' lines and notices one call may ask for (WIT: `host`).
pub const MAX_EFFECTS: usize = 16;

/// Most bytes of one log line a plugin writes.
pub const MAX_LOG: usize = 512;

/// Most log lines one call may write; the rest are dropped.
pub const MAX_LOGS: u32 = 16;

/// Most bytes of text all of one call's bots' lines and notices may hold:
/// one line of the longest kind and some, and far below what a member's
/// queue holds, so a plugin's answer cannot make a room too slow for it.
pub const MAX_EFFECT_BYTES: usize = 32 * 1024;

/// Most bytes wasmtime copies out of a plugin for one host call: the
/// largest answer there is (a command's reply lines) and some.
const HOSTCALL_FUEL: usize = 1 << 20;

/// Most instances of one store: a component is a handful of core
/// instances; a component that needs more is not one we run.
const MAX_CORE_INSTANCES: usize = 100;

/// Most elements of one table (all tables together count toward the
/// memory cap as well).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The engine every plugin is compiled for, and the thread that keeps its
/// time.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<State>>,
    /// Set when the last `Runtime` clone goes: the epoch thread stops.
    _clock: Arc<Clock>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Stops the epoch thread when dropped.
struct Clock(Arc<AtomicBool>);

impl Drop for Clock {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with epoch interruption, caching compiled code in
    /// `cache_dir` when given (a large component compiles for seconds; the
    /// cache makes every later start and reload quick).
    ///
    /// # Errors
    /// The engine cannot be configured, or the cache directory not used.
    pub fn new(cache_dir: Option<&std::path::Path>) -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if let Some(dir) = cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        self::chatgate::plugin::host::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s)?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("plugin-clock".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            _clock: Arc::new(Clock(stop)),
        })
    }

    /// Compiles the component in `wasm` and checks that it is a
    /// `chatgate:plugin` world.
    ///
    /// # Errors
    /// Not a component, or one whose imports or exports do not match.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<PluginPre<State>> {
        let component = Component::new(&self.engine, wasm)?;
        let pre = self.linker.instantiate_pre(&component)?;
        PluginPre::new(pre)
    }

    /// A fresh store for one instance.
    pub fn store(&self, limits: &Limits, who: &Arc<Who>) -> Store<State> {
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                cap: limits.memory,
                used: 0,
                hit: false,
            },
            who: who.clone(),
            effects: Vec::new(),
            effect_bytes: 0,
            logged: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store
    }
}

/// What a plugin may use, per instance and per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory one instance may have, all its memories together.
    pub memory: usize,
    /// Time one call may run.
    pub budget: Duration,
}

impl Limits {
    /// The budget in epoch ticks, at least one and one more for the tick
    /// already under way.
    pub fn ticks(&self) -> u64 {
        ticks(self.budget)
    }
}

/// `time` in epoch ticks, plus one for the tick already under way.
pub fn ticks(time: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(time.as_micros() / tick).unwrap_or(u64::MAX - 1) + 1
}

/// Who an instance is: for its log lines, its bots, and the hub its
/// effects check rooms against.
#[derive(Debug)]
pub struct Who {
    /// The plugin's name.
    pub name: Arc<str>,
    /// Its bots' names, set once `init` has declared them.
    pub bots: std::sync::OnceLock<Vec<UserName>>,
    /// The hub, to check that a bot's room has members here.
    pub hub: Weak<Hub>,
}

impl Who {
    fn bot(&self, name: &str) -> Option<UserName> {
        let key = Name::parse(name)?.key();
        self.bots.get()?.iter().copied().find(|b| b.key() == key)
    }
}

/// An instance's store data.
pub struct State {
    /// WASI with nothing granted: no directories, environment or network.
    wasi: WasiCtx,
    /// WASI's resources (its streams, say).
    table: ResourceTable,
    /// The memory cap, and whether it refused during this call.
    memory: MemoryCap,
    /// Which plugin this instance is.
    who: Arc<Who>,
    /// Bots' lines and notices asked for during this call, in order.
    effects: Vec<Effect>,
    /// Bytes of text in `effects`.
    effect_bytes: usize,
    /// Log lines written during the call.
    logged: u32,
}

impl State {
    /// Starts a call: nothing asked for yet.
    pub fn begin(&mut self) {
        self.effects.clear();
        self.effect_bytes = 0;
        self.logged = 0;
        self.memory.hit = false;
    }

    /// What the call asked for.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Whether the instance was refused memory during the call.
    pub fn memory_refused(&self) -> bool {
        self.memory.hit
    }

    /// Refuses one more effect than [`MAX_EFFECTS`] before looking at it:
    /// a flooding plugin's extra calls cost next to nothing.
    fn room_for_effect(&mut self) -> Result<(), String> {
        if self.effects.len() >= MAX_EFFECTS {
            return Err(format!("at most {MAX_EFFECTS} lines and notices per call"));
        }
        Ok(())
    }

    /// Keeps an effect whose text is `bytes` long, if the call's bytes
    /// allow.
    fn keep(&mut self, effect: Effect, bytes: usize) -> Result<(), String> {
        if self.effect_bytes + bytes > MAX_EFFECT_BYTES {
            return Err(format!(
                "at most {MAX_EFFECT_BYTES} bytes of lines and notices per call"
            ));
        }
        self.effect_bytes += bytes;
        self.effects.push(effect);
        Ok(())
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A text from a plugin as it may go into the log: control characters out
/// (no forged lines, no terminal codes), at most [`MAX_LOG`] bytes.
pub fn cut(text: &str) -> String {
    let text = clean(text.as_bytes());
    let mut end = text.len().min(MAX_LOG);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A text a plugin hands over, cleaned up as a user's line would be; an
/// error names what is wrong with it.
pub fn checked_text(text: &str) -> Result<String, String> {
    if text.len() > MAX_LINE {
        return Err(format!("text longer than {MAX_LINE} bytes"));
    }
    let text = clean(text.as_bytes());
    if text.is_empty() {
        return Err("empty text".into());
    }
    Ok(text.into_owned())
}

impl self::chatgate::plugin::host::Host for State {
    fn log(&mut self, level: Level, text: String) {
        if self.logged >= MAX_LOGS {
            return;
        }
        self.logged += 1;
        let (plugin, text) = (&*self.who.name, cut(&text));
        match level {
            Level::Error => tracing::error!(plugin, "{text}"),
            Level::Warn => tracing::warn!(plugin, "{text}"),
            Level::Info => tracing::info!(plugin, "{text}"),
            Level::Debug => tracing::debug!(plugin, "{text}"),
        }
    }

    fn now_millis(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn say(&mut self, room: String, bot: String, text: String) -> Result<(), String> {
        self.room_for_effect()?;
        let room = Name::parse(&room).ok_or("invalid room name")?;
        let bot = self
            .who
            .bot(&bot)
            .ok_or_else(|| format!("{bot} is not one of this plugin's bots"))?;
        let text = checked_text(&text)?;
        let here = self
            .who
            .hub
            .upgrade()
            .is_some_and(|hub| hub.has_members(room));
        if !here {
            return Err(format!("nobody is in {room} here"));
        }
        let bytes = text.len();
        self.keep(Effect::Say { room, bot, text }, bytes)
    }

    fn notice(&mut self, room: String, user: String, text: String) -> Result<(), String> {
        self.room_for_effect()?;
        let room: RoomName = Name::parse(&room).ok_or("invalid room name")?;
        let user: UserName = Name::parse(&user).ok_or("invalid user name")?;
        let text = checked_text(&text)?;
        let here = self
            .who
            .hub
            .upgrade()
            .is_some_and(|hub| hub.holds_name(room, user));
        if !here {
            return Err(format!("{user} is not in {room} here"));
        }
        let bytes = text.len();
        self.keep(Effect::Notice { room, user, text }, bytes)
    }
}

/// Caps an instance's memories and tables together, and notes when it
/// refused.
struct MemoryCap {
    cap: usize,
    used: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if self.used.saturating_add(more) > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.used += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element takes about two words of the host's memory.
        let more = desired
            .saturating_sub(current)
            .saturating_mul(2 * std::mem::size_of::<usize>());
        if desired > MAX_TABLE_ELEMENTS || self.used.saturating_add(more) > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.used += more;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_CORE_INSTANCES
    }
}
