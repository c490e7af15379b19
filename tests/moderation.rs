//! Operators and moderation (PROTOCOL.md, Operators and moderation) over
//! real sockets: `/oper` and its throttle, kicks and bans as the kicked,
//! the room and the operator see them, in lines and in JSON events, bans
//! of addresses and prefixes refusing new connections on every listener,
//! mutes, and bans kept across a restart.
//!
//! Every client connects from 127.0.0.1 unless a test gives it another
//! loopback address: the operator's own address is then not the one it
//! bans.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chatgate::server::ListenerKind;
use chatgate::session::OPER_INTERVAL;
use common::clients::{Conn, TestCert, tls_stream};
use common::{Client, ServerLines, TestServer, WELCOME, error};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};

/// The operator's password in every test.
const PASSWORD: &str = "correct-horse";

/// `--operator` for `root` with [`PASSWORD`], hashed with argon2's
/// smallest costs so a test's `/oper` is quick; the server reads the costs
/// from the hash.
fn operator_flag() -> String {
    let params = Params::new(8, 1, 1, None).expect("argon2 params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"a test salt, 16+").expect("salt");
    let hash = argon2
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash");
    format!("root:{hash}")
}

/// A server with one operator, `root`, and the given flags.
async fn server(flags: &[&str]) -> TestServer {
    let operator = operator_flag();
    let mut all = vec!["--operator", &operator];
    all.extend(flags);
    TestServer::start(&all).await
}

/// 127.0.0.`n`.
fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A client from `ip` that has read the welcome.
async fn welcomed_from(server: &TestServer, ip: Ipv4Addr) -> Client {
    let mut client = server.connect_from(ip).await;
    client.expect_lines(&WELCOME).await;
    client
}

/// A client from `ip` in `room` as `user`.
async fn joined_from(server: &TestServer, ip: Ipv4Addr, room: &str, user: &str) -> Client {
    let mut client = welcomed_from(server, ip).await;
    client.join(room, user).await;
    client
}

/// Makes a line client an operator.
async fn oper(client: &mut Client) {
    client.send_line(&format!("/oper root {PASSWORD}")).await;
    client.expect_line("*** you are now an operator").await;
}

/// Asserts that the server closes the connection with nothing more to say.
async fn expect_closed(client: &mut impl ServerLines) {
    assert_eq!(client.next_line().await, None, "the server closed");
}

/// A WebSocket client at `server`'s `/ws`, from `ip`, offering JSON
/// events if `json`.
async fn ws_from(server: SocketAddr, ip: Ipv4Addr, json: bool) -> Conn {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((ip, 0))).expect("bind");
    let tcp = socket.connect(server).await.expect("connect");
    Conn::ws_over_stream(tcp, server, json).await
}

#[tokio::test]
async fn oper_takes_the_right_password_at_most_once_per_two_seconds() {
    let server = server(&[]).await;
    let mut alice = server.join("lobby", "alice").await;
    alice.send_line("/kick bob").await;
    alice.expect_line(&error("not an operator")).await;
    alice.send_line("/oper root wrong").await;
    alice.expect_line(&error("bad operator credentials")).await;
    // Within two seconds of the last checked try even the right password
    // gets the same answer, unchecked.
    alice.send_line(&format!("/oper root {PASSWORD}")).await;
    alice.expect_line(&error("bad operator credentials")).await;
    alice.send_line("/bans").await;
    alice.expect_line(&error("not an operator")).await;
    tokio::time::sleep(OPER_INTERVAL).await;
    alice.send_line(&format!("/oper nobody {PASSWORD}")).await;
    alice.expect_line(&error("bad operator credentials")).await;
    tokio::time::sleep(OPER_INTERVAL).await;
    oper(&mut alice).await;
    alice.send_line("/bans").await;
    alice.expect_line("*** bans: none").await;
    // Operator status lasts for the connection, across rooms.
    alice.send_line("/join other").await;
    alice.expect_line("alice has joined").await;
    alice.send_line("/BANS").await;
    alice.expect_line("*** bans: none").await;
    alice.send_line("/oper root").await;
    alice
        .expect_line(&error("usage: /oper <name> <password>"))
        .await;
}

