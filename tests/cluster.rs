//! Several nodes joined through a real nats-server behave as one server:
//! rooms, names, `/who`, `/rooms`, `/msg` and order span the nodes, a dead
//! node's users leave, and a restarted nats-server costs nothing but a
//! moment of local-only chat.
//!
//! Nodes run in-process (`TestServer`) unless the test must SIGKILL one.
//! Every test starts its own nats-server; without one installed they are
//! skipped (and fail under `CI=true`).

mod common;

use common::ServerLines;

use std::time::Duration;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::nats::{Nats, Node, node, tcp_user};
use common::{WAIT, error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol's bound for other nodes to show a dead node's users leave.
const DEAD_NODE_WITHIN: Duration = Duration::from_secs(30);

/// The protocol's bound for users to hear that the link is lost.
const LINK_LOST_WITHIN: Duration = Duration::from_secs(5);

/// Time for a restarted nats-server to be found again and everything
/// registered: the reconnect back-off is at most two seconds.
const LINK_BACK_WITHIN: Duration = Duration::from_secs(10);

/// Starts nats-server, or skips the test.
macro_rules! nats_or_skip {
    () => {
        match Nats::start().await {
            Some(nats) => nats,
            None => return,
        }
    };
}

/// Sends `command` until its answer is `expected`: what one node learns
/// of another through the presence bucket arrives a moment later than the
/// room's own lines. Each try is a round trip, not a pause.
async fn eventually(conn: &mut Conn, command: &str, expected: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        conn.send_line(command).await;
        last = conn.read_line().await;
        if last == expected {
            return;
        }
    }
    panic!("{command} kept answering {last:?}, not {expected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_nodes_and_transports_chat_both_ways() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &["--http", "127.0.0.1:0"]).await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    let mut bob = Conn::ws(b.addr(ListenerKind::Http)).await;
    bob.join("lobby", "bob").await;
    alice.expect_line("bob has joined").await;

    alice.send_line("hello from telnet").await;
    bob.send_line("hello from the browser").await;
    for user in [&mut alice, &mut bob] {
        let mut got = vec![user.read_line().await, user.read_line().await];
        got.sort();
        assert_eq!(
            got,
            ["alice: hello from telnet", "bob: hello from the browser"]
        );
    }
    bob.send_line("/me waves").await;
    alice.expect_line("* bob waves").await;
    bob.expect_line("* bob waves").await;

    bob.send_line("/join den").await;
    bob.expect_line("bob has joined").await;
    alice.expect_line("bob has left").await;
    alice.send_line("/join den").await;
    alice.expect_line("alice has joined").await;
    bob.expect_line("alice has joined").await;
    alice.send_line("/quit").await;
    bob.expect_line("alice has left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_rooms_and_msg_see_every_node() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let _carol = tcp_user(&b, "den", "carol").await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    let mut bob = tcp_user(&b, "lobby", "Bob").await;
    alice.expect_line("Bob has joined").await;

    alice.send_line("/who").await;
    alice.expect_line("*** users in lobby: Bob, alice").await;
    eventually(&mut alice, "/rooms", "*** rooms: den (1), lobby (2)").await;
    bob.send_line("/who").await;
    bob.expect_line("*** users in lobby: Bob, alice").await;

    alice.send_line("/msg BOB meet me in the den").await;
    bob.expect_line("alice (private): meet me in the den").await;
    alice
        .expect_line("alice (private): meet me in the den")
        .await;
    alice.send_line("/msg carol hi").await;
    alice.expect_line(&error("no such user")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_racing_for_one_name_on_two_nodes_exactly_one_wins() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    for round in 0..5 {
        let room = format!("race{round}");
        let mut racers = Vec::new();
        for server in [&a, &b] {
            let mut conn = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
            conn.expect_line("Welcome! Use the command:").await;
            conn.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
            racers.push(conn);
        }
        let join = format!("JOIN {room} Sam");
        let (first, second) = racers.split_at_mut(1);
        tokio::join!(first[0].send_line(&join), second[0].send_line(&join));
        let mut answers = Vec::new();
        for racer in &mut racers {
            answers.push(racer.read_line().await);
        }
        answers.sort();
        assert_eq!(answers, [error("name taken"), "Sam has joined".to_owned()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_name_on_another_node_is_taken() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    for alike in ["aIice", "a1ice", "ALICE"] {
        let mut mimic = Conn::tcp(b.addr(ListenerKind::Tcp)).await;
        mimic.expect_line("Welcome! Use the command:").await;
        mimic.expect_line("JOIN <ROOMNAME> <USERNAME>").await;
        mimic.send_line(&format!("JOIN lobby {alike}")).await;
        mimic.expect_line(&error("name taken")).await;
    }
    // In another room the name is free.
    let _elsewhere = tcp_user(&b, "den", "aIice").await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in lobby: alice").await;
}

/// Senders, one per node; each sends [`LINES`] lines at once.
const SENDERS: [&str; 3] = ["ann", "ben", "cy"];
const LINES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_on_different_nodes_every_member_sees_one_order() {
    let nats = nats_or_skip!();
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        servers.push(node(&nats, name, &["--rate", "0"]).await);
    }
    // A sender and a watcher on every node.
    let mut members = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for user in [SENDERS[i].to_owned(), format!("watcher{i}")] {
            let newcomer = tcp_user(server, "den", &user).await;
            for member in &mut members {
                let member: &mut Conn = member;
                member.expect_line(&format!("{user} has joined")).await;
            }
            members.push(newcomer);
        }
    }
    let expected = SENDERS.len() * LINES;
    let mut readers = Vec::new();
    for (i, mut member) in members.into_iter().enumerate() {
        readers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let name = SENDERS[i / 2];
                for n in 0..LINES {
                    member.send_line(&format!("{name} line {n}")).await;
                }
            }
            let mut view = Vec::with_capacity(expected);
            for _ in 0..expected {
                view.push(member.read_line().await);
            }
            view
        }));
    }
    let mut views = Vec::new();
    for reader in readers {
        views.push(reader.await.expect("member task"));
    }
    for view in &views[1..] {
        assert!(view == &views[0], "two members saw different orders");
    }
    for name in SENDERS {
        let prefix = format!("{name}: ");
        let mine: Vec<&str> = views[0]
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        let sent: Vec<String> = (0..LINES).map(|n| format!("{name} line {n}")).collect();
        assert_eq!(mine, sent, "{name}'s lines out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_leave_within_30_seconds_and_free_their_names() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let mut doomed = Node::start(&nats.url(), "doomed").await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    let mut zed = Conn::tcp(doomed.tcp).await;
    zed.join("lobby", "zed").await;
    alice.expect_line("zed has joined").await;

    doomed.kill().await;
    alice
        .expect_line_within("zed has left", DEAD_NODE_WITHIN)
        .await;
    alice.send_line("/who").await;
    alice.expect_line("*** users in lobby: alice").await;
    let _new_zed = tcp_user(&a, "lobby", "zed").await;
    alice.expect_line("zed has joined").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_s_users_leave_at_once() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    let mut bob = tcp_user(&b, "lobby", "bob").await;
    alice.expect_line("bob has joined").await;
    b.stop();
    bob.expect_line("*** server shutting down").await;
    // Within the usual wait, far less than a dead node's timeout.
    alice.expect_line("bob has left").await;
    let _new_bob = tcp_user(&a, "lobby", "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_costs_no_restart_of_the_nodes() {
    let mut nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    let mut bob = tcp_user(&b, "lobby", "bob").await;
    let carol = tcp_user(&b, "lobby", "carol").await;
    alice.expect_line("bob has joined").await;
    alice.expect_line("carol has joined").await;
    bob.expect_line("carol has joined").await;

    nats.stop().await;
    for user in [&mut alice, &mut bob] {
        user.expect_line_within("*** cluster link lost", LINK_LOST_WITHIN)
            .await;
    }
    alice.send_line("only my node hears this").await;
    alice.expect_line("alice: only my node hears this").await;
    drop(carol);
    bob.expect_line("carol has left").await;

    nats.restart().await;
    bob.expect_line_within("*** cluster link restored", LINK_BACK_WITHIN)
        .await;
    // Alice hears carol left while the link was down, once, whichever of
    // node b's repair and node a's own return came first.
    let told = alice.next_lines_sorted(2, LINK_BACK_WITHIN).await;
    assert_eq!(told, ["*** cluster link restored", "carol has left"]);
    alice.send_line("back").await;
    alice.expect_line("alice: back").await;
    bob.expect_line("alice: back").await;
    bob.send_line("welcome back").await;
    alice.expect_line("bob: welcome back").await;
    bob.expect_line("bob: welcome back").await;
    bob.send_line("/who").await;
    bob.expect_line("*** users in lobby: alice, bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_link_and_the_traffic() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &["--http", "127.0.0.1:0"]).await;
    let mut alice = tcp_user(&a, "lobby", "alice").await;
    alice.send_line("counted").await;
    alice.expect_line("alice: counted").await;

    let mut http = tokio::net::TcpStream::connect(a.addr(ListenerKind::Http))
        .await
        .expect("connect");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut text = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut text))
        .await
        .expect("metrics in time")
        .expect("read metrics");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(value("chatgate_cluster_link_up"), 1.0);
    assert!(value("chatgate_cluster_published_lines_total") >= 2.0);
    assert!(value("chatgate_cluster_received_lines_total") >= 2.0);
    assert!(text.contains("chatgate_cluster_presence_entries"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_sent_in_one_write_come_back_in_order_as_on_one_node() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let rooms = ["r1", "r2", "r3", "r4", "r5"];
    // Someone on the other node in every room, to see each join and leave.
    let mut watchers = Vec::new();
    for room in rooms {
        watchers.push(tcp_user(&b, room, &format!("w{room}")).await);
    }
    let mut sam = tcp_user(&a, "lobby", "sam").await;
    let burst: String = rooms.iter().map(|r| format!("/join {r}\n")).collect();
    sam.send_raw(format!("{burst}/who\n").as_bytes()).await;
    for _ in rooms {
        sam.expect_line("sam has joined").await;
    }
    sam.expect_line("*** users in r5: sam, wr5").await;
    for (i, watcher) in watchers.iter_mut().enumerate() {
        watcher.expect_line("sam has joined").await;
        if i + 1 < rooms.len() {
            watcher.expect_line("sam has left").await;
        }
    }
}

/// A JSON-events client (chatgate.v2.json) in `room` on `server`.
async fn json_user(server: &common::TestServer, room: &str, user: &str) -> Conn {
    let mut conn = Conn::ws_json(server.addr(ListenerKind::Http)).await;
    assert_eq!(conn.next_event().await["type"], "welcome");
    conn.send_line(&format!("JOIN {room} {user}")).await;
    assert_eq!(conn.next_event().await["type"], "join");
    conn
}

/// The next `say` event `conn` receives, skipping joins and leaves.
async fn next_say(conn: &mut Conn) -> serde_json::Value {
    loop {
        let event = conn.next_event().await;
        if event["type"] == "say" {
            return event;
        }
    }
}

/// Sends `/history <args>` until the answer holds `want` lines (the copy
/// of a line said on another node reaches the history a moment after the
/// line reaches its members); returns that answer.
async fn history_with(conn: &mut Conn, args: &str, want: usize) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        conn.send_line(&format!("/history {args}")).await;
        // Notices of the link may come first; while it is coming back the
        // answer is that the cluster is busy.
        last = loop {
            let event = conn.next_event().await;
            if event["type"] != "notice" {
                break event;
            }
        };
        if last["type"] == "error" && last["text"] == "cluster busy, try again" {
            continue;
        }
        assert_eq!(last["type"], "history", "{last}");
        if last["lines"].as_array().map(Vec::len) == Some(want) {
            return last;
        }
    }
    panic!("/history {args} kept answering {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_has_the_same_history_with_the_same_ids() {
    let nats = nats_or_skip!();
    let flags = ["--http", "127.0.0.1:0", "--rate", "0"];
    let a = node(&nats, "a", &flags).await;
    let b = node(&nats, "b", &flags).await;
    let mut ann = json_user(&a, "lobby", "ann").await;
    let mut bob = json_user(&b, "lobby", "bob").await;
    ann.send_line("hello from a").await;
    let on_a = next_say(&mut ann).await;
    let on_b = next_say(&mut bob).await;
    assert_eq!(on_a["id"], on_b["id"], "one id on every node");
    assert_eq!(on_a["time"], on_b["time"], "one time on every node");

    // A private line to another node names its recipient as it joined.
    ann.send_line("/msg BOB psst").await;
    let private = ann.next_event().await;
    assert_eq!(
        (&private["type"], &private["to"]),
        (&"private".into(), &"bob".into())
    );
    let private = bob.next_event().await;
    assert_eq!(
        (&private["from"], &private["to"]),
        (&"ann".into(), &"bob".into())
    );

    let answer = history_with(&mut bob, "", 1).await;
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["lines"][0]["id"], on_a["id"]);
    assert_eq!(answer["lines"][0]["text"], "hello from a");
    // Line clients read the same, on either node.
    let mut tom = tcp_user(&b, "lobby", "tom").await;
    tom.send_line("/history").await;
    tom.expect_line("*** history of lobby: 1 line").await;
    let line = tom.read_line().await;
    assert!(line.ends_with("] ann: hello from a"), "{line}");
    tom.expect_line("*** end of history").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_after_its_node_was_killed_and_nats_restarted() {
    let mut nats = nats_or_skip!();
    let mut a = Node::start(&nats.url(), "a").await;
    let b = node(&nats, "b", &["--http", "127.0.0.1:0", "--rate", "0"]).await;
    let mut ann = Conn::tcp(a.tcp).await;
    ann.join("lobby", "ann").await;
    // Carol, on node b, is the client that will resume: she keeps the id
    // of the last line she saw (the same id on every node).
    let mut carol = json_user(&b, "lobby", "carol").await;
    ann.expect_line("carol has joined").await;
    ann.send_line("one").await;
    let seen = next_say(&mut carol).await;
    ann.send_line("two").await;
    ann.expect_line("ann: one").await;
    ann.expect_line("ann: two").await;
    drop(carol);
    let mut watcher = json_user(&b, "lobby", "watcher").await;
    history_with(&mut watcher, "", 2).await;

    a.kill().await;
    nats.stop().await;
    nats.restart().await;
    loop {
        let event = watcher.next_event().await;
        if event["type"] == "notice" && event["code"] == "link_restored" {
            break;
        }
    }
    // What was kept survives both, and the client resumes where it was.
    let mut carol = json_user(&b, "lobby", "carol").await;
    let answer = history_with(
        &mut carol,
        &format!("since {}", seen["id"].as_str().unwrap()),
        1,
    )
    .await;
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["lines"][0]["text"], "two");
    assert_eq!(answer["lines"][0]["user"], "ann");
}

/// How many bursts the cluster's history stream holds.
async fn kept_in_nats(nats: &Nats) -> u64 {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("CHATGATE_HISTORY")
        .await
        .expect("history stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_history_while_anyone_is_in_it_and_for_the_ttl_after() {
    let nats = nats_or_skip!();
    let ttl = Duration::from_secs(2);
    let flags = ["--history-ttl", "2"];
    let a = node(&nats, "a", &flags).await;
    let b = node(&nats, "b", &flags).await;
    let mut ann = tcp_user(&a, "den", "ann").await;
    let mut bob = tcp_user(&b, "den", "bob").await;
    ann.expect_line("bob has joined").await;
    ann.send_line("keep me").await;
    bob.expect_line("ann: keep me").await;
    let mut kept = 0;
    for _ in 0..50 {
        kept = kept_in_nats(&nats).await;
        if kept == 1 {
            break;
        }
    }
    assert_eq!(kept, 1, "the line is kept in NATS");
    // Older than the TTL, with members in the room: kept. (Nothing but the
    // clock tells when a line is older than the TTL.)
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    bob.send_line("/history").await;
    bob.expect_line("*** history of den: 1 line").await;
    assert!(bob.read_line().await.ends_with("] ann: keep me"));
    bob.expect_line("*** end of history").await;

    // Empty on every node: gone once the TTL has passed, not before.
    drop(ann);
    bob.expect_line("ann has left").await;
    drop(bob);
    let emptied = tokio::time::Instant::now();
    while kept_in_nats(&nats).await == 1 {
        assert!(
            emptied.elapsed() < ttl + Duration::from_secs(5),
            "never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(emptied.elapsed() >= ttl - Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_answered_after_the_users_own_lines_as_on_one_node() {
    let nats = nats_or_skip!();
    let a = node(&nats, "a", &["--rate", "0"]).await;
    let _b = node(&nats, "b", &[]).await;
    let mut ann = tcp_user(&a, "den", "ann").await;
    ann.send_raw(b"first\n/history 1\nsecond\n/who\n").await;
    ann.expect_line("ann: first").await;
    // History holds every line up to the moment of asking (PROTOCOL.md).
    ann.expect_line("*** history of den: 1 line").await;
    let line = ann.read_line().await;
    assert!(line.ends_with("] ann: first"), "{line}");
    ann.expect_line("*** end of history").await;
    ann.expect_line("ann: second").await;
    ann.expect_line("*** users in den: ann").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_rooms_history_goes_after_the_ttl_even_when_its_nodes_restarted() {
    let nats = nats_or_skip!();
    let flags = ["--history-ttl", "2"];
    let a = node(&nats, "a", &flags).await;
    let mut ann = tcp_user(&a, "den", "ann").await;
    ann.send_line("remember").await;
    ann.expect_line("ann: remember").await;
    let mut kept = 0;
    for _ in 0..50 {
        kept = kept_in_nats(&nats).await;
        if kept == 1 {
            break;
        }
    }
    assert_eq!(kept, 1);
    // The only node stops with its member in the room: nothing runs that
    // watched the room become empty.
    a.stop();
    ann.expect_line("*** server shutting down").await;
    // A node that starts later finds the room's history and lets it go.
    let _b = node(&nats, "b", &flags).await;
    let started = tokio::time::Instant::now();
    while kept_in_nats(&nats).await == 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "never purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
