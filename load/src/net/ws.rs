//! WebSocket at the cost of a byte stream.
//!
//! tungstenite performs the HTTP upgrade; after it, the connection is read
//! like TCP: each read fills the worker thread's scratch buffer (see
//! [`read`](super::read)), every complete server frame in it is decoded in
//! place into a `payload\n` line, and the line parser gets all of them in one
//! call. Frame headers are parsed and formatted by tungstenite
//! ([`FrameHeader`]); nothing is allocated per frame in either direction.
//!
//! Server frames are unmasked; a fragmented data message is reassembled
//! into one line, and control frames may come between its fragments. A ping
//! is remembered until the connection's owner answers it through the write
//! half ([`WsReader::take_ping`], [`WsWriter::pong`]); a Close frame ends the
//! reading. Text payloads are not checked for UTF-8: the parser takes bytes.

use std::future::poll_fn;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::read::{MAX_CARRY, READ_CHUNK, with_scratch};
use crate::error::LoadError;
use crate::protocol::chat::next_line;
use crate::target::Target;

/// Bytes asked of the stream per read during the upgrade.
const HANDSHAKE_CHUNK: usize = 4 * 1024;

/// tungstenite's frame read buffer, allocated when the upgrade completes.
/// Its WebSocket is dropped right away without reading a frame, so the
/// smallest sensible size saves a useless 128 KiB allocation per connection.
const HANDSHAKE_READ_BUFFER: usize = 256;

/// chatgate's subprotocol for JSON events, asked for with `--json`.
const JSON_SUBPROTOCOL: &str = "chatgate.v2.json";

/// Longest control frame payload (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Upgrades `io` to a WebSocket for `target` and returns it with the bytes
/// the server sent after its upgrade response that have already been read
/// (typically the first frames: chatgate writes its welcome right after the
/// upgrade). They must be decoded before anything read later.
pub async fn handshake<S>(target: &Target, io: S) -> Result<(S, Vec<u8>), LoadError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // The request names the server as the user typed it; TLS, if any, is
    // already below `io`, so the scheme here only shapes the request.
    let url = format!("ws://{}{}", target.addr, target.path);
    let mut request = url.into_client_request()?;
    if target.json {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(JSON_SUBPROTOCOL),
        );
    }
    let config = WebSocketConfig::default().read_buffer_size(HANDSHAKE_READ_BUFFER);
    let mut gate = HeadGate::new(io);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, &mut gate, Some(config)).await?;
    // Dropping the WebSocket sends nothing; its read buffer is empty (see
    // `HeadGate`), so no byte of the connection is lost with it.
    drop(ws);
    gate.into_parts()
}

/// The stream tungstenite performs the upgrade over: it reads ahead like any
/// buffered reader, but hands tungstenite no byte past the end of the HTTP
/// response head, and keeps what follows.
///
/// Why tungstenite's own buffer is then empty when the upgrade completes:
/// tungstenite parses the response with httparse, which skips empty lines
/// before the status line and completes exactly at the end of the first
/// empty line (`\r\n` or `\n`) after it; an empty line is a `\n` directly
/// followed by `\n` or `\r\n`. [`head_end`] finds that same first empty line,
/// so httparse cannot complete before it, and the gate never lets tungstenite
/// see a byte after it. A successful upgrade therefore consumed exactly the
/// bytes handed over, and everything after them is still in `read`. A
/// response httparse would read differently (a malformed one) makes
/// tungstenite ask for more than the head, which the gate refuses with an
/// error: the upgrade fails rather than losing bytes.
struct HeadGate<S> {
    io: S,
    /// Every byte read from `io` so far.
    read: Vec<u8>,
    /// How many bytes of `read` tungstenite has been given.
    given: usize,
    /// Where the response head ends in `read`, once it has arrived.
    head: Option<usize>,
}

impl<S> HeadGate<S> {
    fn new(io: S) -> Self {
        HeadGate {
            io,
            read: Vec::new(),
            given: 0,
            head: None,
        }
    }

    /// The stream and the bytes read past the response head.
    fn into_parts(mut self) -> Result<(S, Vec<u8>), LoadError> {
        if self.head != Some(self.given) {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                "WebSocket upgrade completed away from the end of the response head",
            );
            return Err(e.into());
        }
        let early = self.read.split_off(self.given);
        Ok((self.io, early))
    }
}

