//! Commands in a room: `/who`, `/rooms`, `/join`, `/msg`, `/help`, unknown
//! commands and usage errors.

mod common;

use common::ServerLines;

use chatgate::protocol::reply::reason;
use common::{TestServer, error};

#[tokio::test]
async fn who_lists_the_room_sorted_by_byte_value() {
    let server = TestServer::start(&[]).await;
    let [mut alice, _bob, _zed, _x, _one] = server
        .join_all("den", ["alice", "bob", "Zed", "_x", "0ne"])
        .await;
    let _elsewhere = server.join("attic", "Aaron").await;
    alice.send_line("/who").await;
    alice
        .expect_line("*** users in den: 0ne, Zed, _x, alice, bob")
        .await;
}

#[tokio::test]
async fn who_answers_the_sender_only() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in den: alice, bob").await;
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn rooms_lists_every_room_sorted_with_its_count() {
    let server = TestServer::start(&[]).await;
    let _b = server.join_all("b", ["u1", "u2"]).await;
    let _upper_b = server.join("B", "u3").await;
    let mut asker = server.join("a", "u4").await;
    asker.send_line("/rooms").await;
    asker.expect_line("*** rooms: B (1), a (1), b (2)").await;
}

#[tokio::test]
async fn room_that_becomes_empty_is_no_longer_listed() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("first", "alice").await;
    alice.send_line("/join second").await;
    alice.expect_line("alice has joined").await;
    alice.send_line("/rooms").await;
    alice.expect_line("*** rooms: second (1)").await;
}

#[tokio::test]
async fn join_moves_the_user_old_room_sees_left_new_room_sees_joined() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("one", ["alice", "bob"]).await;
    let mut carol = server.join("two", "carol").await;
    alice.send_line("/join two").await;
    alice.expect_line("alice has joined").await;
    bob.expect_line("alice has left").await;
    carol.expect_line("alice has joined").await;

    alice.send_line("hi two").await;
    alice.expect_line("alice: hi two").await;
    carol.expect_line("alice: hi two").await;
    bob.send_line("marker").await;
    bob.expect_line("bob: marker").await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in two: alice, carol").await;
}

#[tokio::test]
async fn join_into_a_room_where_the_name_is_taken_changes_nothing() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("one", ["alice", "bob"]).await;
    let _other_alice = server.join("two", "ALICE").await;
    alice.send_line("/join two").await;
    alice.expect_line(&error(reason::NAME_TAKEN)).await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in one: alice, bob").await;
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn join_with_a_bad_room_name_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("one", "alice").await;
    let too_long = "r".repeat(21);
    for room in ["bad/room", "caf\u{e9}", too_long.as_str()] {
        alice.send_line(&format!("/join {room}")).await;
        alice.expect_line(&error(reason::BAD_ROOM)).await;
    }
    alice.send_line("/rooms").await;
    alice.expect_line("*** rooms: one (1)").await;
}

#[tokio::test]
async fn join_of_the_current_room_is_refused() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("one", ["alice", "bob"]).await;
    alice.send_line("/join one").await;
    alice.expect_line(&error(reason::SAME_ROOM)).await;
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn join_of_a_room_differing_only_in_case_is_a_move() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("one", ["alice", "bob"]).await;
    alice.send_line("/join One").await;
    alice.expect_line("alice has joined").await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn msg_reaches_the_named_user_in_any_case_and_echoes_to_the_sender() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob, mut carol] = server.join_all("den", ["alice", "Bob", "carol"]).await;
    alice.send_line("/msg bOB  psst,  over here").await;
    bob.expect_line("alice (private): psst,  over here").await;
    alice.expect_line("alice (private): psst,  over here").await;
    alice.send_line("marker").await;
    alice.expect_line("alice: marker").await;
    carol.expect_line("alice: marker").await;
}

#[tokio::test]
async fn msg_to_oneself_arrives_once() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("den", "alice").await;
    alice.send_line("/msg ALICE note to self").await;
    alice.expect_line("alice (private): note to self").await;
    alice.send_line("marker").await;
    alice.expect_line("alice: marker").await;
}

#[tokio::test]
async fn msg_to_a_user_not_in_the_room_is_an_error() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    let mut dave = server.join("attic", "dave").await;
    for to in ["nobody", "dave", "bad/name"] {
        alice.send_line(&format!("/msg {to} hello")).await;
        alice.expect_line("ERROR no such user").await;
    }
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
    dave.send_line("marker").await;
    dave.expect_line("dave: marker").await;
}

