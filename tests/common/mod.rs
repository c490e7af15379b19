//! The plumbing behind every integration test: a real chatgate server on
//! `127.0.0.1` with a free port, and line clients that never wait forever.
//!
//! Every wait is bounded by [`WAIT`], so a missing line fails the test
//! instead of hanging it. A [`TestServer`] stops when dropped.
//!
//! Error reasons that PROTOCOL.md spells out (`line too long`, `rate
//! limited`, ...) are written out in the tests; the others are the server's
//! own wording and come from `chatgate::protocol::reply::reason`.

// Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub mod clients;
pub mod http;
pub mod nats;
pub mod netns;

use chatgate::server::ListenerKind;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// The longest any single step of a test may wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// The two lines every accepted connection starts with.
pub const WELCOME: [&str; 2] = ["Welcome! Use the command:", "JOIN <ROOMNAME> <USERNAME>"];

/// Whether `time` is a UTC time in RFC 3339 as the server writes it:
/// `2026-11-29T18:44:19Z`, or with `millis`, `2026-11-29T18:44:19.123Z`.
pub fn is_utc_time(time: &str, millis: bool) -> bool {
    let b = time.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let seconds = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if millis {
        seconds && b.len() == 24 && b[19] == b'.' && digits(20..23) && b[23] == b'Z'
    } else {
        seconds && b.len() == 20 && b[19] == b'Z'
    }
}

/// `ERROR <reason>`, as the server sends it.
pub fn error(reason: &str) -> String {
    format!("ERROR {reason}")
}

/// Lines a blaster sends before reading its own lines back: small next to
/// any queue limit a test sets, so the blaster itself never falls behind.
pub const BLAST_BATCH: usize = 8;

/// Line `i` of a blast: about a kilobyte, numbered so order can be checked.
pub fn blast_line(i: usize) -> String {
    format!("{i:06} {}", ".".repeat(1000))
}

/// Sends blast lines `first..first + BLAST_BATCH` from a client joined as
/// `blaster` and reads them back; returns everything it received meanwhile,
/// in order.
pub async fn blast_batch(blaster: &mut Client, first: usize) -> Vec<String> {
    let batch: String = (first..first + BLAST_BATCH)
        .map(|i| blast_line(i) + "\n")
        .collect();
    blaster.send_raw(batch.as_bytes()).await;
    let last = format!("blaster: {}", blast_line(first + BLAST_BATCH - 1));
    let mut received = blaster.lines_until(&last).await;
    received.push(last);
    received
}

/// A spawned external tool (openssl, nc, telnet), or `None` when it is not
/// installed and this is not CI: the test then skips, loudly. Under
/// `CI=true` a missing tool fails the test instead.
pub fn tool<T>(spawned: std::io::Result<T>, name: &str) -> Option<T> {
    match spawned {
        Ok(child) => Some(child),
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "{name} is required under CI: {e}"
            );
            eprintln!("SKIPPED: {name} not found ({e})");
            None
        }
    }
}

/// A server running inside the test's runtime, listening on 127.0.0.1.
pub struct TestServer {
    /// The TCP listener, which every test server has.
    addr: SocketAddr,
    /// Every listener that is on.
    addrs: Vec<(ListenerKind, SocketAddr)>,
    /// The admin API, with `--admin`.
    pub admin: Option<SocketAddr>,
    stop: CancellationToken,
    /// Its `--state-dir`, unless the test gave one.
    _state: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with `--tcp 127.0.0.1:0`, every other listener off,
    /// and then the given flags (which may turn others on).
    pub async fn start(flags: &[&str]) -> TestServer {
        let mut args = vec!["chatgate", "--tcp", "127.0.0.1:0"];
        for listener in ["--tls", "--http", "--https"] {
            if !flags.contains(&listener) {
                args.extend([listener, "off"]);
            }
        }
        args.extend(flags);
        // Bans a test makes stay with that test's server: never in the
        // working directory, where every later server would read them.
        let state = tempfile::tempdir().expect("state directory");
        let state_flag = state.path().to_str().expect("utf-8 path").to_owned();
        if !flags.contains(&"--state-dir") {
            args.extend(["--state-dir", &state_flag]);
        }
        let config = chatgate::Config::parse_from(args);
        let server = chatgate::Server::bind(config)
            .await
            .expect("bind 127.0.0.1:0");
        let addrs = server.local_addrs();
        let admin = server.admin_addr();
        let addr = server
            .local_addr(ListenerKind::Tcp)
            .expect("a tcp listener");
        let stop = CancellationToken::new();
        tokio::spawn(server.run(stop.clone().cancelled_owned()));
        TestServer {
            addr,
            addrs,
            admin,
            stop,
            _state: state,
        }
    }