/// The end of an HTTP response head in `buf` (just past its first empty
/// line, leading empty lines skipped as httparse does), or `None` until it
/// has arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    loop {
        match &buf[start..] {
            [b'\r', b'\n', ..] => start += 2,
            [b'\n', ..] => start += 1,
            [] | [b'\r'] => return None,
            _ => break,
        }
    }
    let mut from = start;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let nl = from + i;
        match &buf[nl + 1..] {
            [b'\n', ..] => return Some(nl + 2),
            [b'\r', b'\n', ..] => return Some(nl + 3),
            [] | [b'\r'] => return None,
            _ => from = nl + 1,
        }
    }
    None
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let limit = this.head.unwrap_or(this.read.len());
            if this.given < limit {
                let n = (limit - this.given).min(buf.remaining());
                buf.put_slice(&this.read[this.given..this.given + n]);
                this.given += n;
                return Poll::Ready(Ok(()));
            }
            if this.head.is_some() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "WebSocket upgrade response not understood at its end",
                )));
            }
            let old = this.read.len();
            this.read.resize(old + HANDSHAKE_CHUNK, 0);
            let mut into = ReadBuf::new(&mut this.read[old..]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut into);
            let n = into.filled().len();
            this.read.truncate(old + n);
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: an empty read tells tungstenite so.
                Poll::Ready(Ok(())) if n == 0 => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.head = head_end(&this.read),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadGate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The receiving half of a WebSocket.
pub struct WsReader {
    io: Pin<Box<dyn AsyncRead + Send>>,
    /// Bytes the upgrade read past the response head, decoded before the
    /// first read; freed then.
    early: Vec<u8>,
    /// Decoded bytes not yet consumed (lines the parser left, then the start
    /// of a fragmented message), followed by an incomplete frame. Usually
    /// empty; grows only while a long frame is arriving, like a byte
    /// stream's carry.
    carry: Vec<u8>,
    frames: Frames,
}

impl WsReader {
    /// The reader of an upgraded stream, with the bytes the upgrade read ahead.
    pub fn new(io: Pin<Box<dyn AsyncRead + Send>>, early: Vec<u8>) -> Self {
        WsReader {
            io,
            early,
            carry: Vec::new(),
            frames: Frames::default(),
        }
    }

    /// Reads once (or takes the bytes the upgrade read ahead), decodes every
    /// complete frame, and hands the data messages to `take` as
    /// `\n`-terminated lines in one call; `take` returns how many bytes it
    /// consumed. Returns `false` at a Close frame (after handing over the
    /// messages before it) or at the end of the stream.
    ///
    /// Cancel safe: a poll either completes a read and its parsing, or
    /// changes nothing.
    pub async fn next_batch(
        &mut self,
        mut take: impl FnMut(&[u8]) -> Result<usize, LoadError>,
    ) -> Result<bool, LoadError> {
        let WsReader {
            io,
            early,
            carry,
            frames,
        } = self;
        poll_fn(|cx| {
            with_scratch(|scratch| {
                if frames.closed {
                    return Poll::Ready(Ok(false));
                }
                let kept = carry.len();
                let want = kept + READ_CHUNK.max(early.len());
                if scratch.len() < want {
                    scratch.resize(want, 0);
                }
                scratch[..kept].copy_from_slice(carry);
                let n = if early.is_empty() {
                    let mut buf = ReadBuf::new(&mut scratch[kept..]);
                    match io.as_mut().poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) => buf.filled().len(),
                    }
                } else {
                    let n = early.len();
                    scratch[kept..kept + n].copy_from_slice(early);
                    *early = Vec::new();
                    n
                };
                if n == 0 {
                    return Poll::Ready(Ok(false));
                }
                Poll::Ready(frames.batch(&mut scratch[..kept + n], carry, &mut take))
            })
        })
        .await
    }

    /// The payload of the latest ping not yet answered, if any; answering
    /// the latest one only is what RFC 6455 (5.5.3) allows.
    pub fn take_ping(&mut self) -> Option<Vec<u8>> {
        self.frames.ping.take()
    }
}

/// Decoding state carried from one batch to the next.
#[derive(Debug, Default)]
struct Frames {
    /// How many leading bytes of the carry are decoded output.
    decoded: usize,
    /// Payload bytes so far of a fragmented message, if one is open: the
    /// last bytes of the decoded output.
    fragment: Option<usize>,
    /// Payload of the latest ping not yet answered.
    ping: Option<Vec<u8>>,
    /// A Close frame has arrived.
    closed: bool,
}

