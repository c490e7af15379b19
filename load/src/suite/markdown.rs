//! `BENCHMARKS.md`: header, targets with verdicts, result tables, plots and
//! the exact commands.

use std::fmt::Write;
use std::path::PathBuf;

use super::RowResult;
use super::machine::Machine;
use super::plan::{
    CLUSTER_LABEL, HISTORY_OFF, JSON, JSON_FIXED_ROW, PASS_THROUGH, PAYLOAD, PLUGIN_FANOUT_ROW,
    PLUGIN_LATENCY_ROW, Server, WINDOW_BYTES, WORD_FILTER, Work,
};
use super::plugins::{BUILT, HOOK_CALLS, PluginCheck, SuitePlugin};
use super::stats::{Spread, show};
use crate::cli::SuiteCommand;
use crate::report::Report;

/// chatgate's default `--max-queue-bytes`, which the slow-reader target is
/// measured against.
const MAX_QUEUE_BYTES: f64 = 262_144.0;

/// Lowest delivered rate of a plugin row against the same row without a
/// plugin.
const PLUGIN_RATE_RATIO: f64 = 0.90;

/// Most a plugin may add to the latency row's p99, µs.
const PLUGIN_P99_ADDED_US: f64 = 200.0;

const TCP: &str = "chatgate tcp";
const NATS: &str = "nats-server";
const WS: &str = "chatgate ws";

fn find<'a>(results: &'a [RowResult], id: &str, server: &str) -> Option<&'a RowResult> {
    results.iter().find(|r| r.id == id && r.server == server)
}

fn spread(row: Option<&RowResult>, f: impl Fn(&Report) -> Option<f64>) -> Option<Spread> {
    Spread::of(row?.reports.iter().filter_map(f))
}

fn rate(r: &Report) -> Option<f64> {
    Some(r.delivered_per_s)
}

fn ns_per_msg(r: &Report) -> Option<f64> {
    r.server_cpu_ns_per_msg
}

fn p99(r: &Report) -> Option<f64> {
    (r.latency.count > 0).then_some(r.latency.p99_us)
}

fn kib_per_conn(r: &Report) -> Option<f64> {
    Some(r.memory?.per_connection_bytes? / 1024.0)
}

/// A target stated as the ratio of two servers' medians on one row.
struct RatioTarget {
    id: &'static str,
    /// The numerator's server label.
    a: &'static str,
    /// The denominator's server label.
    b: &'static str,
    title: &'static str,
    metric: fn(&Report) -> Option<f64>,
    unit: &'static str,
    ok: fn(f64) -> bool,
}

/// One line of the targets table.
struct Verdict {
    target: String,
    measured: String,
    met: Option<bool>,
}

/// Judges `value` (a median) against a bound.
fn judge(target: &str, measured: String, value: Option<f64>, ok: impl Fn(f64) -> bool) -> Verdict {
    Verdict {
        target: target.to_owned(),
        measured,
        met: value.map(ok),
    }
}

fn ratio(a: Option<Spread>, b: Option<Spread>) -> Option<f64> {
    Some(a?.median / b?.median).filter(|r| r.is_finite())
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×"))
}

/// The difference of two medians, `a - b`.
fn difference(a: Option<Spread>, b: Option<Spread>) -> Option<f64> {
    Some(a?.median - b?.median).filter(|d| d.is_finite())
}

fn show_difference(d: Option<f64>, unit: &str) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{d:+.0} {unit}"))
}

