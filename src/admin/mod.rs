//! The admin API: JSON over HTTP on its own listener (`--admin`), for
//! operators' tools rather than chat users.
//!
//! Every request needs `Authorization: Bearer <token>`, the token read
//! from `--admin-token-file` at start; anything else gets 401. Tokens are
//! compared by their SHA-256 digests, so the time a comparison takes says
//! nothing about the token. The listener speaks plain HTTP: it is meant
//! for loopback or a private network, and the server warns at start when
//! it is bound anywhere else.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/rooms` | rooms and their members here (transport, address, connected since), and members on other nodes by name |
//! | `POST /v1/kick` `{"room", "user", "reason"?}` | kicks, as `/kick` by the operator `admin` |
//! | `GET /v1/bans` | the bans |
//! | `POST /v1/ban` `{"target", "minutes"?, "reason"?}` | bans an address or prefix, as `/ban` |
//! | `POST /v1/unban` `{"target"}` | lifts a ban |
//! | `POST /v1/notice` `{"text", "room"?}` | `*** <text>` to a room's members here, or to every connection here |
//! | `POST /v1/drain` `{"seconds"?}` (at most an hour) | stops accepting, tells every connection `*** server restarting, please reconnect` and closes them spread over the period (default `--drain-period`), then exits 0 |
//! | `GET /metrics` | with `--metrics-on admin` (the default when `--admin` is on) |
//!
//! Errors are `{"error": "<reason>"}` with 400 (bad request), 401 (no
//! or a wrong token), 404 (no such user, ban or endpoint), 405 (wrong
//! method) or 409 (a drain already running, or too many bans).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::MAX_DRAIN_PERIOD;
use crate::context::Shared;
use crate::moderation::{Action, Ban, BanChange, BanTarget, Order};
use crate::protocol::command::MAX_MINUTES;
use crate::protocol::names::Name;
use crate::protocol::reply;
use crate::standing::{Eviction, EvictionKind};
use crate::web;

/// The operator name admin actions are made under, as `<op>`.
pub const ADMIN_NAME: &str = "admin";

/// Largest request body taken.
const MAX_BODY: usize = 16 * 1024;

/// Time a client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections at once; more are closed at accept.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token file could not be read, or is empty.
    #[error("--admin-token-file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

pub mod client;

/// The admin API's token, kept as its digest.
#[derive(Debug, Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// Reads the token from `path`: the file's text, surrounding
    /// whitespace removed; it must not be empty.
    pub fn read(path: &Path) -> Result<Token, AdminError> {
        let token = Token::read_text(path)?;
        Ok(Token(Sha256::digest(token.as_bytes()).into()))
    }

    /// The token in `path`, as a client sends it.
    pub fn read_text(path: &Path) -> Result<String, AdminError> {
        let error = |reason: String| AdminError::Token {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(error("empty".to_owned()));
        }
        Ok(token.to_owned())
    }

    /// Whether a request's `Authorization` header carries this token.
    fn admits(&self, header: Option<&header::HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        digest == self.0
    }
}

