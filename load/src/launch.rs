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
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
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
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = command(bin, core)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LoadError::Server(format!("cannot start {}: {e}", bin.display())))?;
    let mut server = ServerProcess {
        name: "nats-server".into(),
        child,
        listening: vec![("nats".into(), addr)],
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
