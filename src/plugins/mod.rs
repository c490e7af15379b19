//! WebAssembly plugins: components of the `chatgate:plugin` world
//! (`wit/chatgate-plugin.wit`) behind the core's [`Hooks`].
//!
//! An operator names each plugin with `--plugin PATH`; a file beside it with
//! the same stem and `.toml` (`dice.wasm`, `dice.toml`) holds its settings
//! and its failure policy. Plugins run in the order given: the first
//! refusal or drop wins, rewrites chain, the first plugin that handles a
//! command answers it.
//!
//! Each plugin keeps a pool of at most [`max_instances`] instances, each
//! started with the plugin's `init`, so a hook call costs a call, not an
//! instantiation: a caller takes an instance, calls it with a deadline, and
//! puts it back. A plugin's memory is so bounded by that count times the
//! memory cap. An instance whose call failed is dropped (its state may be
//! half-made), and the next caller starts a fresh one. A plugin that keeps
//! failing ([`DISABLE_AFTER`] calls in a row, or about one call in two) is
//! disabled until the next reload; a disabled plugin, like a failed call,
//! is answered for by its policy: filters and bots fail open (the line
//! passes, the command is unknown), join rules fail closed (the user is
//! refused). Only the hooks a plugin's manifest asks for are ever called.
//!
//! A call runs in the task of the user who caused it (on the guest's own
//! fiber, awaited), with no room lock held. Guest code holds the worker
//! thread until it returns or its budget ends it; a guest blocked in the
//! host is given up on [`CALL_SLACK`] after its budget. So a slow plugin
//! delays its callers, and while all of its instances are busy, the next
//! callers of that plugin, by at most a call's time limit each.

mod runtime;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prometheus_client::metrics::histogram::Histogram;
use tracing::{error, info, warn};
use wasmtime::Store;

pub use runtime::{EPOCH_TICK, Limits, MAX_EFFECT_BYTES, MAX_EFFECTS, Runtime, START_BUDGET};
use runtime::{PluginPre, State, Who, checked_text, cut, wit};

use crate::hooks::{
    Admission, CommandAnswer, CommandRequest, Effect, Hooks, JoinRequest, Message, Outcome,
    Pending, Verdict,
};
use crate::hub::Hub;
use crate::metrics::{FailureLabel, HookLabel, PluginLabel, PluginMetrics};
use crate::protocol::names::{Name, RoomName, UserName};

/// Failed calls in a row after which a plugin is disabled until reloaded.
/// Successes only slowly undo failures: each failure weighs
/// [`FAILURE_WEIGHT`] successes, so a plugin that fails every other call
/// is disabled too, after a few more calls.
pub const DISABLE_AFTER: u32 = 10;

/// How many successes make up for one failure.
pub const FAILURE_WEIGHT: u32 = 10;

/// Time a call may take beyond its budget before it is given up on: the
/// budget ends guest code, this ends a guest blocked in the host (WASI's
/// sleep, say), and bounds the wait for a free instance.
pub const CALL_SLACK: Duration = Duration::from_millis(100);

/// Most instances of one plugin at once, and so most calls into it at
/// once: one per core, at least two. With the memory cap, this bounds a
/// plugin's memory; a call beyond it waits for an instance, and each call
/// ahead of it ends within its budget.
pub fn max_instances() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Most `*** ` lines one command's answer may have.
pub const MAX_REPLY_LINES: usize = 16;

/// Shortest tick a plugin may ask for.
pub const MIN_TICK: Duration = Duration::from_secs(1);

/// What a user is told when a join rule refused with an empty reason.
pub const JOIN_REFUSED: &str = "you may not join this room";

/// What a user is told when a join rule failed and its policy is closed.
pub const JOIN_CHECK_FAILED: &str = "cannot check your join right now, try again later";

/// What a sender is told when a filter failed and its policy is closed.
pub const MESSAGE_CHECK_FAILED: &str = "cannot check your line right now, try again later";

/// The hooks, as named in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `init`, when an instance starts.
    Init,
    /// `on-join`.
    Join,
    /// `on-message`.
    Message,
    /// `on-command`.
    Command,
    /// `on-leave`.
    Leave,
    /// `on-tick`.
    Tick,
}

impl Hook {
    const ALL: [Hook; 6] = [
        Hook::Init,
        Hook::Join,
        Hook::Message,
        Hook::Command,
        Hook::Leave,
        Hook::Tick,
    ];

    /// The label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Join => "join",
            Hook::Message => "message",
            Hook::Command => "command",
            Hook::Leave => "leave",
            Hook::Tick => "tick",
        }
    }
}

/// What becomes of a decision when a plugin's call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// As if the plugin had not been asked.
    Open,
    /// Refuse the join, drop the line (with a reason the user sees).
    Closed,
}

/// A plugin's settings file, beside it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SettingsFile {
    /// Overrides the failure policy of joins and lines.
    on_failure: Option<Policy>,
    /// What the plugin's `init` gets.
    #[serde(default)]
    settings: toml::Table,
}

