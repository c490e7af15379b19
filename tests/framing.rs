//! Framing: line terminators (over TCP and TLS), the end of input, the
//! length limit, the telnet layer, UTF-8 repair, the clean-up of control
//! characters (over TCP and WebSocket) and the whitespace rule.

mod common;

use common::ServerLines;

use std::process::Stdio;
use std::time::Duration;

use chatgate::server::ListenerKind;
use common::clients::{Conn, TestCert};
use common::{Client, TestServer, WAIT, WELCOME};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::timeout;

/// The longest line the protocol allows, in bytes.
const MAX_LINE: usize = 20_000;

/// `len` bytes of printable text that is not the same everywhere, so a
/// line cut or spliced anywhere would not compare equal.
fn long_text(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

#[tokio::test]
async fn longest_line_is_relayed_whole() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    let text = long_text(MAX_LINE);
    alice.send_line(&text).await;
    bob.expect_line(&format!("alice: {text}")).await;
    alice.send_raw(format!("{text}\r\n").as_bytes()).await;
    bob.expect_line(&format!("alice: {text}")).await;
}

#[tokio::test]
async fn line_one_byte_too_long_is_refused_and_nothing_is_relayed() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line(&long_text(MAX_LINE + 1)).await;
    alice.expect_line("ERROR line too long").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn line_one_byte_too_long_before_a_crlf_is_refused() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice
        .send_raw(format!("{}\r\n", long_text(MAX_LINE + 1)).as_bytes())
        .await;
    alice.expect_line("ERROR line too long").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn overlong_line_is_refused_before_its_end_arrives() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_raw(long_text(MAX_LINE + 1).as_bytes()).await;
    alice.expect_line("ERROR line too long").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn overlong_line_before_joining_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    client.send_line(&long_text(MAX_LINE + 1)).await;
    client.expect_line("ERROR line too long").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn lf_and_crlf_both_end_a_line() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_raw(b"one\r\ntwo\nthree\r\n").await;
    for line in ["alice: one", "alice: two", "alice: three"] {
        bob.expect_line(line).await;
    }
}

#[tokio::test]
async fn join_with_crlf_and_telnet_negotiation_works() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    client
        .send_raw(b"\xff\xfd\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0JOIN den alice\r\n")
        .await;
    client.expect_line("alice has joined").await;
}

#[tokio::test]
async fn telnet_commands_are_removed_from_lines() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    // IAC WILL ECHO, IAC IAC, IAC DONT opt, IAC NOP, IAC AYT.
    alice
        .send_raw(b"\xff\xfb\x01he\xff\xffll\xff\xfe\x22o\xff\xf1 wo\xff\xf6rld\n")
        .await;
    bob.expect_line("alice: hello world").await;
}

#[tokio::test]
async fn newline_inside_a_telnet_subnegotiation_splits_nothing() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice
        .send_raw(b"before \xff\xfa\x18\x00xterm\nnot a line\r\n\xff\xf0after\n")
        .await;
    alice.send_line("marker").await;
    bob.expect_line("alice: before after").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn line_length_is_counted_after_the_telnet_layer() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    let text = long_text(MAX_LINE);
    let (head, tail) = text.split_at(MAX_LINE / 2);
    let nops = b"\xff\xf1".repeat(100);
    let line = [head.as_bytes(), &nops, tail.as_bytes(), b"\n"].concat();
    alice.send_raw(&line).await;
    bob.expect_line(&format!("alice: {text}")).await;
}

#[tokio::test]
async fn overlong_telnet_subnegotiation_is_refused() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    let sub = [&b"\xff\xfa\x18"[..], long_text(MAX_LINE + 1).as_bytes()].concat();
    alice.send_raw(&sub).await;
    alice.expect_line("ERROR line too long").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn invalid_utf8_is_replaced_and_the_connection_stays_open() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_raw(b"caf\xe9 au lait \xc3\n").await;
    bob.expect_line("alice: caf\u{fffd} au lait \u{fffd}").await;
    alice.send_line("na\u{ef}ve \u{2713}").await;
    bob.expect_line("alice: na\u{ef}ve \u{2713}").await;
}