    /// The address of the listener of `kind`, which must be on.
    pub fn addr(&self, kind: ListenerKind) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {} listener", kind.as_str()))
    }

    /// Stops the server as a signal would: everyone is told, then closed.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A new connection; nothing read yet.
    pub async fn connect(&self) -> Client {
        self.connect_from(Ipv4Addr::LOCALHOST).await
    }

    /// A new connection from another loopback address (127.0.0.0/8).
    pub async fn connect_from(&self, ip: Ipv4Addr) -> Client {
        Client::connect_from(self.addr, ip).await
    }

    /// A new connection with a tiny kernel receive buffer: once it stops
    /// reading, the server feels it after kilobytes rather than the
    /// megabytes a loopback socket would otherwise absorb.
    pub async fn connect_small_buffer(&self) -> Client {
        Client::connect_small_buffer(self.addr).await
    }

    /// A new connection whose welcome lines have been read.
    pub async fn connect_welcomed(&self) -> Client {
        let mut client = self.connect().await;
        client.expect_lines(&WELCOME).await;
        client
    }

    /// A client that has joined `room` as `user` and read its own
    /// `<user> has joined`.
    pub async fn join(&self, room: &str, user: &str) -> Client {
        let mut client = self.connect_welcomed().await;
        client.join(room, user).await;
        client
    }

    /// Clients joining `room` one after the other; each has read every
    /// `has joined` line, so all of them start with nothing unread.
    pub async fn join_all<const N: usize>(&self, room: &str, users: [&str; N]) -> [Client; N] {
        let mut clients: Vec<Client> = Vec::new();
        for user in users {
            let newcomer = self.join(room, user).await;
            for member in &mut clients {
                member.expect_line(&format!("{user} has joined")).await;
            }
            clients.push(newcomer);
        }
        clients
            .try_into()
            .map_err(|v: Vec<Client>| v.len())
            .expect("one client per user")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Reading what the server says, the same for every kind of client: each
/// implements `next_line`, the checks come with it.
pub trait ServerLines {
    /// The next line without its terminator, or `None` once the server has
    /// closed the connection.
    fn next_line(&mut self) -> impl Future<Output = Option<String>>;

    /// The next line, which must exist.
    async fn read_line(&mut self) -> String {
        self.next_line()
            .await
            .expect("connection closed while a line was expected")
    }

    /// Asserts that the next line is exactly `expected`.
    async fn expect_line(&mut self, expected: &str) {
        assert_eq!(self.read_line().await, expected);
    }

    /// Asserts the next lines, in order.
    async fn expect_lines(&mut self, expected: &[&str]) {
        for line in expected {
            self.expect_line(line).await;
        }
    }

    /// Reads up to and including the line `last`; returns the lines before it.
    async fn lines_until(&mut self, last: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await;
            if line == last {
                return lines;
            }
            lines.push(line);
        }
    }

    /// Asserts that the server closes the connection with no further line.
    async fn expect_closed(&mut self) {
        if let Some(line) = self.next_line().await {
            panic!("expected the connection to close, got {line:?}");
        }
    }
}

/// The receiving side of a connection: lines from the server.
pub struct Receiver {
    reader: BufReader<OwnedReadHalf>,
}

impl ServerLines for Receiver {
    async fn next_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let read = timeout(WAIT, self.reader.read_until(b'\n', &mut buf))
            .await
            .unwrap_or_else(|_| panic!("no line within {WAIT:?}"));
        if bytes_read(read) == 0 {
            return None;
        }
        let text = buf
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("line not ended by \\r\\n: {buf:?}"));
        Some(String::from_utf8(text.to_vec()).expect("server lines are UTF-8"))
    }
}

