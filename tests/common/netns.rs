//! A network namespace made for one test, joined to the test's own by a
//! veth pair, for partitions that signals cannot make.
//!
//! The test's side of the pair has two addresses: `host`, which the
//! namespace's processes reach the test's clients by, and `service`, where
//! a server for them listens (nats-server). A partition is a blackhole
//! route to `service` inside the namespace: the namespace's packets to it
//! vanish, while clients still reach the namespace. Everything is removed
//! when the value is dropped.
//!
//! Making namespaces takes root and `ip` (iproute2). Without them the test
//! is skipped, loudly; with `CI=true` it fails instead.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Command;

/// A network namespace of this test's making.
pub struct Netns {
    name: String,
    /// The test's address on the pair.
    pub host: Ipv4Addr,
    /// The second address on the test's side, for a server the namespace
    /// can be cut off from.
    pub service: Ipv4Addr,
    /// The namespace's address on the pair.
    pub inside: Ipv4Addr,
    /// The namespace's end of the pair.
    inner: String,
}

impl Netns {
    /// Makes a namespace named after this process and `tag`, or returns
    /// `None` (saying why on stderr) when this machine cannot and this is
    /// not CI.
    pub fn create(tag: u8) -> Option<Netns> {
        let pid = std::process::id();
        // One /24 per process and tag, away from common private ranges.
        let net = [10, 213, (pid % 200) as u8 + tag, 0];
        let mut netns = Netns {
            name: format!("chatgate-{pid}-{tag}"),
            host: Ipv4Addr::new(net[0], net[1], net[2], 1),
            service: Ipv4Addr::new(net[0], net[1], net[2], 9),
            inside: Ipv4Addr::new(net[0], net[1], net[2], 2),
            inner: String::new(),
        };
        let outer = format!("cgo{pid}{tag}");
        let inner = format!("cgi{pid}{tag}");
        netns.inner = inner.clone();
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), netns.name.clone()],
            split(&format!("link add {outer} type veth peer name {inner}")),
            split(&format!("link set {inner} netns {}", netns.name)),
            split(&format!("addr add {}/24 dev {outer}", netns.host)),
            split(&format!("addr add {}/24 dev {outer}", netns.service)),
            split(&format!("link set {outer} up")),
            netns.inside_args(&format!("addr add {}/24 dev {inner}", netns.inside)),
            netns.inside_args(&format!("link set {inner} up")),
            netns.inside_args("link set lo up"),
        ];
        for step in steps {
            if let Err(why) = ip(&step) {
                let help = format!("the partition test needs root and iproute2 ({why})");
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and {help}"
                );
                let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {help} ***\n");
                return None;
            }
        }
        Some(netns)
    }

    /// The command line that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.name.clone()]
    }

    /// Cuts the namespace off from `service`.
    pub fn partition(&self) {
        let route = format!("route add blackhole {}/32", self.service);
        ip(&self.inside_args(&route)).expect("partition");
    }

    /// Undoes [`Netns::partition`].
    pub fn heal(&self) {
        let route = format!("route del blackhole {}/32", self.service);
        ip(&self.inside_args(&route)).expect("heal");
    }

    /// Limits what leaves the namespace to `rate` (`tc` syntax, such as
    /// `8mbit`) with a token bucket whose queue holds 400 ms of traffic, as
    /// a router's would: a slow link, not a dead one.
    pub fn limit_rate(&self, rate: &str) {
        let mut args = vec!["-n".to_owned(), self.name.clone()];
        args.extend(split(&format!(
            "qdisc add dev {} root tbf rate {rate} burst 32kbit latency 400ms",
            self.inner
        )));
        tc(&args).expect("limit the rate");
    }

    fn inside_args(&self, command: &str) -> Vec<String> {
        let mut args = vec!["-n".to_owned(), self.name.clone()];
        args.extend(split(command));
        args
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Removing the namespace removes its end of the pair, and with it
        // the other end.
        let _ = ip(&["netns".into(), "del".into(), self.name.clone()]);
    }
}

fn split(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_owned).collect()
}

/// Runs `ip` with `args`; the error says what failed.
fn ip(args: &[String]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `tc` (traffic control, from iproute2) with `args`.
fn tc(args: &[String]) -> Result<(), String> {
    run("tc", args)
}

fn run(tool: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