#[tokio::test]
async fn escape_sequences_lose_their_escape_and_keep_their_text() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice
        .send_raw(b"\x1b[31mred\x1b[0m \x1b]0;title\x07done\n")
        .await;
    bob.expect_line("alice: [31mred[0m ]0;titledone").await;
}

#[tokio::test]
async fn control_characters_are_removed_and_a_tab_becomes_a_space() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    // NUL, BEL, BS, ESC, DEL and the C1 controls NEL and CSI.
    alice
        .send_raw("a\0b\x07c\x08d\x1be\x7ff\u{85}g\u{9b}h\tcol\n".as_bytes())
        .await;
    bob.expect_line("alice: abcdefgh col").await;
}

#[tokio::test]
async fn line_of_only_control_characters_is_ignored() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_raw(b"\x1b\x07 \t\x00\n").await;
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn trailing_blanks_are_trimmed_and_leading_ones_kept() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line(" \tindented  text \t \t").await;
    bob.expect_line("alice:   indented  text").await;
}

/// The transports a sender can use in these tests.
#[derive(Debug, Clone, Copy)]
enum Over {
    Tcp,
    Tls,
    Ws,
}

/// A server with TCP, TLS and plain WebSocket listeners, and the
/// certificate its TLS listener uses (kept alive as long as the server).
async fn server_with_every_framing() -> (TestServer, TestCert) {
    let cert = TestCert::new();
    let cert_flags = cert.flags();
    let mut flags = vec!["--tls", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    flags.extend(cert_flags.iter().map(String::as_str));
    (TestServer::start(&flags).await, cert)
}

/// A new connection over `over`; nothing read yet.
async fn connect(server: &TestServer, cert: &TestCert, over: Over) -> Conn {
    match over {
        Over::Tcp => Conn::tcp(server.addr(ListenerKind::Tcp)).await,
        Over::Tls => Conn::tls(server.addr(ListenerKind::Tls), cert).await,
        Over::Ws => Conn::ws(server.addr(ListenerKind::Http)).await,
    }
}

/// `bob` joined to `den` over TCP, then `alice` over `over`; bob has read
/// alice's join and neither has anything left unread.
async fn alice_over(server: &TestServer, cert: &TestCert, over: Over) -> (Conn, Client) {
    let mut bob = server.join("den", "bob").await;
    let mut alice = connect(server, cert, over).await;
    alice.join("den", "alice").await;
    bob.expect_line("alice has joined").await;
    (alice, bob)
}

/// Sends `marker` from alice and checks it is the next thing bob sees, so
/// nothing (an empty message, say) came between.
async fn nothing_more_then_marker(alice: &mut Conn, bob: &mut Client) {
    alice.send_raw(b"marker\n").await;
    bob.expect_line("alice: marker").await;
}

async fn every_line_end_ends_exactly_one_line(over: Over) {
    let (server, cert) = server_with_every_framing().await;
    let (mut alice, mut bob) = alice_over(&server, &cert, over).await;
    alice
        .send_raw(b"lf\ncrlf\r\ncrnul\r\0bare\rafter bare\n")
        .await;
    for line in ["lf", "crlf", "crnul", "bare", "after bare"] {
        bob.expect_line(&format!("alice: {line}")).await;
    }
    // Had the `\0` of `\r\0` started the next line, that line would be one
    // byte too long (the limit counts before clean-up) and alice would be
    // closed instead.
    let text = long_text(MAX_LINE);
    alice
        .send_raw(format!("x\r\0{text}\r\0y\r\0").as_bytes())
        .await;
    bob.expect_line("alice: x").await;
    bob.expect_line(&format!("alice: {text}")).await;
    bob.expect_line("alice: y").await;
    nothing_more_then_marker(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn every_line_end_ends_exactly_one_line_over_tcp() {
    every_line_end_ends_exactly_one_line(Over::Tcp).await;
}

#[tokio::test]
async fn every_line_end_ends_exactly_one_line_over_tls() {
    every_line_end_ends_exactly_one_line(Over::Tls).await;
}

/// Sends `first`, then `second` in a separate write.
///
/// The pause only makes it likely that the server reads the two apart; it
/// does not synchronise anything. The lines expected are the same whether
/// the server reads both writes at once or one by one, so the test passes
/// or fails the same way either way and cannot be flaky.
async fn send_in_two_writes(conn: &mut Conn, first: &[u8], second: &[u8]) {
    conn.send_raw(first).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send_raw(second).await;
}

async fn line_end_split_across_writes_ends_exactly_one_line(over: Over) {
    let (server, cert) = server_with_every_framing().await;
    let (mut alice, mut bob) = alice_over(&server, &cert, over).await;
    for (first, second, lines) in [
        (&b"a\r"[..], &b"\nb\n"[..], ["a", "b"]),
        (b"c\r", b"\0d\n", ["c", "d"]),
        (b"e\r", b"f\n", ["e", "f"]),
        (b"g\r", b"\r\nh\r\0", ["g", "h"]),
    ] {
        send_in_two_writes(&mut alice, first, second).await;
        for line in lines {
            bob.expect_line(&format!("alice: {line}")).await;
        }
    }
    // The `\0` after a `\r` of the previous read belongs to that line end:
    // counted as the next line's first byte, it would make that line one
    // byte too long.
    let text = long_text(MAX_LINE);
    send_in_two_writes(&mut alice, b"x\r", format!("\0{text}\n").as_bytes()).await;
    bob.expect_line("alice: x").await;
    bob.expect_line(&format!("alice: {text}")).await;
    nothing_more_then_marker(&mut alice, &mut bob).await;
}

#[tokio::test]
async fn line_end_split_across_writes_ends_exactly_one_line_over_tcp() {
    line_end_split_across_writes_ends_exactly_one_line(Over::Tcp).await;
}

#[tokio::test]
async fn line_end_split_across_writes_ends_exactly_one_line_over_tls() {
    line_end_split_across_writes_ends_exactly_one_line(Over::Tls).await;
}

/// `JOIN a b\nhello`, with no line end after `hello`, then the end of
/// input: `hello` is said, then `b` leaves, and `b` itself receives every
/// line of its short stay before the server closes.
async fn unterminated_last_line_is_said_when_the_peer_stops_sending(over: Over) {
    let (server, cert) = server_with_every_framing().await;
    let mut watcher = server.join("a", "watcher").await;
    let mut b = connect(&server, &cert, over).await;
    b.expect_lines(&WELCOME).await;
    b.send_raw(b"JOIN a b\nhello").await;
    b.finish().await;
    watcher
        .expect_lines(&["b has joined", "b: hello", "b has left"])
        .await;
    b.expect_lines(&["b has joined", "b: hello"]).await;
    b.expect_closed().await;
}

#[tokio::test]
async fn unterminated_last_line_is_said_before_a_tcp_fin() {
    unterminated_last_line_is_said_when_the_peer_stops_sending(Over::Tcp).await;
}

#[tokio::test]
async fn unterminated_last_line_is_said_before_a_tls_close_notify() {
    unterminated_last_line_is_said_when_the_peer_stops_sending(Over::Tls).await;
}

/// `printf 'JOIN a b\nhello' | nc -N 127.0.0.1 PORT`: the real netcat
/// (OpenBSD's, whose `-N` sends a FIN once its input ends).
#[tokio::test]
async fn unterminated_last_line_from_nc_n_is_said() {
    let server = TestServer::start(&[]).await;
    let mut watcher = server.join("a", "watcher").await;
    let port = server.addr(ListenerKind::Tcp).port().to_string();
    let spawned = Command::new("nc")
        .args(["-N", "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Some(mut nc) = common::tool(spawned, "nc (netcat-openbsd)") else {
        return;
    };
    let mut stdin = nc.stdin.take().expect("stdin");
    stdin.write_all(b"JOIN a b\nhello").await.expect("write");
    drop(stdin);
    watcher
        .expect_lines(&["b has joined", "b: hello", "b has left"])
        .await;
    let out = timeout(WAIT, nc.wait_with_output())
        .await
        .expect("nc ends once the server closes")
        .expect("nc output");
    assert!(
        out.status.success(),
        "nc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Welcome! Use the command:\r\nJOIN <ROOMNAME> <USERNAME>\r\nb has joined\r\nb: hello\r\n"
    );
}

/// Every character the clean-up removes besides the controls: the line and
/// paragraph separators and the bidi embedding, override and isolate
/// controls, U+2028, U+2029, U+202A..U+202E, U+2066..U+2069.
const REMOVED: [char; 11] = [
    '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}',
    '\u{2067}', '\u{2068}', '\u{2069}',
];

async fn separators_and_bidi_controls_are_removed_and_the_rest_kept(over: Over) {
    let (server, cert) = server_with_every_framing().await;
    let (mut alice, mut bob) = alice_over(&server, &cert, over).await;
    // Each one between two letters, so a character kept shows as a letter
    // pair that is not adjacent.
    let letters: Vec<char> = ('a'..='l').collect();
    let mut hostile = String::new();
    for (i, removed) in REMOVED.iter().enumerate() {
        hostile.push(letters[i]);
        hostile.push(*removed);
    }
    hostile.push(letters[REMOVED.len()]);
    alice.send_line(&hostile).await;
    bob.expect_line("alice: abcdefghijkl").await;
    alice.expect_line("alice: abcdefghijkl").await;
    // An override that would turn the next line around, a new visual line.
    alice
        .send_line("see \u{202e}exe.txt\u{2028}bob: fake\u{2029}")
        .await;
    bob.expect_line("alice: see exe.txtbob: fake").await;
    alice.expect_line("alice: see exe.txtbob: fake").await;
    // Nothing but removed characters and blanks: an empty line, ignored.
    let only: String = REMOVED.iter().flat_map(|c| [*c, ' ']).collect();
    alice.send_line(&only).await;
    // A joined family (ZWJ), LRM and RLM, Hebrew and Arabic stay as sent.
    let kept = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467} \u{200e}ltr\u{200f} \u{5e9}\u{5dc}\u{5d5}\u{5dd} \u{645}\u{631}\u{62d}\u{628}\u{627}";
    alice.send_line(kept).await;
    bob.expect_line(&format!("alice: {kept}")).await;
    alice.expect_line(&format!("alice: {kept}")).await;
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn separators_and_bidi_controls_are_removed_and_the_rest_kept_over_tcp() {
    separators_and_bidi_controls_are_removed_and_the_rest_kept(Over::Tcp).await;
}

#[tokio::test]
async fn separators_and_bidi_controls_are_removed_and_the_rest_kept_over_websocket() {
    separators_and_bidi_controls_are_removed_and_the_rest_kept(Over::Ws).await;
}

#[tokio::test]
async fn tabs_become_spaces_in_say_me_and_msg() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line("a\tb\t\tc").await;
    for member in [&mut alice, &mut bob] {
        member.expect_line("alice: a b  c").await;
    }
    alice.send_line("/me\twaves\tat\t\tyou").await;
    for member in [&mut alice, &mut bob] {
        member.expect_line("* alice waves at  you").await;
    }
    alice.send_line("/msg\tbob\thi\tthere").await;
    for member in [&mut bob, &mut alice] {
        member.expect_line("alice (private): hi there").await;
    }
}

#[tokio::test]
async fn msg_with_tabs_between_its_arguments_and_in_its_text() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    // Ten tabs in the text: ten spaces, shortened to eight.
    alice
        .send_line(&format!("/msg\t\tbob\t \tsee{}you\t", "\t".repeat(10)))
        .await;
    let line = format!("alice (private): see{}you", " ".repeat(8));
    bob.expect_line(&line).await;
    alice.expect_line(&line).await;
}

#[tokio::test]
async fn long_run_of_spaces_cannot_push_a_fake_line_start_onto_the_next_row() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice
        .send_line(&format!("ok{}bob: fake", " ".repeat(69)))
        .await;
    bob.expect_line(&format!("alice: ok{}bob: fake", " ".repeat(8)))
        .await;
    alice
        .send_line(&format!("/me ok{}bob: fake", " \t".repeat(20)))
        .await;
    bob.expect_line(&format!("* alice ok{}bob: fake", " ".repeat(8)))
        .await;
}

#[tokio::test]
async fn leading_run_of_twelve_blanks_in_a_message_becomes_eight_spaces() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line(&format!("{}x", " ".repeat(12))).await;
    bob.expect_line(&format!("alice: {}x", " ".repeat(8))).await;
    alice.send_line("\t \t \t \t \t \ty").await;
    bob.expect_line(&format!("alice: {}y", " ".repeat(8))).await;
}
