//! Which web pages may open a WebSocket to this server.
//!
//! A browser sends `Origin` with every upgrade; any page on any site can try
//! one, so without a check a page on `evil.example` could chat as its
//! visitor. Comparing `Origin` with `Host` is not enough: under DNS
//! rebinding an attacker's name resolves to this server, and then both
//! headers say `evil.example`. So the rule (PROTOCOL.md, "Limits and
//! faults") trusts only names the server knows itself: the origins given
//! with `--allowed-origin`, the machine's host name, `localhost`, and an IP
//! literal equal to the one the client dialled (`Host`), which no rebinding
//! can forge. `Origin: null` (sandboxed frames, `file:` pages) is refused;
//! a request with no `Origin` comes from no browser and is accepted.
//!
//! Origins are parsed with `http::Uri`, never by hand.

use std::fmt;
use std::net::IpAddr;

use http::Uri;
use http::uri::{Authority, Scheme};

/// The flag that extends the list; named in every refusal.
pub const FLAG: &str = "--allowed-origin";

/// One web origin: scheme, host (lower case, IPv6 without brackets) and
/// port (the scheme's default filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

/// Why an `--allowed-origin` value (or an `Origin` header) is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a web origin like https://chat.example.com ({why})")]
pub struct BadOrigin {
    value: String,
    why: &'static str,
}

impl Origin {
    /// Parses `scheme://host[:port]`, with an optional trailing `/`; the
    /// scheme must be `http` or `https`, and nothing else may follow.
    pub fn parse(value: &str) -> Result<Origin, BadOrigin> {
        let bad = |why| BadOrigin {
            value: value.chars().take(200).collect(),
            why,
        };
        let uri: Uri = value.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => "http",
            Some(s) if *s == Scheme::HTTPS => "https",
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => return Err(bad("no scheme")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not part of an origin"));
        }
        let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
        if !path_ok || value.contains('#') {
            return Err(bad("an origin has no path, query or fragment"));
        }
        let host = host_of(authority);
        let name_like = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !name_like && host.parse::<IpAddr>().is_err() {
            return Err(bad("the host must be a DNS name or an IP address"));
        }
        let port = match authority.port_u16() {
            Some(port) => port,
            None if authority.as_str().ends_with(':') => return Err(bad("empty port")),
            None if scheme == "https" => 443,
            None => 80,
        };
        Ok(Origin { scheme, host, port })
    }

    /// The host, lower case; an IPv6 literal without its brackets.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// An authority's host, lower case, brackets of an IPv6 literal removed.
fn host_of(authority: &Authority) -> String {
    let host = authority.host();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase()
}

/// The origins a WebSocket upgrade is accepted from, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    /// `--allowed-origin`, parsed.
    listed: Vec<Origin>,
    /// This machine's host name, lower case; pages served under it are
    /// this server's own.
    host_name: Option<String>,
}

/// Why an upgrade's `Origin` was refused: the one line the 403 carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AllowedOrigins {
    /// Parses every `--allowed-origin` value (each may be a comma-separated
    /// list); the first malformed one is the error.
    pub fn new(values: &[String], host_name: Option<String>) -> Result<AllowedOrigins, BadOrigin> {
        let listed = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(Origin::parse)
            .collect::<Result<_, _>>()?;
        Ok(AllowedOrigins {
            listed,
            host_name: host_name
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        })
    }

    /// With this machine's host name, as the OS reports it.
    pub fn with_own_host_name(values: &[String]) -> Result<AllowedOrigins, BadOrigin> {
        let host = gethostname::gethostname().to_str().map(str::to_owned);
        AllowedOrigins::new(values, host)
    }

    /// Checks an upgrade's `Origin` header against the rules, given the
    /// request's `Host` header. `None` is a request without `Origin`.
    pub fn check(&self, origin: Option<&[u8]>, host: Option<&[u8]>) -> Result<(), Refused> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = std::str::from_utf8(origin).unwrap_or("");
        if origin.trim() == "null" {
            return Err(Refused(format!(
                "origin null (a sandboxed or file: page) is not allowed; no {FLAG} can allow it, serve the page over http or https"
            )));
        }
        let Ok(parsed) = Origin::parse(origin.trim()) else {
            return Err(Refused(format!(
                "malformed Origin; pages must be served over http or https, or be listed with {FLAG}"
            )));
        };
        if self.listed.contains(&parsed)
            || parsed.host == "localhost"
            || self.host_name.as_deref() == Some(parsed.host.as_str())
            || same_ip_literal(&parsed, host)
        {
            return Ok(());
        }
        Err(Refused(format!(
            "origin {parsed} not allowed; start chatgate with {FLAG} {parsed} to accept pages from it"
        )))
    }
}

