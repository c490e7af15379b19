//! Where the load goes: `tcp://`, `tls://`, `ws://…/ws`, `wss://…/ws` or
//! `nats://`, parsed once at the edge.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::error::LoadError;

/// The transport and protocol spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// chatgate over plain TCP.
    Tcp,
    /// chatgate over TLS.
    Tls,
    /// chatgate over WebSocket.
    Ws,
    /// chatgate over WebSocket in TLS.
    Wss,
    /// nats-server's text protocol over TCP.
    Nats,
}

impl Scheme {
    /// The URL scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Nats => "nats",
        }
    }

    /// True for NATS, false for the chat protocol.
    pub fn is_nats(self) -> bool {
        self == Scheme::Nats
    }

    /// True when the target speaks WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Transport and protocol.
    pub scheme: Scheme,
    /// The host as written, for TLS server names and the WebSocket request.
    pub host: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// The WebSocket path (`/ws` unless given); empty for other schemes.
    pub path: String,
    /// Over WebSocket: ask for chatgate's JSON events (the subprotocol
    /// `chatgate.v2.json`) instead of lines.
    pub json: bool,
}

impl Target {
    /// A target at an address, with the default path for its scheme.
    pub fn at(scheme: Scheme, addr: SocketAddr) -> Target {
        Target {
            scheme,
            host: addr.ip().to_string(),
            addr,
            path: if scheme.is_websocket() {
                "/ws".into()
            } else {
                String::new()
            },
            json: false,
        }
    }
}

impl FromStr for Target {
    type Err = LoadError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LoadError::Target(format!("{url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected SCHEME://HOST:PORT"))?;
        let scheme = match scheme {
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "nats" => Scheme::Nats,
            _ => return Err(bad("scheme must be tcp, tls, ws, wss or nats")),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if !scheme.is_websocket() && !path.is_empty() && path != "/" {
            return Err(bad("only ws:// and wss:// take a path"));
        }
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("host has no address"))?;
        let host = match authority.rsplit_once(':') {
            Some((host, _)) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            None => authority.to_owned(),
        };
        let path = match (scheme.is_websocket(), path) {
            (true, "") => "/ws".to_owned(),
            (true, p) => p.to_owned(),
            (false, _) => String::new(),
        };
        Ok(Target {
            scheme,
            host,
            addr,
            path,
            json: false,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.addr, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses() {
        let t: Target = "tcp://127.0.0.1:1234".parse().unwrap();
        assert_eq!(
            (t.scheme, t.addr.port(), t.path.as_str()),
            (Scheme::Tcp, 1234, "")
        );
        let t: Target = "wss://localhost:8443".parse().unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.path.as_str()),
            (Scheme::Wss, "localhost", "/ws")
        );
        let t: Target = "ws://[::1]:80/chat".parse().unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("::1", "/chat"));
        let t: Target = "nats://127.0.0.1:4222".parse().unwrap();
        assert!(t.scheme.is_nats());
        assert_eq!(t.to_string(), "nats://127.0.0.1:4222");
    }

    #[test]
    fn bad_targets_are_refused() {
        for url in [
            "127.0.0.1:1",
            "http://127.0.0.1:1",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:1/x",
        ] {
            assert!(url.parse::<Target>().is_err(), "{url}");
        }
    }
}
