//! How one stamped message goes on the wire.

use crate::protocol::nats;
use crate::stamp::Stamp;

/// The protocol-specific framing of a sender's messages.
#[derive(Debug, Clone)]
pub enum Encoder {
    /// A chat line: `<payload>\n`.
    Chat,
    /// `PUB <subject> <len>\r\n<payload>\r\n`.
    Nats {
        /// The room's subject.
        subject: String,
    },
}

impl Encoder {
    /// Appends one message carrying `stamp`, its payload `size` bytes.
    pub fn message(&self, stamp: &Stamp, size: usize, out: &mut Vec<u8>) {
        match self {
            Encoder::Chat => {
                stamp.write(size, out);
                out.push(b'\n');
            }
            Encoder::Nats { subject } => {
                nats::encode_pub_start(out, subject, stamp.payload_len(size));
                stamp.write(size, out);
                nats::encode_pub_end(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_nats_framing() {
        let stamp = Stamp {
            sender: 1,
            seq: 2,
            nanos: 3,
        };
        let mut out = Vec::new();
        Encoder::Chat.message(&stamp, 8, &mut out);
        assert_eq!(out, b"1:2:3:xx\n");
        out.clear();
        let nats = Encoder::Nats {
            subject: "room.0".into(),
        };
        nats.message(&stamp, 8, &mut out);
        assert_eq!(out, b"PUB room.0 8\r\n1:2:3:xx\r\n");
        out.clear();
        nats.message(&stamp, 2, &mut out);
        assert_eq!(out, b"PUB room.0 6\r\n1:2:3:\r\n");
    }
}