#[tokio::test]
async fn before_joining_moderation_commands_are_no_join_attempts() {
    let server = server(&[]).await;
    let mut anon = server.connect_welcomed().await;
    // More than the five failed attempts that would close the connection.
    for _ in 0..3 {
        anon.send_line("/kick bob").await;
        anon.expect_line(&error("not an operator")).await;
        anon.send_line("/unban 10.0.0.1").await;
        anon.expect_line(&error("not an operator")).await;
    }
    oper(&mut anon).await;
    anon.send_line("/kick bob").await;
    anon.expect_line(&error("join a room first")).await;
    anon.send_line("/mute bob 5").await;
    anon.expect_line(&error("join a room first")).await;
    anon.send_line("/bans extra").await;
    anon.expect_line(&error("usage: /bans")).await;
    anon.send_line("/ban 10.1.2.3/16").await;
    anon.expect_line("*** banned 10.1.0.0/16 until unbanned")
        .await;
    anon.send_line("/unban 10.1.0.0/16").await;
    anon.expect_line("*** unbanned 10.1.0.0/16").await;
    anon.send_line("/unban 10.1.0.0/16").await;
    anon.expect_line(&error("no such ban")).await;
    // Still able to join: none of this counted as an attempt.
    anon.join("lobby", "root").await;
}

#[tokio::test]
async fn a_kick_is_told_to_the_room_before_the_user_leaves() {
    let server = server(&["--http", "127.0.0.1:0"]).await;
    let http = server.addr(ListenerKind::Http);
    let mut op = server.join("lobby", "alice").await;
    oper(&mut op).await;
    let mut bob = joined_from(&server, lo(2), "lobby", "bob").await;
    op.expect_line("bob has joined").await;
    let mut carol = Conn::ws_json(http).await;
    carol.expect_event("welcome").await;
    carol.send_line("JOIN lobby carol").await;
    carol.expect_event("join").await;
    op.expect_line("carol has joined").await;
    bob.expect_line("carol has joined").await;

    op.send_line("/kick BOB spamming  links").await;
    bob.expect_line(&error("kicked by alice: spamming  links"))
        .await;
    expect_closed(&mut bob).await;
    op.expect_lines(&[
        "*** bob was kicked by alice: spamming  links",
        "bob has left",
    ])
    .await;
    let notice = carol.next_event().await;
    assert_eq!(
        notice,
        serde_json::json!({
            "type": "notice",
            "code": "kick",
            "text": "bob was kicked by alice: spamming  links",
            "room": "lobby",
            "user": "bob",
            "by": "alice",
            "reason": "spamming  links",
        })
    );
    assert_eq!(carol.next_event().await["type"], "leave");

    // Kicked from a line client's point of view with no reason, and a
    // JSON client kicked: an `error` event and close code 1008.
    carol.send_line("hi").await;
    assert_eq!(carol.next_event().await["type"], "say");
    op.expect_line("carol: hi").await;
    op.send_line("/kick carol").await;
    let kicked = carol.next_event().await;
    assert_eq!(
        kicked,
        serde_json::json!({"type": "error", "text": "kicked by alice"})
    );
    assert_eq!(carol.next_line().await, None);
    assert_eq!(carol.close_code(), Some(1008));
    op.expect_lines(&["*** carol was kicked by alice", "carol has left"])
        .await;
    op.send_line("/kick carol").await;
    op.expect_line(&error("no such user")).await;
    op.send_line("/kick").await;
    op.expect_line(&error("usage: /kick <user> [reason]")).await;
}

