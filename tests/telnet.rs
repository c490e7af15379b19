//! The real `telnet` client, typed into one key at a time under a
//! pseudo-terminal, as a person at a terminal would: in its default line
//! mode, where it sends a whole line ended by `\r\n`, and in character
//! mode, where every key goes out as it is typed and Enter goes out as
//! `\r\0` (RFC 854), after `IAC DO SGA` and `IAC DO ECHO`.
//!
//! Requires the `telnet` program (Debian package `telnet`); without it the
//! tests are skipped, except under CI, where they fail.

#![cfg(unix)]

mod common;

use common::ServerLines;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use chatgate::server::ListenerKind;
use common::{TestServer, WAIT};
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{InputModes, LocalModes};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout_at};

/// telnet's escape character, Ctrl-] : it opens the `telnet>` prompt.
const ESCAPE: u8 = 0x1d;

/// Time between two keys. Only to type as a person does, each key its own
/// write; nothing waits on it, and the lines expected are the same at any
/// pace.
const KEY_PACE: Duration = Duration::from_millis(10);

/// A telnet client running on a pseudo-terminal.
struct Telnet {
    /// Killed when the test ends, whatever happens.
    _child: Child,
    /// The terminal's master side: keys are written to it, and its settings
    /// are the terminal's.
    master: File,
    /// What telnet prints, as read from the master side by a thread.
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Printed, not yet matched by [`Telnet::expect`].
    seen: Vec<u8>,
}

impl Telnet {
    /// Starts `telnet 127.0.0.1 PORT` on a new pseudo-terminal. `None` when
    /// there is no telnet program, which only outside CI is allowed.
    fn start(server: &TestServer) -> Option<Telnet> {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)
            .expect("open a pseudo-terminal");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        let terminal: OwnedFd = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the terminal side");
        let port = server.addr(ListenerKind::Tcp).port().to_string();
        let stdio = || Stdio::from(terminal.try_clone().expect("dup terminal"));
        let spawned = Command::new("telnet")
            .args(["127.0.0.1", &port])
            .env("TERM", "dumb")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        // Only telnet holds the terminal side now: once it is gone, reading
        // the master side ends.
        drop(terminal);
        let child = common::tool(spawned, "telnet")?;
        let master = File::from(master);
        let mut reader = master.try_clone().expect("dup master");
        let (tx, output) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            // Ends with an error (EIO) or 0 once telnet has exited.
            while let Ok(n @ 1..) = reader.read(&mut chunk) {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Some(Telnet {
            _child: child,
            master,
            output,
            seen: Vec::new(),
        })
    }

    /// Waits until telnet has printed `text`, and forgets everything printed
    /// up to its end.
    async fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .seen
                .windows(text.len())
                .position(|w| w == text.as_bytes());
            if let Some(at) = found {
                self.seen.drain(..at + text.len());
                return;
            }
            match timeout_at(deadline, self.output.recv()).await {
                Ok(Some(bytes)) => self.seen.extend(bytes),
                Ok(None) => panic!(
                    "telnet ended without printing {text:?}; it printed {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Err(_) => panic!(
                    "telnet did not print {text:?} within {WAIT:?}; it printed {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Types `keys`, one write per key.
    async fn type_keys(&mut self, keys: &[u8]) {
        for key in keys {
            self.master.write_all(&[*key]).expect("type a key");
            sleep(KEY_PACE).await;
        }
    }

    /// `^]`, then `mode character` and Enter at the `telnet>` prompt; returns
    /// once the terminal is in character mode.
    async fn character_mode(&mut self) {
        self.type_keys(&[ESCAPE]).await;
        self.expect("telnet> ").await;
        self.type_keys(b"mode character\r").await;
        // telnet prints nothing when it switches, so its terminal settings
        // are the only sign: no line editing, and a typed Enter reaches
        // telnet as `\r` (not turned into `\n`), which it sends as `\r\0`.
        // Polled, and bounded by WAIT.
        let deadline = Instant::now() + WAIT;
        loop {
            let termios = rustix::termios::tcgetattr(&self.master).expect("tcgetattr");
            if !termios.local_modes.contains(LocalModes::ICANON)
                && !termios.input_modes.contains(InputModes::ICRNL)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "telnet did not switch to character mode within {WAIT:?}"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A member already in `den` over raw TCP watches `tom`, typing in telnet,
/// join and say hello; telnet shows the same lines.
async fn telnet_user_joins_and_says_hello(character_mode: bool) {
    let server = TestServer::start(&[]).await;
    let mut ann = server.join("den", "ann").await;
    let Some(mut telnet) = Telnet::start(&server) else {
        return;
    };
    telnet.expect("Welcome! Use the command:\r\n").await;
    telnet.expect("JOIN <ROOMNAME> <USERNAME>\r\n").await;
    if character_mode {
        telnet.character_mode().await;
    }
    telnet.type_keys(b"JOIN den tom\r").await;
    ann.expect_line("tom has joined").await;
    telnet.expect("tom has joined\r\n").await;
    telnet.type_keys(b"hello\r").await;
    ann.expect_line("tom: hello").await;
    telnet.expect("tom: hello\r\n").await;
    ann.send_line("hi tom").await;
    ann.expect_line("ann: hi tom").await;
    telnet.expect("ann: hi tom\r\n").await;
}

#[tokio::test]
async fn telnet_in_line_mode_joins_and_talks() {
    telnet_user_joins_and_says_hello(false).await;
}

#[tokio::test]
async fn telnet_in_character_mode_joins_and_talks_key_by_key() {
    telnet_user_joins_and_says_hello(true).await;
}
