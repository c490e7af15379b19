//! WebAssembly plugins in a real server: the example plugins in `plugins/`
//! (built by `plugins/build`, which the test command runs first) against
//! real connections, every hook and decision, and the hostile fixture in
//! each of its modes to show that a plugin that loops, eats memory, traps,
//! answers megabytes or floods costs its own calls and nothing more.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::{Client, ServerLines, TestServer, error};
use tokio::time::timeout;

/// A built plugin copied into `dir` as `<name>.wasm` with `settings` beside
/// it as `<name>.toml`; returns the copy's path.
fn plugin(dir: &Path, built: &str, name: &str, settings: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/out")
        .join(format!("{built}.wasm"));
    assert!(
        from.exists(),
        "{} is missing: plugins/build makes it (the test command runs it first)",
        from.display()
    );
    let to = dir.join(format!("{name}.wasm"));
    std::fs::copy(&from, &to).expect("copy the plugin");
    std::fs::write(dir.join(format!("{name}.toml")), settings).expect("write settings");
    to
}

/// A server with these plugins, in order, and extra flags.
async fn server_with(plugins: &[PathBuf], flags: &[&str]) -> TestServer {
    let mut args: Vec<&str> = Vec::new();
    for path in plugins {
        args.extend(["--plugin", path.to_str().expect("utf-8 path")]);
    }
    args.extend(flags);
    TestServer::start(&args).await
}

/// The value of the sample `name` (with its labels as written) in a
/// `/metrics` text; 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `/metrics` of a server started with `--http` and metrics on it.
async fn metrics(server: &TestServer) -> String {
    common::http::request(server.addr(ListenerKind::Http), "GET /metrics HTTP/1.1")
        .await
        .body
}

