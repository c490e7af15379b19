//! The WebAssembly plugins of the plugin rows: which built plugin, with
//! which settings, copied where the spawned chatgate loads it; and the time
//! per hook call that `chatgate check-plugin` measures for each.
//!
//! The plugins are built by `plugins/build` into `plugins/out/`; the suite
//! never builds them, it only copies them into a directory of its own with
//! their settings files beside them (chatgate reads `NAME.toml` beside
//! `NAME.wasm`, and knows the plugin by the stem).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;

/// Calls of each hook per `check-plugin` run.
pub const HOOK_CALLS: u32 = 100_000;

/// Longest a `check-plugin` run may take before it is stopped.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where `plugins/build` puts the plugins, relative to the workspace.
pub const BUILT: &str = "plugins/out";

/// A plugin loaded into chatgate for a plugin row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SuitePlugin {
    /// `hostile.wasm` in `pass` mode: every hook is called and does
    /// nothing, so the row measures what calling a plugin costs.
    PassThrough,
    /// The example word filter, masking two words the generator's lines
    /// never contain: every line is checked and passes.
    WordFilter,
}

impl SuitePlugin {
    /// Both, in the order their rows run.
    pub const ALL: [SuitePlugin; 2] = [SuitePlugin::PassThrough, SuitePlugin::WordFilter];

    /// The name chatgate knows it by: the stem of its copy.
    pub fn name(self) -> &'static str {
        match self {
            SuitePlugin::PassThrough => "pass-through",
            SuitePlugin::WordFilter => "word-filter",
        }
    }

    /// The file `plugins/build` makes.
    pub fn built(self) -> &'static str {
        match self {
            SuitePlugin::PassThrough => "hostile.wasm",
            SuitePlugin::WordFilter => "word-filter.wasm",
        }
    }

    /// Its settings file.
    pub fn settings(self) -> &'static str {
        match self {
            SuitePlugin::PassThrough => "[settings]\nmode = \"pass\"\n",
            SuitePlugin::WordFilter => "[settings]\nwords = \"darn, heck\"\n",
        }
    }

    /// The copy's file name in the plugin directory.
    pub fn file(self) -> String {
        format!("{}.wasm", self.name())
    }
}

/// The suite's copies of the plugins with their settings, in a temporary
/// directory removed when this is dropped.
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
}

/// Temporary plugin directories made by this process.
static DIRS: AtomicU32 = AtomicU32::new(0);

impl PluginDir {
    /// Copies each of `plugins` from `<workspace>/plugins/out` into a fresh
    /// temporary directory and writes its settings beside it.
    ///
    /// # Errors
    /// A built plugin is missing (the message says to run `plugins/build`),
    /// or the copy cannot be made.
    pub fn prepare(workspace: &Path, plugins: &[SuitePlugin]) -> Result<PluginDir, LoadError> {
        let built = workspace.join(BUILT);
        let missing: Vec<String> = plugins
            .iter()
            .map(|p| built.join(p.built()))
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::Scenario(format!(
                "the plugin rows need {}: run plugins/build first (the suite does not build plugins)",
                missing.join(" and ")
            )));
        }
        let dir = std::env::temp_dir().join(format!(
            "chatgate-load-plugins-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let made = PluginDir { dir };
        for &plugin in plugins {
            std::fs::copy(built.join(plugin.built()), made.path(plugin))?;
            std::fs::write(
                made.dir.join(format!("{}.toml", plugin.name())),
                plugin.settings(),
            )?;
        }
        Ok(made)
    }

    /// The copy of `plugin`, to give chatgate as `--plugin`.
    pub fn path(&self, plugin: SuitePlugin) -> PathBuf {
        self.dir.join(plugin.file())
    }

    /// A state directory for the servers that load the plugins (their
    /// compiled code is kept there): absolute, as chatgate needs it with
    /// `--plugin`, and removed with the copies.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One hook's line of `chatgate check-plugin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookTiming {
    /// `join`, `message`, `command` or `leave`.
    pub hook: String,
    /// Whether the plugin asks for the hook; the server never calls a hook
    /// it does not ask for, and `check-plugin` does not time it (the
    /// figures are then 0).
    pub asked: bool,
    /// Calls timed.
    pub calls: u64,
    /// Median time of one call, ns.
    pub median_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Calls that failed (from a `failures HOOK N` line; 0 without one).
    pub failures: u64,
}