#[tokio::test]
async fn a_ban_removes_the_user_and_refuses_the_address_until_unbanned() {
    let server = server(&[]).await;
    let mut op = server.join("lobby", "alice").await;
    oper(&mut op).await;
    let mut bob = joined_from(&server, lo(2), "lobby", "bob").await;
    op.expect_line("bob has joined").await;
    let mut carol = joined_from(&server, lo(3), "lobby", "carol").await;
    op.expect_line("carol has joined").await;
    bob.expect_line("carol has joined").await;
    // bob's second connection, not joined, goes too.
    let mut bob_again = welcomed_from(&server, lo(2)).await;

    op.send_line("/ban bob 5 flooding").await;
    let answer = op.read_line().await;
    let until = answer
        .strip_prefix("*** banned 127.0.0.2 ")
        .unwrap_or_else(|| panic!("ban answer {answer:?}"));
    assert!(common::is_utc_time(until, false), "until {until:?}");
    bob.expect_line(&error("banned by alice: flooding")).await;
    expect_closed(&mut bob).await;
    bob_again
        .expect_line(&error("banned by alice: flooding"))
        .await;
    expect_closed(&mut bob_again).await;
    for member in [&mut op, &mut carol] {
        member
            .expect_lines(&["*** bob was banned by alice: flooding", "bob has left"])
            .await;
    }
    // A new connection from the address: the reason instead of the
    // welcome, and closed.
    let mut refused = server.connect_from(lo(2)).await;
    refused.expect_line(&error("banned: flooding")).await;
    expect_closed(&mut refused).await;
    op.send_line("/bans").await;
    op.expect_line(&format!("*** bans: 127.0.0.2 ({until})"))
        .await;

    op.send_line("/unban 127.0.0.2").await;
    op.expect_line("*** unbanned 127.0.0.2").await;
    let _bob = joined_from(&server, lo(2), "lobby", "bob").await;
    op.send_line("/bans").await;
    op.expect_lines(&["bob has joined", "*** bans: none"]).await;
}

