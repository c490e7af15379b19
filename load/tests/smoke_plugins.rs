//! The suite's plugin rows in small: chatgate with each plugin the suite
//! loads, prepared as the suite prepares it (the built plugin from
//! `plugins/out`, which the test command builds first with `plugins/build`,
//! its settings beside it), under a short fan-out and latency run; and
//! `chatgate check-plugin`, which the suite runs for the time per hook
//! call, read by the suite's parser. Correctness only, never speed.

mod common;

use std::time::Duration;

use chatgate_load::launch::{self, ServerProcess};
use chatgate_load::probe::Probe;
use chatgate_load::scenario::fanout;
use chatgate_load::suite::plugins::{self, PluginDir, SuitePlugin};
use chatgate_load::target::Target;
use common::{assert_clean, chatgate_bin, small_fanout, start_chatgate};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The suite's copies of both plugins; fails when `plugins/build` has not
/// made them.
fn prepared() -> PluginDir {
    PluginDir::prepare(&launch::workspace_root(), &SuitePlugin::ALL)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A chatgate loading `plugin` from `dir`, as the suite starts it.
fn start_with(dir: &PluginDir, plugin: SuitePlugin) -> (ServerProcess, Target, Probe) {
    let path = dir.path(plugin);
    let state = dir.state_dir();
    start_chatgate(&[
        "--plugin",
        path.to_str().expect("utf-8 path"),
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_latency_through_each_plugin_lose_nothing() {
    let dir = prepared();
    for plugin in SuitePlugin::ALL {
        let (mut server, target, probe) = start_with(&dir, plugin);
        let mut plan = small_fanout(target.clone(), 1, 5, None);
        plan.duration = Duration::from_millis(600);
        let run = fanout::run(&plan, probe, "fanout").await;
        let latency = small_fanout(target, 1, 5, Some(200.0));
        let latency = fanout::run(&latency, probe, "latency").await;
        server.stop();
        let report = run.unwrap().report;
        assert_clean(&report);
        assert_eq!(
            report.delivered,
            report.sent * 5,
            "{}: {report}",
            plugin.name()
        );
        let report = latency.unwrap().report;
        assert_clean(&report);
        assert_eq!(report.latency.count, report.delivered, "{}", plugin.name());
    }
}

/// The word filter is loaded with the suite's settings: a listed word is
/// masked (the generator's own lines hold none, so they pass unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_word_filter_row_masks_its_words() {
    let dir = prepared();
    let (mut server, target, _) = start_with(&dir, SuitePlugin::WordFilter);
    let said = async {
        let stream = TcpStream::connect(target.addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"JOIN lobby alice\n").await.unwrap();
        let mut sent = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "alice has joined" && !sent {
                write.write_all(b"oh heck, darn it\n").await.unwrap();
                sent = true;
            } else if let Some(text) = line.strip_prefix("alice: ") {
                return text.to_owned();
            }
        }
        panic!("the server closed the connection");
    };
    let said = tokio::time::timeout(Duration::from_secs(10), said).await;
    server.stop();
    assert_eq!(said.expect("an answer in time"), "oh ****, **** it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_plugin_reports_every_hook_for_each_plugin() {
    let dir = prepared();
    for plugin in SuitePlugin::ALL {
        let hooks = plugins::check_plugin(&chatgate_bin(), &dir.path(plugin), 200, None)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", plugin.name()));
        let names: Vec<&str> = hooks.iter().map(|h| h.hook.as_str()).collect();
        assert_eq!(
            names,
            ["join", "message", "command", "leave"],
            "{}",
            plugin.name()
        );
        // Both are asked for every line: that is what their rows measure.
        assert!(hooks[1].asked, "{}: {:?}", plugin.name(), hooks[1]);
        for hook in hooks.iter().filter(|h| h.asked) {
            assert_eq!(hook.calls, 200);
            assert_eq!(hook.failures, 0, "{}: {hook:?}", plugin.name());
            assert!(
                0 < hook.median_ns && hook.median_ns <= hook.p99_ns,
                "{}: {hook:?}",
                plugin.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_plugin_failing_is_an_error_with_chatgate_s_reason() {
    let missing = std::env::temp_dir().join("chatgate-load-no-such-plugin.wasm");
    let e = plugins::check_plugin(&chatgate_bin(), &missing, 10, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-plugin"), "{e}");
    assert!(e.contains("exit status: 1"), "{e}");
}
