//! The certificate on the real binary: generated on first run, reloaded on
//! SIGHUP without dropping anyone, kept when the new files are bad.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::WAIT;
use common::clients::{TestCert, tls_stream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tokio::time::timeout;

/// The real binary, run in `dir` with TLS only; stopped by PID on drop.
struct Binary {
    child: Child,
    tls: std::net::SocketAddr,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Binary {
    async fn start(dir: &Path, extra: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatgate"))
            .args([
                "--tcp",
                "off",
                "--http",
                "off",
                "--https",
                "off",
                "--tls",
                "127.0.0.1:0",
            ])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chatgate");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = timeout(WAIT, stdout.next_line())
            .await
            .expect("listening line in time")
            .expect("read stdout")
            .expect("a listening line");
        let tls = line
            .strip_prefix("listening tls ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        Binary { child, tls, stderr }
    }

    /// Sends a signal by PID.
    async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args([name, &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
    }

    /// Reads the log until a line containing `needle`.
    async fn wait_for_log(&mut self, needle: &str) {
        let found = async {
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                if line.contains(needle) {
                    return;
                }
            }
            panic!("log ended before {needle:?}");
        };
        timeout(WAIT, found)
            .await
            .unwrap_or_else(|_| panic!("no log line {needle:?}"));
    }
}

/// The certificate the server presents to a new connection.
async fn presented(
    addr: std::net::SocketAddr,
    trusted: &[&CertificateDer<'static>],
) -> CertificateDer<'static> {
    let stream = tls_stream(addr, trusted).await.expect("tls handshake");
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a certificate")[0].clone()
}

/// Reads lines from a TLS stream until `wanted`.
async fn expect_line<S: tokio::io::AsyncBufRead + Unpin>(reader: &mut S, wanted: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        timeout(WAIT, reader.read_line(&mut line))
            .await
            .expect("a line in time")
            .expect("read");
        assert!(!line.is_empty(), "closed before {wanted:?}");
        if line.trim_end() == wanted {
            return;
        }
    }
}

#[tokio::test]
async fn first_run_generates_a_private_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Binary::start(dir.path(), &[]).await;
    let cert_path = dir.path().join("state/cert.pem");
    let key_path = dir.path().join("state/key.pem");
    let mode = std::fs::metadata(&key_path)
        .expect("key written")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let cert = CertificateDer::from_pem_file(&cert_path).expect("a PEM certificate");
    // Trusting exactly that file, a client verifies the server as localhost.
    assert_eq!(presented(server.tls, &[&cert]).await, cert);
    server.wait_for_log("sha256=").await;

    // The next run reuses the pair rather than making a new one.
    drop(server);
    let again = Binary::start(dir.path(), &[]).await;
    assert_eq!(presented(again.tls, &[&cert]).await, cert);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let test_cert = TestCert::new();
    let old = test_cert.der.clone();
    let flags = test_cert.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Binary::start(test_cert.dir.path(), &flags).await;

    let stream = tls_stream(server.tls, &[&old]).await.expect("tls");
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    write.write_all(b"JOIN r early\n").await.expect("send");
    expect_line(&mut read, "early has joined").await;

    let new = TestCert::write_new_pair(&test_cert.cert_path(), &test_cert.key_path());
    server.signal("-HUP").await;
    server.wait_for_log("certificate reloaded").await;
    assert_eq!(presented(server.tls, &[&old, &new]).await, new);

    write.write_all(b"still here\n").await.expect("send");
    expect_line(&mut read, "early: still here").await;

    // A broken file is refused and the pair in use stays.
    std::fs::write(test_cert.cert_path(), "not a certificate").expect("write");
    server.signal("-HUP").await;
    server.wait_for_log("certificate reload failed").await;
    assert_eq!(presented(server.tls, &[&old, &new]).await, new);
}