/// Why a call gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The plugin is disabled; it was not called.
    Disabled,
    /// The call failed (counted and logged).
    Failed,
}

/// One instance: a store and the bindings into it.
struct Instance {
    store: Store<State>,
    bindings: runtime::Plugin,
}

/// One plugin: compiled, checked, with its instances.
pub struct Plugin {
    /// Its file's stem: in logs, metrics and errors.
    name: Arc<str>,
    /// Where it was loaded from; a reload matches old and new by it.
    path: PathBuf,
    /// Compiled and linked, ready to instantiate.
    pre: PluginPre<State>,
    runtime: Runtime,
    limits: Limits,
    /// What every instance's `init` gets.
    settings: Vec<(String, String)>,
    /// What its host functions need to know of it.
    who: Arc<Who>,
    /// Its manifest's tick.
    tick: Option<Duration>,
    /// The settings file's `on-failure`, if any.
    policy: Option<Policy>,
    /// Idle instances. Locked only to pop or push one, never across a
    /// call; an instance is out of it while in use.
    pool: Mutex<Vec<Instance>>,
    /// One per instance there may be ([`max_instances`]).
    permits: tokio::sync::Semaphore,
    /// Failures weigh [`FAILURE_WEIGHT`], successes take one off; at
    /// [`DISABLE_AFTER`] failures' worth the plugin is disabled.
    score: AtomicU32,
    /// The hooks its manifest asked for.
    hooks: Vec<Hook>,
    /// Set once it has failed too often; a reload loads it anew.
    disabled: AtomicBool,
    /// Where its failures and its disabling are counted.
    metrics: PluginMetrics,
    /// The call-time histogram of each hook, looked up once.
    timings: Vec<Histogram>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles the component at `path`, reads its settings file, starts
    /// one instance and checks what its `init` declares.
    ///
    /// # Errors
    /// The file cannot be read or is not a `chatgate:plugin` component; the
    /// settings file cannot be read or has unknown keys; `init` fails,
    /// traps or runs out of time or memory; a bot's name is invalid or
    /// reserved; the tick is shorter than [`MIN_TICK`].
    pub async fn load(
        runtime: &Runtime,
        path: &Path,
        limits: Limits,
        hub: Weak<Hub>,
        metrics: &PluginMetrics,
    ) -> anyhow::Result<Arc<Plugin>> {
        let name = plugin_name(path)?;
        let wasm =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file = read_settings(&settings_path(path))?;
        // Compiling takes seconds for a large component: off the runtime's
        // workers, so connections go on meanwhile.
        let compiler = runtime.clone();
        let pre = tokio::task::spawn_blocking(move || compiler.compile(&wasm))
            .await
            .context("compiling")?
            .map_err(|e| anyhow::anyhow!("{}: not a chatgate plugin: {e:#}", path.display()))?;
        let settings = file
            .settings
            .iter()
            .map(|(k, v)| Ok((k.clone(), setting_text(k, v)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let who = Arc::new(Who {
            name: name.clone(),
            bots: std::sync::OnceLock::new(),
            hub,
        });
        let timings = Hook::ALL
            .iter()
            .map(|hook| {
                metrics
                    .calls
                    .get_or_create(&HookLabel {
                        plugin: name.to_string(),
                        hook: hook.label(),
                    })
                    .clone()
            })
            .collect();
        let mut plugin = Plugin {
            name,
            path: path.to_owned(),
            pre,
            runtime: runtime.clone(),
            limits,
            settings,
            who,
            tick: None,
            policy: file.on_failure,
            pool: Mutex::default(),
            permits: tokio::sync::Semaphore::new(max_instances()),
            score: AtomicU32::new(0),
            hooks: Vec::new(),
            disabled: AtomicBool::new(false),
            metrics: metrics.clone(),
            timings,
        };
        let (first, manifest) = plugin
            .start()
            .await
            .map_err(|(_, why)| anyhow::anyhow!("{}: {why}", path.display()))?;
        plugin.hooks = manifest
            .hooks
            .iter()
            .map(|hook| match hook {
                wit::Hook::Join => Hook::Join,
                wit::Hook::Message => Hook::Message,
                wit::Hook::Command => Hook::Command,
                wit::Hook::Leave => Hook::Leave,
            })
            .collect();
        let bots = manifest
            .bots
            .iter()
            .map(|bot| match Name::parse(bot) {
                Some(name) if !name.is_reserved() => Ok(name),
                _ => bail!("{}: invalid bot name {bot:?}", path.display()),
            })
            .collect::<anyhow::Result<Vec<UserName>>>()?;
        let _ = plugin.who.bots.set(bots);
        if let Some(ms) = manifest.tick_millis {
            let tick = Duration::from_millis(ms.into());
            if tick < MIN_TICK {
                bail!(
                    "{}: tick of {ms} ms is shorter than {} ms",
                    path.display(),
                    MIN_TICK.as_millis()
                );
            }
            plugin.tick = Some(tick);
        }
        plugin
            .pool
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(first);
        metrics
            .disabled
            .get_or_create(&PluginLabel {
                plugin: plugin.name.to_string(),
            })
            .set(0);
        Ok(Arc::new(plugin))
    }

    /// The plugin's name: its file's stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its bots' names.
    pub fn bots(&self) -> &[UserName] {
        self.who.bots.get().map_or(&[], Vec::as_slice)
    }

    /// How often it wants `on-tick`, if at all.
    pub fn tick(&self) -> Option<Duration> {
        self.tick
    }

    /// Whether it was disabled for failing again and again.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// A fresh instance, its `init` called: the instance and what `init`
    /// declared, or what kind of failure stopped it and why.
    async fn start(&self) -> Result<(Instance, wit::Manifest), (&'static str, String)> {
        let mut store = self.runtime.store(&self.limits, &self.who);
        store.set_epoch_deadline(runtime::ticks(START_BUDGET));
        store.data_mut().begin();
        let started = Instant::now();
        let start = async {
            let bindings = self.pre.instantiate_async(&mut store).await?;
            let init = bindings.call_init(&mut store, &self.settings).await?;
            wasmtime::Result::Ok((bindings, init))
        };
        // The epoch ends guest code that runs too long; the clock, a guest
        // blocked in the host (WASI's sleep).
        let result = tokio::time::timeout(START_BUDGET + CALL_SLACK, start).await;
        self.timings[Hook::Init as usize].observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(("timeout", "init did not return in time".to_owned())),
            Ok(Ok((bindings, Ok(manifest)))) => Ok((Instance { store, bindings }, manifest)),
            Ok(Ok((_, Err(why)))) => Err(("refused", format!("init refused: {}", cut(&why)))),
            Ok(Err(e)) => {
                let kind = failure_kind(&e, store.data().memory_refused());
                Err((kind, format!("init failed ({kind}): {e:#}")))
            }
        }
    }

    /// Calls `hook` on an instance with the budget, and checks the answer
    /// with `check`. A failure is counted, logged and may disable the
    /// plugin; the caller then applies the policy. Bounded in time: the
    /// wait for an instance, the start of one and the call each have their
    /// limit.
    async fn call<T, U>(
        &self,
        hook: Hook,
        call: impl for<'a> FnOnce(
            &'a runtime::Plugin,
            &'a mut Store<State>,
        ) -> Pending<'a, wasmtime::Result<T>>,
        check: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<(U, Vec<Effect>), Failure> {
        if self.is_disabled() {
            return Err(Failure::Disabled);
        }
        // Every holder of a permit gives it back within its own limits, so
        // this waits for at most a few calls' time.
        let wait = self.limits.budget + CALL_SLACK;
        let Ok(Ok(_permit)) = tokio::time::timeout(wait, self.permits.acquire()).await else {
            return Err(self.failed(hook, "timeout", "no instance free in time"));
        };
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => match self.start().await {
                Ok((instance, _)) => instance,
                Err((kind, why)) => return Err(self.failed(hook, kind, &why)),
            },
        };
        let store = &mut instance.store;
        store.data_mut().begin();
        store.set_epoch_deadline(self.limits.ticks());
        let started = Instant::now();
        let result = tokio::time::timeout(wait, call(&instance.bindings, store)).await;
        self.timings[hook as usize].observe(started.elapsed().as_secs_f64());
        let answer = match result {
            Ok(Ok(answer)) => answer,
            // The instance goes with the call: its state may be half made.
            Ok(Err(e)) => {
                let kind = failure_kind(&e, store.data().memory_refused());
                return Err(self.failed(hook, kind, &format!("{e:#}")));
            }
            Err(_) => return Err(self.failed(hook, "timeout", "blocked in the host")),
        };
        let effects = store.data_mut().take_effects();
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance);
        match check(answer) {
            Ok(answer) => {
                let _ = self
                    .score
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                        Some(s.saturating_sub(1))
                    });
                Ok((answer, effects))
            }
            Err(why) => Err(self.failed(hook, "invalid", &why)),
        }
    }

    /// Counts and logs a failed call; disables the plugin once its
    /// failures outweigh its successes (see [`DISABLE_AFTER`]).
    fn failed(&self, hook: Hook, kind: &'static str, why: &str) -> Failure {
        self.metrics
            .failures
            .get_or_create(&FailureLabel {
                plugin: self.name.to_string(),
                hook: hook.label(),
                kind,
            })
            .inc();
        let score = self.score.fetch_add(FAILURE_WEIGHT, Ordering::Relaxed) + FAILURE_WEIGHT;
        // One line when a plugin starts failing and one when it is
        // disabled: a plugin failing on every line must not flood the log.
        if score == FAILURE_WEIGHT {
            warn!(plugin = %self.name, hook = hook.label(), kind, error = cut(why), "plugin call failed");
        }
        if score >= DISABLE_AFTER * FAILURE_WEIGHT && !self.disabled.swap(true, Ordering::Relaxed) {
            error!(
                plugin = %self.name,
                "plugin disabled: it keeps failing; fix it and reload (SIGHUP)"
            );
            self.metrics
                .disabled
                .get_or_create(&PluginLabel {
                    plugin: self.name.to_string(),
                })
                .set(1);
        }
        Failure::Failed
    }

    /// Whether the plugin asked for `hook` in its manifest.
    fn wants(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }

    async fn join(&self, request: &JoinRequest) -> Result<(Admission, Vec<Effect>), Failure> {
        let request = wit::JoinRequest {
            room: request.room.to_string(),
            user: request.user.to_string(),
            transport: match request.transport {
                "tls" => wit::Transport::Tls,
                "ws" => wit::Transport::Ws,
                "wss" => wit::Transport::Wss,
                _ => wit::Transport::Tcp,
            },
            address: request.addr.map(|a| a.to_string()).unwrap_or_default(),
        };
        self.call(
            Hook::Join,
            move |p, store| Box::pin(async move { p.call_on_join(store, &request).await }),
            |answer| match answer {
                wit::Admission::Allow => Ok(Admission::Allow),
                wit::Admission::Refuse(why) => Ok(Admission::Refuse(
                    optional_text(&why)
                        .map_err(|e| format!("refusal: {e}"))?
                        .unwrap_or_else(|| JOIN_REFUSED.to_owned()),
                )),
            },
        )
        .await
    }

    async fn message(
        &self,
        message: &Message,
        text: &str,
    ) -> Result<(Verdict, Vec<Effect>), Failure> {
        let message = wit::Message {
            room: message.room.to_string(),
            user: message.user.to_string(),
            text: text.to_owned(),
            action: message.action,
        };
        self.call(
            Hook::Message,
            move |p, store| Box::pin(async move { p.call_on_message(store, &message).await }),
            |answer| match answer {
                wit::Verdict::Pass => Ok(Verdict::Pass),
                wit::Verdict::Drop(None) => Ok(Verdict::Drop(None)),
                wit::Verdict::Drop(Some(why)) => Ok(Verdict::Drop(
                    optional_text(&why).map_err(|e| format!("drop reason: {e}"))?,
                )),
                wit::Verdict::Rewrite(text) => {
                    if text.len() > crate::protocol::MAX_LINE {
                        return Err(format!(
                            "rewrite longer than {} bytes",
                            crate::protocol::MAX_LINE
                        ));
                    }
                    Ok(Verdict::Rewrite(text))
                }
            },
        )
        .await
    }

    async fn command(
        &self,
        request: &CommandRequest,
    ) -> Result<(CommandAnswer, Vec<Effect>), Failure> {
        let command = wit::Command {
            room: request.room.to_string(),
            user: request.user.to_string(),
            name: request.name.to_owned(),
            args: request.args.to_owned(),
        };
        self.call(
            Hook::Command,
            move |p, store| Box::pin(async move { p.call_on_command(store, &command).await }),
            |answer| match answer {
                wit::Answer::Unknown => Ok(CommandAnswer::Unknown),
                wit::Answer::Handled(lines) => {
                    if lines.len() > MAX_REPLY_LINES {
                        return Err(format!("more than {MAX_REPLY_LINES} reply lines"));
                    }
                    let mut texts = Vec::with_capacity(lines.len());
                    for line in &lines {
                        if let Some(text) =
                            optional_text(line).map_err(|e| format!("reply: {e}"))?
                        {
                            texts.push(text);
                        }
                    }
                    let lines = texts;
                    Ok(CommandAnswer::Handled(lines))
                }
            },
        )
        .await
    }

    async fn leave(&self, room: RoomName, user: UserName) -> Vec<Effect> {
        let (room, user) = (room.to_string(), user.to_string());
        self.call(
            Hook::Leave,
            move |p, store| Box::pin(async move { p.call_on_leave(store, &room, &user).await }),
            Ok,
        )
        .await
        .map(|((), effects)| effects)
        .unwrap_or_default()
    }

    /// Calls `on-tick` with the rooms that have members here; what the
    /// plugin asked for.
    pub async fn tick_now(&self, rooms: &[RoomName]) -> Vec<Effect> {
        let rooms: Vec<String> = rooms.iter().map(ToString::to_string).collect();
        self.call(
            Hook::Tick,
            move |p, store| Box::pin(async move { p.call_on_tick(store, &rooms).await }),
            Ok,
        )
        .await
        .map(|((), effects)| effects)
        .unwrap_or_default()
    }
}

