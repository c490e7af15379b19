//! Where settings come from: the command line, the environment, the
//! configuration file and the defaults, in that order of precedence.
//!
//! This module owns the layering and nothing else: every setting stays
//! defined once, as an argument of the clap [`Config`], and its value
//! parser is the only thing that ever parses its value, whichever layer the
//! value comes from. It never hand-parses a value.
//!
//! - The environment is clap's own: [`command`] gives every long flag the
//!   variable `CHATGATE_<FLAG>` (upper case, `-` as `_`), so clap ranks it
//!   below the command line and above the defaults.
//! - The file (`--config PATH`, or `CHATGATE_CONFIG`) is TOML, one key per
//!   long flag. A file value is used only for an argument whose value would
//!   otherwise be its default: it is checked with that argument's value
//!   parser (so a bad one is an error naming the key and the file), then
//!   the command line is parsed again with `--key=value` appended for each,
//!   so that clap's rules between arguments (`--cert` requires `--key`)
//!   hold for the file too.
//!
//! Errors on the command line are clap's own (exit status 2); errors in the
//! environment are [`LoadError::Env`], and in the file [`LoadError::File`]
//! or [`LoadError::Read`] (exit status 1), each naming the variable or the
//! file and key.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::{Config, Tool};

/// What every environment variable's name starts with.
pub const ENV_PREFIX: &str = "CHATGATE_";

/// The argument naming the configuration file; not a key of the file.
pub const CONFIG_ARG: &str = "config";

/// The subcommand that takes the server's flags to check them.
pub const CHECK_CONFIG: &str = "check-config";

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The command line (or an environment variable) is wrong, or asks for
    /// `--help` or `--version`: clap's own error, which
    /// [`clap::Error::exit`] prints with its usual exit status (2, or 0 for
    /// help and version).
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// An environment variable holds a value its flag refuses.
    #[error("{name}: {message}")]
    Env {
        /// The variable, like `CHATGATE_MAX_PER_IP`.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The configuration file is not TOML, has an unknown key, or a value
    /// its argument refuses; the message names the key.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Settings loaded from every layer, with what they were loaded from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings; `command` is the tool asked for, if any.
    pub config: Config,
    /// The arguments the settings were read from (the top level's, or
    /// `check-config`'s), for rendering them back.
    pub(crate) matches: ArgMatches,
}

/// The full command line, as `--help`, the completions and the man page
/// show it: [`Config`]'s arguments, each with its `CHATGATE_*`
/// environment variable, and `check-config` taking the same arguments as
/// the server.
pub fn command() -> Command {
    command_with_env(EnvAt::Everywhere, false)
}

/// Which arguments read their environment variables. Clap reads them for
/// every argument of the top level even when a subcommand runs, so a
/// command that loads settings gives them only to the level whose
/// settings are used: a bad variable then stops only what would use it.
#[derive(Debug, Clone, Copy)]
enum EnvAt {
    /// Both levels, for documentation.
    Everywhere,
    /// The server's arguments.
    Server,
    /// `check-config`'s arguments.
    CheckConfig,
    /// None: the other tools use no setting.
    Nowhere,
}

/// The command, its arguments reading their environment variables where
/// `at` says. With `port_given` (the positional PORT on the command line),
/// `tcp` reads none: the command line wins, and PORT is how it says `tcp`.
fn command_with_env(at: EnvAt, port_given: bool) -> Command {
    let server = Config::command();
    let check: Vec<Arg> = server.get_arguments().cloned().collect();
    let (top, sub) = match at {
        EnvAt::Everywhere => (true, true),
        EnvAt::Server => (true, false),
        EnvAt::CheckConfig => (false, true),
        EnvAt::Nowhere => (false, false),
    };
    let env = move |on: bool| {
        move |arg: Arg| {
            if on && !(port_given && arg.get_id() == "tcp") {
                with_env(arg)
            } else {
                arg
            }
        }
    };
    server
        .mut_args(env(top))
        .mut_subcommand(CHECK_CONFIG, |c| c.args(check.into_iter().map(env(sub))))
}

/// The environment variable of a long flag: `max-per-ip` is
/// `CHATGATE_MAX_PER_IP`.
pub fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

