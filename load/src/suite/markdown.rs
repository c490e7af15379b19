//! `BENCHMARKS.md`: header, targets with verdicts, result tables, plots and
//! the exact commands.

use std::fmt::Write;
use std::path::PathBuf;

use super::RowResult;
use super::machine::Machine;
use super::plan::{CLUSTER_LABEL, HISTORY_OFF, JSON, JSON_FIXED_ROW, PAYLOAD, WINDOW_BYTES, Work};
use super::stats::{Spread, show};
use crate::cli::SuiteCommand;
use crate::report::Report;

/// chatgate's default `--max-queue-bytes`, which the slow-reader target is
/// measured against.
const MAX_QUEUE_BYTES: f64 = 262_144.0;

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
    for row in results {
        let _ = writeln!(
            md,
            "taskset -c {} target/release/{}",
            args.generator_core, row.command
        );
    }
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "Raw reports of every run: `{}/results.json`.\n",
        args.assets.display()
    );

    let failures: Vec<_> = results.iter().filter(|r| !r.errors.is_empty()).collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "## Failed runs\n");
        for row in failures {
            for e in &row.errors {
                let _ = writeln!(md, "- {} on {}: {e}", row.id, row.server);
            }
        }
        md.push('\n');
    }
    md
}