/// Every `check-plugin` run of one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginCheck {
    /// The plugin.
    pub plugin: SuitePlugin,
    /// The command that runs it once.
    pub command: String,
    /// Each successful run's hooks.
    pub runs: Vec<Vec<HookTiming>>,
    /// Why other runs failed.
    pub errors: Vec<String>,
}

/// Parses `check-plugin`'s report: lines
/// `hook NAME calls N median_ns NS p99_ns NS`, `hook NAME not asked for`
/// for a hook the plugin does not ask for, and `failures NAME N` for a hook
/// whose calls failed; other lines (the plugin's bots and tick) are
/// skipped.
///
/// # Errors
/// A `hook` or `failures` line not in that form, or no `hook` line at all.
pub fn parse_hooks(output: &str) -> Result<Vec<HookTiming>, String> {
    let mut hooks: Vec<HookTiming> = Vec::new();
    let mut failures: Vec<(String, u64)> = Vec::new();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("check-plugin printed an unexpected line: {line:?}");
        let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
        match words.as_slice() {
            [
                "hook",
                hook,
                "calls",
                calls,
                "median_ns",
                median,
                "p99_ns",
                p99,
            ] => {
                hooks.push(HookTiming {
                    hook: (*hook).to_owned(),
                    asked: true,
                    calls: number(calls)?,
                    median_ns: number(median)?,
                    p99_ns: number(p99)?,
                    failures: 0,
                });
            }
            ["hook", hook, "not", "asked", "for"] => hooks.push(HookTiming {
                hook: (*hook).to_owned(),
                asked: false,
                calls: 0,
                median_ns: 0,
                p99_ns: 0,
                failures: 0,
            }),
            ["hook", ..] => return Err(bad()),
            ["failures", hook, n] => failures.push(((*hook).to_owned(), number(n)?)),
            ["failures", ..] => return Err(bad()),
            _ => {}
        }
    }
    for (hook, n) in failures {
        match hooks.iter_mut().find(|h| h.hook == hook) {
            Some(timing) => timing.failures += n,
            None => {
                return Err(format!(
                    "check-plugin counted failures of unknown hook {hook}"
                ));
            }
        }
    }
    if hooks.is_empty() {
        return Err(format!(
            "check-plugin printed no `hook NAME ...` line:\n{}",
            output.trim_end()
        ));
    }
    Ok(hooks)
}

/// The shell command that times `plugin`'s hooks once, as the report shows
/// it (`$PLUGINS` is the directory of the copies).
pub fn check_command(plugin: SuitePlugin, server_core: usize) -> String {
    format!(
        "taskset -c {server_core} target/release/chatgate check-plugin $PLUGINS/{} --calls {HOOK_CALLS}",
        plugin.file()
    )
}

