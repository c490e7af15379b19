//! Starting and stopping the servers under test.
//!
//! chatgate is started on `127.0.0.1:0` and tells its ports on stdout;
//! nats-server is started on a free loopback port and polled until it
//! accepts. Either may be pinned to a core with `taskset`. A server is
//! always stopped by its own PID: `SIGTERM`, a grace period, then `SIGKILL`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::LoadError;

/// Longest wait for a server to start listening.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long after the first `listening` line other listeners' lines may
/// follow: they are printed together, before the server accepts.
const MORE_LINES: Duration = Duration::from_millis(300);

/// Grace after `SIGTERM`: chatgate promises to exit within 5 seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(6);

/// Interval between checks while starting or stopping.
const POLL: Duration = Duration::from_millis(20);

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    /// `chatgate` or `nats-server`.
    pub name: String,
    child: Child,
    /// `(kind, address)` of every listener, e.g. `("tcp", 127.0.0.1:4711)`.
    pub listening: Vec<(String, SocketAddr)>,
    /// A directory of the server's own (the JetStream store), removed once
    /// the server is stopped.
    store: Option<PathBuf>,
}

impl ServerProcess {
    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address of the listener of `kind`.
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, addr)| *addr)
    }

    /// Stops the server: `SIGTERM` to its PID, then `SIGKILL` after the
    /// grace period.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and removes its store.
    fn stop_and_clean(&mut self) {
        self.stop();
        if let Some(store) = self.store.take() {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop_and_clean();
    }
}

/// `program args...`, under `taskset -c core` when a core is given.
fn command(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(core.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Starts chatgate with `args` and waits for its `listening` lines.
pub fn start_chatgate(
    bin: &Path,
    args: &[String],
    core: Option<usize>,
) -> Result<ServerProcess, LoadError> {
    let mut child = command(bin, core)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LoadError::Server(format!("cannot start {}: {e}", bin.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines_tx, lines_rx) = mpsc::channel();
    // Reads the startup lines, then keeps the pipe drained until the server
    // exits so it can never block on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                continue;
            }
        }
    });
    let mut server = ServerProcess {
        name: "chatgate".into(),
        child,
        listening: Vec::new(),
        store: None,
    };
    let mut wait = STARTUP_TIMEOUT;
    while let Ok(line) = lines_rx.recv_timeout(wait) {
        if let Some(listener) = parse_listening(&line) {
            server.listening.push(listener);
            wait = MORE_LINES;
        }
    }
    if server.listening.is_empty() {
        server.stop();
        return Err(LoadError::Server(format!(
            "{} printed no `listening` line within {STARTUP_TIMEOUT:?}",
            bin.display()
        )));
    }
    Ok(server)
}

/// `listening <kind> <addr>` as `(kind, addr)`.
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let kind = words.next()?.to_owned();
    let addr = words.next()?.parse().ok()?;
    Some((kind, addr))
}

/// Starts nats-server on a free loopback port and waits until it accepts.
pub fn start_nats(bin: &Path, core: Option<usize>) -> Result<ServerProcess, LoadError> {
    start_nats_on(bin, core, free_port()?, None)
}

