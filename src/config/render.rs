//! Settings written back as TOML: the effective settings that
//! `check-config` prints, and the commented default file that
//! `print-default-config` prints.
//!
//! Both walk the arguments of the clap command ([`load::command`]), taking
//! each key, default and help text from there, so neither can disagree
//! with `--help` or with what [`load::load`] accepts back.

use std::any::TypeId;
use std::fmt::Write;

use clap::{Arg, ArgAction, ArgMatches};

use super::load::{self, Loaded, file_keys};
use super::without_credentials;

/// Width the help comments are wrapped to, `# ` included.
const COMMENT_WIDTH: usize = 78;

/// The configuration file with every key at its default, each after its
/// help text; keys without a default are commented out.
pub fn default_file() -> String {
    let mut cmd = load::command();
    cmd.build();
    let mut out = String::from(
        "# chatgate configuration, for `chatgate --config PATH`.\n\
         #\n\
         # Every key is a long flag of `chatgate --help` without its dashes, at\n\
         # its default here. Each can also be set in the environment as\n\
         # CHATGATE_<KEY> (upper case, - as _: CHATGATE_MAX_PER_IP). The command\n\
         # line wins over the environment, which wins over this file.\n",
    );
    for arg in file_keys(&cmd) {
        let key = arg.get_long().unwrap_or_default();
        out.push('\n');
        comment(&mut out, &help(arg));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if defaults.is_empty() && !repeatable(arg) {
            let name = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map_or_else(|| key.to_uppercase(), ToString::to_string);
            let _ = writeln!(out, "# {key} = {}", toml::Value::String(name));
        } else {
            let _ = writeln!(out, "{key} = {}", value(arg, &defaults));
        }
    }
    out
}

impl Loaded {
    /// The keys whose effective values differ between these settings and
    /// `newer`, in file order.
    pub fn changed_keys(&self, newer: &Loaded) -> Vec<String> {
        let table =
            |loaded: &Loaded| -> toml::Table { loaded.to_toml().parse().unwrap_or_default() };
        let (old, new) = (table(self), table(newer));
        let mut cmd = load::command();
        cmd.build();
        file_keys(&cmd)
            .filter_map(|arg| arg.get_long())
            .filter(|key| old.get(*key) != new.get(*key))
            .map(str::to_owned)
            .collect()
    }

    /// The settings in effect, as a configuration file that loads back to
    /// the same settings (but for credentials in `nats` URLs, shown as
    /// `***`). Unset keys without a default are listed as comments.
    pub fn to_toml(&self) -> String {
        let mut cmd = load::command();
        cmd.build();
        let mut out = String::from(
            "# chatgate's settings: command line, environment, --config file and\n\
             # defaults together.\n",
        );
        for arg in file_keys(&cmd) {
            let key = arg.get_long().unwrap_or_default();
            let mut values = raw_values(&self.matches, arg);
            if key == "nats" {
                // Shown, not kept: credentials in the URLs stay out of it.
                values = values.iter().map(|url| without_credentials(url)).collect();
            }
            let rendered = match (key, self.config.port) {
                // The positional PORT is not a key; what it sets is tcp's.
                ("tcp", Some(_)) => toml::Value::String(self.config.tcp_listen().to_string()),
                _ if values.is_empty() && !repeatable(arg) => {
                    let _ = writeln!(out, "# {key} is not set");
                    continue;
                }
                _ => value(arg, &values),
            };
            let _ = writeln!(out, "{key} = {rendered}");
        }
        out
    }
}

