//! Connection caps: all connections together and per source address.
//!
//! A [`Permit`] is taken when a connection is accepted (before a TLS
//! handshake, so handshakes count) and released when it is dropped, however
//! the connection ends. The same limiter type counts page connections
//! (`--max-http-connections`) apart from chat connections.
//!
//! Addresses are counted by [`address_key`]: one IPv6 host usually owns a
//! whole /64 and can pick any address in it, so counting single IPv6
//! addresses would make `--max-per-ip` no limit at all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::reply::reason;

/// Connections being told "no" at once (over a connection limit, or on the
/// wrong port), all listeners together. Telling costs a task, a file
/// descriptor and, over TLS, a handshake; past this many, further refused
/// connections are closed at once without a word, so a flood of them
/// cannot hold more descriptors than this.
pub const MAX_REFUSALS: usize = 64;

/// Connections saying goodbye at once (flushing their last lines, then
/// lingering so the close is not a reset). A connection's places under the
/// caps are free from the moment it is closed, so without this cap one
/// address could connect, get itself closed and reconnect faster than its
/// goodbyes end, and hold descriptors past `--max-per-ip`. Past it, a
/// closed connection is dropped at once, without the goodbye.
pub const MAX_CLOSING: usize = 1024;

/// Time a refused connection gets for everything: its TLS handshake, the
/// `ERROR` line and the close. Far shorter than a TLS handshake's own
/// timeout: a peer that is only being told no is not waited for.
pub const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The address a connection is counted under: an IPv4-mapped IPv6 address
/// as its IPv4 address, any other IPv6 address as its /64 prefix (RFC 4291
/// gives hosts 64-bit interface identifiers), an IPv4 address as itself.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Counts connections against `--max-connections` and `--max-per-ip`.
#[derive(Debug)]
pub struct ConnectionLimiter {
    /// Most connections in all; 0 is no limit. Changed by a reload.
    max_total: AtomicUsize,
    /// Most connections per address; 0 is no limit. Changed by a reload.
    max_per_ip: AtomicUsize,
    /// Held only to count; never across an await.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses with at least one connection, so it cannot grow past
    /// the number of connections.
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Over `--max-connections`.
    #[error("too many connections")]
    Total,
    /// Over `--max-per-ip`.
    #[error("too many connections from your address")]
    PerIp,
}

impl LimitError {
    /// The reason for the `ERROR` line.
    pub fn reason(self) -> &'static str {
        match self {
            LimitError::Total => reason::TOO_MANY,
            LimitError::PerIp => reason::TOO_MANY_FROM_IP,
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// A limiter with the given caps (0: none).
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            counts: Mutex::default(),
        })
    }

    /// New caps, for connections admitted from now on; those already in
    /// stay, even past a lower cap.
    pub fn set_limits(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `ip`, or says which limit it hit; the total
    /// is checked first, so when both are hit that one is reported.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, LimitError> {
        let ip = address_key(ip);
        let mut counts = self.counts();
        let (max_total, max_per_ip) = (
            self.max_total.load(Ordering::Relaxed),
            self.max_per_ip.load(Ordering::Relaxed),
        );
        if max_total != 0 && counts.total >= max_total {
            return Err(LimitError::Total);
        }
        let mine = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip != 0 && mine >= max_per_ip {
            return Err(LimitError::PerIp);
        }
        counts.total += 1;
        counts.per_ip.insert(ip, mine + 1);
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections now admitted.
    pub fn active(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_release() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let p1 = limiter.acquire(a).unwrap();
        let _p2 = limiter.acquire(a).unwrap();
        assert_eq!(limiter.acquire(a).unwrap_err(), LimitError::PerIp);
        let _p3 = limiter.acquire(b).unwrap();
        assert_eq!(limiter.acquire(b).unwrap_err(), LimitError::Total);
        drop(p1);
        assert!(limiter.acquire(a).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = ConnectionLimiter::new(0, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _pa = limiter.acquire(a).unwrap();
        assert_eq!(limiter.acquire(same_64).unwrap_err(), LimitError::PerIp);
        assert!(limiter.acquire(other_64).is_ok());
        let v4: IpAddr = [192, 0, 2, 7].into();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let _pv4 = limiter.acquire(v4).unwrap();
        assert_eq!(limiter.acquire(mapped).unwrap_err(), LimitError::PerIp);
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = ConnectionLimiter::new(0, 0);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let permits: Vec<_> = (0..1000).map(|_| limiter.acquire(ip).unwrap()).collect();
        assert_eq!(limiter.active(), permits.len());
    }
}
