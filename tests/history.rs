//! History (PROTOCOL.md, History) over real sockets: what `/history` keeps
//! and shows, its bounds and errors, `--history`, `--history-ttl` and
//! `--history-bytes`, and resuming with `/history since <id>`, whose ids
//! come with JSON events.

mod common;

use std::time::Duration;

use common::ServerLines;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::{TestServer, error};

const USAGE: &str = "usage: /history [N] | /history since <id>";

/// Reads a `/history` answer: the header, then the lines with their times
/// checked and taken off, up to `*** end of history`.
async fn history<C: ServerLines>(conn: &mut C) -> (String, Vec<String>) {
    let header = conn.read_line().await;
    assert!(header.starts_with("*** history of "), "{header:?}");
    let mut lines = Vec::new();
    loop {
        let line = conn.read_line().await;
        if line == "*** end of history" {
            return (header, lines);
        }
        lines.push(without_time(&line).to_owned());
    }
}

/// `[2026-11-29T18:44:19Z] <line>` without its time, which must be UTC to
/// the second.
fn without_time(line: &str) -> &str {
    let time = line.strip_prefix('[').and_then(|l| l.get(..20));
    assert!(
        time.is_some_and(|t| common::is_utc_time(t, false)) && line.get(21..23) == Some("] "),
        "{line:?}"
    );
    &line[23..]
}

#[tokio::test]
async fn a_joiner_asks_for_what_was_said_and_gets_messages_only_oldest_first() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line("hello").await;
    alice.send_line("/me waves").await;
    alice.send_line("/msg bob secret").await;
    bob.expect_lines(&["alice: hello", "* alice waves", "alice (private): secret"])
        .await;
    drop(bob);
    alice.expect_lines(&["alice: hello", "* alice waves"]).await;
    alice.expect_line("alice (private): secret").await;
    alice.expect_line("bob has left").await;

    // JOIN replays nothing; /history does, without joins, leaves or
    // private lines.
    let mut carol = server.join("den", "carol").await;
    carol.send_line("/history").await;
    let (header, lines) = history(&mut carol).await;
    assert_eq!(header, "*** history of den: 2 lines");
    assert_eq!(lines, ["alice: hello", "* alice waves"]);
    carol.send_line("/history 1").await;
    let (header, lines) = history(&mut carol).await;
    assert_eq!(header, "*** history of den: 1 line");
    assert_eq!(lines, ["* alice waves"]);
    // Another room has its own.
    carol.send_line("/join attic").await;
    carol.expect_line("carol has joined").await;
    carol.send_line("/history").await;
    assert_eq!(
        history(&mut carol).await,
        ("*** history of attic: 0 lines".into(), vec![])
    );
}

#[tokio::test]
async fn the_count_is_checked_and_defaults_to_twenty() {
    let server = TestServer::start(&["--rate", "0"]).await;
    let mut alice = server.join("den", "alice").await;
    for i in 0..25 {
        alice.send_line(&format!("line {i}")).await;
        alice.expect_line(&format!("alice: line {i}")).await;
    }
    alice.send_line("/history").await;
    let (header, lines) = history(&mut alice).await;
    assert_eq!(header, "*** history of den: 20 lines");
    assert_eq!(lines.first().unwrap(), "alice: line 5");
    alice.send_line("/HISTORY 1000").await;
    assert_eq!(history(&mut alice).await.1.len(), 25);
    for bad in [
        "/history 0",
        "/history 1001",
        "/history -3",
        "/history ten",
        "/history 2 3",
        "/history since",
    ] {
        alice.send_line(bad).await;
        alice.expect_line(&error(USAGE)).await;
    }
}

#[tokio::test]
async fn before_joining_history_is_refused_and_is_no_failed_attempt() {
    let server = TestServer::start(&[]).await;
    let mut conn = server.connect_welcomed().await;
    for _ in 0..6 {
        conn.send_line("/history").await;
        conn.expect_line(&error("join a room first")).await;
    }
    conn.send_line("JOIN den ann").await;
    conn.expect_line("ann has joined").await;
}