/// Where a decoding pass left its buffer.
#[derive(Debug, PartialEq, Eq)]
struct Pass {
    /// End of the complete lines.
    lines: usize,
    /// End of the decoded output: the lines, then an open message's payload.
    decoded: usize,
    /// Start of the bytes not decoded: an incomplete frame.
    undecoded: usize,
}

impl Frames {
    /// One batch: `buf` is the carry followed by new bytes. Decodes, hands
    /// the complete lines to `take`, and leaves in `carry` what is kept for
    /// the next batch. Returns `false` once a Close frame has arrived.
    fn batch(
        &mut self,
        buf: &mut [u8],
        carry: &mut Vec<u8>,
        take: &mut impl FnMut(&[u8]) -> Result<usize, LoadError>,
    ) -> Result<bool, LoadError> {
        let pass = self.decode(buf)?;
        let used = if pass.lines > 0 {
            take(&buf[..pass.lines])?.min(pass.lines)
        } else {
            0
        };
        let kept = pass.decoded - used + buf.len() - pass.undecoded;
        if kept > MAX_CARRY {
            let e = io::Error::new(io::ErrorKind::InvalidData, "unit longer than MAX_CARRY");
            return Err(e.into());
        }
        carry.clear();
        carry.extend_from_slice(&buf[used..pass.decoded]);
        carry.extend_from_slice(&buf[pass.undecoded..]);
        self.decoded = pass.decoded - used;
        Ok(!self.closed)
    }

    /// Decodes the complete frames of `buf[self.decoded..]` in place: each
    /// data payload is moved down to the end of the output so far, and a
    /// `\n` follows the last payload of each message. The output never
    /// overtakes the input, since every frame has a header of at least two
    /// bytes and adds one `\n` at most. Stops at the first incomplete frame
    /// or after a Close frame.
    fn decode(&mut self, buf: &mut [u8]) -> Result<Pass, LoadError> {
        let mut out = self.decoded;
        let mut lines = out - self.fragment.unwrap_or(0);
        let mut at = self.decoded;
        while !self.closed {
            let mut cursor = Cursor::new(&buf[at..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor)? else {
                break;
            };
            if len > MAX_CARRY as u64 {
                return Err(too_long(len));
            }
            let start = at + cursor.position() as usize;
            let end = start + len as usize;
            if end > buf.len() {
                break;
            }
            at = end;
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(protocol(ProtocolError::NonZeroReservedBits));
            }
            if header.mask.is_some() {
                return Err(protocol(ProtocolError::MaskedFrameFromServer));
            }
            match header.opcode {
                OpCode::Data(data) => {
                    match (data, self.fragment) {
                        (Data::Continue, None) => {
                            return Err(protocol(ProtocolError::UnexpectedContinueFrame));
                        }
                        (Data::Text | Data::Binary, Some(_)) => {
                            return Err(protocol(ProtocolError::ExpectedFragment(data)));
                        }
                        (Data::Reserved(op), _) => {
                            return Err(protocol(ProtocolError::UnknownDataFrameType(op)));
                        }
                        _ => {}
                    }
                    buf.copy_within(start..end, out);
                    out += end - start;
                    if header.is_final {
                        buf[out] = b'\n';
                        out += 1;
                        lines = out;
                        self.fragment = None;
                    } else {
                        let so_far = self.fragment.unwrap_or(0) + (end - start);
                        if so_far > MAX_CARRY {
                            return Err(too_long(so_far as u64));
                        }
                        self.fragment = Some(so_far);
                    }
                }
                OpCode::Control(control) => {
                    if !header.is_final {
                        return Err(protocol(ProtocolError::FragmentedControlFrame));
                    }
                    if len > MAX_CONTROL_PAYLOAD {
                        return Err(protocol(ProtocolError::ControlFrameTooBig));
                    }
                    match control {
                        Control::Ping => self.ping = Some(buf[start..end].to_vec()),
                        Control::Pong => {}
                        Control::Close => self.closed = true,
                        Control::Reserved(op) => {
                            return Err(protocol(ProtocolError::UnknownControlFrameType(op)));
                        }
                    }
                }
            }
        }
        Ok(Pass {
            lines,
            decoded: out,
            undecoded: at,
        })
    }
}

fn protocol(e: ProtocolError) -> LoadError {
    WsError::Protocol(e).into()
}

fn too_long(size: u64) -> LoadError {
    WsError::Capacity(CapacityError::MessageTooLong {
        size: usize::try_from(size).unwrap_or(usize::MAX),
        max_size: MAX_CARRY,
    })
    .into()
}

