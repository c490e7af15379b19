//! Room lines: messages, `/me`, `//`, blank lines, and `has left` however a
//! user goes.

mod common;

use common::ServerLines;

use common::TestServer;

#[tokio::test]
async fn message_reaches_every_member_sender_included() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob, mut carol] = server.join_all("lobby", ["alice", "bob", "carol"]).await;
    alice.send_line("hello there").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        member.expect_line("alice: hello there").await;
    }
}

#[tokio::test]
async fn message_keeps_leading_and_inner_blanks() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("  two  spaces\tand a tab").await;
    bob.expect_line("alice:   two  spaces and a tab").await;
}

#[tokio::test]
async fn line_starting_with_blanks_is_a_message_not_a_command() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("  /who").await;
    alice.expect_line("alice:   /who").await;
    bob.expect_line("alice:   /who").await;
}

#[tokio::test]
async fn double_slash_sends_a_message_starting_with_one_slash() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("//who is there").await;
    alice.send_line("///").await;
    for member in [&mut alice, &mut bob] {
        member.expect_line("alice: /who is there").await;
        member.expect_line("alice: //").await;
    }
}

#[tokio::test]
async fn me_describes_an_action_to_everyone() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("/me waves  at \tbob").await;
    alice.send_line("/ME  nods").await;
    for member in [&mut alice, &mut bob] {
        member.expect_line("* alice waves  at  bob").await;
        member.expect_line("* alice nods").await;
    }
}

#[tokio::test]
async fn members_of_other_rooms_do_not_see_room_lines() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    let mut carol = server.join("kitchen", "carol").await;
    alice.send_line("lobby only").await;
    alice.send_line("/me whispers").await;
    bob.expect_line("alice: lobby only").await;
    bob.expect_line("* alice whispers").await;
    carol.send_line("marker").await;
    carol.expect_line("carol: marker").await;
}

#[tokio::test]
async fn blank_lines_in_a_room_are_ignored() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_raw(b"\n \n\t\n  \t \r\n\r\n").await;
    alice.send_line("marker").await;
    alice.expect_line("alice: marker").await;
    bob.expect_line("alice: marker").await;
}

#[tokio::test]
async fn quit_shows_has_left_to_the_others_but_not_to_the_leaver() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("/quit").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn disconnect_shows_has_left() {
    let server = TestServer::start(&[]).await;
    let [alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    drop(alice);
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn closing_the_sending_side_leaves_the_room_after_the_last_line() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_line("bye").await;
    alice.finish().await;
    alice.expect_line("alice: bye").await;
    alice.expect_closed().await;
    bob.expect_line("alice: bye").await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn lines_sent_after_leaving_reach_nobody() {
    let server = TestServer::start(&[]).await;
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    alice.send_raw(b"/quit\nstill talking\n").await;
    alice.expect_closed().await;
    bob.expect_line("alice has left").await;
    bob.send_line("marker").await;
    bob.expect_line("bob: marker").await;
}