#[tokio::test]
async fn the_word_filter_masks_or_drops_and_only_the_sender_hears_why() {
    let dir = tempfile::tempdir().expect("dir");
    let mask = plugin(
        dir.path(),
        "word-filter",
        "masker",
        "[settings]\nwords = \"darn, heck\"\n",
    );
    let server = server_with(&[mask], &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("oh DARN it, what the heck").await;
    for user in [&mut alice, &mut bob] {
        user.expect_line("alice: oh **** it, what the ****").await;
    }
    alice.send_line("/me says heck").await;
    bob.expect_line("* alice says ****").await;
    alice.expect_line("* alice says ****").await;

    let dropper = plugin(
        dir.path(),
        "word-filter",
        "dropper",
        "[settings]\nwords = \"darn\"\nmode = \"drop\"\n",
    );
    let server = server_with(&[dropper], &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("darn").await;
    alice.expect_line(&error("watch your language")).await;
    alice.send_line("a clean line").await;
    // Bob's next line is the clean one: the dropped line never reached him.
    bob.expect_line("alice: a clean line").await;
    alice.expect_line("alice: a clean line").await;
}

#[tokio::test]
async fn a_rewrite_is_cleaned_up_again_and_plugins_chain_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    // The first masks "darn"; the second then drops anything with "****"
    // in it, so it sees the first one's rewrite.
    let first = plugin(
        dir.path(),
        "word-filter",
        "first",
        "[settings]\nwords = \"darn\"\n",
    );
    let second = plugin(
        dir.path(),
        "word-filter",
        "second",
        "[settings]\nwords = \"****\"\nmode = \"drop\"\nreason = \"masked twice\"\n",
    );
    let server = server_with(&[first, second], &[]).await;
    let mut alice = server.join("lobby", "alice").await;
    alice.send_line("darn").await;
    alice.expect_line(&error("masked twice")).await;
    alice.send_line("fine").await;
    alice.expect_line("alice: fine").await;
}

#[tokio::test]
async fn the_dice_bot_answers_in_the_room_and_its_name_is_reserved() {
    let dir = tempfile::tempdir().expect("dir");
    let dice = plugin(dir.path(), "dice", "dice", "");
    let server = server_with(&[dice], &["--http", "127.0.0.1:0"]).await;
    let mut alice = server.join("lobby", "alice").await;
    // A browser user in the same room, over WebSocket.
    let mut bob = Conn::ws(server.addr(ListenerKind::Http)).await;
    bob.join("lobby", "bob").await;
    alice.expect_line("bob has joined").await;

    alice.send_line("/roll 3d6").await;
    let line = alice.read_line().await;
    bob.expect_line(&line).await;
    let rolled = line
        .strip_prefix("dice: alice rolls 3d6: ")
        .unwrap_or_else(|| panic!("a roll, not {line:?}"));
    let (dice, total) = rolled.split_once(" = ").expect("a total");
    let dice: Vec<u32> = dice
        .split(" + ")
        .map(|d| d.parse().expect("a die"))
        .collect();
    assert_eq!(dice.len(), 3);
    assert!(dice.iter().all(|d| (1..=6).contains(d)), "{dice:?}");
    assert_eq!(
        dice.iter().sum::<u32>(),
        total.parse::<u32>().expect("total")
    );

    alice.send_line("/roll lots").await;
    alice
        .expect_line("*** usage: /roll NdM, N up to 100, M from 2 to 1000")
        .await;
    alice.send_line("/frobnicate").await;
    alice.expect_line(&error("unknown command")).await;
    // Bob heard neither: his next line is alice's next message.
    alice.send_line("done").await;
    bob.expect_line("alice: done").await;

    let mut mallory = server.connect_welcomed().await;
    for name in ["dice", "DICE"] {
        mallory.send_line(&format!("JOIN lobby {name}")).await;
        mallory
            .expect_line(&error("that user name is reserved"))
            .await;
    }
}

#[tokio::test]
async fn the_join_rule_refuses_as_a_failed_attempt_and_keeps_members_only_rooms() {
    let dir = tempfile::tempdir().expect("dir");
    let rule = plugin(
        dir.path(),
        "join-rule",
        "rule",
        "[settings]\ndeny = \"mallory\"\n\"members.vault\" = \"alice, bob\"\n",
    );
    let server = server_with(&[rule], &[]).await;
    let mut mallory = server.connect_welcomed().await;
    mallory.send_line("JOIN lobby Mallory").await;
    mallory
        .expect_line(&error("that name is not welcome here"))
        .await;
    // A failed attempt: five of them close the connection.
    for _ in 0..4 {
        mallory.send_line("JOIN lobby mallory").await;
        mallory.read_line().await;
    }
    mallory.expect_closed().await;

    let mut carol = server.connect_welcomed().await;
    carol.send_line("JOIN vault carol").await;
    carol.expect_line(&error("vault is for members only")).await;
    carol.join("lobby", "carol").await;
    carol.send_line("/join vault").await;
    carol.expect_line(&error("vault is for members only")).await;
    carol.send_line("still here").await;
    carol.expect_line("carol: still here").await;

    let mut alice = server.join("vault", "alice").await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in vault: alice").await;
}

#[tokio::test]
async fn a_ticking_bot_speaks_in_rooms_with_members_and_no_other_hook_is_called() {
    let dir = tempfile::tempdir().expect("dir");
    let ticker = plugin(
        dir.path(),
        "ticker",
        "ticker",
        "[settings]\nevery-ms = 1000\n",
    );
    let server = server_with(
        &[ticker],
        &["--http", "127.0.0.1:0", "--metrics-on", "public"],
    )
    .await;
    let mut alice = server.join("lobby", "alice").await;
    let line = timeout(Duration::from_secs(4), alice.read_line())
        .await
        .expect("a tick within the period and the tick task's slack");
    assert!(line.starts_with("clock: tick "), "{line:?}");
    // Hooks it did not ask for are never called.
    alice.send_line("a line").await;
    alice.expect_line("alice: a line").await;
    let calls = r#"chatgate_plugin_call_seconds_count{plugin="ticker",hook="message"}"#;
    assert_eq!(sample(&metrics(&server).await, calls), 0.0);
}

#[tokio::test]
async fn a_python_plugin_answers_commands_speaks_as_its_bot_and_filters() {
    let dir = tempfile::tempdir().expect("dir");
    let greeter = plugin(
        dir.path(),
        "greeter-py",
        "greeter",
        "[settings]\nabout = \"a room for tests\"\n",
    );
    // Compiling an 18 MB component takes seconds: a state directory kept
    // between runs keeps the compiled code too.
    let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-plugin-state");
    let state = state.to_str().expect("utf-8 path");
    let server = server_with(&[greeter], &["--state-dir", state]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("/about").await;
    alice.expect_line("*** a room for tests").await;
    alice.send_line("/hello").await;
    alice.expect_line("greeter: hello, alice!").await;
    bob.expect_line("greeter: hello, alice!").await;
    alice.send_line("STOP SHOUTING").await;
    alice.expect_line(&error("please do not shout")).await;
    alice.send_line("ok").await;
    bob.expect_line("alice: ok").await;
    alice.expect_line("alice: ok").await;
    // The leave hook: the bot says goodbye to whoever is left.
    bob.send_line("/quit").await;
    alice.expect_line("bob has left").await;
    alice.expect_line("greeter: goodbye, bob").await;
}

/// A server with the hostile plugin in `mode`, its settings extended by
/// `extra`, metrics on its HTTP listener, no rate limit, and `flags`.
async fn hostile(dir: &Path, mode: &str, extra: &str, flags: &[&str]) -> TestServer {
    let path = plugin(
        dir,
        "hostile",
        "hostile",
        &format!("{extra}[settings]\nmode = \"{mode}\"\n"),
    );
    let mut all = vec![
        "--http",
        "127.0.0.1:0",
        "--metrics-on",
        "public",
        "--rate",
        "0",
    ];
    all.extend(flags);
    server_with(&[path], &all).await
}

/// Sends `n` lines from `sender`, each of which must pass unchanged (the
/// plugin failed open), and checks that `other` still chats meanwhile.
async fn lines_pass(sender: &mut Client, other: &mut Client, n: usize) {
    for i in 0..n {
        sender.send_line(&format!("line {i}")).await;
        sender.expect_line(&format!("alice: line {i}")).await;
        other.expect_line(&format!("alice: line {i}")).await;
    }
    other.send_line("still served").await;
    other.expect_line("bob: still served").await;
    sender.expect_line("bob: still served").await;
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_budget_and_the_plugin_disabled() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "loop", "on-failure = \"open\"\n", &[]).await;
    // Joins fail open here (the settings say so), so users get in.
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    let started = std::time::Instant::now();
    lines_pass(&mut alice, &mut bob, 12).await;
    let m = metrics(&server).await;
    let timeouts = sample(
        &m,
        r#"chatgate_plugin_failures_total{plugin="hostile",hook="message",kind="timeout"}"#,
    );
    assert!(timeouts >= 8.0, "{timeouts} timeouts");
    assert_eq!(
        sample(&m, r#"chatgate_plugin_disabled{plugin="hostile"}"#),
        1.0
    );
    // Each looping call was cut at the budget: 12 lines (2 joins before
    // them) took far less than a second each.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_join_rule_that_traps_fails_closed_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "trap", "", &[]).await;
    let mut alice = server.connect_welcomed().await;
    alice.send_line("JOIN lobby alice").await;
    alice
        .expect_line(&error(chatgate::plugins::JOIN_CHECK_FAILED))
        .await;
    let open = hostile(dir.path(), "trap", "on-failure = \"open\"\n", &[]).await;
    let [mut alice, mut bob] = open.join_all("lobby", ["alice", "bob"]).await;
    // Lines pass as well: a trapping filter fails open.
    lines_pass(&mut alice, &mut bob, 3).await;
    let m = metrics(&open).await;
    assert!(
        sample(
            &m,
            r#"chatgate_plugin_failures_total{plugin="hostile",hook="message",kind="trap"}"#
        ) >= 3.0
    );
}

#[tokio::test]
async fn a_memory_bomb_is_capped_and_the_line_passes() {
    let dir = tempfile::tempdir().expect("dir");
    // A small cap, so the bomb meets it well within the time budget.
    let server = hostile(dir.path(), "memory", "", &["--plugin-memory-mib", "4"]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    lines_pass(&mut alice, &mut bob, 3).await;
    let m = metrics(&server).await;
    assert!(
        sample(
            &m,
            r#"chatgate_plugin_failures_total{plugin="hostile",hook="message",kind="memory"}"#
        ) >= 3.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_rewrite_or_answer_of_megabytes_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "huge", "", &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    lines_pass(&mut alice, &mut bob, 2).await;
    alice.send_line("/anything").await;
    alice.expect_line(&error("unknown command")).await;
    let m = metrics(&server).await;
    // Refused while being copied out of the plugin (more than a call may
    // hand over: a trap) or once copied (too long a text: invalid).
    for hook in ["message", "command"] {
        let failed: f64 = ["trap", "invalid"]
            .iter()
            .map(|kind| {
                sample(
                    &m,
                    &format!(
                        r#"chatgate_plugin_failures_total{{plugin="hostile",hook="{hook}",kind="{kind}"}}"#
                    ),
                )
            })
            .sum();
        assert!(failed >= 1.0, "{hook}: {m}");
    }
}

#[tokio::test]
async fn a_flooding_bot_gets_sixteen_lines_a_call_and_no_more() {
    let dir = tempfile::tempdir().expect("dir");
    // Budget enough for a thousand tries to say a line: what stops the
    // flood here is the cap on lines per call.
    let server = hostile(dir.path(), "flood", "", &["--plugin-budget-ms", "500"]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("/go").await;
    // The command's call may say at most 16 lines; then alice's marker.
    alice.send_line("marker").await;
    let before = bob.lines_until("alice: marker").await;
    let floods = before.iter().filter(|l| l.starts_with("flood: ")).count();
    assert!(
        floods <= 2 * chatgate::plugins::MAX_EFFECTS,
        "{floods} lines"
    );
    assert!(floods >= 1, "the bot said nothing: {before:?}");
    bob.send_line("still served").await;
    let after = bob.lines_until("bob: still served").await;
    assert!(after.iter().all(|l| l.starts_with("flood: ")), "{after:?}");
}

#[tokio::test]
async fn a_plugin_that_cannot_start_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("dir");
    for (mode, says) in [
        ("bad-init", "refusing to start"),
        ("bad-bot", "invalid bot name"),
    ] {
        let path = plugin(
            dir.path(),
            "hostile",
            mode,
            &format!("[settings]\nmode = \"{mode}\"\n"),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatgate"))
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--tls",
                "off",
                "--http",
                "off",
                "--https",
                "off",
            ])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--plugin")
            .arg(&path)
            .output()
            .expect("run chatgate");
        assert_eq!(out.status.code(), Some(1), "{mode}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{mode}: {stderr}");
        assert!(out.stdout.is_empty(), "{mode}: it listened");
    }
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not webassembly").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--tls",
            "off",
            "--http",
            "off",
            "--https",
            "off",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--plugin")
        .arg(&junk)
        .output()
        .expect("run chatgate");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a chatgate plugin"));
}

#[tokio::test]
async fn commands_and_lines_pass_untouched_through_a_pass_through_plugin() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "pass", "", &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    lines_pass(&mut alice, &mut bob, 3).await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in lobby: alice, bob").await;
    alice.send_line("/nope").await;
    alice.expect_line(&error("unknown command")).await;
    let m = metrics(&server).await;
    let calls = r#"chatgate_plugin_call_seconds_count{plugin="hostile",hook="message"}"#;
    assert_eq!(sample(&m, calls), 4.0, "one call per line, not per member");
    assert!(!m.contains("chatgate_plugin_failures_total{"), "{m}");
}

#[tokio::test]
async fn sighup_reloads_a_changed_plugin_and_keeps_the_old_one_when_the_new_fails() {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().expect("dir");
    let path = plugin(
        dir.path(),
        "word-filter",
        "filter",
        "[settings]\nwords = \"darn\"\n",
    );
    // The state directory (where compiled plugins are kept) relative, as
    // by default.
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .current_dir(dir.path())
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--tls",
            "off",
            "--http",
            "off",
            "--https",
            "off",
        ])
        .args(["--state-dir", "state"])
        .arg("--plugin")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut stdout = tokio::io::BufReader::new(process.stdout.take().expect("stdout")).lines();
    let mut log = tokio::io::BufReader::new(process.stderr.take().expect("stderr")).lines();
    let line = stdout.next_line().await.expect("read").expect("a line");
    let addr = line
        .strip_prefix("listening tcp ")
        .expect("listening tcp")
        .parse()
        .expect("address");
    let mut alice = Client::connect(addr).await;
    alice.expect_lines(&common::WELCOME).await;
    alice.join("lobby", "alice").await;
    alice.send_line("darn and heck").await;
    alice.expect_line("alice: **** and heck").await;

    let pid = rustix::process::Pid::from_raw(process.id().expect("pid") as i32).expect("pid");
    let hup = || rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("HUP");
    std::fs::write(
        dir.path().join("filter.toml"),
        "[settings]\nwords = \"heck\"\n",
    )
    .expect("settings");
    hup();
    common::log_until(&mut log, "plugins reloaded").await;
    assert!(dir.path().join("state/plugin-cache").is_dir());
    alice.send_line("darn and heck").await;
    alice.expect_line("alice: darn and ****").await;

    // A broken file: the plugin from before goes on.
    std::fs::write(&path, b"\0asm broken").expect("break the plugin");
    hup();
    let why = common::log_until(&mut log, "plugin not reloaded").await;
    assert!(why.contains("not a chatgate plugin"), "{why}");
    alice.send_line("darn and heck").await;
    alice.expect_line("alice: darn and ****").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_line_is_filtered_once_on_its_node_and_bots_reach_every_node() {
    let Some(nats) = common::nats::Nats::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let filter = plugin(
        dir.path(),
        "word-filter",
        "filter",
        "[settings]\nwords = \"darn\"\n",
    );
    let dice = plugin(dir.path(), "dice", "dice", "");
    let flags = [
        "--plugin",
        filter.to_str().expect("utf-8"),
        "--plugin",
        dice.to_str().expect("utf-8"),
        "--http",
        "127.0.0.1:0",
        "--metrics-on",
        "public",
    ];
    let a = common::nats::node(&nats, "a", &flags).await;
    let b = common::nats::node(&nats, "b", &flags).await;
    let mut alice = common::nats::tcp_user(&a, "lobby", "alice").await;
    let mut bob = common::nats::tcp_user(&b, "lobby", "bob").await;
    alice.expect_line("bob has joined").await;

    alice.send_line("oh darn").await;
    alice.expect_line("alice: oh ****").await;
    bob.expect_line("alice: oh ****").await;
    alice.send_line("/roll 1d6").await;
    let roll = alice.read_line().await;
    assert!(roll.starts_with("dice: alice rolls 1d6: "), "{roll}");
    bob.expect_line(&roll).await;
    // Bob's node may not take the bot's name either.
    let mut mallory = Conn::tcp(b.addr(ListenerKind::Tcp)).await;
    mallory.expect_lines(&common::WELCOME).await;
    mallory.send_line("JOIN lobby dice").await;
    mallory
        .expect_line(&error("that user name is reserved"))
        .await;

    let calls = r#"chatgate_plugin_call_seconds_count{plugin="filter",hook="message"}"#;
    assert_eq!(sample(&metrics(&a).await, calls), 1.0, "on alice's node");
    assert_eq!(sample(&metrics(&b).await, calls), 0.0, "on bob's node");
}

#[tokio::test]
async fn a_plugin_asleep_in_the_host_is_given_up_on_after_its_budget() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "sleep", "on-failure = \"open\"\n", &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    let started = std::time::Instant::now();
    lines_pass(&mut alice, &mut bob, 2).await;
    // Each line waited its budget and the slack past it, not an hour.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let m = metrics(&server).await;
    let timeouts =
        r#"chatgate_plugin_failures_total{plugin="hostile",hook="message",kind="timeout"}"#;
    // Alice's two lines and bob's one.
    assert_eq!(sample(&m, timeouts), 3.0);
}