/// Runs `chatgate check-plugin PATH --calls N`, pinned to `core` when
/// given, and parses its hook lines.
///
/// # Errors
/// chatgate cannot be started, exits unsuccessfully (its message is
/// returned), runs past the time limit, or prints no hook lines.
pub async fn check_plugin(
    chatgate: &Path,
    plugin: &Path,
    calls: u32,
    core: Option<usize>,
) -> Result<Vec<HookTiming>, LoadError> {
    let mut command = match core {
        Some(core) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(chatgate);
            c
        }
        None => tokio::process::Command::new(chatgate),
    };
    command
        .arg("check-plugin")
        .arg(plugin)
        .arg("--calls")
        .arg(calls.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CHECK_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            LoadError::Timeout(format!(
                "after {CHECK_TIMEOUT:?}: chatgate check-plugin {}",
                plugin.display()
            ))
        })?
        .map_err(|e| LoadError::Server(format!("cannot start {}: {e}", chatgate.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(LoadError::Server(format!(
            "chatgate check-plugin {}: {}: {why}",
            plugin.display(),
            output.status
        )));
    }
    parse_hooks(&stdout).map_err(LoadError::Server)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "plugin pass-through bots [] tick none
hook join calls 100000 median_ns 802 p99_ns 951
hook message calls 100000 median_ns 812 p99_ns 1530
hook command calls 100000 median_ns 841 p99_ns 962
hook leave calls 100000 median_ns 681 p99_ns 1012
";

    #[test]
    fn hook_lines_are_parsed_and_other_lines_skipped() {
        let hooks = parse_hooks(SAMPLE).unwrap();
        let names: Vec<&str> = hooks.iter().map(|h| h.hook.as_str()).collect();
        assert_eq!(names, ["join", "message", "command", "leave"]);
        assert_eq!(
            hooks[1],
            HookTiming {
                hook: "message".into(),
                asked: true,
                calls: 100_000,
                median_ns: 812,
                p99_ns: 1530,
                failures: 0,
            }
        );
    }

    #[test]
    fn hooks_not_asked_for_are_kept_untimed() {
        let out = "plugin word-filter bots [] tick none
hook join not asked for
hook message calls 100000 median_ns 1672 p99_ns 2834
hook command not asked for
hook leave not asked for
";
        let hooks = parse_hooks(out).unwrap();
        let asked: Vec<(&str, bool)> = hooks.iter().map(|h| (h.hook.as_str(), h.asked)).collect();
        assert_eq!(
            asked,
            [
                ("join", false),
                ("message", true),
                ("command", false),
                ("leave", false)
            ]
        );
        assert_eq!((hooks[0].calls, hooks[0].median_ns), (0, 0));
        assert_eq!(hooks[1].median_ns, 1672);
        assert!(parse_hooks("hook join not asked\n").is_err());
    }

    #[test]
    fn failures_are_added_to_their_hook() {
        let out = format!("{SAMPLE}failures message 3\n");
        let hooks = parse_hooks(&out).unwrap();
        assert_eq!(hooks[1].failures, 3);
        assert_eq!(hooks[0].failures, 0);
        assert!(parse_hooks(&format!("{SAMPLE}failures tick 1\n")).is_err());
    }

    #[test]
    fn malformed_or_missing_hook_lines_are_errors() {
        assert!(parse_hooks("plugin x bots [] tick none\n").is_err());
        assert!(parse_hooks("hook join calls 10 median_ns 1.5 p99_ns 2\n").is_err());
        assert!(parse_hooks("hook join calls 10 median_ns 1\n").is_err());
        assert!(parse_hooks("").is_err());
    }

    #[test]
    fn missing_plugins_name_plugins_build() {
        let empty =
            std::env::temp_dir().join(format!("chatgate-load-no-plugins-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let e = PluginDir::prepare(&empty, &SuitePlugin::ALL).unwrap_err();
        let _ = std::fs::remove_dir_all(&empty);
        let message = e.to_string();
        assert!(message.contains("plugins/build"), "{message}");
        assert!(message.contains("hostile.wasm"), "{message}");
        assert!(message.contains("word-filter.wasm"), "{message}");
    }

    #[test]
    fn copies_get_their_settings_beside_them_and_go_away() {
        let workspace = std::env::temp_dir().join(format!(
            "chatgate-load-fake-workspace-{}",
            std::process::id()
        ));
        let built = workspace.join(BUILT);
        std::fs::create_dir_all(&built).unwrap();
        for p in SuitePlugin::ALL {
            std::fs::write(built.join(p.built()), b"\0asm").unwrap();
        }
        let dir = PluginDir::prepare(&workspace, &SuitePlugin::ALL).unwrap();
        let pass = dir.path(SuitePlugin::PassThrough);
        assert!(pass.ends_with("pass-through.wasm"));
        let settings = std::fs::read_to_string(pass.with_extension("toml")).unwrap();
        assert_eq!(settings, "[settings]\nmode = \"pass\"\n");
        let filter = dir.path(SuitePlugin::WordFilter);
        let settings = std::fs::read_to_string(filter.with_extension("toml")).unwrap();
        assert!(settings.contains("words = \"darn, heck\""));
        let root = pass.parent().unwrap().to_owned();
        drop(dir);
        assert!(!root.exists());
        let _ = std::fs::remove_dir_all(&workspace);
    }
}
