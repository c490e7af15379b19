//! Plain TCP: the telnet and netcat transport.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::Transport;
use super::stream::{StreamReader, StreamWriter};

/// An accepted TCP connection.
#[derive(Debug)]
pub struct Tcp {
    stream: TcpStream,
    peer: SocketAddr,
}

impl Tcp {
    /// Wraps an accepted stream. Nagle is turned off: the writer already
    /// batches, and a chat line should not wait for an ACK.
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        let _ = stream.set_nodelay(true);
        Tcp { stream, peer }
    }
}

impl Transport for Tcp {
    type Reader = StreamReader<OwnedReadHalf>;
    type Writer = StreamWriter<OwnedWriteHalf>;
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn split(self) -> (Self::Reader, Self::Writer) {
        let (read, write) = self.stream.into_split();
        (StreamReader::new(read), StreamWriter::new(write))
    }
}
