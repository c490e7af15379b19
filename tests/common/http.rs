//! Plain HTTP/1.1 requests written by hand, for the page, `/ws` upgrades
//! and `/metrics`.
//!
//! By hand on purpose: a client library might clean up a path like
//! `/../Cargo.toml` or a header before sending it, and the point is to see
//! what the server does with exactly these bytes.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// A parsed response: status code, lower-cased headers, body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and any headers), adding `Host` (unless
/// `head` has one) and `Connection: close`, and reads the response.
pub async fn request(addr: SocketAddr, head: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let host = if head.to_ascii_lowercase().contains("\r\nhost:") {
        String::new()
    } else {
        format!("\r\nHost: {addr}")
    };
    let request = format!("{head}{host}\r\nConnection: close\r\n\r\n");
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

/// The value of a metric line like `name{labels} 3`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}
