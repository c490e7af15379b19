//! TLS over TCP: the `openssl s_client` transport. The same line framing as
//! plain TCP, inside rustls; closing sends close_notify.

use std::net::SocketAddr;

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Transport;
use super::stream::{StreamReader, StreamWriter};

/// A TLS connection whose handshake has completed.
#[derive(Debug)]
pub struct Tls {
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl Tls {
    /// Wraps an established TLS stream.
    pub fn new(stream: TlsStream<TcpStream>, peer: SocketAddr) -> Self {
        Tls { stream, peer }
    }
}

impl Transport for Tls {
    type Reader = StreamReader<ReadHalf<TlsStream<TcpStream>>>;
    type Writer = StreamWriter<WriteHalf<TlsStream<TcpStream>>>;

    fn kind(&self) -> &'static str {
        "tls"
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn split(self) -> (Self::Reader, Self::Writer) {
        let (read, write) = tokio::io::split(self.stream);
        (StreamReader::new(read), StreamWriter::new(write))
    }
}