/// Whether the origin's host is an IP literal equal to the host part of the
/// request's `Host` header: the address the browser itself dialled.
fn same_ip_literal(origin: &Origin, host: Option<&[u8]>) -> bool {
    let Ok(ip) = origin.host.parse::<IpAddr>() else {
        return false;
    };
    let Some(authority) = host.and_then(|h| Authority::try_from(h).ok()) else {
        return false;
    };
    host_of(&authority).parse::<IpAddr>() == Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> AllowedOrigins {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        AllowedOrigins::new(&list, Some("ChatBox".into())).unwrap()
    }

    fn ok(rules: &AllowedOrigins, origin: &str, host: &str) -> bool {
        rules
            .check(Some(origin.as_bytes()), Some(host.as_bytes()))
            .is_ok()
    }

    #[test]
    fn parses_origins_and_fills_default_ports() {
        let o = Origin::parse("https://Chat.Example.com/").unwrap();
        assert_eq!(o, Origin::parse("https://chat.example.com:443").unwrap());
        assert_eq!(o.to_string(), "https://chat.example.com");
        assert_eq!(
            Origin::parse("http://[::1]:3000").unwrap().to_string(),
            "http://[::1]:3000"
        );
        for bad in [
            "chat.example.com",
            "ftp://chat.example.com",
            "https://chat.example.com/app",
            "https://chat.example.com//",
            "https://chat.example.com?x=1",
            "https://user@chat.example.com",
            "https://*.example.com",
            "https://a_b.example",
            "https://chat.example.com:",
            "https://",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_may_be_comma_separated_and_are_checked() {
        let list = vec!["https://a.example, http://b.example:8080".to_owned()];
        let rules = AllowedOrigins::new(&list, None).unwrap();
        assert!(ok(&rules, "https://a.example:443", "x"));
        assert!(ok(&rules, "http://b.example:8080", "x"));
        assert!(!ok(&rules, "http://b.example", "x"));
        for bad in ["https://a.example,not an origin", "", "https://a.example,"] {
            assert!(
                AllowedOrigins::new(&[bad.to_owned()], None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn own_names_and_dialled_ip_literals_are_allowed() {
        let rules = allowed(&[]);
        assert!(
            rules.check(None, Some(b"x")).is_ok(),
            "no Origin: no browser"
        );
        assert!(ok(&rules, "http://localhost:3000", "localhost:8080"));
        assert!(ok(&rules, "https://chatbox", "chatbox:8443"));
        assert!(ok(&rules, "http://127.0.0.1:9999", "127.0.0.1:8080"));
        assert!(ok(&rules, "http://[::1]", "[::1]:8080"));
        assert!(!ok(&rules, "http://127.0.0.2", "127.0.0.1:8080"));
    }

    #[test]
    fn dns_rebinding_and_null_are_refused() {
        let rules = allowed(&[]);
        let refused = rules
            .check(
                Some(b"http://evil.example:8080"),
                Some(b"evil.example:8080"),
            )
            .unwrap_err();
        assert!(refused.to_string().contains(FLAG), "{refused}");
        assert!(!ok(&rules, "null", "127.0.0.1:8080"));
        assert!(!ok(&rules, "garbage", "127.0.0.1:8080"));
    }
}