#[tokio::test]
async fn a_room_keeps_its_last_lines_only_and_history_can_be_off() {
    let server = TestServer::start(&["--history", "3"]).await;
    let mut alice = server.join("den", "alice").await;
    for word in ["one", "two", "three", "four"] {
        alice.send_line(word).await;
    }
    alice
        .expect_lines(&["alice: one", "alice: two", "alice: three", "alice: four"])
        .await;
    alice.send_line("/history 10").await;
    let (header, lines) = history(&mut alice).await;
    assert_eq!(header, "*** history of den: 3 lines");
    assert_eq!(lines, ["alice: two", "alice: three", "alice: four"]);

    let off = TestServer::start(&["--history", "0"]).await;
    let mut bob = off.join("den", "bob").await;
    bob.send_line("hi").await;
    bob.expect_line("bob: hi").await;
    bob.send_line("/history").await;
    bob.expect_line(&error("history is off")).await;
}

/// Asks `/rooms` from `watcher` until `room` is no longer listed: its last
/// member's leaving has been processed and the room removed.
async fn until_removed(watcher: &mut common::Client, room: &str) {
    for _ in 0..100 {
        watcher.send_line("/rooms").await;
        let rooms = watcher.read_line().await;
        if !rooms.contains(&format!(" {room} (")) {
            return;
        }
    }
    panic!("{room} was never removed");
}

#[tokio::test]
async fn history_outlives_its_room_for_the_ttl_only_and_a_room_with_members_keeps_it() {
    let server = TestServer::start(&["--history-ttl", "2", "--rate", "0"]).await;
    let mut watcher = server.join("attic", "watcher").await;
    let mut alice = server.join("den", "alice").await;
    alice.send_line("remember me").await;
    alice.expect_line("alice: remember me").await;
    // Members present: kept however old. (Time is what this rule is about;
    // nothing but the clock tells when a line is older than the TTL.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    alice.send_line("/history").await;
    assert_eq!(history(&mut alice).await.1, ["alice: remember me"]);
    drop(alice);
    until_removed(&mut watcher, "den").await;

    // Emptied: a joiner within the TTL still finds it.
    let mut bob = server.join("den", "bob").await;
    bob.send_line("/history").await;
    assert_eq!(history(&mut bob).await.1, ["alice: remember me"]);
    drop(bob);
    until_removed(&mut watcher, "den").await;
    // The time runs from the moment the room was emptied again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut carol = server.join("den", "carol").await;
    carol.send_line("/history").await;
    assert_eq!(
        history(&mut carol).await,
        ("*** history of den: 0 lines".into(), vec![])
    );
}

#[tokio::test]
async fn past_the_byte_cap_the_oldest_lines_of_any_room_go_first() {
    // "alice: 0123456789" is 17 bytes: room for three such lines.
    let server = TestServer::start(&["--history-bytes", "60"]).await;
    let mut alice = server.join("a", "alice").await;
    let mut bob = server.join("b", "bob").await;
    alice.send_line("0123456789").await;
    alice.expect_line("alice: 0123456789").await;
    bob.send_line("0123456789").await;
    bob.expect_line("bob: 0123456789").await;
    alice.send_line("abcdefghij").await;
    alice.expect_line("alice: abcdefghij").await;
    bob.send_line("abcdefghij").await;
    bob.expect_line("bob: abcdefghij").await;
    alice.send_line("/history").await;
    assert_eq!(history(&mut alice).await.1, ["alice: abcdefghij"]);
    bob.send_line("/history").await;
    assert_eq!(
        history(&mut bob).await.1,
        ["bob: 0123456789", "bob: abcdefghij"]
    );
}

#[tokio::test]
async fn an_answer_never_takes_more_than_half_the_queue() {
    let server = TestServer::start(&["--rate", "0", "--max-queue-bytes", "4096"]).await;
    let mut alice = server.join("den", "alice").await;
    let long = "x".repeat(500);
    for _ in 0..10 {
        alice.send_line(&long).await;
        alice.expect_line(&format!("alice: {long}")).await;
    }
    alice.send_line("/history 10").await;
    let (header, lines) = history(&mut alice).await;
    assert!(header.ends_with(", some missing"), "{header}");
    assert!(!lines.is_empty() && lines.len() < 10);
    let size: usize = lines.iter().map(|l| l.len() + 25).sum::<usize>() + header.len() + 20;
    assert!(size <= 2048, "{size} bytes");
}