#[tokio::test]
async fn help_answers_with_lines_starting_with_a_star() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line("/help").await;
    alice.send_line("/who").await;
    let help = alice.lines_until("*** users in den: alice, bob").await;
    assert!(!help.is_empty());
    for line in &help {
        assert!(line.starts_with("*** "), "{line:?}");
    }
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn unknown_command_is_an_error() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    for line in ["/dance", "/whoami", "/", "/ who"] {
        alice.send_line(line).await;
        alice.expect_line("ERROR unknown command").await;
    }
    alice.send_line("marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn commands_with_missing_or_extra_arguments_get_usage() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    let cases = [
        ("/msg bob", "ERROR usage: /msg <user> <text>"),
        ("/msg", "ERROR usage: /msg <user> <text>"),
        ("/msg bob   ", "ERROR usage: /msg <user> <text>"),
        ("/who x", "ERROR usage: /who"),
        ("/rooms all", "ERROR usage: /rooms"),
        ("/join", "ERROR usage: /join <room>"),
        ("/join a b", "ERROR usage: /join <room>"),
        ("/me", "ERROR usage: /me <text>"),
        ("/help me", "ERROR usage: /help"),
        ("/quit now", "ERROR usage: /quit"),
    ];
    for (line, answer) in cases {
        alice.send_line(line).await;
        alice.expect_line(answer).await;
    }
    alice.send_line("marker").await;
    alice.expect_line("alice: marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn command_words_are_case_insensitive() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    alice.send_line("/WHO").await;
    alice.expect_line("*** users in den: alice, bob").await;
    alice.send_line("/RoOmS").await;
    alice.expect_line("*** rooms: den (2)").await;
    alice.send_line("/Me waves").await;
    alice.expect_line("* alice waves").await;
    bob.expect_line("* alice waves").await;
    alice.send_line("/MSG bob hi").await;
    alice.expect_line("alice (private): hi").await;
    bob.expect_line("alice (private): hi").await;
    alice.send_line("/HELP").await;
    alice.send_line("/Who").await;
    alice.lines_until("*** users in den: alice, bob").await;
    alice.send_line("/JOIN attic").await;
    alice.expect_line("alice has joined").await;
    bob.expect_line("alice has left").await;
    alice.send_line("/QUIT").await;
    alice.expect_closed().await;
}

#[tokio::test]
async fn quit_closes_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("den", "alice").await;
    alice.send_line("/quit").await;
    alice.expect_closed().await;
}

/// `count` users, each joined to `room_of(i)` as `u<i>` (zero-padded, so
/// byte order is number order).
async fn crowd(
    server: &TestServer,
    count: usize,
    room_of: impl Fn(usize) -> String,
) -> Vec<common::Client> {
    let mut users = Vec::with_capacity(count);
    for i in 0..count {
        users.push(server.join(&room_of(i), &format!("u{i:03}")).await);
    }
    users
}

#[tokio::test]
async fn who_in_a_room_of_more_than_a_hundred_lists_the_first_hundred() {
    let server = TestServer::start(&["--max-per-ip", "0"]).await;
    let _crowd = crowd(&server, 130, |_| "big".to_owned()).await;
    let mut asker = server.join("big", "zed").await;
    asker.send_line("/who").await;
    let want: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    asker
        .expect_line(&format!(
            "*** users in big (first 100 of 131): {}",
            want.join(", ")
        ))
        .await;
}

#[tokio::test]
async fn rooms_beyond_a_hundred_lists_the_hundred_largest() {
    let server = TestServer::start(&["--max-per-ip", "0"]).await;
    // 120 rooms of one, and two rooms of two that sort last and first.
    let _crowd = crowd(&server, 120, |i| format!("r{i:03}")).await;
    let _pairs = [
        server.join("zz", "a").await,
        server.join("zz", "b").await,
        server.join("A", "a").await,
        server.join("A", "b").await,
    ];
    let mut asker = server.connect_welcomed().await;
    asker.send_line("/rooms").await;
    let mut want = vec!["A (2)".to_owned()];
    want.extend((0..98).map(|i| format!("r{i:03} (1)")));
    want.push("zz (2)".to_owned());
    asker
        .expect_line(&format!(
            "*** rooms (100 largest of 122): {}",
            want.join(", ")
        ))
        .await;
}

#[tokio::test]
async fn no_answer_is_larger_than_half_the_askers_queue() {
    let server = TestServer::start(&["--max-per-ip", "0", "--max-queue-bytes", "600"]).await;
    let _crowd = crowd(&server, 60, |i| format!("room{i:03}")).await;
    let mut asker = server.connect_welcomed().await;
    asker.send_line("/rooms").await;
    let answer = asker.read_line().await;
    assert!(answer.len() + 2 <= 300, "{} bytes: {answer}", answer.len());
    let (head, list) = answer.split_once(": ").expect("a list");
    let listed = list.split(", ").count();
    assert_eq!(head, format!("*** rooms ({listed} largest of 60)"));
    // The connection is still fine.
    asker.send_line("/help").await;
    assert!(asker.read_line().await.starts_with("*** "));
}
