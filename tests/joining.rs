//! Before joining: the welcome, `JOIN`, name rules, failed attempts and the
//! commands that work outside a room.

mod common;

use common::ServerLines;

use chatgate::protocol::reply::reason;
use common::{TestServer, error};

#[tokio::test]
async fn new_connection_gets_exactly_the_two_welcome_lines() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    client.expect_line("Welcome! Use the command:").await;
    client.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
    client.send_line("/rooms").await;
    client.expect_line("*** rooms: none").await;
}

#[tokio::test]
async fn joiner_receives_its_own_has_joined_line() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    client.send_line("JOIN lobby alice").await;
    client.expect_line("alice has joined").await;
}

#[tokio::test]
async fn members_see_a_newcomer_join() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("lobby", "alice").await;
    let _bob = server.join("lobby", "bob").await;
    alice.expect_line("bob has joined").await;
}

#[tokio::test]
async fn join_word_in_any_case_with_runs_of_blanks_and_leading_blanks() {
    let server = TestServer::start(&[]).await;
    let lines = [
        ("join r u1", "u1"),
        ("JoIn r u2", "u2"),
        ("JOIN\tr\tu3", "u3"),
        ("JOIN  \t r \t  u4", "u4"),
        ("  \tJOIN r u5", "u5"),
        ("JOIN r u6 \t ", "u6"),
    ];
    let mut clients = Vec::new();
    for (line, user) in lines {
        let mut client = server.connect_welcomed().await;
        client.send_line(line).await;
        client.expect_line(&format!("{user} has joined")).await;
        clients.push(client);
    }
    clients[0].send_line("/who").await;
    let seen = clients[0]
        .lines_until("*** users in r: u1, u2, u3, u4, u5, u6")
        .await;
    let joins: Vec<String> = (2..=6).map(|i| format!("u{i} has joined")).collect();
    assert_eq!(seen, joins);
}

#[tokio::test]
async fn join_with_missing_or_extra_tokens_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for line in [
        "JOIN lobby",
        "JOIN",
        "JOIN lobby bob extra",
        "JOINED lobby bob",
    ] {
        client.send_line(line).await;
        client.expect_line(&error(reason::NOT_JOIN)).await;
    }
    client.send_line("JOIN lobby bob").await;
    client.expect_line("bob has joined").await;
}

#[tokio::test]
async fn text_and_room_commands_before_joining_are_failed_attempts() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for line in ["hello", "/who", "/join lobby", "/msg bob hi"] {
        client.send_line(line).await;
        client.expect_line(&error(reason::NOT_JOIN)).await;
    }
    client.send_line("/me waves").await;
    client.expect_line(&error(reason::NOT_JOIN)).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn names_of_twenty_allowed_characters_are_accepted() {
    let server = TestServer::start(&[]).await;
    let room = "Room-2_of.the#house.";
    let user = "Very.long-user_name#";
    assert_eq!((room.len(), user.len()), (20, 20));
    let mut client = server.join(room, user).await;
    client.send_line("/who").await;
    client
        .expect_line(&format!("*** users in {room}: {user}"))
        .await;
}

#[tokio::test]
async fn bad_room_names_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    let too_long = "r".repeat(21);
    for room in ["bad/room", "caf\u{e9}", "a:b", too_long.as_str()] {
        client.send_line(&format!("JOIN {room} bob")).await;
        client.expect_line(&error(reason::BAD_ROOM)).await;
    }
    client.send_line("/rooms").await;
    client.expect_line("*** rooms: none").await;
}

#[tokio::test]
async fn bad_user_names_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    let too_long = "u".repeat(21);
    for user in ["bob!", "b\u{f6}b", "a,b", too_long.as_str()] {
        client.send_line(&format!("JOIN lobby {user}")).await;
        client.expect_line(&error(reason::BAD_USER)).await;
    }
    client
        .send_line(&format!("JOIN lobby {}", "u".repeat(20)))
        .await;
    client
        .expect_line(&format!("{} has joined", "u".repeat(20)))
        .await;
}

