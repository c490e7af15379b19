//! The admin API (`--admin`): its bearer token, every endpoint against
//! real chat clients, where `/metrics` is served, and a drain of a real
//! server process: clients told and closed over the period, then exit 0.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::http::request;
use common::{Client, ServerLines, TestServer, WAIT, error};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const TOKEN: &str = "s3cret-admin-token";

/// A token file holding [`TOKEN`], with a newline as editors leave it.
fn token_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(file.path(), format!("{TOKEN}\n")).expect("write token");
    file
}

/// A server with the admin API on loopback and the given flags.
async fn server(token: &tempfile::NamedTempFile, flags: &[&str]) -> TestServer {
    let path = token.path().to_str().expect("utf-8").to_owned();
    let mut all = vec!["--admin", "127.0.0.1:0", "--admin-token-file", &path];
    all.extend(flags);
    TestServer::start(&all).await
}

/// One request to the admin API, with `token` if given; the status and the
/// body as JSON (or as a string when it is not JSON).
async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, value)
}

#[tokio::test]
async fn every_request_needs_the_token() {
    let token = token_file();
    let server = server(&token, &[]).await;
    let admin = server.admin.expect("admin listener");
    for (method, path) in [
        ("GET", "/v1/rooms"),
        ("GET", "/v1/bans"),
        ("POST", "/v1/drain"),
        ("GET", "/metrics"),
    ] {
        let (status, body) = api(admin, method, path, None, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(body, json!({"error": "unauthorized"}));
        let (status, _) = api(admin, method, path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    let response = request(admin, "GET /v1/rooms HTTP/1.1").await;
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    let (status, body) = api(admin, "GET", "/v1/rooms", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["rooms"], json!([]));
    let (status, _) = api(admin, "GET", "/v1/nothing", Some(TOKEN), None).await;
    assert_eq!(status, 404);
    let (status, _) = api(admin, "GET", "/v1/kick", Some(TOKEN), None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn rooms_kick_bans_and_notices() {
    let token = token_file();
    let server = server(&token, &["--http", "127.0.0.1:0"]).await;
    let admin = server.admin.expect("admin listener");
    let [mut alice, mut bob] = server.join_all("lobby", ["alice", "bob"]).await;
    let mut carol = Conn::ws(server.addr(ListenerKind::Http)).await;
    carol.join("side", "carol").await;

    let (status, rooms) = api(admin, "GET", "/v1/rooms", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    let lobby = &rooms["rooms"][0];
    assert_eq!(lobby["room"], "lobby");
    let members = lobby["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user"], "alice");
    assert_eq!(members[0]["transport"], "tcp");
    assert_eq!(members[0]["address"], "127.0.0.1");
    assert!(common::is_utc_time(
        members[0]["since"].as_str().expect("since"),
        false
    ));
    assert_eq!(rooms["rooms"][1]["members"][0]["transport"], "ws");

    let (status, body) = api(
        admin,
        "POST",
        "/v1/notice",
        Some(TOKEN),
        Some(json!({"text": "maintenance at noon", "room": "lobby"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"delivered": 2})));
    alice.expect_line("*** maintenance at noon").await;
    bob.expect_line("*** maintenance at noon").await;
    let (status, body) = api(
        admin,
        "POST",
        "/v1/notice",
        Some(TOKEN),
        Some(json!({"text": "hello everyone"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"delivered": 3})));
    for client in [&mut alice, &mut bob] {
        client.expect_line("*** hello everyone").await;
    }
    carol.expect_line("*** hello everyone").await;

    let (status, body) = api(
        admin,
        "POST",
        "/v1/kick",
        Some(TOKEN),
        Some(json!({"room": "lobby", "user": "BOB", "reason": "flood"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"kicked": "bob", "room": "lobby"}))
    );
    bob.expect_line(&error("kicked by admin: flood")).await;
    assert_eq!(bob.next_line().await, None);
    alice
        .expect_lines(&["*** bob was kicked by admin: flood", "bob has left"])
        .await;
    let (_, metrics) = api(admin, "GET", "/metrics", Some(TOKEN), None).await;
    let metrics = metrics.as_str().expect("metrics text");
    assert_eq!(
        common::http::metric(metrics, "chatgate_moderation_total{action=\"kick\"}"),
        1.0
    );
    let (status, body) = api(
        admin,
        "POST",
        "/v1/kick",
        Some(TOKEN),
        Some(json!({"room": "lobby", "user": "bob"})),
    )
    .await;
    assert_eq!((status, body), (404, json!({"error": "no such user"})));
    let (status, _) = api(
        admin,
        "POST",
        "/v1/kick",
        Some(TOKEN),
        Some(json!({"room": "lobby"})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = api(
        admin,
        "POST",
        "/v1/ban",
        Some(TOKEN),
        Some(json!({"target": "192.0.2.0/24", "reason": "abuse"})),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"banned": "192.0.2.0/24", "until": null}))
    );
    let (status, body) = api(
        admin,
        "POST",
        "/v1/ban",
        Some(TOKEN),
        Some(json!({"target": "bob"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, bans) = api(admin, "GET", "/v1/bans", Some(TOKEN), None).await;
    assert_eq!(
        bans,
        json!({"bans": [{"target": "192.0.2.0/24", "until": null, "by": "admin", "reason": "abuse"}]})
    );
    let (status, _) = api(
        admin,
        "POST",
        "/v1/unban",
        Some(TOKEN),
        Some(json!({"target": "192.0.2.0/24"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        admin,
        "POST",
        "/v1/unban",
        Some(TOKEN),
        Some(json!({"target": "192.0.2.0/24"})),
    )
    .await;
    assert_eq!((status, body), (404, json!({"error": "no such ban"})));
    let (status, _) = api(
        admin,
        "POST",
        "/v1/ban",
        Some(TOKEN),
        Some(json!({"target": "10.0.0.1", "bogus": 1})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused");
}

#[tokio::test]
async fn metrics_are_on_the_admin_listener_unless_asked_otherwise() {
    let token = token_file();
    let server = server(&token, &["--http", "127.0.0.1:0"]).await;
    let public = request(server.addr(ListenerKind::Http), "GET /metrics HTTP/1.1").await;
    assert_eq!(public.status, 404);
    let (status, body) = api(
        server.admin.expect("admin"),
        "GET",
        "/metrics",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.as_str().expect("text").contains("chatgate_"), "{body}");

    let both = server_with_public_metrics(&token).await;
    let public = request(both.addr(ListenerKind::Http), "GET /metrics HTTP/1.1").await;
    assert_eq!(public.status, 200);
    let (status, _) = api(
        both.admin.expect("admin"),
        "GET",
        "/metrics",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

async fn server_with_public_metrics(token: &tempfile::NamedTempFile) -> TestServer {
    server(token, &["--http", "127.0.0.1:0", "--metrics-on", "public"]).await
}

#[tokio::test]
async fn a_drain_tells_everyone_closes_them_over_the_period_and_exits_0() {
    let token = token_file();
    let state = tempfile::tempdir().expect("state");
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--tls",
            "off",
            "--http",
            "off",
            "--https",
            "off",
        ])
        .args(["--admin", "127.0.0.1:0", "--admin-token-file"])
        .arg(token.path())
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut stdout = BufReader::new(process.stdout.take().expect("stdout")).lines();
    let addr = |prefix: &str, line: Option<String>| -> SocketAddr {
        line.expect("a startup line")
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}"))
            .parse()
            .expect("an address")
    };
    let tcp = addr("listening tcp ", stdout.next_line().await.expect("read"));
    let admin = addr("listening admin ", stdout.next_line().await.expect("read"));

    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        let mut client = Client::connect(tcp).await;
        client.expect_lines(&common::WELCOME).await;
        client.join("lobby", user).await;
        clients.push(client);
    }
    let (status, _) = api(
        admin,
        "POST",
        "/v1/drain",
        Some(TOKEN),
        Some(json!({"seconds": 18446744073709551615u64})),
    )
    .await;
    assert_eq!(status, 400, "a drain of ages is refused, and nothing stops");
    let (status, body) = api(
        admin,
        "POST",
        "/v1/drain",
        Some(TOKEN),
        Some(json!({"seconds": 2})),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"draining": true, "seconds": 2}))
    );
    let began = Instant::now();
    // New connections are refused at once.
    let refused = async {
        loop {
            if TcpStream::connect(tcp).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, refused).await.expect("the listener closes");
    // Each client read at once, so each close is timed when it happens.
    let closes = clients.iter_mut().map(|client| async move {
        let lines = client
            .lines_until("*** server restarting, please reconnect")
            .await;
        assert!(
            lines
                .iter()
                .all(|l| l.ends_with(" has joined") || l.ends_with(" has left")),
            "{lines:?}"
        );
        assert_eq!(client.next_line().await, None);
        began.elapsed()
    });
    let mut closed_at = futures_util::future::join_all(closes).await;
    closed_at.sort();
    // Spread over the period: the last goes well after the first.
    let spread = closed_at[3].saturating_sub(closed_at[0]);
    assert!(
        spread >= Duration::from_millis(1000),
        "closed within {spread:?}"
    );
    let status = timeout(Duration::from_secs(10), process.wait())
        .await
        .expect("exits after the drain")
        .expect("wait");
    assert!(status.success(), "{status}");
}

/// Runs `chatgate admin <args>`; its exit status and output.
async fn cli(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .arg("admin")
        .args(args)
        .env_remove("CHATGATE_CONFIG")
        .env_remove("CHATGATE_ADMIN")
        .env_remove("CHATGATE_ADMIN_TOKEN_FILE")
        .output()
        .await
        .expect("run chatgate admin");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_command_finds_the_api_in_the_configuration_file() {
    let token = token_file();
    let server = server(&token, &[]).await;
    let admin = server.admin.expect("admin");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("chatgate.toml");
    std::fs::write(
        &config,
        format!(
            "admin = \"{admin}\"\nadmin-token-file = \"{}\"\n",
            token.path().display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8");
    let mut bob = server.join("lobby", "bob").await;

    let (ok, out, _) = cli(&["--config", config, "rooms"]).await;
    assert!(ok);
    let rooms: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(rooms["rooms"][0]["members"][0]["user"], "bob");
    let (ok, out, _) = cli(&[
        "--config",
        config,
        "ban",
        "198.51.100.0/24",
        "--minutes",
        "5",
        "--reason",
        "abuse",
    ])
    .await;
    assert!(ok);
    let banned: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(banned["banned"], "198.51.100.0/24");
    let (ok, out, _) = cli(&["--config", config, "bans"]).await;
    assert!(ok && out.contains("198.51.100.0/24"), "{out}");
    let (ok, _, err) = cli(&["--config", config, "kick", "lobby", "nobody"]).await;
    assert!(!ok);
    assert!(err.contains("no such user"), "{err}");
    let (ok, _, _) = cli(&["--config", config, "kick", "lobby", "bob", "go", "away"]).await;
    assert!(ok);
    bob.expect_line(&error("kicked by admin: go away")).await;

    // The address alone is not enough.
    let (ok, _, err) = cli(&["--admin", &admin.to_string(), "bans"]).await;
    assert!(!ok);
    assert!(err.contains("token"), "{err}");
    let (ok, _, err) = cli(&[
        "--admin",
        &admin.to_string(),
        "--admin-token-file",
        "/nonexistent",
        "bans",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("/nonexistent"), "{err}");
}