/// Every loaded plugin, in order, behind the core's [`Hooks`]; a reload
/// swaps the list.
#[derive(Debug)]
pub struct Plugins {
    /// The plugins in order; a reload swaps the whole list.
    list: RwLock<Arc<[Arc<Plugin>]>>,
    runtime: Runtime,
    hub: Weak<Hub>,
    metrics: PluginMetrics,
    /// Leaves waiting for `on-leave`, for the one task that calls it; a
    /// leave that finds the queue full is not told to plugins.
    leaves: tokio::sync::mpsc::Sender<(RoomName, UserName)>,
    /// Held by a reload, so two SIGHUPs in a row apply in order.
    reloading: tokio::sync::Mutex<()>,
}

/// Leaves that may wait for `on-leave`: a burst of departures (a restart
/// of a busy server) beyond this is not told to plugins.
pub const MAX_PENDING_LEAVES: usize = 4096;

impl Plugins {
    /// Loads every plugin in `paths`, in order.
    ///
    /// # Errors
    /// The first plugin that cannot be loaded, or two that share a name or
    /// a bot.
    pub async fn load(
        runtime: Runtime,
        paths: &[PathBuf],
        limits: Limits,
        hub: &Arc<Hub>,
        metrics: &PluginMetrics,
    ) -> anyhow::Result<Arc<Plugins>> {
        let hub = Arc::downgrade(hub);
        let mut list = Vec::new();
        for path in paths {
            let plugin = Plugin::load(&runtime, path, limits, hub.clone(), metrics).await?;
            info!(
                plugin = plugin.name(),
                path = %path.display(),
                bots = ?plugin.bots().iter().map(|b| b.as_str()).collect::<Vec<_>>(),
                tick_ms = plugin.tick().map(|t| t.as_millis() as u64),
                "plugin loaded"
            );
            list.push(plugin);
        }
        check_unique(&list)?;
        let (leaves, mut left) = tokio::sync::mpsc::channel(MAX_PENDING_LEAVES);
        let plugins = Arc::new(Plugins {
            list: RwLock::new(list.into()),
            runtime,
            hub,
            metrics: metrics.clone(),
            leaves,
            reloading: tokio::sync::Mutex::new(()),
        });
        // Ends when the plugins go: the queue's sender goes with them.
        let weak = Arc::downgrade(&plugins);
        tokio::spawn(async move {
            while let Some((room, user)) = left.recv().await {
                let Some(plugins) = weak.upgrade() else {
                    return;
                };
                for plugin in plugins.current().iter().filter(|p| p.wants(Hook::Leave)) {
                    let effects = plugin.leave(room, user).await;
                    if let Some(hub) = plugins.hub.upgrade() {
                        hub.apply(effects);
                    }
                }
            }
        });
        Ok(plugins)
    }

