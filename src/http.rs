//! The HTTP side: the page, `/ws`, `/healthz` and `/metrics`, over HTTP or
//! HTTPS, served by hyper.
//!
//! A WebSocket upgrade is answered here and the upgraded connection becomes
//! a [`Ws`] transport, driven by the same session code as every other
//! transport. Page requests are not chat connections and do not count
//! against the connection limits; an upgraded WebSocket does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::debug;

use crate::connection;
use crate::context::Shared;
use crate::protocol::CloseReason;
use crate::protocol::json::{self, Format};
use crate::transport::ws::Ws;
use crate::web;

/// Time a client has to send its request headers; stops idle or trickling
/// connections from holding sockets.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's per-connection read buffer cap. Requests here are small GETs; the
/// default would let each connection buffer far more.
const MAX_REQUEST_BUFFER: usize = 16 * 1024;

/// Time in-flight HTTP requests get when the server stops.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves one HTTP connection (plain or already TLS-wrapped) until it
/// closes or the server stops.
pub(crate) async fn serve<I>(io: I, peer: SocketAddr, secure: bool, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(route(req, peer, secure, &shared)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BUFFER)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, error = %e, "http connection ended");
            }
        }
        _ = shared.conn.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, conn).await;
        }
    }
}

fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
    shared: &Arc<Shared>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = web::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/ws" => upgrade(req, peer, secure, shared),
        "/healthz" => web::plain(StatusCode::OK, "ok\n"),
        "/metrics" if shared.metrics_public => {
            web::metrics(shared.conn.metrics.render(&shared.conn.hub))
        }
        path => web::serve(path, req.headers(), shared.web_dir.as_deref()),
    }
}

/// Answers a WebSocket upgrade and hands the upgraded connection to the
/// session driver.
fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
    shared: &Arc<Shared>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        // RFC 6455, 4.1: the opening handshake is a GET.
        return web::plain(StatusCode::BAD_REQUEST, "this is a WebSocket endpoint\n");
    }
    let headers = req.headers();
    let wants_ws = has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| wants_ws) else {
        return web::plain(StatusCode::BAD_REQUEST, "this is a WebSocket endpoint\n");
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut response = web::plain(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
        );
        return response;
    }
    let origin = headers.get(header::ORIGIN).map(|o| o.as_bytes());
    let host = headers.get(header::HOST).map(|h| h.as_bytes());
    if let Err(refused) = shared.origins.check(origin, host) {
        debug!(%peer, origin = ?headers.get(header::ORIGIN), "websocket origin refused");
        return web::plain(StatusCode::FORBIDDEN, format!("{refused}\n"));
    }
    let accept = derive_accept_key(key.as_bytes());
    // RFC 6455, 4.2.2: the server picks one of the subprotocols the client
    // offers, or none; ours is the JSON events.
    let format = if offers(headers, json::SUBPROTOCOL) {
        Format::Json
    } else {
        Format::Lines
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = shared.clone();
    shared.tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return debug!(%peer, error = %e, "websocket upgrade failed"),
        };
        let transport = Ws::accept(
            TokioIo::new(upgraded),
            peer,
            secure,
            task_shared.ws_ping_interval,
            format,
        )
        .await;
        let refusal = match task_shared.banned(peer) {
            Some(ban) => Err((ban.refusal(), CloseReason::Banned)),
            None => task_shared
                .limiter
                .acquire(peer.ip())
                .map_err(|limit| (limit.reason().to_owned(), CloseReason::Overloaded)),
        };
        match refusal {
            Ok(permit) => connection::serve(transport, task_shared.conn.clone(), permit).await,
            Err((why, close)) => {
                if let Some(slot) = task_shared.refusal_slot() {
                    let transport = std::future::ready(Some(transport));
                    connection::refuse(transport, why, close, slot).await;
                }
            }
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if format == Format::Json {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, json::SUBPROTOCOL);
    }
    response
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| web::plain(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
}

/// Whether the client offers the subprotocol `name` (RFC 6455, 4.1: a
/// comma-separated list in `Sec-WebSocket-Protocol`, compared exactly).
fn offers(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == name)
}

/// Whether a comma-separated header holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers every request on a plain connection to the HTTPS port with a
/// 400 that says where the page is, as `https://` plus the `Host` the
/// browser asked for; then closes.
pub(crate) async fn wrong_port(stream: tokio::net::TcpStream, peer: SocketAddr) {
    debug!(%peer, "plain HTTP on the HTTPS port");
    let service = service_fn(|req: Request<Incoming>| async move {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.parse::<http::uri::Authority>().is_ok())
            .unwrap_or("this-host");
        let text = format!(
            "This is the HTTPS port: a plain HTTP request was sent to it. Open https://{host}/ instead.\n"
        );
        let mut response = web::plain(StatusCode::BAD_REQUEST, text);
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        Ok::<_, Infallible>(response)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BUFFER)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, conn).await;
}
