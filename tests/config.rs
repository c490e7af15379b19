//! Settings on the real binary: the `--config` file, `CHATGATE_*`
//! variables and flags in their order of precedence, `check-config`,
//! `print-default-config`, `--version`, `--log-format`, completions, the
//! man page, `--cert-dir` under a read-only working directory, and the
//! files in `contrib/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::WAIT;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_chatgate");

/// Flags for a server with a TLS listener only.
const TLS_ONLY: [&str; 8] = [
    "--tcp",
    "off",
    "--http",
    "off",
    "--https",
    "off",
    "--tls",
    "127.0.0.1:0",
];

/// The binary with `args`, in a clean environment: no `CHATGATE_*`
/// variable of the test's own reaches it, only those in `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("CHATGATE_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command
}

/// Runs the binary to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("run chatgate")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit status, showing stderr when it is not the expected one.
fn assert_status(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(out));
}

/// A configuration file holding `text` in a directory of its own.
struct ConfigFile {
    dir: tempfile::TempDir,
    path: String,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chatgate.toml");
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("utf-8 path").to_owned();
        ConfigFile { dir, path }
    }
}

/// `check-config` with `args`, which must succeed; its TOML on stdout.
fn effective(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["check-config"];
    all.extend(args);
    let out = run(&all, env);
    assert_status(&out, 0);
    stdout(&out)
}

/// Whether the TOML `text` has the line `key = value`.
fn has_setting(text: &str, key: &str, value: &str) -> bool {
    text.lines().any(|l| l == format!("{key} = {value}"))
}

#[test]
fn the_command_line_wins_over_the_environment_which_wins_over_the_file() {
    let file = ConfigFile::new("max-per-ip = 7\nrate = 3\nhistory = 5\nnats = [\"nats://f:1\"]\n");
    let out = effective(
        &["--config", &file.path, "--history", "9"],
        &[
            ("CHATGATE_RATE", "4"),
            ("CHATGATE_HISTORY", "6"),
            ("CHATGATE_NATS", "nats://e:1,nats://e:2"),
        ],
    );
    assert!(has_setting(&out, "max-per-ip", "7"), "{out}");
    assert!(has_setting(&out, "rate", "4"), "{out}");
    assert!(has_setting(&out, "history", "9"), "{out}");
    assert!(
        has_setting(&out, "nats", "[\"nats://e:1\", \"nats://e:2\"]"),
        "{out}"
    );
    // Untouched keys keep their defaults.
    assert!(has_setting(&out, "max-connections", "50000"), "{out}");
}

#[test]
fn a_flag_and_its_partner_may_come_from_different_layers() {
    let token = ConfigFile::new("a token\n");
    let token_path = token.path.clone();
    let file = ConfigFile::new(&format!("admin-token-file = {token_path:?}\n"));
    let out = effective(&["--config", &file.path, "--admin", "127.0.0.1:9"], &[]);
    assert!(has_setting(&out, "admin", "\"127.0.0.1:9\""), "{out}");
    let out = effective(
        &["--admin", "127.0.0.1:9"],
        &[("CHATGATE_ADMIN_TOKEN_FILE", &token_path)],
    );
    assert!(
        has_setting(&out, "admin-token-file", &format!("{token_path:?}")),
        "{out}"
    );
    // Still required once every layer is in.
    let out = run(&["check-config", "--admin", "127.0.0.1:9"], &[]);
    assert_status(&out, 2);
}

#[test]
fn the_classic_port_on_the_command_line_beats_tcp_in_the_environment() {
    let out = effective(&["4000"], &[("CHATGATE_TCP", "127.0.0.1:5")]);
    assert!(has_setting(&out, "tcp", "\"0.0.0.0:4000\""), "{out}");
}