    /// The plugins in order.
    pub fn current(&self) -> Arc<[Arc<Plugin>]> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads `paths` again: a plugin that loads replaces the one from the
    /// same path, or is added; one that fails keeps the old one from that
    /// path running (or, if new, stays out) and the failure is returned to
    /// be logged. Plugins no longer named are dropped. A reloaded plugin
    /// starts with fresh instances and is enabled again.
    pub async fn reload(&self, paths: &[PathBuf], limits: Limits) -> Vec<String> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.current();
        let mut list: Vec<Arc<Plugin>> = Vec::new();
        let mut problems = Vec::new();
        for path in paths {
            let loaded =
                Plugin::load(&self.runtime, path, limits, self.hub.clone(), &self.metrics).await;
            match loaded {
                Ok(plugin) => list.push(plugin),
                Err(e) => {
                    problems.push(format!("{e:#}"));
                    if let Some(kept) = old.iter().find(|p| p.path() == path) {
                        list.push(kept.clone());
                    }
                }
            }
        }
        if let Err(e) = check_unique(&list) {
            problems.push(format!("{e:#}; keeping the plugins as they were"));
            return problems;
        }
        if let Some(hub) = self.hub.upgrade() {
            // A bot must not speak as a user already here under its name.
            let members = hub.members();
            let taken = list.iter().find_map(|p| {
                let new = !old.iter().any(|o| Arc::ptr_eq(o, p));
                p.bots()
                    .iter()
                    .find(|b| new && members.iter().any(|(_, u)| u.key() == b.key()))
                    .map(|b| (p.name().to_owned(), *b))
            });
            if let Some((plugin, bot)) = taken {
                problems.push(format!(
                    "plugin {plugin}: a user is in a room as {bot}, its bot's name; keeping the plugins as they were"
                ));
                return problems;
            }
        }
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list.into();
        problems
    }

    /// Calls each plugin that asked for a tick, on its own period, until
    /// the plugin is replaced or the server stops; what they ask for goes
    /// through the hub.
    pub fn run_ticks(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let plugins = Arc::downgrade(self);
        tokio::spawn(async move {
            // The smallest period any plugin may have: each plugin's own
            // period is kept by its last tick's time.
            let mut every = tokio::time::interval(MIN_TICK / 4);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Vec<(Weak<Plugin>, Instant)> = Vec::new();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                let Some(plugins) = plugins.upgrade() else {
                    return;
                };
                let Some(hub) = plugins.hub.upgrade() else {
                    return;
                };
                let now = Instant::now();
                last.retain(|(p, _)| p.strong_count() > 0);
                for plugin in plugins.current().iter() {
                    let Some(period) = plugin.tick() else {
                        continue;
                    };
                    let seen = last
                        .iter_mut()
                        .find(|(p, _)| p.upgrade().is_some_and(|p| Arc::ptr_eq(&p, plugin)));
                    match seen {
                        None => last.push((Arc::downgrade(plugin), now)),
                        Some((_, at)) if now.duration_since(*at) >= period => {
                            *at = now;
                            let effects = plugin.tick_now(&hub.rooms_here()).await;
                            hub.apply(effects);
                        }
                        Some(_) => {}
                    }
                }
            }
        });
    }
}