fn raw_values(matches: &ArgMatches, arg: &Arg) -> Vec<String> {
    matches
        .get_raw(arg.get_id().as_str())
        .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// An argument's values as TOML: an array for a repeatable argument, else
/// the one value, typed as its value parser's output is (a boolean, an
/// integer, or else a string).
fn value(arg: &Arg, values: &[String]) -> toml::Value {
    let parser = arg.get_value_parser().type_id();
    let integer = [
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
    ]
    .into_iter()
    .any(|t| parser == t);
    let one = |v: &String| {
        if parser == TypeId::of::<bool>() {
            if let Ok(b) = v.parse() {
                return toml::Value::Boolean(b);
            }
        }
        if integer {
            if let Ok(i) = v.parse() {
                return toml::Value::Integer(i);
            }
        }
        toml::Value::String(v.clone())
    };
    if repeatable(arg) {
        toml::Value::Array(values.iter().map(one).collect())
    } else {
        values
            .first()
            .map_or_else(|| toml::Value::String(String::new()), one)
    }
}

/// An argument's help text, with its choices and environment variable.
fn help(arg: &Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    // The first paragraph is the help line; notes about the choices and
    // the variable go with it, and the reason for the default (a second
    // paragraph) after them.
    let (first, rest) = match text.split_once("\n\n") {
        Some((first, rest)) => (first.trim_end_matches('.').to_owned(), rest.to_owned()),
        None => (text.trim_end_matches('.').to_owned(), String::new()),
    };
    text = first;
    if !choices.is_empty() && !repeatable(arg) && arg.get_action().takes_values() {
        let _ = write!(text, ". One of: {}", choices.join(", "));
    }
    if let Some(env) = arg.get_env() {
        let _ = write!(text, ". Environment: {}", env.to_string_lossy());
    }
    if !rest.is_empty() {
        let _ = write!(text, "\n\n{rest}");
    }
    text
}

/// Writes `text` as `# ` comment lines of at most [`COMMENT_WIDTH`], a
/// `#` line between its paragraphs.
fn comment(out: &mut String, text: &str) {
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str("#\n");
        }
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > COMMENT_WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_gives_the_reasons_for_the_defaults() {
        let file = default_file();
        let at = file.find("\nmax-per-ip = 100\n").expect("max-per-ip");
        let before = &file[..at];
        let comment = &before[before.rfind("\n\n").expect("a comment")..];
        assert!(
            comment.contains("# Why the default: enough for a classroom"),
            "{comment}"
        );
        assert!(file.matches("# Why the default:").count() >= 10);
    }

    #[test]
    fn the_default_file_loads_back_to_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chatgate.toml");
        std::fs::write(&path, default_file()).expect("write");
        let from_file = load::load(["chatgate".as_ref(), "--config".as_ref(), path.as_os_str()])
            .expect("the default file loads");
        let defaults = load::load(["chatgate"]).expect("defaults");
        let mut without_path = from_file.config.clone();
        without_path.config = None;
        assert_eq!(
            format!("{without_path:?}"),
            format!("{:?}", defaults.config)
        );
        assert_eq!(from_file.to_toml(), defaults.to_toml());
    }

    #[test]
    fn the_default_file_has_every_key_with_its_help() {
        let file = default_file();
        let cmd = load::command();
        for arg in file_keys(&cmd) {
            let key = arg.get_long().expect("long");
            let set = format!("\n{key} = ");
            let unset = format!("\n# {key} = ");
            assert!(file.contains(&set) || file.contains(&unset), "{key}");
        }
        assert!(file.contains("\nmax-per-ip = 100\n"));
        assert!(file.contains("\nverbose = false\n"));
        assert!(file.contains("\nnats = []\n"));
        assert!(file.contains("\ntcp = \"0.0.0.0:1234\"\n"));
        assert!(file.contains("\nlog-format = \"text\"\n"));
        assert!(file.contains("# cert-dir = \"DIR\"\n"));
        assert!(file.contains("One of: text, json"));
        assert!(file.contains("Environment: CHATGATE_MAX_PER_IP"));
        assert!(
            file.lines()
                .all(|l| l.len() <= COMMENT_WIDTH || !l.starts_with('#'))
        );
    }

    #[test]
    fn effective_settings_load_back_to_themselves() {
        let first =
            load::load(["chatgate", "4000", "--operator", "a:b", "--rate", "3"]).expect("loads");
        let text = first.to_toml();
        assert!(text.contains("\ntcp = \"0.0.0.0:4000\"\n"), "{text}");
        assert!(text.contains("\noperator = [\"a:b\"]\n"), "{text}");
        assert!(text.contains("\nrate = 3\n"), "{text}");
        assert!(text.contains("\n# cert is not set\n"), "{text}");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("effective.toml");
        std::fs::write(&path, &text).expect("write");
        let again = load::load(["chatgate".as_ref(), "--config".as_ref(), path.as_os_str()])
            .expect("loads back");
        assert_eq!(again.to_toml(), text);
    }
}
