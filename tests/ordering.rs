//! Order in a room: one total order for every member, and each sender's
//! lines in the order they were sent.

mod common;

use common::ServerLines;

use common::{Receiver, TestServer};

/// Members that send at the same time.
const SENDERS: [&str; 3] = ["ann", "ben", "cy"];

/// Lines each sender sends.
const LINES: usize = 200;

/// Reads `count` lines.
async fn collect(mut rx: Receiver, count: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(count);
    for _ in 0..count {
        lines.push(rx.read_line().await);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_see_one_order_that_keeps_each_senders_order() {
    let server = TestServer::start(&["--rate", "0"]).await;
    let [ann, ben, cy, watcher] = server
        .join_all("den", ["ann", "ben", "cy", "watcher"])
        .await;
    // Every room line: the senders' lines, and a visitor coming and going.
    let expected = SENDERS.len() * LINES + 2;

    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (name, member) in SENDERS.iter().zip([ann, ben, cy]) {
        let (rx, mut tx) = member.split();
        readers.push(tokio::spawn(collect(rx, expected)));
        writers.push(tokio::spawn(async move {
            for i in 0..LINES {
                tx.send_line(&format!("{name} line {i}")).await;
                tokio::task::yield_now().await;
            }
            tx
        }));
    }
    let (watcher_rx, _watcher_tx) = watcher.split();
    readers.push(tokio::spawn(collect(watcher_rx, expected)));
    let mut visitor = server.join("den", "visitor").await;
    visitor.send_line("/quit").await;
    visitor.skip_to_close().await;

    let _senders: Vec<_> = join_tasks(writers).await;
    let views = join_tasks(readers).await;

    for view in &views[1..] {
        assert!(view == &views[0], "two members saw different orders");
    }
    let order = &views[0];
    let position = |line: &str| order.iter().position(|l| l == line);
    let joined = position("visitor has joined").expect("visitor has joined");
    let left = position("visitor has left").expect("visitor has left");
    assert!(joined < left);
    for name in SENDERS {
        let prefix = format!("{name}: ");
        let mine: Vec<&str> = order
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        let sent: Vec<String> = (0..LINES).map(|i| format!("{name} line {i}")).collect();
        assert_eq!(mine, sent, "{name}'s lines out of order");
    }
}

/// Awaits every task, in order.
async fn join_tasks<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

/// Lines pasted in one write: more than one burst's worth.
const PASTED: usize = 400;

#[tokio::test]
async fn a_paste_reaches_every_transport_line_by_line_with_commands_in_place() {
    use chatgate::server::ListenerKind;
    use common::clients::Conn;

    let server = TestServer::start(&["--rate", "0", "--http", "127.0.0.1:0"]).await;
    let mut paster = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    paster.join("den", "paster").await;
    let mut telnet = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    telnet.join("den", "telnet").await;
    paster.expect_line("telnet has joined").await;
    let mut browser = Conn::ws(server.addr(ListenerKind::Http)).await;
    browser.join("den", "browser").await;
    paster.expect_line("browser has joined").await;
    telnet.expect_line("browser has joined").await;

    // One write holding plain lines (each about 60 bytes, 400 of them:
    // past one burst), a `/me`, a private message and a command whose
    // answer goes to the paster alone.
    let mut paste = String::new();
    let mut room = Vec::new();
    for i in 0..PASTED {
        paste.push_str(&format!(
            "line {i:04} of a long paste that fills bursts\r\n"
        ));
        room.push(format!(
            "paster: line {i:04} of a long paste that fills bursts"
        ));
        if i == PASTED / 2 {
            paste.push_str("/me pauses\r\n/msg telnet psst\r\n/who\r\n");
            room.push("* paster pauses".to_owned());
        }
    }
    paster.send_line(paste.trim_end()).await;

    for line in &room {
        browser.expect_line(line).await;
    }
    for line in &room {
        telnet.expect_line(line).await;
        if line == "* paster pauses" {
            telnet.expect_line("paster (private): psst").await;
        }
    }
    for line in &room {
        paster.expect_line(line).await;
        if line == "* paster pauses" {
            paster.expect_line("paster (private): psst").await;
            paster
                .expect_line("*** users in den: browser, paster, telnet")
                .await;
        }
    }
}
