//! The HTTP face: the page, health, metrics, and what is refused.
//!
//! Requests are written by hand on purpose: a client library might clean up
//! a path like `/../Cargo.toml` before sending it, and the point is to see
//! what the server does with exactly these bytes.

mod common;

use common::ServerLines;

use std::net::SocketAddr;

use chatgate::server::ListenerKind;
use common::TestServer;
use common::clients::Conn;
use common::http::{metric, request};

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

/// A WebSocket upgrade request from a page of `origin` (none: no header).
fn upgrade(origin: Option<&str>, host: Option<&str>) -> String {
    let mut head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
        .to_owned();
    if let Some(origin) = origin {
        head.push_str(&format!("\r\nOrigin: {origin}"));
    }
    if let Some(host) = host {
        head.push_str(&format!("\r\nHost: {host}"));
    }
    head
}

#[tokio::test]
async fn websocket_from_a_foreign_origin_is_refused_with_the_flag_to_set() {
    let (_server, http) = http_server(&["--allowed-origin", "https://chat.example"]).await;
    let refused = request(http, &upgrade(Some("http://evil.example"), None)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body.trim_end().lines().count(),
        1,
        "{:?}",
        refused.body
    );
    assert!(
        refused.body.contains("--allowed-origin"),
        "{:?}",
        refused.body
    );
    for allowed in ["https://chat.example", "https://chat.example:443"] {
        let answer = request(http, &upgrade(Some(allowed), None)).await;
        assert_eq!(answer.status, 101, "{allowed}");
    }
}

#[tokio::test]
async fn own_names_and_the_dialled_ip_are_allowed_by_default() {
    let (_server, http) = http_server(&[]).await;
    let host = http.to_string();
    for origin in [
        format!("http://{http}"),
        "http://127.0.0.1:3000".to_owned(),
        "https://localhost".to_owned(),
        "http://LOCALHOST:9".to_owned(),
    ] {
        let answer = request(http, &upgrade(Some(&origin), Some(&host))).await;
        assert_eq!(answer.status, 101, "{origin}");
    }
    let no_origin = request(http, &upgrade(None, Some(&host))).await;
    assert_eq!(no_origin.status, 101, "scripts send no Origin");
    let other_ip = request(http, &upgrade(Some("http://127.0.0.2"), Some(&host))).await;
    assert_eq!(other_ip.status, 403);
}

#[tokio::test]
async fn dns_rebinding_and_null_origins_are_refused() {
    let (_server, http) = http_server(&[]).await;
    // Under DNS rebinding the attacker's name points at this server, so the
    // browser sends the attacker's name in both headers.
    let rebound = request(
        http,
        &upgrade(Some("http://evil.example:8080"), Some("evil.example:8080")),
    )
    .await;
    assert_eq!(rebound.status, 403);
    let null = request(http, &upgrade(Some("null"), None)).await;
    assert_eq!(null.status, 403);
    let garbage = request(http, &upgrade(Some("not an origin"), None)).await;
    assert_eq!(garbage.status, 403);
}

#[tokio::test]
async fn allowed_origins_may_be_a_comma_separated_list() {
    let (_server, http) = http_server(&[
        "--allowed-origin",
        "https://a.example, http://b.example:8080/",
        "--allowed-origin",
        "https://c.example",
    ])
    .await;
    for origin in [
        "https://a.example",
        "http://b.example:8080",
        "https://c.example",
    ] {
        assert_eq!(
            request(http, &upgrade(Some(origin), None)).await.status,
            101
        );
    }
    let wrong_port = request(http, &upgrade(Some("http://b.example"), None)).await;
    assert_eq!(wrong_port.status, 403);
}

#[tokio::test]
async fn plain_http_on_the_https_port_is_told_to_use_https() {
    let cert = common::clients::TestCert::new();
    let mut flags = vec!["--https", "127.0.0.1:0"];
    let cert_flags = cert.flags();
    flags.extend(cert_flags.iter().map(String::as_str));
    let server = TestServer::start(&flags).await;
    let https = server.addr(ListenerKind::Https);
    let answer = request(https, "GET / HTTP/1.1\r\nHost: chat.example:8443").await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("https://chat.example:8443/"),
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn a_browser_on_the_chat_port_is_pointed_at_the_page() {
    let (server, http) = http_server(&[]).await;
    let mut browser = server.connect_welcomed().await;
    browser
        .send_raw(b"GET / HTTP/1.1\r\nHost: localhost:1234\r\nUser-Agent: x\r\n\r\n")
        .await;
    let hint = browser.read_line().await;
    assert!(hint.starts_with("ERROR "), "{hint:?}");
    assert!(hint.contains(&format!(":{}/", http.port())), "{hint:?}");
    browser.skip_to_close().await;
}
