//! Limits: connection caps, the rate limit, the login timeout, the outgoing
//! queue of a slow reader, and `0` turning each of them off.

mod common;

use common::ServerLines;

use std::net::Ipv4Addr;

use common::{BLAST_BATCH, Client, TestServer, WELCOME, blast_batch, blast_line};

/// Opens connections until one is welcomed, each refused one having shown
/// `refusal` and closed; a freed slot is released a moment after its client
/// sees the close, so the first attempts may still be refused.
async fn connect_once_a_slot_is_free(server: &TestServer, refusal: &str) -> Client {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut client = server.connect().await;
        let first = client.read_line().await;
        if first == WELCOME[0] {
            client.expect_line(WELCOME[1]).await;
            return client;
        }
        assert_eq!(first, refusal);
        client.expect_closed().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot freed in time"
        );
    }
}

#[tokio::test]
async fn connection_over_max_connections_gets_only_an_error_then_close() {
    let server = TestServer::start(&["--max-connections", "2"]).await;
    let _first = server.connect_welcomed().await;
    let _second = server.join("den", "bob").await;
    let mut third = server.connect().await;
    third.expect_line("ERROR too many connections").await;
    third.expect_closed().await;
}

#[tokio::test]
async fn closed_connection_frees_its_slot() {
    let server = TestServer::start(&["--max-connections", "1"]).await;
    let mut first = server.connect_welcomed().await;
    first.send_line("/quit").await;
    first.expect_closed().await;
    drop(first);
    let mut again = connect_once_a_slot_is_free(&server, "ERROR too many connections").await;
    again.send_line("JOIN den bob").await;
    again.expect_line("bob has joined").await;
}

#[tokio::test]
async fn connection_over_max_per_ip_gets_only_an_error_then_close() {
    let server = TestServer::start(&["--max-per-ip", "2"]).await;
    let _first = server.connect_welcomed().await;
    let _second = server.connect_welcomed().await;
    let mut third = server.connect().await;
    third
        .expect_line("ERROR too many connections from your address")
        .await;
    third.expect_closed().await;
}

#[tokio::test]
async fn max_per_ip_counts_each_address_apart() {
    let server = TestServer::start(&["--max-per-ip", "1"]).await;
    let _local = server.connect_welcomed().await;
    let mut other = server.connect_from(Ipv4Addr::new(127, 0, 0, 2)).await;
    other.expect_lines(&WELCOME).await;
    let mut again = server.connect_from(Ipv4Addr::new(127, 0, 0, 2)).await;
    again
        .expect_line("ERROR too many connections from your address")
        .await;
    again.expect_closed().await;
}

#[tokio::test]
async fn when_both_connection_limits_are_hit_the_total_one_is_reported() {
    let server = TestServer::start(&["--max-connections", "1", "--max-per-ip", "1"]).await;
    let _first = server.connect_welcomed().await;
    let mut second = server.connect().await;
    second.expect_line("ERROR too many connections").await;
    second.expect_closed().await;
}

#[tokio::test]
async fn zero_turns_the_connection_limits_off() {
    let server = TestServer::start(&["--max-connections", "0", "--max-per-ip", "0"]).await;
    // More than the default of 100 per address.
    let mut clients = Vec::new();
    for _ in 0..120 {
        clients.push(server.connect_welcomed().await);
    }
}

#[tokio::test]
async fn lines_over_the_rate_are_dropped_with_one_error() {
    // Rate 3: a burst of 6 lines. The JOIN is the first of them.
    let server = TestServer::start(&["--rate", "3"]).await;
    let mut bob = server.join("den", "bob").await;
    let mut alice = server.connect_welcomed().await;
    let burst: String = ["JOIN den alice"]
        .into_iter()
        .map(String::from)
        .chain((1..=10).map(|i| format!("m{i}")))
        .chain(["/who".to_string()])
        .map(|line| line + "\n")
        .collect();
    alice.send_raw(burst.as_bytes()).await;
    alice.finish().await;
    let relayed = [
        "alice: m1",
        "alice: m2",
        "alice: m3",
        "alice: m4",
        "alice: m5",
    ];
    alice.expect_line("alice has joined").await;
    alice.expect_lines(&relayed).await;
    alice.expect_line("ERROR rate limited").await;
    alice.expect_closed().await;
    bob.expect_line("alice has joined").await;
    bob.expect_lines(&relayed).await;
    bob.expect_line("alice has left").await;
}