fn with_env(arg: Arg) -> Arg {
    match arg.get_long().map(env_name) {
        // Values stay out of --help: a NATS URL may hold a password.
        Some(name) => arg.env(name).hide_env_values(true),
        None => arg,
    }
}

/// The arguments that are keys of the configuration file: every long flag
/// but `--config` itself (the positional PORT has none).
pub fn file_keys(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|arg| {
        arg.get_long().is_some()
            && !arg.is_positional()
            && !matches!(arg.get_id().as_str(), CONFIG_ARG | "help" | "version")
    })
}

/// Parses `argv` (program name first), then the environment, then the file
/// named by `--config`, as described in the module docs.
pub fn load<I, T>(argv: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    // The command line alone first: its errors are usage errors whatever
    // the environment holds. Help is shown with the variables, though.
    let plain = lenient(command_with_env(EnvAt::Nowhere, false))
        .try_get_matches_from(&argv)
        .map_err(|e| match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                command().try_get_matches_from(&argv).err().unwrap_or(e)
            }
            _ => e,
        })?;
    let (at, level) = match plain.subcommand() {
        None => (EnvAt::Server, &plain),
        Some((CHECK_CONFIG, sub)) => (EnvAt::CheckConfig, sub),
        Some((_, sub)) => (EnvAt::Nowhere, sub),
    };
    let port_given = level.ids().any(|id| id == "port")
        && level.value_source("port") == Some(ValueSource::CommandLine);
    let cmd = command_with_env(at, port_given);
    // A flag's partner may come from the file (`--admin` here, its token
    // file there): which arguments require others is checked once every
    // layer is in.
    let parse = |cmd: Command, argv: &[OsString]| {
        cmd.try_get_matches_from(argv)
            .map_err(|e| env_error(&e).unwrap_or(LoadError::Args(e)))
    };
    let matches = parse(lenient(cmd.clone()), &argv)?;
    let settings_file = settings(&cmd, &matches)
        .and_then(|(c, m)| Some((c, m, m.get_one::<PathBuf>(CONFIG_ARG)?.clone())));
    let Some((settings_cmd, settings, path)) = settings_file else {
        return loaded(parse(cmd, &argv)?);
    };
    let text = fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    let extra = file_args(settings_cmd, settings, &text).map_err(|message| LoadError::File {
        path: path.clone(),
        message,
    })?;
    if extra.is_empty() {
        return loaded(parse(cmd, &argv)?);
    }
    // The command line alone parsed, so whatever fails now is the file's.
    let matches = cmd
        .try_get_matches_from(argv.into_iter().chain(extra))
        .map_err(|e| LoadError::File {
            path,
            message: clap_message(&e),
        })?;
    loaded(matches)
}

/// `cmd` with no argument requiring another, for the passes before every
/// layer is in.
fn lenient(cmd: Command) -> Command {
    let relax = |arg: Arg| arg.requires(clap::builder::Resettable::<clap::Id>::Reset);
    let cmd = cmd.mut_args(relax);
    match cmd.find_subcommand(CHECK_CONFIG).is_some() {
        true => cmd.mut_subcommand(CHECK_CONFIG, |c| c.mut_args(relax)),
        false => cmd,
    }
}

/// The error naming the environment variable, when the value clap refused
/// is that variable's: clap's own message names only the flag.
fn env_error(e: &clap::Error) -> Option<LoadError> {
    use clap::error::{ContextKind, ContextValue};
    let ContextValue::String(flag) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let ContextValue::String(value) = e.get(ContextKind::InvalidValue)? else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
    let name = env_name(long);
    (std::env::var_os(&name)? == value.as_str()).then(|| LoadError::Env {
        name,
        message: clap_message(e),
    })
}

/// The command and matches that hold the server's settings: the top
/// level's, or `check-config`'s; `None` for the other tools, which have
/// no settings.
fn settings<'a>(
    cmd: &'a Command,
    matches: &'a ArgMatches,
) -> Option<(&'a Command, &'a ArgMatches)> {
    match matches.subcommand() {
        None => Some((cmd, matches)),
        Some((CHECK_CONFIG, sub)) => Some((cmd.find_subcommand(CHECK_CONFIG)?, sub)),
        Some(_) => None,
    }
}