/// The sending half of a WebSocket: masked client frames, encoded into a
/// buffer that grows only as large as the biggest batch sent.
pub struct WsWriter {
    io: Pin<Box<dyn AsyncWrite + Send>>,
    frames: Vec<u8>,
}

impl WsWriter {
    /// The writer of an upgraded stream.
    pub fn new(io: Pin<Box<dyn AsyncWrite + Send>>) -> Self {
        WsWriter {
            io,
            frames: Vec::new(),
        }
    }

    /// Sends each `\n`-terminated line of `batch` as one text message, in
    /// one write. A line that is not UTF-8 is sent with replacement
    /// characters, as a text message must be UTF-8.
    pub async fn send(&mut self, batch: &[u8]) -> Result<(), LoadError> {
        self.frames.clear();
        let mut rest = batch;
        while let Some((line, used)) = next_line(rest) {
            if std::str::from_utf8(line).is_ok() {
                encode(&mut self.frames, OpCode::Data(Data::Text), line);
            } else {
                let text = String::from_utf8_lossy(line);
                encode(&mut self.frames, OpCode::Data(Data::Text), text.as_bytes());
            }
            rest = &rest[used..];
        }
        self.write_frames().await
    }

    /// Answers a ping with `payload`.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), LoadError> {
        self.frames.clear();
        encode(&mut self.frames, OpCode::Control(Control::Pong), payload);
        self.write_frames().await
    }

    /// Starts the closing handshake with a Close frame without a status.
    pub async fn close(&mut self) -> Result<(), LoadError> {
        self.frames.clear();
        encode(&mut self.frames, OpCode::Control(Control::Close), &[]);
        self.write_frames().await
    }

    async fn write_frames(&mut self) -> Result<(), LoadError> {
        if !self.frames.is_empty() {
            self.io.write_all(&self.frames).await?;
        }
        self.io.flush().await?;
        Ok(())
    }
}

/// Appends one final frame carrying `payload`, masked with a fresh random
/// key as a client must (RFC 6455, 5.3).
fn encode(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let key: [u8; 4] = rand::random();
    let header = FrameHeader {
        is_final: true,
        opcode,
        mask: Some(key),
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing into a Vec cannot fail");
    let start = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[start..], key);
}