impl Plugins {
    async fn join_all(&self, request: JoinRequest) -> Outcome<Admission> {
        let mut effects = Vec::new();
        for plugin in self.current().iter().filter(|p| p.wants(Hook::Join)) {
            let before = effects.len();
            let answer = match plugin.join(&request).await {
                Ok((answer, more)) => {
                    effects.extend(more);
                    answer
                }
                Err(_) => match plugin.policy.unwrap_or(Policy::Closed) {
                    Policy::Open => Admission::Allow,
                    Policy::Closed => Admission::Refuse(JOIN_CHECK_FAILED.into()),
                },
            };
            if let Admission::Refuse(_) = answer {
                // What earlier plugins asked for assumed the user joins.
                let effects = effects.split_off(before);
                return Outcome { answer, effects };
            }
        }
        Outcome {
            answer: Admission::Allow,
            effects,
        }
    }

    async fn message_all(&self, message: Message) -> Outcome<Verdict> {
        let mut effects = Vec::new();
        let mut text: Option<String> = None;
        for plugin in self.current().iter().filter(|p| p.wants(Hook::Message)) {
            let before = effects.len();
            let now = text.as_deref().unwrap_or(&message.text);
            let answer = match plugin.message(&message, now).await {
                Ok((answer, more)) => {
                    effects.extend(more);
                    answer
                }
                Err(_) => match plugin.policy.unwrap_or(Policy::Open) {
                    Policy::Open => Verdict::Pass,
                    Policy::Closed => Verdict::Drop(Some(MESSAGE_CHECK_FAILED.into())),
                },
            };
            match answer {
                Verdict::Pass => {}
                Verdict::Rewrite(new) => {
                    // Later plugins see the line as it will be said.
                    let new = crate::protocol::text::clean(new.as_bytes()).into_owned();
                    if new.is_empty() {
                        return Outcome {
                            answer: Verdict::Drop(None),
                            effects: effects.split_off(before),
                        };
                    }
                    text = Some(new);
                }
                // What earlier plugins asked for answered a line that is
                // not said after all.
                Verdict::Drop(why) => {
                    return Outcome {
                        answer: Verdict::Drop(why),
                        effects: effects.split_off(before),
                    };
                }
            }
        }
        let answer = match text {
            Some(text) => Verdict::Rewrite(text),
            None => Verdict::Pass,
        };
        Outcome { answer, effects }
    }