fn loaded(matches: ArgMatches) -> Result<Loaded, LoadError> {
    match matches.subcommand() {
        Some((CHECK_CONFIG, sub)) => {
            let sub = sub.clone();
            let mut config = Config::from_arg_matches(&sub)?;
            config.command = Some(Tool::CheckConfig);
            Ok(Loaded {
                config,
                matches: sub,
            })
        }
        _ => Ok(Loaded {
            config: Config::from_arg_matches(&matches)?,
            matches,
        }),
    }
}

/// The arguments the file adds: `--key=value` for every value of every key
/// whose argument was given neither on the command line nor in the
/// environment, each value checked first. The error names the key.
fn file_args(cmd: &Command, matches: &ArgMatches, text: &str) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The TOML error spans several lines (the line quoted, a caret).
        e.to_string().trim_end().to_owned()
    })?;
    let given = |arg: &Arg| {
        matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut args = Vec::new();
    for (key, value) in &table {
        let arg = file_keys(cmd)
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .ok_or_else(|| format!("unknown key {key:?}"))?;
        let values = values(arg, key, value)?;
        for value in &values {
            check(arg, key, value)?;
        }
        // A key yields to the same setting given on the command line or in
        // the environment, and to one that excludes it there (PORT and tcp).
        let excluded = given(arg)
            || cmd
                .get_arguments()
                .filter(|other| given(other))
                .any(|other| conflicts(cmd, arg, other));
        if excluded {
            continue;
        }
        args.extend(values.into_iter().map(|v| {
            match v {
                // A flag: `--verbose`, and nothing for `false`, its default.
                FileValue::Flag => OsString::from(format!("--{key}")),
                FileValue::Value(v) => OsString::from(format!("--{key}={v}")),
            }
        }));
    }
    Ok(args)
}

fn conflicts(cmd: &Command, a: &Arg, b: &Arg) -> bool {
    let names = |x: &Arg, y: &Arg| {
        cmd.get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    names(a, b) || names(b, a)
}

/// One value for the command line, from the file.
enum FileValue {
    /// A flag set to `true`.
    Flag,
    /// A value, as it would be typed after `--key=`.
    Value(String),
}

/// The values of one key: a boolean for a flag, an array for a repeatable
/// argument, else one string or integer.
fn values(arg: &Arg, key: &str, value: &toml::Value) -> Result<Vec<FileValue>, String> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(FileValue::Value(s.clone())),
        toml::Value::Integer(i) => Ok(FileValue::Value(i.to_string())),
        other => Err(format!(
            "{key}: expected a string or an integer, got {}",
            other.type_str()
        )),
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(set)) => Ok(if *set {
            vec![FileValue::Flag]
        } else {
            Vec::new()
        }),
        (ArgAction::SetTrue, other) => Err(format!(
            "{key}: expected true or false, got {}",
            other.type_str()
        )),
        (ArgAction::Append, toml::Value::Array(items)) => items.iter().map(scalar).collect(),
        (ArgAction::Append, other) => Err(format!(
            "{key}: expected an array, like {key} = [...], got {}",
            other.type_str()
        )),
        (_, toml::Value::Array(_)) => Err(format!("{key}: expected one value, got an array")),
        (_, other) => scalar(other).map(|v| vec![v]),
    }
}

/// Checks a value with its argument's own value parser, on a command that
/// has that argument alone (so that rules between arguments wait for the
/// full parse).
fn check(arg: &Arg, key: &str, value: &FileValue) -> Result<(), String> {
    let FileValue::Value(value) = value else {
        return Ok(());
    };
    let probe = Arg::new("value")
        .long(key.to_owned())
        .action(ArgAction::Set)
        .value_delimiter(arg.get_value_delimiter())
        .value_parser(arg.get_value_parser().clone());
    Command::new("chatgate")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe)
        .try_get_matches_from([format!("--{key}={value}")])
        .map(drop)
        .map_err(|e| format!("{key}: {}", clap_message(&e)))
}