fn verdicts(results: &[RowResult]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let ratios = [
        RatioTarget {
            a: TCP,
            b: NATS,
            id: "fanout-1x1000",
            title: "Fan-out 1×1000, TCP: delivered msgs/s ≥ 1.5 × nats-server",
            metric: rate,
            unit: "msgs/s",
            ok: |r| r >= 1.5,
        },
        RatioTarget {
            a: TCP,
            b: NATS,
            id: "fanout-1x1000",
            title: "Fan-out 1×1000, TCP: server CPU per delivery ≤ 0.5 × nats-server",
            metric: ns_per_msg,
            unit: "ns",
            ok: |r| r <= 0.5,
        },
        RatioTarget {
            a: TCP,
            b: NATS,
            id: "fixed-1000-1x1000",
            title: "1,000 msgs/s into 1×1000 (both deliver it all): server CPU per delivery ≤ 0.5 × nats-server",
            metric: ns_per_msg,
            unit: "ns",
            ok: |r| r <= 0.5,
        },
        RatioTarget {
            a: TCP,
            b: NATS,
            id: "fanout-1x100",
            title: "Fan-out 1×100: delivered msgs/s ≥ nats-server",
            metric: rate,
            unit: "msgs/s",
            ok: |r| r >= 1.0,
        },
        RatioTarget {
            a: TCP,
            b: NATS,
            id: "fanout-100x10",
            title: "Fan-out 100×10: delivered msgs/s ≥ nats-server",
            metric: rate,
            unit: "msgs/s",
            ok: |r| r >= 1.0,
        },
        RatioTarget {
            a: TCP,
            b: HISTORY_OFF,
            id: "fanout-1x1000",
            title: "Fan-out 1×1000, TCP: delivered msgs/s with history on ≥ 0.95 × history off",
            metric: rate,
            unit: "msgs/s",
            ok: |r| r >= 0.95,
        },
        RatioTarget {
            a: TCP,
            b: HISTORY_OFF,
            id: "fanout-100x10",
            title: "Fan-out 100×10, TCP: delivered msgs/s with history on ≥ 0.95 × history off",
            metric: rate,
            unit: "msgs/s",
            ok: |r| r >= 0.95,
        },
        RatioTarget {
            a: JSON,
            b: WS,
            id: JSON_FIXED_ROW,
            title: "2,000 msgs/s into 1×1000 over WebSocket (both deliver it all): server CPU per delivery, JSON events ≤ 1.3 × lines",
            metric: ns_per_msg,
            unit: "ns",
            ok: |r| r <= 1.3,
        },
    ];
    for RatioTarget {
        id,
        a,
        b,
        title,
        metric,
        unit,
        ok,
    } in ratios
    {
        let (a, b) = (find(results, id, a), find(results, id, b));
        if a.is_none() && b.is_none() {
            continue;
        }
        let (a, b) = (spread(a, metric), spread(b, metric));
        let r = ratio(a, b);
        let measured = format!(
            "{} vs {} {unit} = {}",
            show(a, 0),
            show(b, 0),
            show_ratio(r)
        );
        out.push(judge(title, measured, r, ok));
    }
    for (server, bound) in [(TCP, 1000.0), ("chatgate ws", 2000.0)] {
        let row = find(results, "latency-1000-1x100", server);
        if row.is_none() {
            continue;
        }
        let p = spread(row, p99);
        out.push(judge(
            &format!(
                "Latency 1,000 msgs/s into 1×100, {server}: p99 ≤ {} ms",
                bound / 1000.0
            ),
            format!("{} µs", show(p, 0)),
            p.map(|s| s.median),
            |v| v <= bound,
        ));
    }
    for (server, what) in [
        (PASS_THROUGH, "the pass-through plugin"),
        (
            WORD_FILTER,
            "the word filter (every line checked, none masked)",
        ),
    ] {
        // Judged only where the plugin's row ran; the row without a plugin
        // is brought along by `--only` (`plan::select`).
        if let Some(with) = find(results, PLUGIN_FANOUT_ROW, server) {
            let (with, without) = (
                spread(Some(with), rate),
                spread(find(results, PLUGIN_FANOUT_ROW, TCP), rate),
            );
            let r = ratio(with, without);
            out.push(judge(
                &format!(
                    "Fan-out 1×1000, TCP: delivered msgs/s with {what} ≥ {PLUGIN_RATE_RATIO:.2} × no plugin"
                ),
                format!(
                    "{} vs {} msgs/s = {}",
                    show(with, 0),
                    show(without, 0),
                    show_ratio(r)
                ),
                r,
                |r| r >= PLUGIN_RATE_RATIO,
            ));
        }
        if let Some(with) = find(results, PLUGIN_LATENCY_ROW, server) {
            let (with, without) = (
                spread(Some(with), p99),
                spread(find(results, PLUGIN_LATENCY_ROW, TCP), p99),
            );
            let added = difference(with, without);
            out.push(judge(
                &format!(
                    "Latency 1,000 msgs/s into 1×100, TCP: p99 with {what} ≤ no plugin + {} ms",
                    PLUGIN_P99_ADDED_US / 1000.0
                ),
                format!(
                    "{} vs {} µs = {}",
                    show(with, 0),
                    show(without, 0),
                    show_difference(added, "µs")
                ),
                added,
                |d| d <= PLUGIN_P99_ADDED_US,
            ));
        }
    }
    for (server, bound) in [(TCP, 4.0), ("chatgate ws", 8.0), ("chatgate tls", 32.0)] {
        let row = find(results, "idle", server);
        if row.is_none() {
            continue;
        }
        let kib = spread(row, kib_per_conn);
        out.push(judge(
            &format!("Idle, {server}: ≤ {bound} KiB server RSS per connection"),
            format!("{} KiB", show(kib, 1)),
            kib.map(|s| s.median),
            |v| v <= bound,
        ));
    }
    let slow = find(results, "slow-reader-1x10", TCP);
    let growth = spread(slow, |r| {
        Some(r.slow.as_ref()?.rss_growth_bytes? as f64 / 1_048_576.0)
    });
    let limit = (MAX_QUEUE_BYTES + 1_048_576.0) / 1_048_576.0;
    out.push(judge(
        &format!("Slow reader: server RSS growth ≤ --max-queue-bytes + 1 MiB ({limit:.2} MiB)"),
        format!("{} MiB", show(growth, 2)),
        growth.map(|s| s.median),
        |v| v <= limit,
    ));
    let dropped = spread(slow, |r| r.slow.as_ref()?.dropped_after_s);
    out.push(Verdict {
        target: "Slow reader: dropped within a second of passing its queue limit".into(),
        measured: format!("left the room {} s after the blast began", show(dropped, 2)),
        met: None,
    });
    let worst = spread(slow, |r| r.slow.as_ref()?.worst_ratio);
    out.push(judge(
        "Slow reader: others' delivered rate within 10 % of the run without it, every second",
        format!(
            "worst second at {} of baseline",
            show(worst.map(|s| scale(s, 100.0)), 0) + " %"
        ),
        worst.map(|s| s.median),
        |v| v >= 0.9,
    ));
    let lines = spread(find(results, "fanout-1x1000", WS), ns_per_msg);
    let json = spread(find(results, "fanout-1x1000", JSON), ns_per_msg);
    if json.is_some() {
        out.push(Verdict {
            target: "Fan-out 1×1000 over WebSocket at the maximum rate: server CPU per delivery, JSON events / lines (the generator parses every event and bounds the JSON row's rate)".into(),
            measured: format!(
                "{} vs {} ns = {}",
                show(json, 0),
                show(lines, 0),
                show_ratio(ratio(json, lines))
            ),
            met: None,
        });
    }
    for server in ["chatgate ws", "chatgate tls"] {
        let other = spread(find(results, "fanout-1x1000", server), rate);
        if other.is_none() {
            continue;
        }
        let tcp = spread(find(results, "fanout-1x1000", TCP), rate);
        let r = ratio(tcp, other);
        out.push(judge(
            &format!("Fan-out 1×1000, {server}: within 2× of TCP"),
            format!("TCP / {server} = {}", show_ratio(r)),
            r,
            |r| r <= 2.0,
        ));
    }
    out
}