/// Serves the admin API on `listener` until the server stops.
pub(crate) async fn serve(listener: TcpListener, token: Token, metrics: bool, shared: Arc<Shared>) {
    if let Ok(addr) = listener.local_addr() {
        if !addr.ip().is_loopback() {
            warn!(%addr, "the admin API is plain HTTP on a non-loopback address; keep it on a private network");
        }
        info!(%addr, "admin API");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.conn.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "too many admin connections; closed");
            continue;
        };
        let (token, shared) = (token.clone(), shared.clone());
        shared.clone().tracker.spawn(async move {
            let service = service_fn(move |req| {
                let (token, shared) = (token.clone(), shared.clone());
                async move { Ok::<_, Infallible>(handle(req, &token, metrics, &shared).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
            drop(slot);
        });
    }
}

/// Answers one request.
async fn handle(
    req: Request<Incoming>,
    token: &Token,
    metrics: bool,
    shared: &Arc<Shared>,
) -> Response<Full<Bytes>> {
    if !token.admits(req.headers().get(header::AUTHORIZATION)) {
        let mut response = answer(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match (method, path.as_str()) {
        (Method::GET, "/v1/rooms") => answer(StatusCode::OK, rooms(shared)),
        (Method::GET, "/v1/bans") => answer(StatusCode::OK, bans(shared)),
        (Method::GET, "/metrics") if metrics => {
            web::metrics(shared.conn.metrics.render(&shared.conn.hub))
        }
        (Method::POST, "/v1/kick" | "/v1/ban" | "/v1/unban" | "/v1/notice" | "/v1/drain") => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(why) => return error(StatusCode::BAD_REQUEST, &why),
            };
            let result = match path.as_str() {
                "/v1/kick" => kick(shared, body).await,
                "/v1/ban" => ban(shared, body),
                "/v1/unban" => unban(shared, body),
                "/v1/notice" => notice(shared, body),
                _ => drain(shared, body),
            };
            match result {
                Ok(value) => answer(StatusCode::OK, value),
                Err((status, why)) => error(status, &why),
            }
        }
        (
            _,
            "/v1/rooms" | "/v1/bans" | "/v1/kick" | "/v1/ban" | "/v1/unban" | "/v1/notice"
            | "/v1/drain",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

type Outcome = Result<Value, (StatusCode, String)>;

fn bad(why: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, why.into())
}

fn not_found(why: &str) -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, why.to_owned())
}

/// The body, at most [`MAX_BODY`] bytes, as JSON.
async fn read_body(req: Request<Incoming>) -> Result<Value, String> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes();
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// Reads `body` as `T`, or says why not.
fn fields<T: for<'de> Deserialize<'de>>(body: Value) -> Result<T, (StatusCode, String)> {
    serde_json::from_value(body).map_err(|e| bad(e.to_string()))
}

fn rooms(shared: &Shared) -> Value {
    let hub = &shared.conn.hub;
    let mut rooms: Vec<Value> = hub
        .member_outboxes()
        .into_iter()
        .map(|(room, mut members)| {
            members.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            let listed: Vec<Value> = members
                .iter()
                .map(|(user, outbox)| {
                    let standing = outbox.standing();
                    json!({
                        "user": user.as_str(),
                        "transport": standing.transport(),
                        "address": standing.addr().map(|a| a.to_string()),
                        "since": reply::utc_seconds(standing.since()),
                    })
                })
                .collect();
            json!({"room": room.as_str(), "members": listed})
        })
        .collect();
    rooms.sort_by(|a, b| a["room"].as_str().cmp(&b["room"].as_str()));
    let total: usize = hub.rooms().iter().map(|(_, n)| n).sum();
    json!({"rooms": rooms, "users_everywhere": total})
}

fn bans(shared: &Shared) -> Value {
    let now = shared.conn.hub.now();
    let list: Vec<Value> = shared
        .conn
        .hub
        .moderation()
        .bans()
        .list(now)
        .into_iter()
        .map(|(target, ban)| {
            json!({
                "target": target.to_string(),
                "until": ban.ends(),
                "by": ban.by,
                "reason": ban.reason,
            })
        })
        .collect();
    json!({"bans": list})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    room: String,
    user: String,
    #[serde(default)]
    reason: String,
}

async fn kick(shared: &Shared, body: Value) -> Outcome {
    let body: KickBody = fields(body)?;
    if Name::parse(&body.room).is_none() || Name::parse(&body.user).is_none() {
        return Err(bad("room and user must be names"));
    }
    let order = Order {
        action: Action::Kick,
        room: body.room,
        user: body.user,
        by: ADMIN_NAME.to_owned(),
        reason: clean_reason(&body.reason)?,
        until: None,
    };
    let done = match shared.conn.hub.carry_out(&order) {
        Some(done) => Some(done),
        None => match &shared.conn.cluster {
            Some(cluster) => cluster.moderate(&order).await,
            None => None,
        },
    };
    match done {
        Some(done) => Ok(json!({"kicked": done.user, "room": order.room})),
        None => Err(not_found(reply::reason::NO_SUCH_USER)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    target: String,
    #[serde(default)]
    minutes: Option<u64>,
    #[serde(default)]
    reason: String,
}

fn ban(shared: &Shared, body: Value) -> Outcome {
    let body: BanBody = fields(body)?;
    let target = BanTarget::parse(&body.target)
        .ok_or_else(|| bad("target must be an IP address or CIDR prefix"))?;
    let minutes = body.minutes.map(|m| m.min(MAX_MINUTES));
    let reason = clean_reason(&body.reason)?;
    let ban = Ban::new(shared.conn.hub.now(), minutes, ADMIN_NAME, &reason);
    let until = ban.ends();
    if !shared
        .conn
        .hub
        .moderation()
        .change(BanChange::Added(target, ban))
    {
        return Err((
            StatusCode::CONFLICT,
            reply::reason::TOO_MANY_BANS.to_owned(),
        ));
    }
    Ok(json!({"banned": target.to_string(), "until": until}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnbanBody {
    target: String,
}

fn unban(shared: &Shared, body: Value) -> Outcome {
    let body: UnbanBody = fields(body)?;
    let moderation = shared.conn.hub.moderation();
    let target = BanTarget::parse(&body.target)
        .filter(|t| moderation.bans().holds(t, shared.conn.hub.now()))
        .ok_or_else(|| not_found(reply::reason::NO_SUCH_BAN))?;
    let _ = moderation.change(BanChange::Lifted(target));
    Ok(json!({"unbanned": target.to_string()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    text: String,
    #[serde(default)]
    room: Option<String>,
}

fn notice(shared: &Shared, body: Value) -> Outcome {
    let body: NoticeBody = fields(body)?;
    let text = crate::protocol::text::clean(body.text.as_bytes());
    if text.is_empty() {
        return Err(bad("text is empty"));
    }
    let hub = &shared.conn.hub;
    let delivered = match &body.room {
        Some(room) => {
            let room = Name::parse(room).ok_or_else(|| bad("room must be a name"))?;
            hub.announce(room, &text)
        }
        None => {
            // Counted as taken: a connection already closing takes none.
            hub.moderation()
                .live_outboxes()
                .iter()
                .filter(|outbox| outbox.push(crate::protocol::answer::info(outbox.format(), &text)))
                .count()
        }
    };
    Ok(json!({"delivered": delivered}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    seconds: Option<u64>,
}

fn drain(shared: &Arc<Shared>, body: Value) -> Outcome {
    let body: DrainBody = fields(body)?;
    let period = match body.seconds {
        Some(s) if s > MAX_DRAIN_PERIOD => {
            return Err(bad(format!("seconds: at most {MAX_DRAIN_PERIOD}")));
        }
        Some(s) => Duration::from_secs(s),
        None => shared.drain_period,
    };
    if shared.draining.is_cancelled() {
        return Err((StatusCode::CONFLICT, "already draining".to_owned()));
    }
    shared.draining.cancel();
    let task_shared = shared.clone();
    shared.tracker.spawn(run_drain(task_shared, period));
    Ok(json!({"draining": true, "seconds": period.as_secs()}))
}

/// The drain: new connections are no longer accepted (the accept loops
/// end on `draining`); every connection is told to reconnect and closed,
/// one after another, spread evenly over `period`; then the server stops.
async fn run_drain(shared: Arc<Shared>, period: Duration) {
    let outboxes = shared.conn.hub.moderation().live_outboxes();
    info!(
        connections = outboxes.len(),
        seconds = period.as_secs(),
        "draining"
    );
    let start = tokio::time::Instant::now();
    let count = outboxes.len().max(1) as u32;
    for (i, outbox) in outboxes.into_iter().enumerate() {
        let at = start + period.mul_f64(i as f64 / f64::from(count));
        tokio::select! {
            _ = shared.conn.shutdown.cancelled() => return,
            () = tokio::time::sleep_until(at) => {}
        }
        outbox.evict(Eviction {
            kind: EvictionKind::Restart,
            by: ADMIN_NAME.to_owned(),
            reason: String::new(),
        });
    }
    tokio::select! {
        _ = shared.conn.shutdown.cancelled() => return,
        () = tokio::time::sleep_until(start + period) => {}
    }
    info!("drained; stopping");
    shared.drained.cancel();
}

/// A reason as a line would carry it: cleaned, on one line, squeezed and
/// cut as an operator's would be.
fn clean_reason(reason: &str) -> Result<String, (StatusCode, String)> {
    if reason.len() > crate::protocol::MAX_LINE {
        return Err(bad("reason is too long"));
    }
    let clean = crate::protocol::text::clean(reason.as_bytes());
    Ok(crate::protocol::text::reason(&clean))
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    answer(status, json!({"error": why}))
}
