//! Framing on TCP: line terminators, the length limit, the telnet layer,
//! UTF-8 repair and the clean-up of control characters and blanks.

mod common;

use common::ServerLines;

use common::TestServer;

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