    async fn command_all(&self, request: CommandRequest) -> Outcome<CommandAnswer> {
        let mut effects = Vec::new();
        for plugin in self.current().iter().filter(|p| p.wants(Hook::Command)) {
            // Commands fail open whatever the policy: a failed bot is a bot
            // that does not answer.
            if let Ok((answer, more)) = plugin.command(&request).await {
                effects.extend(more);
                if let CommandAnswer::Handled(_) = answer {
                    return Outcome { answer, effects };
                }
            }
        }
        Outcome {
            answer: CommandAnswer::Unknown,
            effects,
        }
    }
}

impl Hooks for Plugins {
    fn is_bot(&self, user: UserName) -> bool {
        let key = user.key();
        self.current()
            .iter()
            .any(|p| p.bots().iter().any(|b| b.key() == key))
    }

    fn join(&self, request: JoinRequest) -> Pending<'_, Outcome<Admission>> {
        Box::pin(self.join_all(request))
    }

    fn message(&self, message: Message) -> Pending<'_, Outcome<Verdict>> {
        Box::pin(self.message_all(message))
    }

    fn command(&self, request: CommandRequest) -> Pending<'_, Outcome<CommandAnswer>> {
        Box::pin(self.command_all(request))
    }

    fn left(&self, room: RoomName, user: UserName) {
        // Full: a burst of departures; those beyond the queue go untold.
        let _ = self.leaves.try_send((room, user));
    }
}

