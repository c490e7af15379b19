//! TCP connect for thousands of connections.
//!
//! One source address has about 28,000 ephemeral ports; binding each
//! connection to one of several loopback sources (`127.1.0.1` onwards) before
//! connecting multiplies that, so large idle and churn runs do not run out.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// The first of the spread source addresses: outside `127.0.0.1`, which the
/// server and unbound sockets use.
pub const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);

/// Most source addresses: the rest of `127.0.0.0/8` from [`FIRST_SOURCE`].
pub const MAX_SOURCES: u32 = (1 << 24) - (1 << 16) - 2;

/// How connections are made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dial {
    /// Spread connections over this many loopback source addresses (0: let
    /// the OS choose). Only used for IPv4 loopback targets.
    pub sources: u32,
    /// A receive buffer size to ask for, for a reader meant to fill up fast.
    pub recv_buffer: Option<u32>,
}

/// The source address of connection number `index`, if spreading applies.
pub fn source_for(index: usize, dial: &Dial, target: SocketAddr) -> Option<Ipv4Addr> {
    let sources = dial.sources.min(MAX_SOURCES);
    if sources == 0 || !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        return None;
    }
    let offset = (index % sources as usize) as u32;
    Some(Ipv4Addr::from(u32::from(FIRST_SOURCE) + offset))
}

/// Connects connection number `index` to `addr`, with `TCP_NODELAY` so
/// small messages leave at once.
pub async fn connect(addr: SocketAddr, index: usize, dial: &Dial) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(size) = dial.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(source) = source_for(index, dial, addr) {
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_over_loopback_only() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let dial = Dial {
            sources: 3,
            recv_buffer: None,
        };
        let ips: Vec<_> = (0..4)
            .map(|i| source_for(i, &dial, target).unwrap())
            .collect();
        assert_eq!(ips[0], FIRST_SOURCE);
        assert_eq!(ips[2], Ipv4Addr::new(127, 1, 0, 3));
        assert_eq!(ips[3], ips[0]);
        assert_eq!(source_for(0, &Dial::default(), target), None);
        let remote: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(source_for(0, &dial, remote), None);
    }
}