/// XORs `bytes` with `key` repeated, four bytes at a time.
fn mask(bytes: &mut [u8], key: [u8; 4]) {
    let word = u32::from_ne_bytes(key);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let four = [chunk[0], chunk[1], chunk[2], chunk[3]];
        chunk.copy_from_slice(&(u32::from_ne_bytes(four) ^ word).to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::{Bytes, Message};

    /// A server frame (unmasked) as tungstenite formats it.
    fn frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final,
            opcode,
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    fn text(payload: &str) -> Vec<u8> {
        frame(OpCode::Data(Data::Text), true, payload.as_bytes())
    }

    /// Feeds byte batches through the decoder as successive reads would,
    /// with a parser that takes whole lines; returns the lines each batch
    /// delivered and whether the connection was still open after it.
    struct Feeder {
        frames: Frames,
        carry: Vec<u8>,
    }

    impl Feeder {
        fn new() -> Self {
            Feeder {
                frames: Frames::default(),
                carry: Vec::new(),
            }
        }

        fn feed(&mut self, bytes: &[u8]) -> Result<(Vec<String>, bool), LoadError> {
            let mut buf = self.carry.clone();
            buf.extend_from_slice(bytes);
            let mut seen = Vec::new();
            let mut take = |batch: &[u8]| {
                let mut at = 0;
                while let Some((line, used)) = next_line(&batch[at..]) {
                    seen.push(String::from_utf8_lossy(line).into_owned());
                    at += used;
                }
                Ok(at)
            };
            let open = self.frames.batch(&mut buf, &mut self.carry, &mut take)?;
            Ok((seen, open))
        }
    }

    #[test]
    fn several_whole_frames_are_one_batch_of_lines() {
        let mut f = Feeder::new();
        let bytes = [text("alice: hi"), text(""), text("bob has joined")].concat();
        let (lines, open) = f.feed(&bytes).unwrap();
        assert_eq!(lines, ["alice: hi", "", "bob has joined"]);
        assert!(open);
        assert!(f.carry.is_empty());
    }

    #[test]
    fn a_frame_split_across_reads_is_carried_until_complete() {
        let mut f = Feeder::new();
        let bytes = [text("one"), text("two words")].concat();
        // Cut inside the second frame's header, then inside its payload.
        let first = text("one").len() + 1;
        let (lines, _) = f.feed(&bytes[..first]).unwrap();
        assert_eq!(lines, ["one"]);
        assert_eq!(f.carry, &bytes[first - 1..first]);
        let (lines, _) = f.feed(&bytes[first..first + 4]).unwrap();
        assert!(lines.is_empty());
        let (lines, _) = f.feed(&bytes[first + 4..]).unwrap();
        assert_eq!(lines, ["two words"]);
        assert!(f.carry.is_empty());
    }

    #[test]
    fn byte_by_byte_reads_deliver_the_same_lines() {
        let mut f = Feeder::new();
        let long = "x".repeat(300);
        let bytes = [text("a"), text(&long), text("b")].concat();
        let mut all = Vec::new();
        for byte in &bytes {
            all.extend(f.feed(std::slice::from_ref(byte)).unwrap().0);
        }
        assert_eq!(all, ["a", long.as_str(), "b"]);
        assert!(f.carry.is_empty());
    }

    #[test]
    fn frames_over_125_bytes_use_the_16_bit_length() {
        let mut f = Feeder::new();
        let long = "y".repeat(126);
        let longer = "z".repeat(20_000);
        let bytes = [text(&long), text(&longer)].concat();
        // 2 header bytes + 2 length bytes.
        assert_eq!(bytes[1], 126);
        assert_eq!(text(&long).len(), 4 + 126);
        let (lines, _) = f.feed(&bytes).unwrap();
        assert_eq!(lines, [long, longer]);
    }

    #[test]
    fn a_ping_between_messages_is_remembered_for_the_pong() {
        let mut f = Feeder::new();
        let ping = frame(OpCode::Control(Control::Ping), true, b"beat");
        let bytes = [text("before"), ping, text("after")].concat();
        let (lines, open) = f.feed(&bytes).unwrap();
        assert_eq!(lines, ["before", "after"]);
        assert!(open);
        assert_eq!(f.frames.ping.take().as_deref(), Some(&b"beat"[..]));
        let pong = frame(OpCode::Control(Control::Pong), true, b"");
        let (lines, _) = f.feed(&pong).unwrap();
        assert!(lines.is_empty());
        assert!(f.frames.ping.is_none());
    }

    #[test]
    fn a_close_frame_ends_the_reading_after_what_came_before() {
        let mut f = Feeder::new();
        let close = frame(
            OpCode::Control(Control::Close),
            true,
            &1000u16.to_be_bytes(),
        );
        let bytes = [text("last words"), close, text("ignored")].concat();
        let (lines, open) = f.feed(&bytes).unwrap();
        assert_eq!(lines, ["last words"]);
        assert!(!open);
    }

    #[test]
    fn fragments_are_joined_into_one_line_around_a_ping() {
        let mut f = Feeder::new();
        let bytes = [
            text("whole"),
            frame(OpCode::Data(Data::Text), false, b"frag"),
            frame(OpCode::Control(Control::Ping), true, b""),
            frame(OpCode::Data(Data::Continue), false, b"men"),
        ]
        .concat();
        let (lines, _) = f.feed(&bytes).unwrap();
        assert_eq!(lines, ["whole"]);
        assert_eq!(f.frames.fragment, Some(7));
        assert!(f.frames.ping.is_some());
        let bytes = [
            frame(OpCode::Data(Data::Continue), true, b"ted"),
            text("next"),
        ]
        .concat();
        let (lines, _) = f.feed(&bytes).unwrap();
        assert_eq!(lines, ["fragmented", "next"]);
        assert!(f.carry.is_empty());
        assert_eq!(f.frames.fragment, None);
    }

    #[test]
    fn lines_the_parser_leaves_are_offered_again() {
        let mut frames = Frames::default();
        let mut carry = Vec::new();
        let mut buf = [text("one"), text("two")].concat();
        // A parser that takes one line per call.
        let mut take_one = |batch: &[u8]| Ok(next_line(batch).map_or(0, |(_, used)| used));
        frames.batch(&mut buf, &mut carry, &mut take_one).unwrap();
        assert_eq!(carry, b"two\n");
        let mut buf = [carry.clone(), text("three")].concat();
        let mut seen = Vec::new();
        let mut take_all = |batch: &[u8]| {
            seen.extend_from_slice(batch);
            Ok(batch.len())
        };
        frames.batch(&mut buf, &mut carry, &mut take_all).unwrap();
        assert_eq!(seen, b"two\nthree\n");
        assert!(carry.is_empty());
    }

    #[test]
    fn protocol_violations_are_errors() {
        let masked = {
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Text),
                mask: Some([1, 2, 3, 4]),
                ..FrameHeader::default()
            };
            let mut out = Vec::new();
            header.format(2, &mut out).unwrap();
            out.extend_from_slice(b"hi");
            out
        };
        let stray_continue = frame(OpCode::Data(Data::Continue), true, b"x");
        let nested = [
            frame(OpCode::Data(Data::Text), false, b"a"),
            frame(OpCode::Data(Data::Text), true, b"b"),
        ]
        .concat();
        let split_ping = frame(OpCode::Control(Control::Ping), false, b"");
        let big_ping = frame(OpCode::Control(Control::Ping), true, &[0; 126]);
        for bytes in [masked, stray_continue, nested, split_ping, big_ping] {
            assert!(Feeder::new().feed(&bytes).is_err(), "{bytes:?}");
        }
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(MAX_CARRY as u64 + 1).to_be_bytes());
        assert!(Feeder::new().feed(&huge).is_err());
    }

    #[test]
    fn head_end_matches_the_first_empty_line() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&text("welcome"));
        assert_eq!(head_end(&bytes), Some(head.len()));
        assert_eq!(head_end(&head[..head.len() - 1]), None);
        assert_eq!(head_end(&head[..head.len() - 2]), None);
        assert_eq!(head_end(b"HTTP/1.1 101 OK\n\nrest"), Some(17));
        assert_eq!(head_end(b"\r\nHTTP/1.1 101 OK\r\n\r\n"), Some(21));
    }

    #[test]
    fn client_frames_are_masked_and_read_back_by_a_server() {
        let mut out = Vec::new();
        let long = "m".repeat(1000);
        for line in ["hello", "", long.as_str()] {
            encode(&mut out, OpCode::Data(Data::Text), line.as_bytes());
        }
        encode(&mut out, OpCode::Control(Control::Pong), b"beat");
        assert_ne!(out[1] & 0x80, 0, "mask bit");
        let mut server = WebSocket::from_raw_socket(Cursor::new(out), Role::Server, None);
        assert_eq!(server.read().unwrap(), Message::text("hello"));
        assert_eq!(server.read().unwrap(), Message::text(""));
        assert_eq!(server.read().unwrap(), Message::text(long));
        assert_eq!(
            server.read().unwrap(),
            Message::Pong(Bytes::from_static(b"beat"))
        );
    }

    /// The server's welcome written in the same segment as its upgrade
    /// response reaches the parser, then later frames, then the Close.
    #[tokio::test]
    async fn frames_sent_with_the_upgrade_response_are_not_lost() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut request = Vec::new();
            while head_end(&request).is_none() {
                let mut chunk = [0; 1024];
                let n = server.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let accept = derive_accept_key(key.trim().as_bytes());
            let mut reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            reply.extend_from_slice(&[text("* welcome"), text("* rules")].concat());
            server.write_all(&reply).await.unwrap();
            // The client's first message, then more frames and a Close.
            let mut got = [0; 64];
            let n = server.read(&mut got).await.unwrap();
            let mut ws =
                WebSocket::from_raw_socket(Cursor::new(got[..n].to_vec()), Role::Server, None);
            assert_eq!(ws.read().unwrap(), Message::text("JOIN room me"));
            let close = frame(OpCode::Control(Control::Close), true, b"");
            server
                .write_all(&[text("me has joined"), close].concat())
                .await
                .unwrap();
            server
        });
        let target: Target = "ws://127.0.0.1:9/ws".parse().unwrap();
        let (io, early) = handshake(&target, client).await.unwrap();
        assert!(!early.is_empty());
        let (r, w) = tokio::io::split(io);
        let mut reader = WsReader::new(Box::pin(r), early);
        let mut writer = WsWriter::new(Box::pin(w));
        let mut seen = Vec::new();
        let mut take = |batch: &[u8]| {
            seen.extend_from_slice(batch);
            Ok(batch.len())
        };
        assert!(reader.next_batch(&mut take).await.unwrap());
        writer.send(b"JOIN room me\n").await.unwrap();
        while reader.next_batch(&mut take).await.unwrap() {}
        assert_eq!(seen, b"* welcome\n* rules\nme has joined\n");
        drop(server.await.unwrap());
    }
}