/// `chatgate check-plugin`: loads the plugin at `path` as the server
/// would, then calls each hook `calls` times with an ordinary request
/// (`alice` in `lobby` over TCP from 127.0.0.1; a 40-byte line; `/roll
/// 2d6`) and times each call. The report: the plugin's bots and tick, then
/// per hook `hook <name> calls <n> median_ns <ns> p99_ns <ns>`, and
/// `failures <hook> <n>` for a hook whose calls failed.
///
/// # Errors
/// The plugin does not load.
pub async fn check(path: &Path, limits: Limits, calls: u32) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    /// Failed calls after which a hook's timing stops: each may cost a
    /// new instance, and a plugin that fails is reported as such anyway.
    const CHECK_FAILURES: u32 = 100;

    let runtime = Runtime::new(None).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let hub = Hub::new();
    let metrics = PluginMetrics::default();
    let plugin = Plugin::load(&runtime, path, limits, Arc::downgrade(&hub), &metrics).await?;
    let (room, user) = (
        Name::parse("lobby").context("room")?,
        Name::parse("alice").context("user")?,
    );
    let join = JoinRequest {
        room,
        user,
        transport: "tcp",
        addr: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let message = Message {
        room,
        user,
        text: "an ordinary line of chat, forty bytes, .".into(),
        action: false,
    };
    let command = CommandRequest {
        room,
        user,
        name: "roll".into(),
        args: "2d6".into(),
    };
    let mut out = String::new();
    let bots: Vec<&str> = plugin.bots().iter().map(|b| b.as_str()).collect();
    let tick = plugin
        .tick()
        .map_or("none".to_owned(), |t| format!("{} ms", t.as_millis()));
    let _ = writeln!(out, "plugin {} bots {bots:?} tick {tick}", plugin.name());
    for hook in [Hook::Join, Hook::Message, Hook::Command, Hook::Leave] {
        if !plugin.wants(hook) {
            let _ = writeln!(out, "hook {} not asked for", hook.label());
            continue;
        }
        let mut times = Vec::with_capacity(calls as usize);
        let mut failures = 0u32;
        for _ in 0..calls {
            // A disabled plugin answers at once; keep timing its calls.
            if failures >= CHECK_FAILURES {
                break;
            }
            plugin.score.store(0, Ordering::Relaxed);
            plugin.disabled.store(false, Ordering::Relaxed);
            let started = Instant::now();
            let failed = match hook {
                Hook::Join => plugin.join(&join).await.is_err(),
                Hook::Message => plugin.message(&message, &message.text).await.is_err(),
                Hook::Command => plugin.command(&command).await.is_err(),
                _ => {
                    plugin.leave(room, user).await;
                    false
                }
            };
            times.push(started.elapsed().as_nanos() as u64);
            failures += u32::from(failed);
        }
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q) as usize)
                .copied()
        };
        let _ = writeln!(
            out,
            "hook {} calls {calls} median_ns {} p99_ns {}",
            hook.label(),
            at(0.5).unwrap_or(0),
            at(0.99).unwrap_or(0)
        );
        if failures > 0 {
            let _ = writeln!(out, "failures {} {failures}", hook.label());
        }
    }
    Ok(out)
}

/// A text from a plugin that may be left empty: none if it cleans up to
/// nothing, an error if it is too long.
fn optional_text(text: &str) -> Result<Option<String>, String> {
    match checked_text(text) {
        Ok(text) => Ok(Some(text)),
        Err(_) if crate::protocol::text::clean(text.as_bytes()).is_empty() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The plugin's name: the stem of its file.
fn plugin_name(path: &Path) -> anyhow::Result<Arc<str>> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .with_context(|| format!("{}: no file name to name the plugin by", path.display()))?;
    Ok(stem.into())
}

/// The settings file of the plugin at `path`: same directory and stem,
/// `.toml`.
pub fn settings_path(path: &Path) -> PathBuf {
    path.with_extension("toml")
}

fn read_settings(path: &Path) -> anyhow::Result<SettingsFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SettingsFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A setting's value as the text `init` gets.
fn setting_text(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => bail!("setting {key}: a value must be text, a number or true/false"),
    })
}

/// No two plugins share a name (their metrics would mix) or a bot.
fn check_unique(list: &[Arc<Plugin>]) -> anyhow::Result<()> {
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if a.name() == b.name() {
                bail!(
                    "two plugins are named {} ({} and {})",
                    a.name(),
                    a.path().display(),
                    b.path().display()
                );
            }
            for bot in a.bots() {
                if b.bots().iter().any(|other| other.key() == bot.key()) {
                    bail!(
                        "plugins {} and {} both have a bot {bot}",
                        a.name(),
                        b.name()
                    );
                }
            }
        }
    }
    Ok(())
}