#[test]
fn check_config_reads_the_bans_file() {
    let state = tempfile::tempdir().expect("temp dir");
    std::fs::write(state.path().join("bans.json"), "{ not json").expect("write");
    let out = run(
        &[
            "check-config",
            "--state-dir",
            state.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_status(&out, 1);
    assert!(stderr(&out).contains("bans.json"), "{}", stderr(&out));
}

#[test]
fn the_config_file_can_be_named_in_the_environment() {
    let file = ConfigFile::new("max-per-ip = 11\n");
    let out = effective(&[], &[("CHATGATE_CONFIG", &file.path)]);
    assert!(has_setting(&out, "max-per-ip", "11"), "{out}");
}

/// Starts the server; returns it (stopped when dropped) and its first
/// line on stdout, `None` if it exited first.
async fn first_line(command: std::process::Command) -> (tokio::process::Child, Option<String>) {
    let mut child = tokio::process::Command::from(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = timeout(WAIT, lines.next_line())
        .await
        .expect("a line or the end in time")
        .expect("read stdout");
    (child, line)
}

/// Starts the server with `args`, every listener but tcp off, state in a
/// temporary directory; returns the address of its `listening tcp` line.
async fn listening_tcp(args: &[&str], env: &[(&str, &str)]) -> String {
    let state = tempfile::tempdir().expect("temp dir");
    let mut all = vec!["--tls", "off", "--http", "off", "--https", "off"];
    all.extend(["--state-dir", state.path().to_str().expect("utf-8")]);
    all.extend(args);
    let (_server, line) = first_line(command(&all, env)).await;
    let line = line.expect("a listening line");
    line.strip_prefix("listening tcp ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

#[tokio::test]
async fn the_server_listens_where_the_layers_say() {
    let file = ConfigFile::new("tcp = \"127.0.0.1:0\"\n");
    let from_file = listening_tcp(&["--config", &file.path], &[]).await;
    assert!(from_file.starts_with("127.0.0.1:"), "{from_file}");

    let env = [("CHATGATE_TCP", "127.0.0.2:0")];
    let from_env = listening_tcp(&["--config", &file.path], &env).await;
    assert!(from_env.starts_with("127.0.0.2:"), "{from_env}");

    let args = ["--config", &file.path, "--tcp", "127.0.0.3:0"];
    let from_flag = listening_tcp(&args, &env).await;
    assert!(from_flag.starts_with("127.0.0.3:"), "{from_flag}");
}

#[test]
fn an_unknown_key_is_an_error_naming_it_and_the_file() {
    let file = ConfigFile::new("max-per-ip = 7\nmax_per_ip = 8\n");
    for args in [
        vec!["--config", &file.path],
        vec!["check-config", "--config", &file.path],
    ] {
        let out = run(&args, &[]);
        assert_status(&out, 1);
        let err = stderr(&out);
        assert!(err.contains(&file.path), "{err}");
        assert!(err.contains("unknown key \"max_per_ip\""), "{err}");
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn a_bad_value_in_the_file_is_an_error_naming_the_key_and_the_file() {
    for (text, key) in [
        ("max-per-ip = \"many\"", "max-per-ip"),
        ("tcp = \"localhost\"", "tcp"),
        ("history-bytes = 0", "history-bytes"),
        ("verbose = 1", "verbose"),
        ("operator = \"root:x\"", "operator"),
        ("log-format = \"xml\"", "log-format"),
    ] {
        let file = ConfigFile::new(text);
        let out = run(&["check-config", "--config", &file.path], &[]);
        assert_status(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}: {key}: ", file.path)),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_file_that_is_not_toml_or_not_there_is_an_error() {
    let file = ConfigFile::new("max-per-ip = \n");
    let out = run(&["--config", &file.path], &[]);
    assert_status(&out, 1);
    assert!(stderr(&out).contains(&file.path));

    let missing = file.dir.path().join("missing.toml");
    let missing = missing.to_str().expect("utf-8");
    let out = run(&["--config", missing], &[]);
    assert_status(&out, 1);
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
}

#[test]
fn a_bad_value_in_the_environment_is_an_error_naming_the_variable() {
    for (name, value) in [
        ("CHATGATE_MAX_PER_IP", "many"),
        ("CHATGATE_TCP", "localhost"),
        ("CHATGATE_LOG_FORMAT", "xml"),
    ] {
        let out = run(&["check-config"], &[(name, value)]);
        assert_status(&out, 1);
        assert!(
            stderr(&out).starts_with(&format!("chatgate: {name}: ")),
            "{}",
            stderr(&out)
        );
    }
    // The command line wins, so a bad variable it overrides is not read.
    let bad = [("CHATGATE_RATE", "fast")];
    assert_status(&run(&["check-config", "--rate", "5"], &bad), 0);
    // A tool that uses no setting does not read them either.
    assert_status(&run(&["completions", "bash"], &bad), 0);
}

#[test]
fn command_line_errors_stay_usage_errors() {
    let file = ConfigFile::new("max-per-ip = 7\n");
    for args in [
        vec!["--max-per-ip", "many"],
        vec!["--config", &file.path, "--no-such-flag"],
        vec!["check-config", "--rate", "fast"],
    ] {
        assert_status(&run(&args, &[]), 2);
    }
}

#[test]
fn check_config_refuses_what_the_server_would_refuse() {
    let state = tempfile::tempdir().expect("temp dir");
    let state = state.path().to_str().expect("utf-8");
    let missing = format!("{state}/missing.pem");
    for (args, says) in [
        (
            vec!["--allowed-origin", "chat.example.com"],
            "--allowed-origin",
        ),
        (vec!["--operator", "root:not-a-hash"], "--operator root"),
        (vec!["--cert", &missing, "--key", &missing], "missing.pem"),
        (
            vec!["--admin", "127.0.0.1:0", "--admin-token-file", &missing],
            "--admin-token-file",
        ),
    ] {
        let mut all = vec!["check-config", "--state-dir", state];
        all.extend(&args);
        let out = run(&all, &[]);
        assert_status(&out, 1);
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    // Without a TLS listener the certificate is not needed, so not checked.
    let args = [
        "--tls", "off", "--https", "off", "--cert", &missing, "--key", &missing,
    ];
    effective(&args, &[]);
    // A default pair that is missing would be generated: fine, and not
    // written by the check.
    effective(&["--state-dir", state], &[]);
    assert!(!Path::new(state).join("cert.pem").exists());
}

#[test]
fn check_config_output_loads_back_to_the_same_settings() {
    let operator = format!(
        "root:{}",
        chatgate::operators::hash_password("pw").expect("hash")
    );
    let args = [
        "--max-per-ip",
        "3",
        "--operator",
        &operator,
        "--nats",
        "nats://x:1",
        "-v",
    ];
    let first = effective(&args, &[]);
    assert!(has_setting(&first, "verbose", "true"), "{first}");
    assert!(first.contains(&operator), "{first}");
    let file = ConfigFile::new(&first);
    assert_eq!(effective(&["--config", &file.path], &[]), first);
}

#[test]
fn print_default_config_loads_back_to_the_defaults() {
    let out = run(&["print-default-config"], &[]);
    assert_status(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("# Most chat connections from one address"),
        "{text}"
    );
    assert!(has_setting(&text, "max-per-ip", "100"), "{text}");
    let file = ConfigFile::new(&text);
    assert_eq!(
        effective(&["--config", &file.path], &[]),
        effective(&[], &[])
    );
}

#[test]
fn version_names_the_commit() {
    let out = run(&["--version"], &[]);
    assert_status(&out, 0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| stdout(&o).trim().to_owned());
    let expected = format!("chatgate {} ({commit})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&out), expected);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let state = tempfile::tempdir().expect("temp dir");
    let mut args = TLS_ONLY.to_vec();
    args.extend(["--log-format", "json", "--state-dir"]);
    args.push(state.path().to_str().expect("utf-8"));
    let mut child = tokio::process::Command::from(command(&args, &[]))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // The first run generates a certificate and says so, then loads it.
    for message in ["generated a self-signed certificate", "certificate loaded"] {
        let line = timeout(WAIT, lines.next_line())
            .await
            .expect("a log line in time")
            .expect("read stderr")
            .expect("a log line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        let text = event["fields"]["message"].as_str().expect("a message");
        assert!(text.starts_with(message), "{line}");
        assert!(event["fields"]["sha256"].is_string(), "{line}");
    }
}

#[test]
fn completions_and_the_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef chatgate"),
        ("fish", "complete -c chatgate"),
    ] {
        let out = run(&["completions", shell], &[]);
        assert_status(&out, 0);
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("max-per-ip"), "{shell}");
        assert!(script.contains("check-config"), "{shell}");
    }
    assert_status(&run(&["completions", "tcsh"], &[]), 2);
    let out = run(&["man"], &[]);
    assert_status(&out, 0);
    let page = stdout(&out);
    assert!(page.contains(".TH chatgate 1"), "{page}");
    assert!(page.contains("max\\-per\\-ip"), "{page}");
}

/// A directory nobody but root may write to, restored on drop so that it
/// can be removed.
struct ReadOnlyDir(tempfile::TempDir);

impl ReadOnlyDir {
    fn new() -> ReadOnlyDir {
        let dir = tempfile::tempdir().expect("temp dir");
        set_mode(dir.path(), 0o555);
        ReadOnlyDir(dir)
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        set_mode(self.0.path(), 0o755);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Starts the server with TLS only, in `cwd`; true once it listens, false
/// if it exits first.
async fn serves_tls_from(cwd: &Path, args: &[&str]) -> bool {
    let mut all = TLS_ONLY.to_vec();
    all.extend(args);
    let mut command = command(&all, &[]);
    command.current_dir(cwd);
    let (_server, line) = first_line(command).await;
    line.is_some_and(|l| l.starts_with("listening tls "))
}

#[tokio::test]
async fn a_read_only_working_directory_works_with_writable_state_and_cert_dirs() {
    let cwd = ReadOnlyDir::new();
    let writable = tempfile::tempdir().expect("temp dir");
    let state: PathBuf = writable.path().join("state");
    let certs: PathBuf = writable.path().join("certs");
    let (state_flag, certs_flag) = (
        state.to_str().expect("utf-8"),
        certs.to_str().expect("utf-8"),
    );

    let args = ["--state-dir", state_flag, "--cert-dir", certs_flag];
    assert!(serves_tls_from(cwd.0.path(), &args).await);
    assert!(certs.join("cert.pem").is_file() && certs.join("key.pem").is_file());
    assert!(!state.join("cert.pem").exists());

    // Without --cert-dir the pair goes to the state directory.
    let other = writable.path().join("other-state");
    let other_flag = other.to_str().expect("utf-8");
    assert!(serves_tls_from(cwd.0.path(), &["--state-dir", other_flag]).await);
    assert!(other.join("cert.pem").is_file() && other.join("key.pem").is_file());

    // Nothing was written where the server ran. (Root may write there
    // anyway; anyone else is refused, so the default `state/` fails.)
    assert_eq!(std::fs::read_dir(cwd.0.path()).expect("list").count(), 0);
    if !rustix::process::geteuid().is_root() {
        assert!(!serves_tls_from(cwd.0.path(), &[]).await);
    }
}

/// A file of this repository's `contrib/`.
fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

#[test]
fn the_example_configuration_checks() {
    let state = tempfile::tempdir().expect("temp dir");
    let example = contrib("chatgate.toml");
    let out = effective(
        &[
            "--config",
            example.to_str().expect("utf-8"),
            "--state-dir",
            state.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(has_setting(&out, "log-format", "\"json\""), "{out}");
    // Given on the command line here, it beats the file's /var/lib/chatgate.
    assert!(
        has_setting(
            &out,
            "state-dir",
            &format!("{:?}", state.path().to_str().expect("utf-8"))
        ),
        "{out}"
    );
    // The file names the unit's state directory itself.
    let text = std::fs::read_to_string(&example).expect("read the example");
    assert!(text.contains("\nstate-dir = \"/var/lib/chatgate\"\n"));
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(contrib("chatgate.service")).expect("read the unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/chatgate --config /etc/chatgate/chatgate.toml\n")
    );
    assert!(unit.contains("StateDirectory=chatgate\n"));
    // systemd-analyze checks that ExecStart's binary exists: point it at
    // the one just built.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("chatgate.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/chatgate", BIN)).expect("write unit");
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output();
    let Some(out) = common::tool(verify, "systemd-analyze") else {
        return;
    };
    // It warns about unknown keys and bad values but still exits 0.
    let warnings: Vec<&str> = std::str::from_utf8(&out.stderr)
        .expect("utf-8")
        .lines()
        .filter(|l| l.contains("chatgate.service"))
        .collect();
    assert!(
        out.status.success() && warnings.is_empty(),
        "{}",
        stderr(&out)
    );
}

/// `chatgate hash-password` with `input` on standard input.
fn hash_password(input: &str) -> Output {
    use std::io::Write as _;
    let mut child = command(&["hash-password"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("wait")
}

#[test]
fn hash_password_makes_a_hash_the_server_takes() {
    let out = hash_password("s3cret\n");
    assert_status(&out, 0);
    let hash = stdout(&out).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let operator = format!("root:{hash}");
    effective(&["--operator", &operator], &[]);
    // /oper takes the password as one word: one with blanks is refused.
    let out = hash_password("two words\n");
    assert_status(&out, 1);
    assert!(stderr(&out).contains("blanks"), "{}", stderr(&out));
    let out = hash_password("\n");
    assert_status(&out, 1);
}

#[test]
fn check_config_hides_credentials_in_nats_urls() {
    let out = effective(
        &[
            "--nats",
            "nats://alice:s3cret@127.0.0.1:4222,nats://127.0.0.1:4223",
        ],
        &[],
    );
    assert!(!out.contains("s3cret") && !out.contains("alice"), "{out}");
    assert!(
        has_setting(
            &out,
            "nats",
            "[\"nats://***@127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]"
        ),
        "{out}"
    );
}
