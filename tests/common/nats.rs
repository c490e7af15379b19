//! A real `nats-server` for the cluster tests, and chatgate nodes run as
//! processes (for what only a process can show, like being SIGKILLed).
//!
//! The server listens on a free loopback port (or on an address of a
//! network namespace the test made) with JetStream in a temporary store, and can be stopped and started again on the same port
//! and store, as an operator restarting it would. Every process is stopped
//! by its own id when its value is dropped.
//!
//! Without `nats-server` the tests are skipped, loudly; with `CI=true` they
//! fail instead.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use chatgate::server::ListenerKind;

use super::clients::Conn;
use super::{TestServer, WAIT};

/// What nats-server prints once it accepts clients.
const READY: &str = "Server is ready";

/// What nats-server prints once it has applied a changed configuration.
const RELOADED: &str = "Reloaded server configuration";

/// A nats-server process, with JetStream unless started without.
pub struct Nats {
    /// The address it listens on: loopback, or one of a test's namespace.
    host: Ipv4Addr,
    port: u16,
    jetstream: bool,
    /// Extra configuration, for tests that change the server's permissions
    /// while it runs; written to a file in the store directory.
    config: Option<String>,
    /// A message per configuration reload the server reported.
    reloads: Option<mpsc::UnboundedReceiver<()>>,
    /// The JetStream store, kept across restarts.
    store: tempfile::TempDir,
    binary: PathBuf,
    process: Option<Child>,
}

impl Nats {
    /// Starts nats-server on a free port, or returns `None` (saying so on
    /// stderr) when it is not installed and this is not CI.
    pub async fn start() -> Option<Nats> {
        Nats::start_with(true, None, Ipv4Addr::LOCALHOST).await
    }

    /// Starts nats-server with JetStream on `host` instead of loopback.
    pub async fn start_on(host: Ipv4Addr) -> Option<Nats> {
        Nats::start_with(true, None, host).await
    }

    /// Starts nats-server with core NATS only: every JetStream request
    /// fails, as on a server whose operator did not enable it.
    pub async fn start_without_jetstream() -> Option<Nats> {
        Nats::start_with(false, None, Ipv4Addr::LOCALHOST).await
    }

    /// Starts nats-server with JetStream and `config` (nats-server's
    /// configuration syntax) in a configuration file.
    pub async fn start_with_config(config: &str) -> Option<Nats> {
        Nats::start_with(true, Some(config.to_owned()), Ipv4Addr::LOCALHOST).await
    }

    async fn start_with(jetstream: bool, config: Option<String>, host: Ipv4Addr) -> Option<Nats> {
        let Some(binary) = find_binary() else {
            let help = "the cluster tests need nats-server (Debian: apt-get install nats-server)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {help}"
            );
            let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {help} ***\n");
            return None;
        };
        let port = free_port(host);
        let mut nats = Nats {
            host,
            port,
            jetstream,
            config,
            reloads: None,
            store: tempfile::tempdir().expect("store dir"),
            binary,
            process: None,
        };
        nats.restart().await;
        Some(nats)
    }

    /// The URL for `--nats`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Stops the server with SIGSTOP: its sockets stay open and say
    /// nothing, as a hung or overloaded server's would.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// Replaces the extra configuration and makes the server read it
    /// (SIGHUP), as an operator reloading it would; returns once the
    /// server says it applied it.
    pub async fn reconfigure(&mut self, config: &str) {
        self.config = Some(config.to_owned());
        self.write_config();
        self.signal(rustix::process::Signal::HUP);
        let reloads = self.reloads.as_mut().expect("nats-server running");
        timeout(WAIT, reloads.recv())
            .await
            .expect("configuration reloaded in time")
            .expect("nats-server log");
    }

    /// The configuration file: JetStream and its store live there too, so
    /// that a reload does not read JetStream as turned off.
    fn config_path(&self) -> PathBuf {
        self.store.path().join("nats.conf")
    }

    fn write_config(&self) {
        let Some(extra) = &self.config else { return };
        let text = format!(
            "jetstream {{ store_dir: {:?} }}\n{extra}\n",
            self.store.path().join("js")
        );
        std::fs::write(self.config_path(), text).expect("write nats-server config");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let process = self.process.as_ref().expect("nats-server running");
        let pid = process
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        rustix::process::kill_process(pid.expect("a live process"), signal).expect("signal");
    }

    /// Kills the server and waits for it to be gone.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            let _ = timeout(WAIT, process.wait()).await;
        }
    }

    /// Starts the server (again) on its port and store, and waits until it
    /// says it is ready.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.write_config();
        let mut command = Command::new(&self.binary);
        command.args(["-a", &self.host.to_string(), "-p", &self.port.to_string()]);
        if self.config.is_some() {
            command.arg("-c").arg(self.config_path());
        } else if self.jetstream {
            command.arg("-js").arg("-sd").arg(self.store.path());
        }
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        let mut log = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let (ready_tx, ready) = oneshot::channel();
        let (reloads_tx, reloads) = mpsc::unbounded_channel();
        self.reloads = Some(reloads);
        // Reads the log to its end, so the server never blocks on a full
        // pipe; what came before the ready line explains a failed start.
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut before = Vec::new();
            while let Ok(Some(line)) = log.next_line().await {
                if line.contains(READY) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                } else if line.contains(RELOADED) {
                    let _ = reloads_tx.send(());
                } else if ready_tx.is_some() {
                    before.push(line);
                }
            }
            if let Some(tx) = ready_tx {
                let _ = tx.send(Err(before.join("\n")));
            }
        });
        let started = timeout(WAIT, ready)
            .await
            .expect("nats-server ready in time")
            .expect("nats-server log");
        if let Err(log) = started {
            panic!("nats-server did not start:\n{log}");
        }
        self.process = Some(process);
    }
}

