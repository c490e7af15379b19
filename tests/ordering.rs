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