#[tokio::test]
async fn history_counts_as_one_line_for_the_rate_limit() {
    let server = TestServer::start(&["--rate", "2"]).await;
    let mut alice = server.join("den", "alice").await;
    // A burst of twice the rate is allowed, the JOIN included, then lines
    // are refused.
    alice
        .send_raw(b"/history\n/history 1000\n/history since x\n/history\n")
        .await;
    for _ in 0..3 {
        history(&mut alice).await;
    }
    alice.expect_line(&error("rate limited")).await;
}

/// A JSON client in `room`, its welcome and own join read.
async fn json_user(server: &TestServer, room: &str, user: &str) -> Conn {
    let mut conn = Conn::ws_json(server.addr(ListenerKind::Http)).await;
    assert_eq!(conn.next_event().await["type"], "welcome");
    conn.send_line(&format!("JOIN {room} {user}")).await;
    assert_eq!(conn.next_event().await["type"], "join");
    conn
}

#[tokio::test]
async fn since_an_id_gives_what_came_after_or_says_some_are_missing() {
    let server = TestServer::start(&["--http", "127.0.0.1:0", "--history", "3"]).await;
    let mut ann = json_user(&server, "den", "ann").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ann.send_line(&format!("m{i}")).await;
        ids.push(ann.next_event().await["id"].as_str().unwrap().to_owned());
    }
    let mut tom = server.join("den", "tom").await;
    assert_eq!(ann.next_event().await["type"], "join");

    // A current id: exactly what came after it.
    tom.send_line(&format!("/history since {}", ids[0])).await;
    let (header, lines) = history(&mut tom).await;
    assert_eq!(header, "*** history of den: 2 lines");
    assert_eq!(lines, ["ann: m1", "ann: m2"]);
    tom.send_line(&format!("/history since {}", ids[2])).await;
    assert_eq!(
        history(&mut tom).await,
        ("*** history of den: 0 lines".into(), vec![])
    );

    // An id whose successors were dropped: what is kept, and a note.
    ann.send_line("m3").await;
    ann.send_line("m4").await;
    tom.expect_lines(&["ann: m3", "ann: m4"]).await;
    for _ in 0..2 {
        assert_eq!(ann.next_event().await["type"], "say");
    }
    tom.send_line(&format!("/history since {}", ids[0])).await;
    let (header, lines) = history(&mut tom).await;
    assert_eq!(header, "*** history of den: 3 lines, some missing");
    assert_eq!(lines, ["ann: m2", "ann: m3", "ann: m4"]);

    // Unknown ids: from nowhere, and from another room.
    let mut other = json_user(&server, "attic", "ola").await;
    other.send_line("elsewhere").await;
    let foreign = other.next_event().await["id"].as_str().unwrap().to_owned();
    for id in ["nonsense", foreign.as_str()] {
        tom.send_line(&format!("/history since {id}")).await;
        let (header, lines) = history(&mut tom).await;
        assert_eq!(header, "*** history of den: 3 lines, some missing");
        assert_eq!(lines.len(), 3);
    }

    // The JSON answer carries the same lines with their ids.
    ann.send_line(&format!("/history since {}", ids[1])).await;
    let event = ann.next_event().await;
    assert_eq!(event["type"], "history");
    assert_eq!(event["complete"], true);
    let texts: Vec<&str> = event["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4"]);
    assert_eq!(event["lines"][0]["id"], ids[2]);
}

#[tokio::test]
async fn ids_from_before_a_restart_are_unknown() {
    let flags = ["--http", "127.0.0.1:0"];
    let first = TestServer::start(&flags).await;
    let mut ann = json_user(&first, "den", "ann").await;
    ann.send_line("before").await;
    let old = ann.next_event().await["id"].as_str().unwrap().to_owned();
    first.stop();
    drop(ann);

    let second = TestServer::start(&flags).await;
    let mut ann = json_user(&second, "den", "ann").await;
    ann.send_line("after").await;
    let new = ann.next_event().await["id"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    ann.send_line(&format!("/history since {old}")).await;
    let event = ann.next_event().await;
    assert_eq!(event["complete"], false);
    assert_eq!(event["lines"][0]["text"], "after");
}