#[tokio::test]
async fn lines_before_joining_count_against_the_rate() {
    let server = TestServer::start(&["--rate", "1"]).await;
    let mut client = server.connect_welcomed().await;
    client
        .send_raw(b"/rooms\n/rooms\nJOIN den alice\n/rooms\n")
        .await;
    client.finish().await;
    client.expect_line("*** rooms: none").await;
    client.expect_line("*** rooms: none").await;
    client.expect_line("ERROR rate limited").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn blank_lines_take_no_rate_token() {
    let server = TestServer::start(&["--rate", "1"]).await;
    let mut bob = server.join("den", "bob").await;
    let mut alice = server.connect_welcomed().await;
    alice
        .send_raw(b"\n \n\t\nJOIN den alice\n\n  \n\r\n\t \nm1\n")
        .await;
    alice.finish().await;
    alice.expect_line("alice has joined").await;
    alice.expect_line("alice: m1").await;
    alice.expect_closed().await;
    bob.expect_lines(&["alice has joined", "alice: m1", "alice has left"])
        .await;
}

#[tokio::test]
async fn rate_zero_relays_every_line() {
    let server = TestServer::start(&["--rate", "0"]).await;
    let [mut alice, mut bob] = server.join_all("den", ["alice", "bob"]).await;
    // Far more than the default burst of 40.
    let burst: String = (0..300).map(|i| format!("line {i}\n")).collect();
    alice.send_raw(burst.as_bytes()).await;
    for i in 0..300 {
        bob.expect_line(&format!("alice: line {i}")).await;
    }
}

#[tokio::test]
async fn connection_that_does_not_join_in_time_is_closed() {
    let server = TestServer::start(&["--login-timeout", "1"]).await;
    let mut alice = server.join("den", "alice").await;
    let mut late = server.connect_welcomed().await;
    late.send_line("/rooms").await;
    late.expect_line("*** rooms: den (1)").await;
    late.expect_line("ERROR login timeout").await;
    late.expect_closed().await;
    alice.send_line("still here").await;
    alice.expect_line("alice: still here").await;
}

#[tokio::test]
async fn login_timeout_zero_never_closes_a_waiting_connection() {
    let without = TestServer::start(&["--login-timeout", "0"]).await;
    let with = TestServer::start(&["--login-timeout", "1"]).await;
    let mut patient = without.connect_welcomed().await;
    let mut timed = with.connect_welcomed().await;
    timed.expect_line("ERROR login timeout").await;
    patient.send_line("JOIN den alice").await;
    patient.expect_line("alice has joined").await;
}

/// Upper bound of a blast: far more than a stalled loopback socket and a
/// 64 KiB queue can hold.
const MAX_BLAST_LINES: usize = 20_000;

/// Asserts that `got` is the blaster's lines `0..count` in order, with
/// `inserted` appearing exactly once among them; reports the first
/// difference rather than megabytes of text.
fn assert_blast_received(got: &[String], count: usize, inserted: &str) {
    assert_eq!(
        got.iter().filter(|l| *l == inserted).count(),
        1,
        "{inserted:?}"
    );
    let blast: Vec<&String> = got.iter().filter(|l| *l != inserted).collect();
    assert_eq!(blast.len(), count, "number of blast lines received");
    for (i, line) in blast.iter().enumerate() {
        assert!(
            **line == format!("blaster: {}", blast_line(i)),
            "line {i} out of order: {:.40}",
            line
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_stops_reading_is_dropped_and_the_room_goes_on_in_order() {
    let server = TestServer::start(&["--rate", "0", "--max-queue-bytes", "65536"]).await;
    let [mut watcher, mut blaster] = server.join_all("den", ["watcher", "blaster"]).await;
    let mut slow = server.connect_small_buffer().await;
    slow.expect_lines(&WELCOME).await;
    slow.join("den", "slow").await;
    watcher.expect_line("slow has joined").await;
    blaster.expect_line("slow has joined").await;

    let (mut watcher_rx, _watcher_tx) = watcher.split();
    let watching = tokio::spawn(async move { watcher_rx.lines_until("blaster: done").await });
    let mut echoed = Vec::new();
    let mut sent = 0;
    let mut batches_after_drop = 0;
    while batches_after_drop < 3 {
        assert!(
            sent < MAX_BLAST_LINES,
            "the stalled reader was never dropped"
        );
        let received = blast_batch(&mut blaster, sent).await;
        sent += BLAST_BATCH;
        if batches_after_drop > 0 || received.iter().any(|l| l == "slow has left") {
            batches_after_drop += 1;
        }
        echoed.extend(received);
    }
    blaster.send_line("done").await;
    blaster.expect_line("blaster: done").await;
    let watched = watching.await.expect("watcher");

    assert_blast_received(&echoed, sent, "slow has left");
    assert_blast_received(&watched, sent, "slow has left");
    slow.skip_to_close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_queue_bytes_zero_never_drops_a_reader_that_falls_behind() {
    let server = TestServer::start(&["--rate", "0", "--max-queue-bytes", "0"]).await;
    let mut blaster = server.join("den", "blaster").await;
    let mut behind = server.connect_small_buffer().await;
    behind.expect_lines(&WELCOME).await;
    behind.join("den", "behind").await;
    blaster.expect_line("behind has joined").await;

    // About 6 MB: more than a stalled loopback connection's kernel buffers
    // and the default 256 KiB queue hold together (the stalled reader above
    // is dropped after about 4 MB), so any limit in force would drop it.
    let count = 6_000;
    let mut echoed = Vec::new();
    for first in (0..count).step_by(BLAST_BATCH) {
        echoed.extend(blast_batch(&mut blaster, first).await);
    }
    assert!(echoed.iter().all(|l| l.starts_with("blaster: ")));
    for i in 0..count {
        behind
            .expect_line(&format!("blaster: {}", blast_line(i)))
            .await;
    }
    behind.send_line("still here").await;
    behind.expect_line("behind: still here").await;
}
