//! `chatgate admin`: the admin API's client, for operators at a shell.
//!
//! It finds the API as the server does: `--admin` and `--admin-token-file`
//! on its own command line win, then `CHATGATE_ADMIN` and
//! `CHATGATE_ADMIN_TOKEN_FILE`, then the `--config` file (or
//! `CHATGATE_CONFIG`), read by the same loader as the server's settings.
//! It prints the answer's JSON and exits 0 on success, or prints the
//! server's error and exits 1.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout};

use super::Token;
use crate::config::{AdminCommand, AdminRequest, load};

/// Longest the client waits for the server.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `chatgate admin ...`: the answer's JSON, pretty, or why not.
pub async fn run(command: &AdminCommand) -> Result<String, String> {
    let (addr, token) = target(command)?;
    let (method, path, body) = request(&command.request);
    let answer = timeout(TIMEOUT, call(addr, &token, method, path, body))
        .await
        .map_err(|_| format!("{addr}: no answer within {TIMEOUT:?}"))??;
    serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())
}

/// The API's address and token, from the command line, the environment or
/// the configuration file.
fn target(command: &AdminCommand) -> Result<(SocketAddr, String), String> {
    let mut argv = vec!["chatgate".into(), load::CHECK_CONFIG.into()];
    if let Some(path) = &command.config {
        argv.extend(["--config".into(), path.clone().into_os_string()]);
    }
    let settings = load::load::<_, std::ffi::OsString>(argv)
        .map_err(|e| e.to_string())?
        .config;
    let addr = command.admin.or(settings.admin).ok_or(
        "no admin API address: give --admin, CHATGATE_ADMIN or a --config file with admin",
    )?;
    let path = command
        .admin_token_file
        .clone()
        .or(settings.admin_token_file)
        .ok_or("no token file: give --admin-token-file, CHATGATE_ADMIN_TOKEN_FILE or a --config file with admin-token-file")?;
    let token = Token::read_text(&path).map_err(|e| e.to_string())?;
    Ok((addr, token))
}

/// The method, path and body for a request.
fn request(request: &AdminRequest) -> (Method, &'static str, Option<Value>) {
    match request {
        AdminRequest::Rooms => (Method::GET, "/v1/rooms", None),
        AdminRequest::Bans => (Method::GET, "/v1/bans", None),
        AdminRequest::Kick { room, user, reason } => (
            Method::POST,
            "/v1/kick",
            Some(json!({"room": room, "user": user, "reason": reason.join(" ")})),
        ),
        AdminRequest::Ban {
            target,
            minutes,
            reason,
        } => (
            Method::POST,
            "/v1/ban",
            Some(json!({"target": target, "minutes": minutes, "reason": reason})),
        ),
        AdminRequest::Unban { target } => {
            (Method::POST, "/v1/unban", Some(json!({"target": target})))
        }
        AdminRequest::Notice { text, room } => (
            Method::POST,
            "/v1/notice",
            Some(json!({"text": text.join(" "), "room": room})),
        ),
        AdminRequest::Drain { seconds } => {
            (Method::POST, "/v1/drain", Some(json!({"seconds": seconds})))
        }
    }
}

/// One request over a new connection.
async fn call(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(connection);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if status.is_success() {
        Ok(value)
    } else {
        let why = value["error"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(format!("{status}: {why}"))
    }
}