/// The cluster fan-out next to the same room on one node.
fn cluster_section(md: &mut String, results: &[RowResult]) {
    let Some(cluster) = results.iter().find(|r| r.server == CLUSTER_LABEL) else {
        return;
    };
    let single_id = cluster.id.trim_end_matches("-cluster");
    let single = find(results, single_id, TCP);
    let _ = writeln!(md, "## Cluster\n");
    let _ = writeln!(
        md,
        "`{}`: the room of `{single_id}`, its members alternating between two chatgate nodes \
         (`--nats`, TCP) joined through one nats-server with JetStream, the sender on the first node. \
         The three processes share the server core that one node has alone. Server CPU is the sum \
         over both nodes; nats-server's CPU is shown apart and is not in it. Every room line goes \
         through a JetStream stream, so the cluster delivers less than one node; loss and reordering \
         must still be 0.\n",
        cluster.id
    );
    let _ = writeln!(
        md,
        "| row | server | delivered msgs/s | server CPU ns/msg | nats-server CPU % | p50 µs | p99 µs | loss | reordered |\n|---|---|---|---|---|---|---|---|---|"
    );
    for row in [single, Some(cluster)].into_iter().flatten() {
        let s = |f: fn(&Report) -> Option<f64>, d| show(spread(Some(row), f), d);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.server,
            s(rate, 0),
            s(ns_per_msg, 0),
            s(|r| r.cpu.broker_pct(), 0),
            s(|r| Some(r.latency.p50_us), 0),
            s(p99, 0),
            s(|r| Some(r.loss as f64), 0),
            s(|r| Some(r.reordered as f64), 0),
        );
    }
    let _ = writeln!(
        md,
        "\nTwo nodes / one node: delivered msgs/s {}, server CPU per delivery {}, p99 latency {}.\n",
        show_ratio(ratio(spread(Some(cluster), rate), spread(single, rate))),
        show_ratio(ratio(
            spread(Some(cluster), ns_per_msg),
            spread(single, ns_per_msg)
        )),
        show_ratio(ratio(spread(Some(cluster), p99), spread(single, p99))),
    );
}