/// Ports below the kernel's ephemeral range (32768 and up by default): a
/// port from there could be taken by any outgoing connection while the
/// server is down for a restart, and the restart would then fail.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port of [`PORTS`] that is free on `host` now, starting the search somewhere
/// different for every test so that tests running side by side rarely meet.
fn free_port(host: Ipv4Addr) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    let start = (std::process::id() as u16).wrapping_mul(97) % span;
    (0..span)
        .map(|i| PORTS.start + (start + NEXT.fetch_add(1, Ordering::Relaxed) + i) % span)
        .find(|&port| TcpListener::bind((host, port)).is_ok())
        .expect("a free port")
}

/// `nats-server` from `NATS_SERVER`, the PATH, or the sbin directories
/// Debian installs it to (not on every user's PATH).
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A node in-process, on `nats`, with its TCP listener and `flags`.
pub async fn node(nats: &Nats, name: &str, flags: &[&str]) -> TestServer {
    let url = nats.url();
    let mut args = vec!["--nats", &url, "--node-name", name];
    args.extend(flags);
    TestServer::start(&args).await
}

/// A telnet-like user who joined `room` on `server`.
pub async fn tcp_user(server: &TestServer, room: &str, user: &str) -> Conn {
    let mut conn = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    conn.join(room, user).await;
    conn
}

/// A chatgate node run as its own process, TCP listener only.
pub struct Node {
    process: Child,
    /// Where its TCP listener is.
    pub tcp: SocketAddr,
}

impl Node {
    /// Starts `chatgate --nats <url> --node-name <name>` and waits for its
    /// `listening tcp` line, which comes once it joined the cluster.
    pub async fn start(url: &str, name: &str) -> Node {
        Node::start_with(url, name, &[]).await
    }

    /// The same, with more flags.
    pub async fn start_with(url: &str, name: &str, flags: &[&str]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatgate"));
        command.args(["--tcp", "127.0.0.1:0"]);
        Node::spawn(command, url, name, flags, Ipv4Addr::LOCALHOST).await
    }

    /// A node run inside `netns`, reached at its address there.
    pub async fn start_in(netns: &super::netns::Netns, url: &str, name: &str) -> Node {
        Node::start_in_with(netns, url, name, &[]).await
    }

    /// The same, with more flags.
    pub async fn start_in_with(
        netns: &super::netns::Netns,
        url: &str,
        name: &str,
        flags: &[&str],
    ) -> Node {
        let mut command = Command::new("ip");
        command
            .args(netns.exec_prefix())
            .arg(env!("CARGO_BIN_EXE_chatgate"))
            .args(["--tcp", "0.0.0.0:0"]);
        Node::spawn(command, url, name, flags, netns.inside).await
    }

    async fn spawn(
        mut command: Command,
        url: &str,
        name: &str,
        flags: &[&str],
        reached_at: Ipv4Addr,
    ) -> Node {
        let mut process = command
            .args(["--tls", "off", "--http", "off"])
            .args(["--https", "off", "--nats", url, "--node-name", name])
            .args(flags)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chatgate");
        let mut stdout = BufReader::new(process.stdout.take().expect("stdout")).lines();
        // Twice the usual wait: the node first waits for its cluster link.
        let line = timeout(WAIT * 2, stdout.next_line())
            .await
            .expect("startup line in time")
            .expect("read stdout")
            .expect("a startup line");
        let tcp: SocketAddr = line
            .strip_prefix("listening tcp ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        let tcp = SocketAddr::new(reached_at.into(), tcp.port());
        Node { process, tcp }
    }

    /// Stops the node with SIGSTOP, as a paused VM or a stalled host would.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a frozen node go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// Its resident memory in KiB, from `/proc` (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.process.id().expect("a live process");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self
            .process
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        rustix::process::kill_process(pid.expect("a live process"), signal).expect("signal");
    }

    /// Kills the node with SIGKILL: no goodbye of any kind.
    pub async fn kill(&mut self) {
        self.process.start_kill().expect("SIGKILL the node");
        let _ = timeout(WAIT, self.process.wait()).await;
    }
}
