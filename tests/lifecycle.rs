//! The `chatgate` binary: its startup line, bind errors, the classic `PORT`
//! form, and a clean stop on SIGTERM and SIGINT.

mod common;

use common::ServerLines;

use std::net::SocketAddr;
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use common::{BLAST_BATCH, Client, WAIT, WELCOME, blast_batch};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::{Instant, timeout, timeout_at};

/// The protocol's bound on the time from a stop signal to the exit.
const STOP_WITHIN: Duration = Duration::from_secs(5);

fn chatgate(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatgate"));
    // Only the TCP listener: the others' default ports are fixed, and tests
    // run side by side.
    command
        .args(args)
        .args(["--tls", "off", "--http", "off", "--https", "off"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs chatgate with `args` to its exit, which must come soon.
async fn run_to_exit(args: &[&str]) -> Output {
    let output = chatgate(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    timeout(WAIT, output)
        .await
        .expect("chatgate should exit at once")
        .expect("run chatgate")
}

/// A running chatgate process; killed if the test ends first.
struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = chatgate(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chatgate");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Running { child, stdout }
    }

    /// The next line on stdout.
    async fn stdout_line(&mut self) -> String {
        timeout(WAIT, self.stdout.next_line())
            .await
            .expect("no line on stdout in time")
            .expect("read stdout")
            .expect("stdout ended")
    }

    /// Reads `listening tcp <ip>:<port>` and returns the address.
    async fn tcp_addr(&mut self, ip: &str) -> SocketAddr {
        let line = self.stdout_line().await;
        let port: u16 = line
            .strip_prefix(&format!("listening tcp {ip}:"))
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("no port in {line:?}"));
        assert_ne!(port, 0, "the line shows the port really bound");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Sends a signal to this process, by its id.
    async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .await
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the exit until `deadline`.
    async fn exit_by(&mut self, deadline: Instant) -> ExitStatus {
        timeout_at(deadline, self.child.wait())
            .await
            .expect("chatgate did not exit in time")
            .expect("wait for chatgate")
    }
}

#[tokio::test]
async fn startup_line_shows_the_real_port_when_given_port_zero() {
    let mut server = Running::start(&["--tcp", "127.0.0.1:0"]);
    let addr = server.tcp_addr("127.0.0.1").await;
    let mut client = Client::connect(addr).await;
    client.expect_lines(&WELCOME).await;
}

#[tokio::test]
async fn classic_port_argument_listens_on_every_address() {
    let mut server = Running::start(&["0"]);
    let addr = server.tcp_addr("0.0.0.0").await;
    let mut client = Client::connect(addr).await;
    client.expect_lines(&WELCOME).await;
    client.join("den", "alice").await;
}

#[tokio::test]
async fn port_argument_with_tcp_flag_is_a_usage_error() {
    let output = run_to_exit(&["1234", "--tcp", "127.0.0.1:0"]).await;
    // 2 is the customary exit status of a command-line usage error.
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tcp"), "{stderr}");
}

#[tokio::test]
async fn port_in_use_is_one_line_on_stderr_and_exit_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let output = run_to_exit(&["--tcp", &addr]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&addr), "{stderr}");
    let parts: Vec<&str> = lines[0].split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[..i].contains(part), "repeats itself: {stderr}");
    }
}

#[tokio::test]
async fn a_malformed_allowed_origin_is_an_error_naming_it_and_exit_status_1() {
    for bad in [
        "https://chat.example/app",
        "chat.example",
        "https://a.example,ftp://b",
    ] {
        let output = run_to_exit(&["--tcp", "127.0.0.1:0", "--allowed-origin", bad]).await;
        assert_eq!(output.status.code(), Some(1), "{bad}");
        assert!(output.stdout.is_empty(), "nothing listens: {bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--allowed-origin"), "{stderr}");
    }
}

/// Stops a server with `signal` while one client is in a room and another
/// has not joined yet.
async fn signal_stops_the_server_cleanly(signal: &str) {
    let mut server = Running::start(&["--tcp", "127.0.0.1:0"]);
    let addr = server.tcp_addr("127.0.0.1").await;
    let mut joined = Client::connect(addr).await;
    joined.expect_lines(&WELCOME).await;
    joined.join("den", "alice").await;
    let mut waiting = Client::connect(addr).await;
    waiting.expect_lines(&WELCOME).await;

    let deadline = Instant::now() + STOP_WITHIN;
    server.signal(signal).await;
    for client in [&mut joined, &mut waiting] {
        client.expect_line("*** server shutting down").await;
        client.expect_closed().await;
    }
    let status = server.exit_by(deadline).await;
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    let mut stdout = server.stdout.into_inner();
    stdout.read_to_string(&mut rest).await.expect("read stdout");
    assert_eq!(rest, "", "stdout holds only the listening lines");
}

#[tokio::test]
async fn sigterm_tells_every_client_closes_them_and_exits_zero() {
    signal_stops_the_server_cleanly("TERM").await;
}

#[tokio::test]
async fn sigint_tells_every_client_closes_them_and_exits_zero() {
    signal_stops_the_server_cleanly("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_in_time_even_when_a_client_stopped_reading() {
    // No queue limit, so the stalled client is never dropped for it.
    let mut server = Running::start(&[
        "--tcp",
        "127.0.0.1:0",
        "--rate",
        "0",
        "--max-queue-bytes",
        "0",
    ]);
    let addr = server.tcp_addr("127.0.0.1").await;
    let mut stalled = Client::connect_small_buffer(addr).await;
    stalled.expect_lines(&WELCOME).await;
    stalled.join("den", "stalled").await;
    let mut blaster = Client::connect(addr).await;
    blaster.expect_lines(&WELCOME).await;
    blaster.join("den", "blaster").await;
    // About 8 MB, more than the kernel buffers of a stalled loopback
    // connection hold: the server's writes to it are stuck.
    for first in (0..8_000).step_by(BLAST_BATCH) {
        blast_batch(&mut blaster, first).await;
    }

    let deadline = Instant::now() + STOP_WITHIN;
    server.signal("TERM").await;
    // The stalled client may be seen leaving first, as the server stops.
    let before = blaster.lines_until("*** server shutting down").await;
    assert!(before.iter().all(|l| l == "stalled has left"), "{before:?}");
    blaster.expect_closed().await;
    let status = server.exit_by(deadline).await;
    assert_eq!(status.code(), Some(0));
}