/// The plugin rows next to the same rows without a plugin, and the time per
/// hook call of each plugin.
fn plugin_section(md: &mut String, results: &[RowResult], checks: &[PluginCheck], runs: usize) {
    let with_plugin = |r: &&RowResult| r.server == PASS_THROUGH || r.server == WORD_FILTER;
    if !results.iter().any(|r| with_plugin(&r)) && checks.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Plugins
"
    );
    let _ = writeln!(
        md,
        "The rows `{PLUGIN_FANOUT_ROW}` and `{PLUGIN_LATENCY_ROW}` on chatgate tcp with one WebAssembly \
         plugin loaded (`--plugin`), next to the same rows without a plugin from the same suite run:\n"
    );
    let _ = writeln!(
        md,
        "- `{PASS_THROUGH}`: `{BUILT}/{}` with `mode = \"pass\"`; every hook is called and does nothing, \
         so the row shows what calling a plugin costs.",
        SuitePlugin::PassThrough.built()
    );
    let _ = writeln!(
        md,
        "- `{WORD_FILTER}`: `{BUILT}/{}` with `words = \"darn, heck\"` (mask mode). The generator's lines \
         contain neither word, so every line is checked and passes unchanged.\n",
        SuitePlugin::WordFilter.built()
    );
    let _ = writeln!(
        md,
        "| row | server | delivered msgs/s | / no plugin | server CPU ns/msg | / no plugin | p99 µs | p99 − no plugin | loss | reordered |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for id in [PLUGIN_FANOUT_ROW, PLUGIN_LATENCY_ROW] {
        let without = find(results, id, TCP);
        let rows = results
            .iter()
            .filter(|r| r.id == id && (r.server == TCP || with_plugin(r)));
        if !results.iter().any(|r| r.id == id && with_plugin(&r)) {
            continue;
        }
        for row in rows {
            let s = |f: fn(&Report) -> Option<f64>, d| show(spread(Some(row), f), d);
            let against = |f: fn(&Report) -> Option<f64>| {
                if row.server == TCP {
                    "-".to_owned()
                } else {
                    show_ratio(ratio(spread(Some(row), f), spread(without, f)))
                }
            };
            let added = if row.server == TCP {
                "-".to_owned()
            } else {
                show_difference(
                    difference(spread(Some(row), p99), spread(without, p99)),
                    "µs",
                )
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {added} | {} | {} |",
                row.id,
                row.server,
                s(rate, 0),
                against(rate),
                s(ns_per_msg, 0),
                against(ns_per_msg),
                s(p99, 0),
                s(|r| Some(r.loss as f64), 0),
                s(|r| Some(r.reordered as f64), 0),
            );
        }
    }
    md.push('\n');
    if checks.is_empty() {
        return;
    }
    let _ = writeln!(md, "### Time per hook call\n");
    let _ = writeln!(
        md,
        "`chatgate check-plugin PATH --calls {HOOK_CALLS}` on the server core: the plugin loaded as the \
         server loads it (its settings beside it), then each hook called {} times in a row with \
         an ordinary request, each call timed. Median and 99th percentile of those calls, in ns; the \
         median over {runs} runs, with the range in brackets. A hook the plugin does not ask for \
         is never called by the server and not timed.\n",
        thousands(HOOK_CALLS.into())
    );
    let _ = writeln!(
        md,
        "| plugin | hook | median ns | p99 ns |\n|---|---|---|---|"
    );
    let mut failed = Vec::new();
    for check in checks {
        let name = check.plugin.name();
        let mut hooks: Vec<&str> = Vec::new();
        for timing in check.runs.iter().flatten() {
            if !hooks.contains(&timing.hook.as_str()) {
                hooks.push(&timing.hook);
            }
        }
        if hooks.is_empty() {
            let _ = writeln!(md, "| {name} | - | - | - |");
        }
        for hook in hooks {
            let asked = |t: &&super::plugins::HookTiming| t.hook == hook && t.asked;
            if !check.runs.iter().flatten().any(|t| asked(&t)) {
                let _ = writeln!(md, "| {name} | {hook} | not asked for | - |");
                continue;
            }
            let of = |f: fn(&super::plugins::HookTiming) -> u64| {
                Spread::of(
                    check
                        .runs
                        .iter()
                        .flatten()
                        .filter(asked)
                        .map(|t| f(t) as f64),
                )
            };
            let _ = writeln!(
                md,
                "| {name} | {hook} | {} | {} |",
                show(of(|t| t.median_ns), 0),
                show(of(|t| t.p99_ns), 0)
            );
            let failures: u64 = check
                .runs
                .iter()
                .flatten()
                .filter(|t| t.hook == hook)
                .map(|t| t.failures)
                .sum();
            if failures > 0 {
                failed.push(format!("{name} {hook}: {failures} failed calls"));
            }
        }
    }
    md.push('\n');
    if !failed.is_empty() {
        let _ = writeln!(md, "Failed calls over all runs: {}.\n", failed.join("; "));
    }
}

