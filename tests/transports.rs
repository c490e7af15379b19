//! TCP, TLS and WebSocket users in one room: the same session on every
//! transport, and each transport's own framing, limits and goodbyes.

mod common;

use common::ServerLines;

use std::process::Stdio;

use chatgate::server::ListenerKind;
use common::clients::{Conn, TestCert};
use common::{TestServer, WAIT};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// A server with every transport on, on loopback.
async fn all_transports(cert: &TestCert, extra: &[&str]) -> TestServer {
    let cert_flags = cert.flags();
    let mut flags: Vec<&str> = vec![
        "--tls",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
    ];
    flags.extend(cert_flags.iter().map(String::as_str));
    flags.extend(extra);
    TestServer::start(&flags).await
}

#[tokio::test]
async fn users_of_every_transport_share_a_room_in_one_order() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let mut users = vec![
        ("tcpuser", Conn::tcp(server.addr(ListenerKind::Tcp)).await),
        (
            "tlsuser",
            Conn::tls(server.addr(ListenerKind::Tls), &cert).await,
        ),
        ("wsuser", Conn::ws(server.addr(ListenerKind::Http)).await),
        (
            "wssuser",
            Conn::wss(server.addr(ListenerKind::Https), &cert).await,
        ),
    ];
    for i in 0..users.len() {
        let (name, conn) = &mut users[i];
        conn.join("mixed", name).await;
        let joined = format!("{name} has joined");
        for (_, earlier) in &mut users[..i] {
            earlier.expect_line(&joined).await;
        }
    }
    // Everyone talks at once; everyone must see the same sequence.
    const EACH: usize = 20;
    for n in 0..EACH {
        for (name, conn) in &mut users {
            conn.send_line(&format!("{name} says {n}")).await;
        }
    }
    let mut seen = Vec::new();
    for (_, conn) in &mut users {
        let mut lines = Vec::new();
        for _ in 0..EACH * 4 {
            lines.push(conn.read_line().await);
        }
        seen.push(lines);
    }
    for lines in &seen[1..] {
        assert_eq!(lines, &seen[0], "every member sees one order");
    }
    for (name, _) in &users {
        let mine: Vec<_> = seen[0]
            .iter()
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .collect();
        let sent: Vec<_> = (0..EACH)
            .map(|n| format!("{name}: {name} says {n}"))
            .collect();
        assert_eq!(
            mine,
            sent.iter().collect::<Vec<_>>(),
            "{name}'s lines in the order sent"
        );
    }
}

#[tokio::test]
async fn openssl_s_client_chats_with_a_websocket_user() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let tls = server.addr(ListenerKind::Tls);
    let spawned = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &tls.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Some(mut openssl) = common::tool(spawned, "openssl") else {
        return;
    };
    let mut stdin = openssl.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(openssl.stdout.take().expect("stdout")).lines();
    let mut next = async || {
        timeout(WAIT, stdout.next_line())
            .await
            .expect("openssl printed nothing in time")
            .expect("read openssl output")
            .expect("openssl output ended")
    };
    assert_eq!(next().await, "Welcome! Use the command:");
    assert_eq!(next().await, "JOIN <ROOMNAME> <USERNAME>");
    stdin.write_all(b"JOIN lobby ossl\n").await.expect("write");
    assert_eq!(next().await, "ossl has joined");

    let mut web = Conn::ws(server.addr(ListenerKind::Http)).await;
    web.join("lobby", "browser").await;
    assert_eq!(next().await, "browser has joined");
    web.send_line("hello from the web").await;
    web.expect_line("browser: hello from the web").await;
    assert_eq!(next().await, "browser: hello from the web");
    stdin
        .write_all(b"hello from openssl\n")
        .await
        .expect("write");
    assert_eq!(next().await, "ossl: hello from openssl");
    web.expect_line("ossl: hello from openssl").await;
}

#[tokio::test]
async fn websocket_message_may_hold_several_lines_and_binary_counts_as_text() {
    let server = TestServer::start(&["--http", "127.0.0.1:0"]).await;
    let mut ws = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws.expect_line("Welcome! Use the command:").await;
    ws.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
    ws.send_line("JOIN r amy\r\nfirst\nsecond\n").await;
    ws.expect_line("amy has joined").await;
    ws.expect_line("amy: first").await;
    ws.expect_line("amy: second").await;
    ws.send_message(Message::binary(&b"caf\xe9 \x1b[1mbold\n"[..]))
        .await;
    ws.expect_line("amy: caf\u{fffd} [1mbold").await;
}

#[tokio::test]
async fn oversized_websocket_message_closes_with_1009_and_relays_nothing() {
    let server = TestServer::start(&["--http", "127.0.0.1:0"]).await;
    let http = server.addr(ListenerKind::Http);
    let mut big = Conn::ws(http).await;
    big.join("r", "big").await;
    let mut other = Conn::ws(http).await;
    other.join("r", "other").await;
    big.expect_line("other has joined").await;

    big.send_line(&"x".repeat(20_003)).await;
    big.expect_line("ERROR line too long").await;
    big.expect_closed().await;
    assert_eq!(big.close_code(), Some(1009));
    other.expect_line("big has left").await;
}

#[tokio::test]
async fn longest_websocket_line_is_relayed_whole() {
    let server = TestServer::start(&["--http", "127.0.0.1:0"]).await;
    let mut ws = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws.join("r", "long").await;
    let text = "y".repeat(20_000);
    ws.send_line(&format!("{text}\r\n")).await;
    ws.expect_line(&format!("long: {text}")).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let server = TestServer::start(&["--http", "127.0.0.1:0"]).await;
    let mut ws = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws.join("r", "amy").await;
    let frame = Frame::message(&b"bad \xff text"[..], OpCode::Data(Data::Text), true);
    ws.send_message(Message::Frame(frame)).await;
    ws.expect_line("ERROR invalid UTF-8").await;
    ws.expect_closed().await;
    assert_eq!(ws.close_code(), Some(1007));
}

