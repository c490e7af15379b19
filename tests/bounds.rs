//! The bounds on a connection's life and on file descriptors: a connection
//! the server closes is gone within 5 seconds whatever its peer does, its
//! places are free at once, refused and page connections are capped, and
//! a flood of silent sockets on one port does not keep others out.

mod common;

use common::ServerLines;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use chatgate::server::ListenerKind;
use common::clients::TestCert;
use common::http::{metric, request};
use common::{BLAST_BATCH, Client, TestServer, WAIT, WELCOME, blast_batch};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;
use tokio::time::{Instant, sleep, timeout};

/// PROTOCOL.md: a connection the server has decided to close is gone
/// within this, even if its peer stops reading.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// A refused connection is told within 2 seconds, then closed; a little
/// more for a busy machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// How often a test looks at `/metrics` while it waits for a change.
const POLL: Duration = Duration::from_millis(50);

/// A TCP connection from `ip` to `addr`.
async fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((ip, 0)))
        .expect("bind client address");
    timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Whether the server closes `stream` (end of stream or reset) within
/// `limit`, reading and dropping whatever it sends first.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(limit, read_to_end).await.is_ok()
}

/// Open chat connections of `transport`, as `/metrics` reports them.
async fn open_connections(http: SocketAddr, transport: &str) -> f64 {
    let text = request(http, "GET /metrics HTTP/1.1").await.body;
    metric(
        &text,
        &format!("chatgate_connections{{transport=\"{transport}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quitting_user_who_stopped_reading_is_gone_within_five_seconds_and_frees_its_place() {
    let server = TestServer::start(&[
        "--http",
        "127.0.0.1:0",
        "--rate",
        "0",
        "--max-per-ip",
        "1",
        // Far more than the blast below: the stuck reader is not dropped as
        // too slow, it still has lines queued when it quits.
        "--max-queue-bytes",
        "16000000",
    ])
    .await;
    let http = server.addr(ListenerKind::Http);
    let mut stuck = server.connect_small_buffer().await;
    stuck.expect_lines(&WELCOME).await;
    stuck.join("den", "stuck").await;
    let mut blaster = server.connect_from(Ipv4Addr::new(127, 0, 0, 2)).await;
    blaster.expect_lines(&WELCOME).await;
    blaster.join("den", "blaster").await;

    // About 2 MB for a reader that reads nothing: far more than its socket
    // holds, so most of it waits in the server's queue.
    let mut sent = 0;
    while sent < 2000 {
        blast_batch(&mut blaster, sent).await;
        sent += BLAST_BATCH;
    }
    stuck.send_line("/quit").await;
    blaster.expect_line("stuck has left").await;
    let decided = Instant::now();

    // Its place under --max-per-ip is free at once.
    let mut again = server.connect().await;
    again.expect_lines(&WELCOME).await;

    // And the connection itself is gone in time: blaster and the new one
    // are all that is left.
    loop {
        let open = open_connections(http, "tcp").await;
        if open == 2.0 {
            break;
        }
        assert!(
            decided.elapsed() < GONE_WITHIN,
            "{open} tcp connections still open {:?} after the quit",
            decided.elapsed()
        );
        sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_silent_tls_connection_over_the_limit_is_not_held_for_a_handshake() {
    let cert = TestCert::new();
    let cert_flags = cert.flags();
    let mut flags = vec!["--tls", "127.0.0.1:0", "--max-connections", "1"];
    flags.extend(cert_flags.iter().map(String::as_str));
    let server = TestServer::start(&flags).await;
    let _member = server.join("den", "member").await;
    let mut silent = TcpStream::connect(server.addr(ListenerKind::Tls))
        .await
        .expect("connect");
    assert!(
        closed_within(&mut silent, REFUSED_WITHIN).await,
        "a refused TLS connection kept its socket for a handshake"
    );
}

/// The TLS handshake and the HTTP request headers each get 10 seconds; a
/// little more for a busy machine.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(12);

#[tokio::test]
async fn a_silent_tls_handshake_and_a_silent_page_request_are_cut_in_time() {
    let cert = TestCert::new();
    let cert_flags = cert.flags();
    let mut flags = vec![
        "--tls",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    flags.extend(cert_flags.iter().map(String::as_str));
    let server = TestServer::start(&flags).await;
    let silent = [ListenerKind::Tls, ListenerKind::Https, ListenerKind::Http].map(|kind| {
        let addr = server.addr(kind);
        async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            (kind, closed_within(&mut stream, HANDSHAKE_WITHIN).await)
        }
    });
    for (kind, closed) in futures_util::future::join_all(silent).await {
        assert!(closed, "a silent {} connection was kept", kind.as_str());
    }
}

#[tokio::test]
async fn page_connections_are_capped_per_address_and_in_all() {
    let (server, http) = {
        let server = TestServer::start(&[
            "--http",
            "127.0.0.1:0",
            "--max-http-connections",
            "4",
            "--max-per-ip",
            "2",
        ])
        .await;
        let http = server.addr(ListenerKind::Http);
        (server, http)
    };
    let hog = Ipv4Addr::new(127, 0, 0, 2);
    // Idle page connections: connected, no request.
    let mut idle = vec![connect_from(hog, http).await, connect_from(hog, http).await];
    let mut third = connect_from(hog, http).await;
    assert!(
        closed_within(&mut third, REFUSED_WITHIN).await,
        "a third page connection from one address was kept"
    );
    // Another address still gets the page and a WebSocket.
    assert_eq!(request(http, "GET /healthz HTTP/1.1").await.status, 200);
    let mut ws = common::clients::Conn::ws(http).await;
    ws.join("den", "browser").await;
    // Page connections do not count as chat connections: with two more
    // idle ones the four places are all taken, and the next is closed.
    let other = Ipv4Addr::new(127, 0, 0, 3);
    idle.push(connect_from(other, http).await);
    idle.push(connect_from(other, http).await);
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 0, 4), http).await;
    assert!(closed_within(&mut fifth, REFUSED_WITHIN).await);
    // The four that hold the places are served.
    for kept in &mut idle {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut answer = Vec::new();
        timeout(WAIT, kept.read_to_end(&mut answer))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    drop(server);
}

/// Starts the chatgate binary with at most `max_fds` open files, a TCP and
/// a TLS listener on loopback; returns the process and both addresses.
async fn start_with_fd_limit(
    max_fds: u32,
    cert: &TestCert,
) -> (tokio::process::Child, SocketAddr, SocketAddr) {
    let command = format!(
        "ulimit -n {max_fds} && exec '{}' --tcp 127.0.0.1:0 --tls 127.0.0.1:0 --http off --https off --cert '{}' --key '{}'",
        env!("CARGO_BIN_EXE_chatgate"),
        cert.cert_path().display(),
        cert.key_path().display(),
    );
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = |line: Option<String>, kind: &str| -> SocketAddr {
        let line = line.expect("a startup line");
        line.strip_prefix(&format!("listening {kind} "))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
    };
    let tcp = timeout(WAIT, lines.next_line())
        .await
        .expect("startup")
        .expect("stdout");
    let tcp = addr(tcp, "tcp");
    let tls = timeout(WAIT, lines.next_line())
        .await
        .expect("startup")
        .expect("stdout");
    let tls = addr(tls, "tls");
    (child, tcp, tls)
}

#[tokio::test]
async fn silent_tls_sockets_from_one_address_do_not_keep_a_telnet_user_out() {
    let cert = TestCert::new();
    let (_chatgate, tcp, tls) = start_with_fd_limit(256, &cert).await;
    // Nearly as many silent sockets as the process may open files: with
    // each holding a descriptor for a whole handshake, nothing would be
    // left for anyone else.
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut silent = Vec::new();
    for _ in 0..250 {
        silent.push(connect_from(flooder, tls).await);
    }
    let mut user = Client::connect(tcp).await;
    user.expect_lines(&WELCOME).await;
    user.join("den", "telnet").await;
    drop(silent);
}

#[tokio::test]
async fn accept_failures_are_logged_at_a_bounded_rate() {
    let cert = TestCert::new();
    let (mut chatgate, tcp, _tls) = start_with_fd_limit(24, &cert).await;
    let mut stderr = BufReader::new(chatgate.stderr.take().expect("stderr")).lines();
    // More connections than the process can hold: once its descriptors are
    // gone, every accept fails until one is freed.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(TcpStream::connect(tcp).await.expect("connect"));
    }
    let is_failure = |line: &str| line.contains("accept failed");
    let first = timeout(WAIT, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if is_failure(&line) {
                return line;
            }
        }
        panic!("stderr ended");
    })
    .await
    .expect("the first accept failure is logged");
    assert!(first.contains("listener=\"tcp\""), "{first}");
    // Accepts keep failing ten times a second; for the next two seconds,
    // not one more line may be logged.
    let quiet = timeout(Duration::from_secs(2), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            assert!(!is_failure(&line), "logged again: {line}");
        }
    })
    .await;
    assert!(quiet.is_err(), "chatgate exited");
    drop(held);
}
