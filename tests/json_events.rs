//! JSON events (PROTOCOL.md, JSON events) over real WebSocket connections:
//! the subprotocol negotiation, and every event type checked against the
//! protocol's table, field by field, next to line clients in the same room.

mod common;

use common::ServerLines;

use chatgate::server::ListenerKind;
use common::TestServer;
use common::clients::Conn;
use serde_json::Value;

/// A server with its HTTP listener, for `/ws`.
const HTTP: &[&str] = &["--http", "127.0.0.1:0"];

/// The fields each event type has, `type` included (PROTOCOL.md's table).
fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "welcome" => &["type", "usage"],
        "join" | "leave" => &["type", "room", "user", "time"],
        "say" | "me" => &["type", "room", "user", "text", "time", "id"],
        "private" => &["type", "from", "to", "text", "time"],
        "who" => &["type", "room", "users", "total"],
        "rooms" => &["type", "rooms", "total"],
        "history" => &["type", "room", "lines", "complete"],
        "help" => &["type", "lines"],
        "notice" => &["type", "code", "text"],
        "info" | "error" => &["type", "text"],
        other => panic!("unknown event type {other:?}"),
    }
}

/// Checks `event` against the table: exactly its type's fields, each of
/// the right JSON type and form. Returns its type.
fn check(event: &Value) -> String {
    let object = event.as_object().expect("an object");
    let kind = object["type"]
        .as_str()
        .expect("type is a string")
        .to_owned();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = fields_of(&kind).to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "fields of {event}");
    for (key, value) in object {
        match key.as_str() {
            "total" | "count" => assert!(value.is_u64(), "{key} in {event}"),
            "complete" => assert!(value.is_boolean(), "{key} in {event}"),
            "time" => check_time(value),
            "id" => {
                let id = value.as_str().expect("id is a string");
                assert!(!id.is_empty() && id.len() <= 64, "id {id:?}");
                assert!(!id.contains(char::is_whitespace), "id {id:?}");
            }
            "users" => assert!(
                value
                    .as_array()
                    .expect("users")
                    .iter()
                    .all(Value::is_string)
            ),
            "lines" if kind == "help" => {
                let lines = value.as_array().expect("lines");
                assert!(!lines.is_empty());
                for line in lines {
                    let line = line.as_str().expect("a help line is a string");
                    assert!(!line.starts_with("*** "), "{line:?}");
                }
            }
            "lines" => {
                for line in value.as_array().expect("lines") {
                    let said = check(line);
                    assert!(said == "say" || said == "me", "{line}");
                }
            }
            "rooms" => {
                for entry in value.as_array().expect("rooms") {
                    let entry = entry.as_object().expect("a rooms entry");
                    let mut keys: Vec<&str> = entry.keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    assert_eq!(keys, ["count", "room"]);
                    assert!(entry["room"].is_string() && entry["count"].is_u64());
                }
            }
            "code" => assert!(
                ["shutdown", "link_lost", "link_restored", "kick"]
                    .contains(&value.as_str().expect("code")),
                "{event}"
            ),
            _ => assert!(value.is_string(), "{key} in {event}"),
        }
    }
    kind
}

/// `2026-11-29T18:44:19.123Z`: UTC, RFC 3339, milliseconds.
fn check_time(value: &Value) {
    let time = value.as_str().expect("time is a string");
    assert!(common::is_utc_time(time, true), "time {time:?}");
}

/// The next event, checked; asserts its type.
async fn expect_event(conn: &mut Conn, kind: &str) -> Value {
    let event = conn.next_event().await;
    assert_eq!(check(&event), kind, "{event}");
    event
}

async fn json_user(server: &TestServer, room: &str, user: &str) -> Conn {
    let mut conn = Conn::ws_json(server.addr(ListenerKind::Http)).await;
    let welcome = expect_event(&mut conn, "welcome").await;
    assert_eq!(welcome["usage"], "JOIN <ROOMNAME> <USERNAME>");
    conn.send_line(&format!("JOIN {room} {user}")).await;
    let join = expect_event(&mut conn, "join").await;
    assert_eq!((&join["room"], &join["user"]), (&room.into(), &user.into()));
    conn
}