/// Starts nats-server with JetStream, its store in a fresh temporary
/// directory removed when it stops, on a free port below the ephemeral
/// range, and waits until it accepts.
pub fn start_nats_jetstream(bin: &Path, core: Option<usize>) -> Result<ServerProcess, LoadError> {
    let store = std::env::temp_dir().join(format!(
        "chatgate-load-js-{}-{}",
        std::process::id(),
        STORES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&store)?;
    start_nats_on(bin, core, free_low_port()?, Some(store))
}

/// Temporary JetStream stores made by this process.
static STORES: AtomicU32 = AtomicU32::new(0);

/// nats-server on `port`, with JetStream in `store` when given.
fn start_nats_on(
    bin: &Path,
    core: Option<usize>,
    port: u16,
    store: Option<PathBuf>,
) -> Result<ServerProcess, LoadError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = command(bin, core);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(store) = &store {
        cmd.arg("-js").arg("-sd").arg(store);
    }
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            if let Some(store) = &store {
                let _ = std::fs::remove_dir_all(store);
            }
            return Err(LoadError::Server(format!(
                "cannot start {}: {e}",
                bin.display()
            )));
        }
    };
    let mut server = ServerProcess {
        name: "nats-server".into(),
        child,
        listening: vec![("nats".into(), addr)],
        store,
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, POLL).is_ok() {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(LoadError::Server(format!(
                "nats-server exited at start: {status}"
            )));
        }
        if Instant::now() >= deadline {
            server.stop();
            return Err(LoadError::Server(format!(
                "nats-server not accepting on {addr}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16, LoadError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ports below the kernel's ephemeral range (32768 and up by default), so
/// the thousands of client connections of a run never take the broker's.
const LOW_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port of [`LOW_PORTS`], searched from a different place
/// for every call so that runs side by side rarely meet.
pub fn free_low_port() -> Result<u16, LoadError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(LOW_PORTS.end - LOW_PORTS.start);
    let start = std::process::id().wrapping_mul(97) + NEXT.fetch_add(7919, Ordering::Relaxed);
    (0..span)
        .map(|i| LOW_PORTS.start + ((start + i) % span) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .ok_or_else(|| LoadError::Server("no free loopback port in 20000..32000".into()))
}

/// Names of cluster nodes, in order.
const NODE_NAMES: [&str; 2] = ["a", "b"];

/// A nats-server with JetStream and chatgate nodes joined through it.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, node `a` first. Dropped (stopped) before the broker.
    pub nodes: Vec<ServerProcess>,
    /// The broker.
    pub nats: ServerProcess,
}

impl Cluster {
    /// The TCP listener of every node, node `a` first.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .map(|n| n.addr("tcp").expect("a node has a tcp listener"))
            .collect()
    }

    /// Stops the nodes, then the broker, each by its PID.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        self.nats.stop_and_clean();
    }
}

/// What was started for a run, stopped by PID at its end.
#[derive(Debug)]
pub enum Spawned {
    /// One server.
    Server(ServerProcess),
    /// nats-server and chatgate nodes.
    Cluster(Cluster),
}

impl Spawned {
    /// Stops every process, each by its PID.
    pub fn stop(&mut self) {
        match self {
            Spawned::Server(server) => server.stop(),
            Spawned::Cluster(cluster) => cluster.stop(),
        }
    }
}

/// Starts nats-server with JetStream and two chatgate nodes (`a` and `b`)
/// on it, every process pinned to `core` when given, so a cluster gets the
/// same CPU as one node. `chatgate_args` are each node's listener and limit
/// flags; `--nats` and `--node-name` are added.
pub fn start_cluster(
    chatgate: &Path,
    chatgate_args: &[String],
    nats: &Path,
    core: Option<usize>,
) -> Result<Cluster, LoadError> {
    let broker = start_nats_jetstream(nats, core)?;
    let url = format!("nats://{}", broker.addr("nats").expect("nats listener"));
    let mut nodes = Vec::with_capacity(NODE_NAMES.len());
    for name in NODE_NAMES {
        let mut args = chatgate_args.to_vec();
        args.extend([
            "--nats".into(),
            url.clone(),
            "--node-name".into(),
            name.into(),
        ]);
        match start_chatgate(chatgate, &args, core) {
            Ok(node) if node.addr("tcp").is_some() => nodes.push(node),
            Ok(_) => {
                return Err(LoadError::Server(format!(
                    "chatgate node {name} has no tcp listener"
                )));
            }
            Err(e) => return Err(LoadError::Server(format!("chatgate node {name}: {e}"))),
        }
    }
    Ok(Cluster {
        nodes,
        nats: broker,
    })
}

/// nats-server on `PATH`, or where the Debian package puts it.
pub fn find_nats_server() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([
            PathBuf::from("/usr/sbin/nats-server"),
            PathBuf::from("/usr/bin/nats-server"),
        ])
        .find(|p| p.is_file())
}

/// The workspace this generator was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds chatgate in release mode with `cargo` and returns its binary.
pub fn build_chatgate_release(workspace: &Path) -> Result<PathBuf, LoadError> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "chatgate"])
        .current_dir(workspace)
        .status()
        .map_err(|e| LoadError::Server(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(LoadError::Server(format!(
            "cargo build --release -p chatgate: {status}"
        )));
    }
    Ok(release_binary(workspace))
}

/// Where `cargo build --release -p chatgate` puts the binary.
pub fn release_binary(workspace: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    target.join("release").join("chatgate")
}

/// True when chatgate's `--help` lists `flag`, so the suite only asks for
/// listeners the binary has.
pub fn chatgate_has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_are_parsed() {
        assert_eq!(
            parse_listening("listening tcp 127.0.0.1:4711"),
            Some(("tcp".into(), "127.0.0.1:4711".parse().unwrap()))
        );
        assert_eq!(
            parse_listening("listening https [::1]:8443").map(|(k, a)| (k, a.port())),
            Some(("https".into(), 8443))
        );
        assert_eq!(parse_listening("hello"), None);
    }
}