#[tokio::test]
async fn second_user_with_same_name_in_any_case_gets_error() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("lobby", "Bob").await;
    let mut other = server.connect_welcomed().await;
    for name in ["Bob", "bob", "BOB", "bOb"] {
        other.send_line(&format!("JOIN lobby {name}")).await;
        other.expect_line(&error(reason::NAME_TAKEN)).await;
    }
    other.send_line("JOIN lobby bobby").await;
    other.expect_line("bobby has joined").await;
    bob.expect_line("bobby has joined").await;
}

#[tokio::test]
async fn room_names_are_case_sensitive() {
    let server = TestServer::start(&[]).await;
    let mut lower = server.join("lobby", "bob").await;
    let mut upper = server.join("Lobby", "bob").await;
    upper.send_line("hi").await;
    upper.expect_line("bob: hi").await;
    lower.send_line("/rooms").await;
    lower.expect_line("*** rooms: Lobby (1), lobby (1)").await;
}

#[tokio::test]
async fn user_name_keeps_the_case_it_was_given() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("lobby", "alice").await;
    let _bob = server.join("lobby", "BoB").await;
    alice.expect_line("BoB has joined").await;
}

#[tokio::test]
async fn name_is_free_again_once_its_owner_quits() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("lobby", "bob").await;
    bob.send_line("/quit").await;
    bob.expect_closed().await;
    server.join("lobby", "BOB").await;
}

#[tokio::test]
async fn fifth_failed_attempt_closes_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for _ in 0..4 {
        client.send_line("hello").await;
        client.expect_line(&error(reason::NOT_JOIN)).await;
    }
    client.send_line("JOIN bad/room bob").await;
    client.expect_line(&error(reason::BAD_ROOM)).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn name_taken_counts_as_a_failed_attempt() {
    let server = TestServer::start(&[]).await;
    let _bob = server.join("lobby", "bob").await;
    let mut client = server.connect_welcomed().await;
    for _ in 0..5 {
        client.send_line("JOIN lobby bob").await;
        client.expect_line(&error(reason::NAME_TAKEN)).await;
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn help_rooms_and_usage_errors_before_joining_are_not_attempts() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for _ in 0..4 {
        client.send_line("nope").await;
        client.expect_line(&error(reason::NOT_JOIN)).await;
    }
    for _ in 0..3 {
        client.send_line("/help").await;
        client.send_line("/rooms").await;
        let help = client.lines_until("*** rooms: none").await;
        assert!(!help.is_empty());
        client.send_line("/help me").await;
        client.expect_line("ERROR usage: /help").await;
        client.send_line("/rooms all").await;
        client.expect_line("ERROR usage: /rooms").await;
        client.send_line("/quit now").await;
        client.expect_line("ERROR usage: /quit").await;
    }
    client.send_line("JOIN lobby bob").await;
    client.expect_line("bob has joined").await;
}

#[tokio::test]
async fn help_before_joining_is_lines_starting_with_a_star() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    client.send_line("/HELP").await;
    client.send_line("/rooms").await;
    let help = client.lines_until("*** rooms: none").await;
    assert!(!help.is_empty());
    for line in &help {
        assert!(line.starts_with("*** "), "{line:?}");
    }
}

#[tokio::test]
async fn rooms_before_joining_lists_the_rooms() {
    let server = TestServer::start(&[]).await;
    let _alice = server.join("lobby", "alice").await;
    let mut client = server.connect_welcomed().await;
    client.send_line("/Rooms").await;
    client.expect_line("*** rooms: lobby (1)").await;
}