#[tokio::test]
async fn a_client_that_does_not_ask_gets_lines_and_one_that_asks_among_others_gets_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(HTTP).await;
    let http = server.addr(ListenerKind::Http);
    let mut plain = Conn::ws(http).await;
    plain.expect_line("Welcome! Use the command:").await;
    let mut json = Conn::ws_offering(http, "chat, chatgate.v2.json", true).await;
    expect_event(&mut json, "welcome").await;
    // Offering only other subprotocols: the upgrade picks none (RFC 6455,
    // 4.2.2), and the connection gets lines.
    let mut raw = tokio::net::TcpStream::connect(http).await.unwrap();
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, CHATGATE.V2.JSON\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tokio::time::timeout(common::WAIT, raw.read_exact(&mut byte))
            .await
            .expect("response in time")
            .expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    let mut frame = [0; 2];
    raw.read_exact(&mut frame).await.unwrap();
    assert_eq!(frame[0], 0x81, "a final text frame");
    let mut text = vec![0; usize::from(frame[1])];
    raw.read_exact(&mut text).await.unwrap();
    assert_eq!(text, b"Welcome! Use the command:");
}

#[tokio::test]
async fn room_events_match_the_table_and_the_lines_of_a_telnet_member() {
    let server = TestServer::start(HTTP).await;
    let mut ann = json_user(&server, "den", "ann").await;
    let mut tom = server.join("den", "tom").await;
    let join = expect_event(&mut ann, "join").await;
    assert_eq!(join["user"], "tom");

    tom.send_line("hello \"there\"").await;
    tom.send_line("/me waves").await;
    tom.expect_line("tom: hello \"there\"").await;
    tom.expect_line("* tom waves").await;
    let say = expect_event(&mut ann, "say").await;
    assert_eq!((&say["room"], &say["user"]), (&"den".into(), &"tom".into()));
    assert_eq!(say["text"], "hello \"there\"");
    let me = expect_event(&mut ann, "me").await;
    assert_eq!(me["text"], "waves");
    assert_ne!(say["id"], me["id"], "ids are unique in a room");

    ann.send_line("/msg tom psst").await;
    tom.expect_line("ann (private): psst").await;
    let private = expect_event(&mut ann, "private").await;
    assert_eq!(
        (&private["from"], &private["to"], &private["text"]),
        (&"ann".into(), &"tom".into(), &"psst".into())
    );

    drop(tom);
    let leave = expect_event(&mut ann, "leave").await;
    assert_eq!(
        (&leave["room"], &leave["user"]),
        (&"den".into(), &"tom".into())
    );
}

#[tokio::test]
async fn command_answers_are_events_too() {
    let server = TestServer::start(HTTP).await;
    let _zed = server.join("attic", "zed").await;
    let mut ann = json_user(&server, "den", "ann").await;

    ann.send_line("/who").await;
    let who = expect_event(&mut ann, "who").await;
    assert_eq!(who["users"], serde_json::json!(["ann"]));
    assert_eq!((&who["room"], &who["total"]), (&"den".into(), &1.into()));

    ann.send_line("/rooms").await;
    let rooms = expect_event(&mut ann, "rooms").await;
    assert_eq!(
        rooms["rooms"],
        serde_json::json!([{"room": "attic", "count": 1}, {"room": "den", "count": 1}])
    );
    assert_eq!(rooms["total"], 2);

    ann.send_line("/help").await;
    let help = expect_event(&mut ann, "help").await;
    let lines = help["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("/history"))
    );

    ann.send_line("/nope").await;
    let error = expect_event(&mut ann, "error").await;
    assert_eq!(error["text"], "unknown command");
    ann.send_line("/history 0").await;
    let error = expect_event(&mut ann, "error").await;
    assert_eq!(error["text"], "usage: /history [N] | /history since <id>");

    ann.send_line("first").await;
    ann.send_line("/me second").await;
    let first = expect_event(&mut ann, "say").await;
    let second = expect_event(&mut ann, "me").await;
    ann.send_line("/history").await;
    let history = expect_event(&mut ann, "history").await;
    assert_eq!(history["room"], "den");
    assert_eq!(history["complete"], true);
    assert_eq!(history["lines"], serde_json::json!([first, second]));

    server.stop();
    let notice = expect_event(&mut ann, "notice").await;
    assert_eq!(
        (&notice["code"], &notice["text"]),
        (&"shutdown".into(), &"server shutting down".into())
    );
}

#[tokio::test]
async fn before_joining_errors_are_events() {
    let server = TestServer::start(HTTP).await;
    let mut conn = Conn::ws_json(server.addr(ListenerKind::Http)).await;
    expect_event(&mut conn, "welcome").await;
    conn.send_line("/history").await;
    let error = expect_event(&mut conn, "error").await;
    assert_eq!(error["text"], "join a room first");
    conn.send_line("JOIN den bad!name").await;
    let error = expect_event(&mut conn, "error").await;
    assert!(
        error["text"]
            .as_str()
            .unwrap()
            .starts_with("invalid user name")
    );
}