#[tokio::test]
async fn websocket_peer_that_answers_pings_stays_and_one_that_does_not_is_dropped() {
    let server = TestServer::start(&["--http", "127.0.0.1:0", "--ws-ping-interval", "1"]).await;
    let http = server.addr(ListenerKind::Http);
    let mut watcher = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    watcher.join("r", "watcher").await;
    // tungstenite answers a ping only while the stream is read: this client
    // joins, then is never read again, so it never answers.
    let mut silent = Conn::ws(http).await;
    silent.join("r", "silent").await;
    watcher.expect_line("silent has joined").await;
    let mut lively = Conn::ws(http).await;
    lively.join("r", "lively").await;
    watcher.expect_line("lively has joined").await;

    // The silent one misses its first ping and is gone by the second; the
    // lively one keeps answering and receives the news.
    let left = timeout(WAIT, lively.read_line())
        .await
        .expect("within a few pings");
    assert_eq!(left, "silent has left");
    watcher.expect_line("silent has left").await;
    lively.send_line("still here").await;
    lively.expect_line("lively: still here").await;
    drop(silent);
}

/// Frame lengths either side of each WebSocket length encoding (7-bit,
/// 16-bit), and the longest line, as `t: <text>` payloads.
const FRAME_PAYLOADS: [usize; 5] = [1 + 3, 125, 126, 127, 20_000 + 3];

#[tokio::test]
async fn websocket_ping_is_answered_between_lines_of_every_frame_length() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let mut talker = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    talker.join("r", "t").await;
    let mut plain = Conn::ws(server.addr(ListenerKind::Http)).await;
    plain.join("r", "w").await;
    let mut secure = Conn::wss(server.addr(ListenerKind::Https), &cert).await;
    secure.join("r", "s").await;
    plain.expect_line("s has joined").await;

    let texts: Vec<String> = FRAME_PAYLOADS
        .iter()
        .map(|&len| ("0123456789".repeat(len / 10 + 1))[..len - 3].to_owned())
        .collect();
    for conn in [&mut plain, &mut secure] {
        conn.send_message(Message::Ping("probe".into())).await;
    }
    for text in &texts {
        talker.send_line(text).await;
    }
    for conn in [&mut plain, &mut secure] {
        let Conn::Ws { ws, .. } = conn else {
            unreachable!()
        };
        let mut lines = Vec::new();
        let mut ponged = false;
        while lines.len() < texts.len() || !ponged {
            let message = timeout(WAIT, ws.next())
                .await
                .expect("lines and pong in time")
                .expect("connection open")
                .expect("well-formed frames");
            match message {
                Message::Pong(payload) => {
                    assert_eq!(&payload[..], b"probe");
                    ponged = true;
                }
                Message::Text(text) => lines.push(text.as_str().to_owned()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<String> = texts.iter().map(|t| format!("t: {t}")).collect();
        assert_eq!(lines, expected);
    }
}

#[tokio::test]
async fn over_the_connection_limit_a_websocket_gets_the_error_then_1013() {
    let server = TestServer::start(&["--http", "127.0.0.1:0", "--max-connections", "1"]).await;
    let mut first = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    first.join("r", "first").await;
    let mut refused = Conn::ws(server.addr(ListenerKind::Http)).await;
    refused.expect_line("ERROR too many connections").await;
    refused.expect_closed().await;
    assert_eq!(refused.close_code(), Some(1013));
}

#[tokio::test]
async fn quit_over_websocket_closes_with_1000() {
    let server = TestServer::start(&["--http", "127.0.0.1:0"]).await;
    let mut ws = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws.join("r", "amy").await;
    ws.send_line("/quit").await;
    ws.expect_closed().await;
    assert_eq!(ws.close_code(), Some(1000));
}

#[tokio::test]
async fn stalled_tls_handshake_does_not_keep_others_out() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let tls = server.addr(ListenerKind::Tls);
    // Connected, but never says a word of TLS.
    let _stalled: Vec<_> =
        futures_util::future::join_all((0..5).map(|_| tokio::net::TcpStream::connect(tls))).await;
    let mut user = Conn::tls(tls, &cert).await;
    user.join("r", "patient").await;
}

#[tokio::test]
async fn shutdown_says_goodbye_on_every_transport() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let mut tcp = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    tcp.join("r", "t").await;
    let mut tls = Conn::tls(server.addr(ListenerKind::Tls), &cert).await;
    tls.join("r", "s").await;
    let mut ws = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws.expect_line("Welcome! Use the command:").await;
    ws.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
    tcp.expect_line("s has joined").await;

    server.stop();
    for conn in [&mut tcp, &mut tls, &mut ws] {
        assert_eq!(
            conn.next_line().await.as_deref(),
            Some("*** server shutting down")
        );
        conn.expect_closed().await;
    }
    assert_eq!(ws.close_code(), Some(1001));
}

#[tokio::test]
async fn tls_1_2_and_1_3_both_work() {
    let cert = TestCert::new();
    let server = all_transports(&cert, &[]).await;
    let tls = server.addr(ListenerKind::Tls);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let connector = TestCert::connector_for(&[&cert.der], &[version]);
        let tcp = tokio::net::TcpStream::connect(tls).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = timeout(WAIT, connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
        let mut lines = BufReader::new(stream).lines();
        let first = timeout(WAIT, lines.next_line())
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(first.as_deref(), Some("Welcome! Use the command:"));
    }
}