/// What kind of failure an error from a call is.
fn failure_kind(e: &wasmtime::Error, memory_refused: bool) -> &'static str {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "timeout",
        _ if memory_refused => "memory",
        _ => "trap",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A built example plugin, with `settings` beside a copy of it in `dir`.
    fn example(dir: &Path, name: &str, settings: &str) -> PathBuf {
        let built = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("plugins/out")
            .join(format!("{name}.wasm"));
        assert!(built.exists(), "{}: run plugins/build", built.display());
        let path = dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &path).expect("copy");
        std::fs::write(settings_path(&path), settings).expect("settings");
        path
    }

    const LIMITS: Limits = Limits {
        memory: 16 << 20,
        budget: Duration::from_millis(50),
    };

    async fn load(path: &Path) -> anyhow::Result<Arc<Plugin>> {
        let runtime = Runtime::new(None).expect("runtime");
        Plugin::load(
            &runtime,
            path,
            LIMITS,
            Weak::new(),
            &PluginMetrics::default(),
        )
        .await
    }

    fn message(text: &str) -> Message {
        Message {
            room: Name::parse("lobby").expect("room"),
            user: Name::parse("alice").expect("user"),
            text: text.into(),
            action: false,
        }
    }

    #[test]
    fn settings_reach_init_as_text_and_nested_values_are_refused() {
        let table: toml::Table =
            toml::from_str("a = \"x\"\nb = 3\nc = true\nd = 1.5\ne = [1]\n").expect("toml");
        let text = |k: &str| setting_text(k, &table[k]);
        assert_eq!(text("a").expect("a"), "x");
        assert_eq!(text("b").expect("b"), "3");
        assert_eq!(text("c").expect("c"), "true");
        assert_eq!(text("d").expect("d"), "1.5");
        assert!(text("e").is_err());
    }

    #[test]
    fn a_settings_file_with_an_unknown_key_is_an_error_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.toml");
        assert!(read_settings(&path).expect("missing").settings.is_empty());
        std::fs::write(&path, "on-falure = \"open\"\n").expect("write");
        let e = read_settings(&path).expect_err("unknown key");
        assert!(format!("{e:#}").contains("on-falure"), "{e:#}");
        std::fs::write(&path, "on-failure = \"closed\"\n[settings]\nk = \"v\"\n").expect("write");
        let file = read_settings(&path).expect("good");
        assert_eq!(file.on_failure, Some(Policy::Closed));
    }

    #[test]
    fn the_budget_in_ticks_covers_the_tick_under_way() {
        assert_eq!(runtime::ticks(Duration::from_millis(5)), 6);
        assert_eq!(runtime::ticks(Duration::ZERO), 1);
        assert_eq!(runtime::ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn texts_from_plugins_are_cleaned_and_bounded() {
        // As a user's line: control characters out, trailing blanks cut.
        assert_eq!(checked_text("  a\u{7}  b ").expect("text"), "  a  b");
        assert!(checked_text(" \t").is_err());
        assert!(checked_text(&"x".repeat(crate::protocol::MAX_LINE + 1)).is_err());
    }

    #[tokio::test]
    async fn a_component_answers_each_hook_through_the_bindings() {
        let dir = tempfile::tempdir().expect("dir");
        let path = example(dir.path(), "word-filter", "[settings]\nwords = \"darn\"\n");
        let plugin = load(&path).await.expect("load");
        assert_eq!(plugin.name(), "word-filter");
        let said = message("Darn it");
        let (verdict, effects) = plugin.message(&said, &said.text).await.expect("call");
        assert_eq!(verdict, Verdict::Rewrite("**** it".into()));
        assert!(effects.is_empty());
        let join = JoinRequest {
            room: said.room,
            user: said.user,
            transport: "wss",
            addr: None,
        };
        assert_eq!(plugin.join(&join).await.expect("join").0, Admission::Allow);
    }

    #[tokio::test]
    async fn a_failed_call_drops_its_instance_and_ten_in_a_row_disable_the_plugin() {
        let dir = tempfile::tempdir().expect("dir");
        let path = example(dir.path(), "hostile", "[settings]\nmode = \"trap\"\n");
        let plugin = load(&path).await.expect("load");
        let pooled = |p: &Plugin| p.pool.lock().expect("pool").len();
        assert_eq!(pooled(&plugin), 1);
        let said = message("hi");
        for _ in 0..DISABLE_AFTER {
            assert_eq!(
                plugin.message(&said, &said.text).await.err(),
                Some(Failure::Failed)
            );
            assert_eq!(pooled(&plugin), 0, "a trapped instance is not reused");
        }
        assert!(plugin.is_disabled());
        assert_eq!(
            plugin.message(&said, &said.text).await.err(),
            Some(Failure::Disabled)
        );
    }

    #[tokio::test]
    async fn init_errors_and_invalid_bots_stop_the_load_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let path = example(dir.path(), "hostile", "[settings]\nmode = \"bad-init\"\n");
        let e = load(&path).await.expect_err("bad init");
        assert!(format!("{e:#}").contains("refusing to start"), "{e:#}");
        std::fs::write(settings_path(&path), "[settings]\nmode = \"bad-bot\"\n").expect("write");
        let e = load(&path).await.expect_err("bad bot");
        assert!(format!("{e:#}").contains("invalid bot name"), "{e:#}");
    }
}