/// `100000` as `100,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn scale(s: Spread, k: f64) -> Spread {
    Spread {
        median: s.median * k,
        min: s.min * k,
        max: s.max * k,
    }
}

/// The whole document.
pub fn render(
    machine: &Machine,
    args: &SuiteCommand,
    results: &[RowResult],
    checks: &[PluginCheck],
    plots: &[(String, PathBuf)],
) -> String {
    let mut md = String::new();
    let runs = args.runs;
    let _ = writeln!(md, "# chatgate benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p chatgate-load -- suite{}` on {}. \
         Every figure is the median of {runs} runs with the range (min–max) in brackets; \
         each run starts a fresh server. Max-rate rows use an in-flight window of {WINDOW_BYTES} bytes \
         of payload ({} messages of {PAYLOAD} B) per room, for both servers.\n",
        if args.quick { " --quick" } else { "" },
        machine.date,
        WINDOW_BYTES / PAYLOAD as u64
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} ({} cores) |", machine.cpu, machine.cores);
    let _ = writeln!(md, "| memory | {:.1} GiB |", machine.memory_gib);
    let _ = writeln!(md, "| kernel | {} |", machine.kernel);
    let _ = writeln!(md, "| rustc | {} |", machine.rustc);
    let _ = writeln!(md, "| nats-server | {} |", machine.nats);
    let _ = writeln!(md, "| chatgate commit | {} |", machine.commit);
    let _ = writeln!(
        md,
        "| pinning | servers on core {}, generator on core {} (`taskset`) |\n",
        args.server_core, args.generator_core
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | met |\n|---|---|---|");
    for v in verdicts(results) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "see value",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", v.target, v.measured);
    }
    md.push('\n');

    let _ = writeln!(md, "## Fan-out and latency\n");
    let _ = writeln!(
        md,
        "Generator CPU is shown next to every figure: a generator near 100 % of its core measured itself, not the server.\n"
    );
    let _ = writeln!(
        md,
        "| row | server | offered msgs/s/room | delivered msgs/s | server CPU ns/msg | server CPU % | p50 µs | p99 µs | p99.9 µs | max µs | loss | reordered | generator CPU % |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in results
        .iter()
        .filter(|r| matches!(r.plan.as_ref().map(|p| p.work), Some(Work::Fanout(_))))
    {
        let offered = match row.plan.as_ref().map(|p| p.work) {
            Some(Work::Fanout(s)) => s
                .rate
                .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}")),
            _ => "-".into(),
        };
        let s = |f: fn(&Report) -> Option<f64>, d| show(spread(Some(row), f), d);
        let _ = writeln!(
            md,
            "| {} | {} | {offered} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.server,
            s(rate, 0),
            s(ns_per_msg, 0),
            s(|r| r.cpu.server_pct(), 0),
            s(|r| Some(r.latency.p50_us), 0),
            s(p99, 0),
            s(|r| Some(r.latency.p999_us), 0),
            s(|r| Some(r.latency.max_us), 0),
            s(|r| Some(r.loss as f64), 0),
            s(|r| Some(r.reordered as f64), 0),
            s(|r| r.cpu.generator_pct(), 0),
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### chatgate tcp / nats-server\n");
    let _ = writeln!(
        md,
        "| row | delivered msgs/s | server CPU per delivery | p99 latency |\n|---|---|---|---|"
    );
    for row in results.iter().filter(|r| r.server == TCP) {
        let Some(nats) = find(results, &row.id, NATS) else {
            continue;
        };
        if !matches!(row.plan.as_ref().map(|p| p.work), Some(Work::Fanout(_))) {
            continue;
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            row.id,
            show_ratio(ratio(spread(Some(row), rate), spread(Some(nats), rate))),
            show_ratio(ratio(
                spread(Some(row), ns_per_msg),
                spread(Some(nats), ns_per_msg)
            )),
            show_ratio(ratio(spread(Some(row), p99), spread(Some(nats), p99))),
        );
    }
    md.push('\n');

    cluster_section(&mut md, results);

    plugin_section(&mut md, results, checks, runs);

    let _ = writeln!(md, "## Idle connections\n");
    let _ = writeln!(
        md,
        "| server | connections | server RSS per connection, KiB | connects/s | errors |\n|---|---|---|---|---|"
    );
    for row in results.iter().filter(|r| r.id == "idle") {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            row.server,
            show(spread(Some(row), |r| Some(r.connections as f64)), 0),
            show(spread(Some(row), kib_per_conn), 1),
            show(spread(Some(row), |r| Some(r.connects_per_s)), 0),
            show(spread(Some(row), |r| Some(r.errors as f64)), 0),
        );
    }
    md.push('\n');

    let _ = writeln!(md, "## Slow reader\n");
    let _ = writeln!(
        md,
        "One member of a room of 10 never reads (4 KiB socket buffer) while one sender blasts at max rate; the same run without it is the baseline.\n"
    );
    let _ = writeln!(
        md,
        "| server | dropped (runs) | left the room after, s | server RSS growth, MiB | others' worst second vs baseline | others' loss |\n|---|---|---|---|---|---|"
    );
    for row in results.iter().filter(|r| r.id.starts_with("slow-reader")) {
        let dropped = row
            .reports
            .iter()
            .filter(|r| r.slow.as_ref().is_some_and(|s| s.dropped))
            .count();
        let _ = writeln!(
            md,
            "| {} | {dropped} of {} | {} | {} | {} | {} |",
            row.server,
            row.reports.len(),
            show(spread(Some(row), |r| r.slow.as_ref()?.dropped_after_s), 2),
            show(
                spread(Some(row), |r| Some(
                    r.slow.as_ref()?.rss_growth_bytes? as f64 / 1_048_576.0
                )),
                2
            ),
            show(
                spread(Some(row), |r| Some(r.slow.as_ref()?.worst_ratio? * 100.0)),
                0
            ) + " %",
            show(spread(Some(row), |r| Some(r.loss as f64)), 0),
        );
    }
    md.push('\n');

    let _ = writeln!(md, "## Churn\n");
    let _ = writeln!(
        md,
        "| server | joins/s | loss | reordered | errors | RSS back to baseline (runs) |\n|---|---|---|---|---|---|"
    );
    for row in results.iter().filter(|r| r.id == "churn") {
        let back = row
            .reports
            .iter()
            .filter(|r| r.churn.and_then(|c| c.rss_returned) == Some(true))
            .count();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {back} of {} |",
            row.server,
            show(spread(Some(row), |r| Some(r.churn?.joins_per_s)), 0),
            show(spread(Some(row), |r| Some(r.loss as f64)), 0),
            show(spread(Some(row), |r| Some(r.reordered as f64)), 0),
            show(spread(Some(row), |r| Some(r.errors as f64)), 0),
            row.reports.len(),
        );
    }
    md.push('\n');

    if !plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for (title, path) in plots {
            let _ = writeln!(md, "![{title}]({})\n", path.display());
        }
    }

    let _ = writeln!(md, "## Commands\n");
    let _ = writeln!(
        md,
        "The suite is `cargo run --release -p chatgate-load -- suite`; it runs each row below {runs} times, \
         server pinned with `--server-core {}` and itself on core {}. One row by hand:\n",
        args.server_core, args.generator_core
    );
    let _ = writeln!(
        md,
        "```sh\ncargo build --release -p chatgate -p chatgate-load"
    );
    let mut plugins: Vec<SuitePlugin> = checks.iter().map(|c| c.plugin).collect();
    for row in results {
        if let Some(Server::Plugin(p)) = row.plan.as_ref().map(|p| p.server) {
            if !plugins.contains(&p) {
                plugins.push(p);
            }
        }
    }
    if !plugins.is_empty() {
        let _ = writeln!(md, "plugins/build\nPLUGINS=$(mktemp -d)");
        for p in &plugins {
            let _ = writeln!(
                md,
                "cp {BUILT}/{} $PLUGINS/{} && printf '{}' > $PLUGINS/{}.toml",
                p.built(),
                p.file(),
                p.settings().replace('\n', "\\n"),
                p.name()
            );
        }
    }
    for row in results {
        let _ = writeln!(
            md,
            "taskset -c {} target/release/{}",
            args.generator_core, row.command
        );
    }
    for check in checks {
        let _ = writeln!(md, "{}", check.command);
    }
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "Raw reports of every run: `{}/results.json`.\n",
        args.assets.display()
    );

    let failures: Vec<_> = results.iter().filter(|r| !r.errors.is_empty()).collect();
    let failed_checks: Vec<_> = checks.iter().filter(|c| !c.errors.is_empty()).collect();
    if !failures.is_empty() || !failed_checks.is_empty() {
        let _ = writeln!(md, "## Failed runs\n");
        for row in failures {
            for e in &row.errors {
                let _ = writeln!(md, "- {} on {}: {e}", row.id, row.server);
            }
        }
        for check in failed_checks {
            for e in &check.errors {
                let _ = writeln!(md, "- check-plugin {}: {e}", check.plugin.name());
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Percentiles;
    use crate::suite::plugins::HookTiming;

    fn row(id: &str, server: &str, runs: &[(f64, f64)]) -> RowResult {
        RowResult {
            id: id.into(),
            server: server.into(),
            command: String::new(),
            reports: runs
                .iter()
                .map(|&(rate, p99_us)| Report {
                    delivered_per_s: rate,
                    latency: Percentiles {
                        count: 1,
                        p99_us,
                        ..Percentiles::default()
                    },
                    ..Report::default()
                })
                .collect(),
            errors: Vec::new(),
            plan: None,
        }
    }

    fn plugin_results() -> Vec<RowResult> {
        vec![
            row(PLUGIN_FANOUT_ROW, TCP, &[(100.0, 0.0), (110.0, 0.0)]),
            row(PLUGIN_FANOUT_ROW, PASS_THROUGH, &[(95.0, 0.0), (96.0, 0.0)]),
            row(PLUGIN_FANOUT_ROW, WORD_FILTER, &[(80.0, 0.0), (90.0, 0.0)]),
            row(PLUGIN_LATENCY_ROW, TCP, &[(1e5, 900.0), (1e5, 1100.0)]),
            row(PLUGIN_LATENCY_ROW, PASS_THROUGH, &[(1e5, 1150.0)]),
            row(PLUGIN_LATENCY_ROW, WORD_FILTER, &[(1e5, 1300.0)]),
        ]
    }

    fn verdict<'a>(all: &'a [Verdict], starts: &str, has: &str) -> &'a Verdict {
        all.iter()
            .find(|v| v.target.starts_with(starts) && v.target.contains(has))
            .unwrap_or_else(|| panic!("no verdict {starts}… {has}"))
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(0), "0");
    }

    #[test]
    fn plugin_rows_are_judged_against_the_rows_without() {
        let all = verdicts(&plugin_results());
        let pass = verdict(&all, "Fan-out 1×1000", "pass-through");
        assert_eq!(pass.met, Some(true), "{}", pass.measured);
        assert!(pass.measured.ends_with("= 0.91×"), "{}", pass.measured);
        let filter = verdict(&all, "Fan-out 1×1000", "word filter");
        assert_eq!(filter.met, Some(false), "{}", filter.measured);
        let pass = verdict(&all, "Latency 1,000", "pass-through");
        assert_eq!(pass.met, Some(true));
        assert_eq!(pass.measured, "1150 vs 1000 (900–1100) µs = +150 µs");
        let filter = verdict(&all, "Latency 1,000", "word filter");
        assert_eq!(filter.met, Some(false));
        assert!(filter.measured.ends_with("+300 µs"), "{}", filter.measured);
    }

    #[test]
    fn without_plugin_rows_there_are_no_plugin_targets_or_section() {
        let results: Vec<RowResult> = plugin_results()
            .into_iter()
            .filter(|r| r.server == TCP)
            .collect();
        assert!(
            !verdicts(&results)
                .iter()
                .any(|v| v.target.contains("plugin"))
        );
        let mut md = String::new();
        plugin_section(&mut md, &results, &[], 3);
        assert!(md.is_empty());
    }

    #[test]
    fn the_plugin_section_shows_the_rows_and_the_hook_times() {
        let timing = |hook: &str, median_ns, p99_ns| HookTiming {
            hook: hook.into(),
            asked: true,
            calls: 100_000,
            median_ns,
            p99_ns,
            failures: 0,
        };
        let check = PluginCheck {
            plugin: SuitePlugin::WordFilter,
            command: String::new(),
            runs: vec![
                vec![
                    timing("join", 800, 900),
                    timing("message", 1600, 1900),
                    HookTiming {
                        asked: false,
                        ..timing("leave", 0, 0)
                    },
                ],
                vec![
                    timing("join", 820, 950),
                    timing("message", 1700, 1800),
                    HookTiming {
                        asked: false,
                        ..timing("leave", 0, 0)
                    },
                ],
            ],
            errors: Vec::new(),
        };
        let mut md = String::new();
        plugin_section(&mut md, &plugin_results(), &[check], 2);
        assert!(md.starts_with("## Plugins\n"), "{md}");
        assert!(
            md.contains("every line is checked and passes unchanged"),
            "{md}"
        );
        assert!(
            md.contains(
                "| latency-1000-1x100 | chatgate tcp, word-filter plugin | 100000 | 1.00× |"
            ),
            "{md}"
        );
        assert!(md.contains("| 1300 | +300 µs | 0 | 0 |"), "{md}");
        assert!(
            md.contains("| plugin | hook | median ns | p99 ns |"),
            "{md}"
        );
        assert!(
            md.contains("| word-filter | join | 810 (800–820) | 925 (900–950) |"),
            "{md}"
        );
        assert!(
            md.contains("| word-filter | message | 1650 (1600–1700) | 1850 (1800–1900) |"),
            "{md}"
        );
    }
}