impl Receiver {
    /// Reads and throws away whatever arrives until the server closes the
    /// connection, for a client whose last bytes may not form whole lines.
    pub async fn skip_to_close(&mut self) {
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let read = timeout(WAIT, self.reader.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("connection still open after {WAIT:?} of silence"));
            if bytes_read(read) == 0 {
                return;
            }
        }
    }
}

/// The byte count of a read; 0 once the server has closed the connection,
/// which a reset also means.
fn bytes_read(read: std::io::Result<usize>) -> usize {
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        read => read.unwrap_or_else(|e| panic!("read failed: {e}")),
    }
}

/// The sending side of a connection.
pub struct Sender {
    writer: OwnedWriteHalf,
}

impl Sender {
    /// Sends `text` and a `\n`.
    pub async fn send_line(&mut self, text: &str) {
        self.send_raw(format!("{text}\n").as_bytes()).await;
    }

    /// Sends bytes as they are, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.writer.write_all(bytes))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Closes the sending direction; the server sees the end of the stream
    /// after everything sent so far.
    pub async fn finish(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}

/// One connection to the server.
pub struct Client {
    rx: Receiver,
    tx: Sender,
}

impl Client {
    /// A new connection to any chatgate, such as one run as a process.
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_socket(TcpSocket::new_v4().expect("socket"), addr).await
    }

    /// A new connection with a tiny kernel receive buffer; see
    /// [`TestServer::connect_small_buffer`].
    pub async fn connect_small_buffer(addr: SocketAddr) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
        Client::connect_socket(socket, addr).await
    }

    /// A connection from `ip`, one of the loopback addresses, to any
    /// chatgate.
    pub async fn connect_from(addr: SocketAddr, ip: std::net::Ipv4Addr) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((ip, 0)))
            .expect("bind client address");
        Client::connect_socket(socket, addr).await
    }

    async fn connect_socket(socket: TcpSocket, addr: SocketAddr) -> Client {
        let stream = timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (read, write) = stream.into_split();
        Client {
            rx: Receiver {
                reader: BufReader::new(read),
            },
            tx: Sender { writer: write },
        }
    }

    /// Sends `JOIN <room> <user>` and reads the confirming `has joined`.
    pub async fn join(&mut self, room: &str, user: &str) {
        self.send_line(&format!("JOIN {room} {user}")).await;
        self.expect_line(&format!("{user} has joined")).await;
    }

    /// Separates the two directions, to read and write from two tasks.
    pub fn split(self) -> (Receiver, Sender) {
        (self.rx, self.tx)
    }

    /// See [`Sender::send_line`].
    pub async fn send_line(&mut self, text: &str) {
        self.tx.send_line(text).await;
    }

    /// See [`Sender::send_raw`].
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tx.send_raw(bytes).await;
    }

    /// See [`Sender::finish`].
    pub async fn finish(&mut self) {
        self.tx.finish().await;
    }

    /// See [`Receiver::skip_to_close`].
    pub async fn skip_to_close(&mut self) {
        self.rx.skip_to_close().await;
    }
}

impl ServerLines for Client {
    async fn next_line(&mut self) -> Option<String> {
        self.rx.next_line().await
    }
}

/// Reads a server process's log lines until one contains `wanted`;
/// returns it.
pub async fn log_until(
    log: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    wanted: &str,
) -> String {
    log_lines_until(log, wanted).await.pop().expect("the line")
}

/// Reads a server process's log lines up to and including one that
/// contains `wanted`; within 10 s.
pub async fn log_lines_until(
    log: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    wanted: &str,
) -> Vec<String> {
    let find = async {
        let mut lines = Vec::new();
        while let Some(line) = log.next_line().await.expect("read log") {
            let found = line.contains(wanted);
            lines.push(line);
            if found {
                return lines;
            }
        }
        panic!("the log ended before {wanted:?}");
    };
    timeout(Duration::from_secs(10), find)
        .await
        .unwrap_or_else(|_| panic!("no log line with {wanted:?}"))
}