#[tokio::test]
async fn a_bot_s_long_lines_are_capped_in_bytes_so_the_room_keeps_its_members() {
    let dir = tempfile::tempdir().expect("dir");
    let server = hostile(dir.path(), "huge", "", &["--plugin-budget-ms", "500"]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("/long").await;
    alice.send_line("/who").await;
    // A thousand lines of 20,000 bytes would have been 20 MB in each
    // member's queue; the cap lets through what fits 32 KiB, and both
    // members are still here to hear it.
    let lines = alice.lines_until("*** users in lobby: alice, bob").await;
    let long = lines.iter().filter(|l| l.starts_with("flood: y")).count();
    assert!(
        (1..=chatgate::plugins::MAX_EFFECT_BYTES / 20_000).contains(&long),
        "{long} long lines"
    );
    bob.send_line("still here").await;
    bob.lines_until("bob: still here").await;
}

#[tokio::test]
async fn a_filter_that_fails_closed_drops_the_line_and_says_why() {
    let dir = tempfile::tempdir().expect("dir");
    // In `huge` mode joins pass and every line gets an answer too long to
    // take: a failed call, which this plugin's policy makes a drop.
    let server = hostile(dir.path(), "huge", "on-failure = \"closed\"\n", &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("hello").await;
    alice
        .expect_line(&error(chatgate::plugins::MESSAGE_CHECK_FAILED))
        .await;
    bob.send_line("bob speaks").await;
    bob.expect_line(&error(chatgate::plugins::MESSAGE_CHECK_FAILED))
        .await;
}

#[tokio::test]
async fn an_empty_drop_reason_drops_the_line_quietly() {
    let dir = tempfile::tempdir().expect("dir");
    let quiet = plugin(
        dir.path(),
        "word-filter",
        "quiet",
        "[settings]\nwords = \"darn\"\nmode = \"drop\"\nreason = \"\"\n",
    );
    let server = server_with(&[quiet], &[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("darn").await;
    alice.send_line("next").await;
    alice.expect_line("alice: next").await;
    bob.expect_line("alice: next").await;
}