#[tokio::test]
async fn quit_before_joining_closes_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    client.send_line("/QUIT").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn blank_lines_before_joining_are_not_attempts_and_get_no_answer() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for _ in 0..3 {
        client.send_raw(b"\n \n\t\n \t \r\n\r\n").await;
    }
    for _ in 0..4 {
        client.send_line("nope").await;
        client.expect_line(&error(reason::NOT_JOIN)).await;
    }
    client.send_raw(b"\n  \n").await;
    client.send_line("JOIN lobby bob").await;
    client.expect_line("bob has joined").await;
}

#[tokio::test]
async fn look_alike_names_cannot_share_a_room() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("den", "alice").await;
    let mut other = server.connect_welcomed().await;
    for name in ["aIice", "a1ice", "ALICE", "Al1ce"] {
        other.send_line(&format!("JOIN den {name}")).await;
        other.expect_line(&error(reason::NAME_TAKEN)).await;
    }
    // `rn` reads as `m` and `vv` as `w`, whichever of the two came first.
    for (first, second) in [("mary", "rnary"), ("rnoon", "moon"), ("walt", "vvalt")] {
        let _holder = server.join("attic", first).await;
        let mut late = server.connect_welcomed().await;
        late.send_line(&format!("JOIN attic {second}")).await;
        late.expect_line(&error(reason::NAME_TAKEN)).await;
    }
    other.send_line("JOIN den alicia").await;
    other.expect_line("alicia has joined").await;
    alice.expect_line("alicia has joined").await;
}

#[tokio::test]
async fn look_alike_names_may_be_in_different_rooms() {
    let server = TestServer::start(&[]).await;
    let names = [
        ("den", "alice"),
        ("attic", "aIice"),
        ("cellar", "a1ice"),
        ("hall", "ALICE"),
        ("yard", "Al1ce"),
        ("den", "rnary"),
        ("attic", "mary"),
        ("den", "vvalt"),
        ("attic", "walt"),
    ];
    let mut clients = Vec::new();
    for (room, user) in names {
        clients.push(server.join(room, user).await);
    }
    let mut alice = clients.swap_remove(0);
    alice
        .expect_lines(&["rnary has joined", "vvalt has joined"])
        .await;
    alice.send_line("/rooms").await;
    alice
        .expect_line("*** rooms: attic (3), cellar (1), den (3), hall (1), yard (1)")
        .await;
}

#[tokio::test]
async fn msg_finds_a_user_by_a_look_alike_spelling() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob, mut mary] = server.join_all("den", ["alice", "bob", "mary"]).await;
    alice.send_line("/msg B0B psst").await;
    bob.expect_line("alice (private): psst").await;
    alice.expect_line("alice (private): psst").await;
    bob.send_line("/msg rnary hi mary").await;
    mary.expect_line("bob (private): hi mary").await;
    bob.expect_line("bob (private): hi mary").await;
    // To a look-alike of the sender: the sender, once.
    alice.send_line("/msg AL1CE note to self").await;
    alice.expect_line("alice (private): note to self").await;
    alice.send_line("/who").await;
    alice
        .expect_line("*** users in den: alice, bob, mary")
        .await;
}

#[tokio::test]
async fn error_and_its_look_alikes_are_refused_as_user_names_as_failed_attempts() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect_welcomed().await;
    for name in ["ERROR", "error", "ERR0R", "Err0r", "eRRoR"] {
        client.send_line(&format!("JOIN den {name}")).await;
        client.expect_line(&error(reason::RESERVED_NAME)).await;
    }
    // That was the fifth failed attempt.
    client.expect_closed().await;
    let mut watcher = server.connect_welcomed().await;
    watcher.send_line("/rooms").await;
    watcher.expect_line("*** rooms: none").await;
}

#[tokio::test]
async fn room_called_error_is_fine() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("ERROR", "bob").await;
    let mut amy = server.join("error", "amy").await;
    bob.send_line("/who").await;
    bob.expect_line("*** users in ERROR: bob").await;
    amy.send_line("hi").await;
    amy.expect_line("amy: hi").await;
    bob.send_line("/rooms").await;
    bob.expect_line("*** rooms: ERROR (1), error (1)").await;
}