#[tokio::test]
async fn a_prefix_ban_spares_operators_and_lists_in_address_order() {
    let server = server(&[]).await;
    let mut op = server.join("lobby", "alice").await;
    oper(&mut op).await;
    let mut dave = welcomed_from(&server, lo(4)).await;
    op.send_line("/ban 2001:db8::7 gone").await;
    op.expect_line("*** banned 2001:db8::/64 until unbanned")
        .await;
    op.send_line("/ban 127.0.0.0/8").await;
    op.expect_line("*** banned 127.0.0.0/8 until unbanned")
        .await;
    dave.expect_line(&error("banned by alice")).await;
    expect_closed(&mut dave).await;
    op.send_line("/ban 10.9.8.7 30").await;
    let answer = op.read_line().await;
    assert!(answer.starts_with("*** banned 10.9.8.7 20"), "{answer}");
    op.send_line("/bans").await;
    let list = op.read_line().await;
    let entries: Vec<&str> = list
        .strip_prefix("*** bans: ")
        .expect("a list")
        .split(", ")
        .map(|e| e.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(entries, ["10.9.8.7", "127.0.0.0/8", "2001:db8::/64"]);
    // The operator, on 127.0.0.1, is still here and heard.
    op.send_line("still here").await;
    op.expect_line("alice: still here").await;
    op.send_line("/unban nonsense").await;
    op.expect_line(&error("no such ban")).await;
}

#[tokio::test]
async fn a_banned_address_is_refused_on_every_listener() {
    let cert = TestCert::new();
    let mut flags = vec!["--http".to_owned(), "127.0.0.1:0".to_owned()];
    flags.extend(["--tls".to_owned(), "127.0.0.1:0".to_owned()]);
    flags.extend(cert.flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = server(&flags).await;
    let mut op = server.connect_welcomed().await;
    oper(&mut op).await;
    op.send_line("/ban 127.0.0.9 no reason given").await;
    op.expect_line("*** banned 127.0.0.9 until unbanned").await;

    // TLS: closed before any handshake is spent on it.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((lo(9), 0))).expect("bind");
    let tcp = socket
        .connect(server.addr(ListenerKind::Tls))
        .await
        .expect("connect");
    assert!(
        tls_stream_over(tcp, &cert).await.is_err(),
        "no TLS handshake for a banned address"
    );
    // The same address elsewhere is fine over TLS.
    tls_stream(server.addr(ListenerKind::Tls), &[&cert.der])
        .await
        .expect("a handshake for others");

    // WebSocket: the reason as a message, then close code 1008.
    let mut ws = ws_from(server.addr(ListenerKind::Http), lo(9), false).await;
    ws.expect_line(&error("banned: no reason given")).await;
    assert_eq!(ws.next_line().await, None);
    assert_eq!(ws.close_code(), Some(1008));
}

/// A TLS handshake over an established TCP connection.
async fn tls_stream_over(tcp: TcpStream, cert: &TestCert) -> std::io::Result<()> {
    let connector = TestCert::connector(&[&cert.der]);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(std::io::Error::other)?
        .map(drop)
}

#[tokio::test]
async fn a_muted_user_is_not_heard_until_unmuted() {
    let server = server(&[]).await;
    let [mut op, mut bob, mut carol] = server.join_all("lobby", ["alice", "bob", "carol"]).await;
    oper(&mut op).await;
    op.send_line("/mute B0B").await;
    op.expect_line("*** muted bob").await;
    bob.send_line("hello?").await;
    bob.expect_line(&error("you are muted")).await;
    // Within the second: dropped without a word.
    bob.send_line("/me waves").await;
    bob.send_line("/msg carol psst").await;
    bob.send_line("/who").await;
    bob.expect_line("*** users in lobby: alice, bob, carol")
        .await;
    op.send_line("/unmute bob").await;
    op.expect_line("*** unmuted bob").await;
    bob.send_line("back").await;
    for member in [&mut op, &mut bob, &mut carol] {
        // Nothing bob said while muted reached anyone.
        member.expect_line("bob: back").await;
    }
    op.send_line("/mute bob 1 extra").await;
    op.expect_line(&error("usage: /mute <user> [minutes]"))
        .await;
    op.send_line("/mute nobody").await;
    op.expect_line(&error("no such user")).await;
    bob.send_line("/kick carol").await;
    bob.expect_line(&error("not an operator")).await;
}

#[tokio::test]
async fn bans_survive_a_restart() {
    let state = tempfile::tempdir().expect("state dir");
    let dir = state.path().to_str().expect("utf-8").to_owned();
    let first = server(&["--state-dir", &dir]).await;
    let mut op = first.connect_welcomed().await;
    oper(&mut op).await;
    op.send_line("/ban 127.0.0.7 60 spam").await;
    let answer = op.read_line().await;
    assert!(answer.starts_with("*** banned 127.0.0.7 "), "{answer}");
    op.send_line("/ban 127.0.0.8").await;
    op.expect_line("*** banned 127.0.0.8 until unbanned").await;
    op.send_line("/unban 127.0.0.8").await;
    op.expect_line("*** unbanned 127.0.0.8").await;
    first.stop();
    expect_file_holds(state.path(), "127.0.0.7", "127.0.0.8").await;

    let second = server(&["--state-dir", &dir]).await;
    let mut refused = second.connect_from(lo(7)).await;
    refused.expect_line(&error("banned: spam")).await;
    expect_closed(&mut refused).await;
    welcomed_from(&second, lo(8)).await;
}

/// Waits (bounded) until the bans file holds `banned` and not `lifted`:
/// it is written off the connection's task.
async fn expect_file_holds(dir: &std::path::Path, banned: &str, lifted: &str) {
    let path = dir.join("bans.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let bans: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let targets: Vec<&str> = bans["bans"]
            .as_array()
            .map(|a| a.iter().filter_map(|b| b["target"].as_str()).collect())
            .unwrap_or_default();
        if targets == [banned] {
            assert!(!text.contains(lifted));
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bans.json holds {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects from `ip` until the server refuses it with `refusal`, or
/// welcomes it if `refusal` is `None`: what another node learns through
/// NATS arrives a moment later. Each try is a connection, not a pause;
/// bounded by the protocol's "within a second".
async fn eventually_from(server: &TestServer, ip: Ipv4Addr, refusal: Option<&str>) -> Client {
    // PROTOCOL.md: a ban on one node refuses on the others within a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let mut client = server.connect_from(ip).await;
        let first = client.read_line().await;
        let wanted = match refusal {
            Some(refusal) => first == error(refusal),
            None => first == WELCOME[0],
        };
        if wanted {
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {first:?} from {ip}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_node_holds_on_the_others_and_outlives_them() {
    let Some(nats) = common::nats::Nats::start().await else {
        return;
    };
    let operator = operator_flag();
    let flags = ["--operator", operator.as_str()];
    let a = common::nats::node(&nats, "a", &flags).await;
    let b = common::nats::node(&nats, "b", &flags).await;
    let mut on_b = joined_from(&b, lo(5), "lobby", "mallory").await;
    let mut op = a.connect_welcomed().await;
    oper(&mut op).await;
    op.send_line("/ban 127.0.0.5 spam").await;
    op.expect_line("*** banned 127.0.0.5 until unbanned").await;
    // Node b removes the connection it holds from the address, and
    // refuses new ones.
    on_b.expect_line(&error("banned by root: spam")).await;
    expect_closed(&mut on_b).await;
    eventually_from(&b, lo(5), Some("banned: spam")).await;

    // A node started afterwards knows the ban from NATS.
    b.stop();
    let c = common::nats::node(&nats, "c", &flags).await;
    eventually_from(&c, lo(5), Some("banned: spam")).await;
    let mut op_c = c.connect_welcomed().await;
    oper(&mut op_c).await;
    op_c.send_line("/bans").await;
    op_c.expect_line("*** bans: 127.0.0.5 (until unbanned)")
        .await;
    op_c.send_line("/unban 127.0.0.5").await;
    op_c.expect_line("*** unbanned 127.0.0.5").await;
    eventually_from(&a, lo(5), None).await;
}

/// Sends `/who` until its answer is `expected`: what one node learns of
/// another's members arrives a moment after the room's own lines. Each try
/// is a round trip, not a pause.
async fn who_until(client: &mut Client, expected: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        client.send_line("/who").await;
        last = client.read_line().await;
        if last == expected {
            return;
        }
    }
    panic!("/who kept answering {last:?}, not {expected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_mutes_and_bans_reach_users_on_other_nodes() {
    let Some(nats) = common::nats::Nats::start().await else {
        return;
    };
    let operator = operator_flag();
    let flags = ["--operator", operator.as_str()];
    let a = common::nats::node(&nats, "a", &flags).await;
    let b = common::nats::node(&nats, "b", &flags).await;
    let mut op = a.join("lobby", "alice").await;
    oper(&mut op).await;
    let mut bob = joined_from(&b, lo(6), "lobby", "bob").await;
    op.expect_line("bob has joined").await;
    let mut dave = joined_from(&b, lo(7), "lobby", "dave").await;
    op.expect_line("dave has joined").await;
    bob.expect_line("dave has joined").await;
    who_until(&mut op, "*** users in lobby: alice, bob, dave").await;

    // A kick: bob's node removes him, and the whole room, on both nodes,
    // hears the notice before he leaves.
    op.send_line("/kick bob spam").await;
    bob.expect_line(&error("kicked by alice: spam")).await;
    expect_closed(&mut bob).await;
    for member in [&mut op, &mut dave] {
        member
            .expect_lines(&["*** bob was kicked by alice: spam", "bob has left"])
            .await;
    }

    // A mute, answered by the operator's node once dave's has done it.
    op.send_line("/mute DAVE").await;
    op.expect_line("*** muted dave").await;
    dave.send_line("can anyone hear me").await;
    dave.expect_line(&error("you are muted")).await;
    op.send_line("/unmute dave").await;
    op.expect_line("*** unmuted dave").await;
    dave.send_line("back").await;
    op.expect_line("dave: back").await;
    dave.expect_line("dave: back").await;

    // A ban by name: dave's node knows his address and bans it for all.
    // The operator's answer comes when dave's node has answered, so it may
    // come before or after the room's notice; the notice comes before
    // dave's leaving.
    op.send_line("/ban dave 10 flood").await;
    dave.expect_line(&error("banned by alice: flood")).await;
    expect_closed(&mut dave).await;
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(op.read_line().await);
    }
    let answer = lines
        .iter()
        .position(|l| l.starts_with("*** banned "))
        .map(|at| lines.remove(at))
        .expect("the ban's answer");
    assert!(
        answer.starts_with("*** banned 127.0.0.7 20"),
        "ban answer {answer:?}"
    );
    assert_eq!(
        lines,
        ["*** dave was banned by alice: flood", "dave has left"]
    );
    eventually_from(&a, lo(7), Some("banned: flood")).await;
    op.send_line("/kick dave").await;
    op.expect_line(&error("no such user")).await;
}

#[tokio::test]
async fn operators_and_kicked_users_on_tls_and_websocket_lines() {
    let cert = TestCert::new();
    let mut flags = vec!["--http".to_owned(), "127.0.0.1:0".to_owned()];
    flags.extend(["--tls".to_owned(), "127.0.0.1:0".to_owned()]);
    flags.extend(cert.flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = server(&flags).await;
    // The operator over TLS, the kicked user over WebSocket (lines).
    let mut op = Conn::tls(server.addr(ListenerKind::Tls), &cert).await;
    op.join("lobby", "alice").await;
    op.send_line(&format!("/oper root {PASSWORD}")).await;
    op.expect_line("*** you are now an operator").await;
    let mut eve = Conn::ws(server.addr(ListenerKind::Http)).await;
    eve.join("lobby", "eve").await;
    op.expect_line("eve has joined").await;
    op.send_line("/kick eve").await;
    eve.expect_line(&error("kicked by alice")).await;
    assert_eq!(eve.next_line().await, None);
    assert_eq!(eve.close_code(), Some(1008));
    op.expect_lines(&["*** eve was kicked by alice", "eve has left"])
        .await;
    // And the other way round: a TLS user kicked by a WebSocket operator.
    let mut ws_op = Conn::ws(server.addr(ListenerKind::Http)).await;
    ws_op.join("lobby", "root2").await;
    op.expect_line("root2 has joined").await;
    ws_op.send_line(&format!("/oper root {PASSWORD}")).await;
    ws_op.expect_line("*** you are now an operator").await;
    ws_op.send_line("/kick alice bye").await;
    op.expect_line(&error("kicked by root2: bye")).await;
    assert_eq!(op.next_line().await, None);
    ws_op
        .expect_lines(&["*** alice was kicked by root2: bye", "alice has left"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_made_while_nats_is_down_reaches_the_other_nodes_once_it_is_back() {
    let Some(mut nats) = common::nats::Nats::start().await else {
        return;
    };
    let operator = operator_flag();
    let flags = ["--operator", operator.as_str()];
    let a = common::nats::node(&nats, "a", &flags).await;
    let b = common::nats::node(&nats, "b", &flags).await;
    let mut op = a.connect_welcomed().await;
    oper(&mut op).await;
    nats.stop().await;
    // Made while the link is lost: it holds on node a at once.
    op.send_line("/ban 127.0.0.11 offline").await;
    op.expect_line("*** banned 127.0.0.11 until unbanned").await;
    let mut refused = a.connect_from(lo(11)).await;
    refused.expect_line(&error("banned: offline")).await;
    nats.restart().await;
    // Node b learns it once node a has written it (the link comes back
    // within the reconnection back-off). Each try is a connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = b.connect_from(lo(11)).await;
        if client.read_line().await == error("banned: offline") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node b never learned the ban"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