/// Clap's message on one line, without its `error: ` prefix and the usage
/// that follows the first blank line.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A configuration file holding `text`.
    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    fn load_with(text: &str, flags: &[&str]) -> Result<Config, LoadError> {
        let file = file(text);
        let path = file.path().to_str().expect("utf-8").to_owned();
        let mut argv = vec!["chatgate", "--config", &path];
        argv.extend(flags);
        load(argv).map(|l| l.config)
    }

    fn file_error(text: &str) -> String {
        match load_with(text, &[]) {
            Err(e @ LoadError::File { .. }) => e.to_string(),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn file_values_replace_defaults() {
        let c = load_with(
            "max-per-ip = 7\ntcp = \"127.0.0.1:4000\"\nverbose = true\n\
             operator = [\"a:x\", \"b:y\"]\nnats = [\"nats://a:1,nats://b:2\"]\n\
             log-format = \"json\"\nstate-dir = \"/tmp/s\"\n",
            &[],
        )
        .expect("loads");
        assert_eq!(c.max_per_ip, 7);
        assert_eq!(c.tcp_listen().to_string(), "127.0.0.1:4000");
        assert!(c.verbose);
        assert_eq!(c.operator, ["a:x", "b:y"]);
        assert_eq!(c.nats, ["nats://a:1", "nats://b:2"]);
        assert_eq!(c.log_format, super::super::LogFormat::Json);
        assert_eq!(c.cert_dir(), std::path::Path::new("/tmp/s"));
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let c = load_with(
            "max-per-ip = 7\nrate = 3\noperator = [\"a:x\"]\ntcp = \"127.0.0.1:1\"",
            &["--max-per-ip", "9", "--operator", "c:z", "4000"],
        )
        .expect("loads");
        assert_eq!((c.max_per_ip, c.rate), (9, 3));
        assert_eq!(c.operator, ["c:z"]);
        // The positional PORT excludes the file's tcp instead of clashing.
        assert_eq!(c.tcp_listen().to_string(), "0.0.0.0:4000");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
        let e = file_error("max-per-ip = 1\nmax-per-pi = 2\n");
        assert!(e.contains("unknown key \"max-per-pi\""), "{e}");
        assert!(e.contains(".tmp"), "names the file: {e}");
        for (text, key) in [
            ("max-per-ip = \"lots\"", "max-per-ip"),
            ("max-per-ip = -1", "max-per-ip"),
            ("history-bytes = 0", "history-bytes"),
            ("tcp = \"nowhere\"", "tcp"),
            ("node-name = \"a b\"", "node-name"),
            ("log-format = \"xml\"", "log-format"),
            ("verbose = \"yes\"", "verbose"),
            ("operator = \"a:x\"", "operator"),
            ("rate = [1]", "rate"),
            ("rate = 1.5", "rate"),
        ] {
            let e = file_error(text);
            assert!(e.contains(&format!("{key}: ")), "{text}: {e}");
        }
        // Not keys: the positional PORT and --config itself.
        for text in ["port = 1", "config = \"x\"", "help = true"] {
            assert!(file_error(text).contains("unknown key"), "{text}");
        }
        assert!(file_error("rate = ").contains("TOML parse error"));
    }

    #[test]
    fn rules_between_arguments_hold_in_the_file() {
        let e = file_error("cert = \"c.pem\"");
        assert!(e.contains("--key"), "{e}");
        assert!(load_with("cert = \"c.pem\"\nkey = \"k.pem\"", &[]).is_ok());
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = load(["chatgate", "--config", "/nonexistent/chatgate.toml"]).unwrap_err();
        assert!(matches!(e, LoadError::Read { .. }));
        assert!(e.to_string().starts_with("/nonexistent/chatgate.toml: "));
    }

    #[test]
    fn check_config_takes_the_server_flags_and_the_file() {
        let file = file("rate = 5\nmax-per-ip = 6");
        let path = file.path().to_str().expect("utf-8");
        let argv = ["chatgate", "check-config", "--config", path, "--rate", "8"];
        let c = load(argv).expect("loads").config;
        assert!(matches!(c.command, Some(Tool::CheckConfig)));
        assert_eq!((c.rate, c.max_per_ip), (8, 6));
    }

    #[test]
    fn every_long_flag_has_its_environment_variable() {
        assert_eq!(env_name("max-per-ip"), "CHATGATE_MAX_PER_IP");
        let cmd = command();
        for arg in file_keys(&cmd) {
            let long = arg.get_long().expect("a long flag");
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&env_name(long))));
        }
    }
}
