//! The HTTP face: the page, health, metrics, and what is refused.
//!
//! Requests are written by hand on purpose: a client library might clean up
//! a path like `/../Cargo.toml` before sending it, and the point is to see
//! what the server does with exactly these bytes.

mod common;

use common::ServerLines;

use std::net::SocketAddr;

use chatgate::server::ListenerKind;
use common::clients::Conn;
use common::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A parsed response: status code, lower-cased headers, body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn request(addr: SocketAddr, head: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            raw.extend_from_slice(&chunk[..n]);
            // A 101 keeps the connection open as a WebSocket: stop at its head.
            let upgraded =
                raw.starts_with(b"HTTP/1.1 101") && raw.windows(4).any(|w| w == b"\r\n\r\n");
            if n == 0 || upgraded {
                break;
            }
        }
    };
    timeout(WAIT, read_all).await.expect("response in time");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status: status.expect("status code"),
        headers,
        body: body.to_owned(),
    }
}

async fn http_server(extra: &[&str]) -> (TestServer, SocketAddr) {
    let mut flags = vec!["--http", "127.0.0.1:0"];
    flags.extend(extra);
    let server = TestServer::start(&flags).await;
    let addr = server.addr(ListenerKind::Http);
    (server, addr)
}

#[tokio::test]
async fn page_is_served_with_its_type_caching_and_policy() {
    let (_server, http) = http_server(&[]).await;
    let page = request(http, "GET / HTTP/1.1").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("<html") || page.body.contains("<!doctype"));
    let csp = page
        .header("content-security-policy")
        .expect("a CSP on the page");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let etag = page.header("etag").expect("an ETag").to_owned();
    let again = request(http, &format!("GET / HTTP/1.1\r\nIf-None-Match: {etag}")).await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn paths_that_climb_out_are_refused() {
    let (_server, http) = http_server(&[]).await;
    for path in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/web/../../Cargo.toml",
        "/./index.html",
    ] {
        let response = request(http, &format!("GET {path} HTTP/1.1")).await;
        assert!(
            response.status == 400 || response.status == 404,
            "{path} answered {}",
            response.status
        );
        assert!(!response.body.contains("[package]"), "{path} leaked a file");
    }
}

#[tokio::test]
async fn web_dir_serves_from_disk_and_still_refuses_traversal() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), "<!doctype html><p>from disk").expect("write");
    let web_dir = dir.path().display().to_string();
    let (_server, http) = http_server(&["--web-dir", &web_dir]).await;
    let page = request(http, "GET / HTTP/1.1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("from disk"));
    let escape = request(http, "GET /../Cargo.toml HTTP/1.1").await;
    assert_ne!(escape.status, 200);
}

#[tokio::test]
async fn healthz_answers_ok() {
    let (_server, http) = http_server(&[]).await;
    let health = request(http, "GET /healthz HTTP/1.1").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");
}

#[tokio::test]
async fn only_get_is_allowed() {
    let (_server, http) = http_server(&[]).await;
    let post = request(http, "POST / HTTP/1.1\r\nContent-Length: 0").await;
    assert_eq!(post.status, 405);
}

/// The value of a metric line like `name{labels} 3`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[tokio::test]
async fn metrics_follow_traffic() {
    let (server, http) = http_server(&["--rate", "1"]).await;
    let before = request(http, "GET /metrics HTTP/1.1").await.body;
    assert_eq!(metric(&before, "chatgate_users"), 0.0);
    assert_eq!(metric(&before, "chatgate_lines_in_total"), 0.0);

    let mut tcp = Conn::tcp(server.addr(ListenerKind::Tcp)).await;
    tcp.join("room", "counted").await;
    let mut ws = Conn::ws(http).await;
    ws.join("room", "web").await;
    tcp.expect_line("web has joined").await;
    // Rate 1 means a burst of 2 lines: the join took one, this takes the
    // other, and the next is dropped.
    tcp.send_line("hello").await;
    tcp.expect_line("counted: hello").await;
    tcp.send_line("one too many").await;
    tcp.expect_line("ERROR rate limited").await;

    let after = request(http, "GET /metrics HTTP/1.1").await.body;
    assert_eq!(metric(&after, "chatgate_users"), 2.0);
    assert_eq!(metric(&after, "chatgate_rooms"), 1.0);
    assert_eq!(
        metric(&after, "chatgate_connections{transport=\"tcp\"}"),
        1.0
    );
    assert_eq!(
        metric(&after, "chatgate_connections{transport=\"ws\"}"),
        1.0
    );
    assert_eq!(metric(&after, "chatgate_lines_in_total"), 4.0);
    assert!(metric(&after, "chatgate_lines_out_total") >= 8.0);
    assert_eq!(
        metric(&after, "chatgate_drops_total{reason=\"rate_limited\"}"),
        1.0
    );
}

#[tokio::test]
async fn websocket_from_a_foreign_origin_is_refused() {
    let (_server, http) = http_server(&["--allowed-origin", "https://chat.example"]).await;
    let upgrade = |origin: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}"
        )
    };
    assert_eq!(
        request(http, &upgrade("http://evil.example")).await.status,
        403
    );
    assert_eq!(
        request(http, &upgrade("https://chat.example")).await.status,
        101
    );
    assert_eq!(
        request(http, &upgrade(&format!("http://{http}")))
            .await
            .status,
        101
    );
}
