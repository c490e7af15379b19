//! The chat page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a server started in this process, with telnet-
//! and TLS-style users on plain sockets in the same rooms.
//!
//! Each test starts its own chromedriver, which starts the browsers; when
//! the test ends, pass or fail, the whole process group chromedriver leads
//! is stopped by its id. The tests take turns, since a browser is heavy on
//! a small machine. Waits poll the page for what a user would see, up to
//! [`PATIENCE`]; nothing sleeps a fixed time.
//!
//! Without `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`) the tests skip with a loud message, and fail when
//! `CI=true`. `CHROMIUM` and `CHROMEDRIVER` name other binaries.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatgate::Config;
use chatgate::server::{ListenerKind, Server};
use clap::Parser;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader as AsyncBufReader,
};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// How long anything a user expects may take to show. Generous for a busy
/// two-core machine; a passing run waits far less.
const PATIENCE: Duration = Duration::from_secs(20);

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// The browser window for most tests: a small laptop screen.
const WINDOW: (u32, u32) = (1000, 640);

/// Held by the running test, so browsers start one test at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the server -----------------------------------------------------------

/// A chatgate server running in this process.
struct TestServer {
    addrs: Vec<(ListenerKind, SocketAddr)>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts the listeners in `on` on 127.0.0.1 (any free port) and turns
    /// the others off.
    async fn start(on: &[ListenerKind]) -> TestServer {
        TestServer::start_with_web_port(on, 0).await
    }

    /// Like [`TestServer::start`], with the page's listener on `web_port`.
    async fn start_with_web_port(on: &[ListenerKind], web_port: u16) -> TestServer {
        TestServer::start_with_flags(on, web_port, &[]).await
    }

    /// Like [`TestServer::start_with_web_port`], with more command-line
    /// flags.
    async fn start_with_flags(on: &[ListenerKind], web_port: u16, flags: &[&str]) -> TestServer {
        let listen = |kind, port: u16| {
            if on.contains(&kind) {
                format!("127.0.0.1:{port}")
            } else {
                "off".to_owned()
            }
        };
        let config = Config::parse_from(
            [
                "chatgate".to_owned(),
                format!("--tcp={}", listen(ListenerKind::Tcp, 0)),
                format!("--tls={}", listen(ListenerKind::Tls, 0)),
                format!("--http={}", listen(ListenerKind::Http, web_port)),
                format!("--https={}", listen(ListenerKind::Https, web_port)),
            ]
            .into_iter()
            .chain(flags.iter().map(|&flag| flag.to_owned())),
        );
        let server = Server::bind(config).await.expect("server binds");
        let addrs = server.local_addrs();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addrs,
            stop: Some(stop),
            task,
        }
    }

    fn addr(&self, kind: ListenerKind) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {} listener", kind.as_str()))
    }

    /// The page's address: `http://...` or `https://...`.
    fn page_url(&self, kind: ListenerKind) -> String {
        format!("{}://{}/", kind.as_str(), self.addr(kind))
    }

    /// Stops the server the way a signal does, and waits until it is gone.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly");
    }
}

// ---- telnet and TLS users -------------------------------------------------

/// A user on a line-based connection, as with telnet or `openssl s_client`.
struct LineUser<S> {
    reader: AsyncBufReader<tokio::io::ReadHalf<S>>,
    writer: tokio::io::WriteHalf<S>,
}

impl LineUser<TcpStream> {
    /// Connects over plain TCP and joins `room` as `name`.
    async fn telnet(server: &TestServer, room: &str, name: &str) -> Self {
        let stream = TcpStream::connect(server.addr(ListenerKind::Tcp))
            .await
            .expect("tcp connect");
        LineUser::join(stream, room, name).await
    }
}

impl LineUser<tokio_rustls::client::TlsStream<TcpStream>> {
    /// Connects over TLS (trusting the self-signed certificate, as a user
    /// of `openssl s_client` would) and joins `room` as `name`.
    async fn tls(server: &TestServer, room: &str, name: &str) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let tcp = TcpStream::connect(server.addr(ListenerKind::Tls))
            .await
            .expect("tls connect");
        let host = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
        let stream = TlsConnector::from(Arc::new(config))
            .connect(host, tcp)
            .await
            .expect("tls handshake");
        LineUser::join(stream, room, name).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineUser<S> {
    async fn join(stream: S, room: &str, name: &str) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let mut user = LineUser {
            reader: AsyncBufReader::new(reader),
            writer,
        };
        user.send(&format!("JOIN {room} {name}")).await;
        user.expect(&format!("{name} has joined")).await;
        user
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send a line");
    }

    /// Reads lines until `wanted` arrives.
    async fn expect(&mut self, wanted: &str) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(PATIENCE, async {
            let mut line = String::new();
            loop {
                line.clear();
                if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return false;
                }
                let line = line.trim_end_matches(['\r', '\n']);
                if line == wanted {
                    return true;
                }
                seen.push(line.to_owned());
            }
        })
        .await;
        assert_eq!(
            found,
            Ok(true),
            "waited for {wanted:?}, the connection saw {seen:?}"
        );
    }
}

/// Accepts the server's self-signed certificate, still checking that the
/// handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---- the browser ----------------------------------------------------------

/// A chromedriver process and the browsers it starts.
struct Driver {
    process: Child,
    url: String,
    chromium: PathBuf,
    /// Fresh browser profiles live here, removed with the driver.
    profiles: PathBuf,
    browsers: AtomicUsize,
}

impl Driver {
    /// Starts chromedriver on a free port, or returns `None` (after saying
    /// so loudly) when the browser is not installed and this is not CI.
    fn start() -> Option<Driver> {
        let driver = program("CHROMEDRIVER", "chromedriver");
        let chromium = program("CHROMIUM", "chromium");
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let help = "the browser tests need chromium and chromedriver \
                        (Debian: apt-get install chromium chromium-driver)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {help}"
            );
            // Straight to stderr, past the test harness's capture, so a
            // skip is seen even when the tests pass.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {help} ***\n");
            });
            return None;
        };
        // Its own process group, so stopping the group by chromedriver's id
        // also stops every browser process it started.
        let mut process = Command::new(&driver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let stdout = process.stdout.take().expect("chromedriver stdout");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        // Reads the port chromedriver chose, then drains its output until it
        // exits so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
            }
        });
        let profiles = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-profiles-{}", process.id()));
        let mut driver = Driver {
            process,
            url: String::new(),
            chromium,
            profiles,
            browsers: AtomicUsize::new(0),
        };
        let port = port_rx
            .recv_timeout(PATIENCE)
            .expect("chromedriver reports its port");
        driver.url = format!("http://127.0.0.1:{port}");
        Some(driver)
    }

    /// Opens a new browser window at `url`.
    async fn open(&self, url: &str) -> Page {
        let n = self.browsers.fetch_add(1, Ordering::Relaxed);
        let profile = self.profiles.join(n.to_string());
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-quic".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", profile.display()),
        ];
        if url.starts_with("https:") {
            args.push("--ignore-certificate-errors".to_owned());
        }
        let capabilities = json!({
            "browserName": "chrome",
            // An alert left open stays open, so a test can see it.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("browser starts");
        client.goto(url).await.expect("page loads");
        Page { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's process id.
        let group = format!("-{}", self.process.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// The first `name` on `PATH`, or the file named by the variable `var`.
fn program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Takes this test's turn with the browser, or `None` to skip the test.
async fn browser_turn() -> Option<(tokio::sync::MutexGuard<'static, ()>, Driver)> {
    let turn = TURN.lock().await;
    Some((turn, Driver::start()?))
}

/// The kind and text of every line in the message log.
const LOG_LINES: &str = "return [...document.querySelectorAll('#log li')]\
    .map(li => [li.dataset.kind, li.querySelector('.body').textContent]);";
const MEMBERS: &str = "return [...document.querySelectorAll('#member-list li')]\
    .map(li => li.dataset.name);";

/// One browser window showing the chat page.
struct Page {
    client: Client,
}

impl Page {
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// Waits until `script` returns something `ok` accepts, and returns it.
    async fn wait_for(&self, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let value = self.js(script).await;
            if ok(&value) {
                return value;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {what}; the page shows {value}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for a line of `kind` (chat, me, private, join, leave, info,
    /// note, notice or error) that reads `text`.
    async fn wait_line(&self, kind: &str, text: &str) {
        let wanted = json!([kind, text]);
        self.wait_for(&format!("{kind} line {text:?}"), LOG_LINES, |lines| {
            lines.as_array().is_some_and(|l| l.contains(&wanted))
        })
        .await;
    }

    /// Waits until the member list shows exactly `names`, in this order.
    async fn wait_members(&self, names: &[&str]) {
        let wanted = json!(names);
        self.wait_for(&format!("members {names:?}"), MEMBERS, |m| *m == wanted)
            .await;
    }

    /// Waits until the element `id` has exactly the text `text`.
    async fn wait_exact_text(&self, id: &str, text: &str) {
        let script = format!("return document.getElementById('{id}').textContent;");
        self.wait_for(&format!("#{id} to read {text:?}"), &script, |v| v == text)
            .await;
    }

    /// Waits until the element `id` has text containing `text`.
    async fn wait_text(&self, id: &str, text: &str) {
        let script = format!("return document.getElementById('{id}').textContent;");
        self.wait_for(&format!("#{id} to say {text:?}"), &script, |v| {
            v.as_str().is_some_and(|s| s.contains(text))
        })
        .await;
    }

    /// Waits until the connection state (`#status`) is `state`.
    async fn wait_state(&self, state: &str) {
        let script = "return document.getElementById('status').dataset.state;";
        self.wait_for(&format!("status {state}"), script, |v| v == state)
            .await;
    }

    async fn element(&self, id: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
    }

    /// Types into the field `id` as a user would, replacing what was there.
    async fn type_into(&self, id: &str, text: &str) {
        let field = self.element(id).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type");
    }

    /// Fills the join form and presses Enter.
    async fn submit_join(&self, room: &str, name: &str) {
        self.type_into("room", room).await;
        self.type_into("name", &(name.to_owned() + &Key::Enter))
            .await;
    }

    /// Joins from the form and waits until the room is shown.
    async fn join(&self, room: &str, name: &str) {
        self.submit_join(room, name).await;
        self.wait_state("ok").await;
        self.wait_text("room-name", room).await;
        self.wait_line("join", &format!("{name} has joined")).await;
    }

    /// Types a line into the message box and presses Enter.
    async fn say(&self, line: &str) {
        self.element("message")
            .await
            .send_keys(&(line.to_owned() + &Key::Enter))
            .await
            .expect("type a message");
    }

    /// The id of the focused element.
    async fn focused(&self) -> String {
        self.js("return document.activeElement.id;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn is_shown(&self, id: &str) -> bool {
        self.element(id)
            .await
            .is_displayed()
            .await
            .expect("visible")
    }

    /// Saves a screenshot as `target/artifacts/<name>`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

// ---- the tests ------------------------------------------------------------

#[tokio::test]
async fn browser_and_telnet_users_chat_both_ways() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("lobby", "ann").await;
    assert_eq!(
        page.focused().await,
        "message",
        "typing goes to the message box"
    );

    let mut bob = LineUser::telnet(&server, "lobby", "bob").await;
    page.wait_line("join", "bob has joined").await;
    page.wait_members(&["ann", "bob"]).await;

    page.say("hello from the browser").await;
    bob.expect("ann: hello from the browser").await;
    bob.send("hi from telnet").await;
    page.wait_line("chat", "bob: hi from telnet").await;
    bob.send("/me waves").await;
    page.wait_line("me", "* bob waves").await;
    bob.send("/msg ann are you on a phone?").await;
    page.wait_line("private", "bob (private): are you on a phone?")
        .await;
    page.say("/me smiles").await;
    bob.expect("* ann smiles").await;
    page.say("/msg bob no, a laptop").await;
    bob.expect("ann (private): no, a laptop").await;
    page.say("/who").await;
    page.wait_line("info", "*** users in lobby: ann, bob").await;

    let times = page
        .js("return [...document.querySelectorAll('#log time')].map(t => t.textContent);")
        .await;
    let times = times.as_array().expect("times");
    assert!(!times.is_empty());
    assert!(
        times.iter().all(|t| t
            .as_str()
            .is_some_and(|t| t.chars().any(|c| c.is_ascii_digit()))),
        "every line shows its arrival time: {times:?}"
    );
    page.screenshot("chat.png").await;
}

#[tokio::test]
async fn two_browsers_and_a_tls_user_share_a_room() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tls, ListenerKind::Http]).await;
    let url = server.page_url(ListenerKind::Http);
    let ann = driver.open(&url).await;
    let cid = driver.open(&url).await;
    ann.join("den", "ann").await;
    cid.join("den", "cid").await;
    let mut dora = LineUser::tls(&server, "den", "dora").await;
    for page in [&ann, &cid] {
        page.wait_members(&["ann", "cid", "dora"]).await;
    }

    ann.say("one from ann").await;
    cid.wait_line("chat", "ann: one from ann").await;
    dora.expect("ann: one from ann").await;
    cid.say("two from cid").await;
    ann.wait_line("chat", "cid: two from cid").await;
    dora.expect("cid: two from cid").await;
    dora.send("three from dora over TLS").await;
    for page in [&ann, &cid] {
        page.wait_line("chat", "dora: three from dora over TLS")
            .await;
    }
}

#[tokio::test]
async fn markup_in_messages_shows_as_text_and_runs_nothing() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("lobby", "ann").await;
    let mut eve = LineUser::telnet(&server, "lobby", "eve").await;

    let attack = "<img src=x onerror=alert(1)>";
    eve.send(attack).await;
    eve.send(&format!("/me {attack}")).await;
    eve.send(&format!("/msg ann {attack}")).await;
    page.say(&format!("<script>alert(2)</script>{attack}"))
        .await;
    page.wait_line("chat", &format!("eve: {attack}")).await;
    page.wait_line("me", &format!("* eve {attack}")).await;
    page.wait_line("private", &format!("eve (private): {attack}"))
        .await;
    page.wait_line("chat", &format!("ann: <script>alert(2)</script>{attack}"))
        .await;
    eve.expect(&format!("ann: <script>alert(2)</script>{attack}"))
        .await;

    let made = page
        .js("return document.querySelectorAll('#log img, #log script').length;")
        .await;
    assert_eq!(made, json!(0), "no element was made from a message");
    let alert = page.client.get_alert_text().await;
    assert!(
        alert.as_ref().is_err_and(|e| e.is_no_such_alert()),
        "no dialog opened: {alert:?}"
    );
}

#[tokio::test]
async fn member_list_follows_joins_leaves_and_room_changes() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let mut bob = LineUser::telnet(&server, "hall", "bob").await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("hall", "ann").await;
    page.wait_members(&["ann", "bob"]).await;

    let cid = LineUser::telnet(&server, "hall", "cid").await;
    page.wait_members(&["ann", "bob", "cid"]).await;
    bob.send("/quit").await;
    page.wait_line("leave", "bob has left").await;
    page.wait_members(&["ann", "cid"]).await;
    drop(cid);
    page.wait_members(&["ann"]).await;
    page.wait_text("member-count", "1").await;

    let mut dan = LineUser::telnet(&server, "patio", "dan").await;
    page.say("/join patio").await;
    dan.expect("ann has joined").await;
    page.wait_text("room-name", "patio").await;
    page.wait_members(&["ann", "dan"]).await;
    dan.send("welcome to the patio").await;
    page.wait_line("chat", "dan: welcome to the patio").await;
}

#[tokio::test]
async fn taken_name_shows_the_error_and_another_name_works() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let mut ann = LineUser::telnet(&server, "r1", "ann").await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;

    // Five refusals in a row: the server closes after the fifth, and the
    // page must still take the next try without a reload.
    for name in ["ANN", "Ann", "aNn", "anN", "ann"] {
        page.submit_join("r1", name).await;
        page.wait_text("join-error", "name taken").await;
        assert!(page.is_shown("join-form").await, "the form stays up");
        assert_eq!(page.focused().await, "name", "ready to type another name");
    }
    page.submit_join("r1", "bad name").await;
    page.wait_text("join-error", "A-Z a-z 0-9").await;

    page.join("r1", "ann2").await;
    ann.expect("ann2 has joined").await;
    page.wait_members(&["ann", "ann2"]).await;
    assert!(!page.is_shown("join-form").await);
}

#[tokio::test]
async fn page_over_https_talks_over_wss() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Https]).await;
    let page = driver.open(&server.page_url(ListenerKind::Https)).await;
    assert_eq!(page.js("return location.protocol;").await, json!("https:"));
    // With no plain HTTP listener, only wss:// can reach the server.
    page.join("secure", "ann").await;
    let mut bob = LineUser::telnet(&server, "secure", "bob").await;
    page.say("over wss").await;
    bob.expect("ann: over wss").await;
    bob.send("over telnet").await;
    page.wait_line("chat", "bob: over telnet").await;
}

#[tokio::test]
async fn page_reconnects_and_rejoins_after_server_restart() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let first = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let web_port = first.addr(ListenerKind::Http).port();
    let page = driver.open(&first.page_url(ListenerKind::Http)).await;
    page.join("r", "ann").await;

    first.stop().await;
    page.wait_line("notice", "*** server shutting down").await;
    page.wait_state("down").await;
    page.wait_text("status", "Reconnecting").await;

    let second =
        TestServer::start_with_web_port(&[ListenerKind::Tcp, ListenerKind::Http], web_port).await;
    page.wait_line("note", "Reconnected.").await;
    page.wait_state("ok").await;
    let mut bob = LineUser::telnet(&second, "r", "bob").await;
    page.wait_members(&["ann", "bob"]).await;
    bob.send("/who").await;
    bob.expect("*** users in r: ann, bob").await;
    bob.send("welcome back").await;
    page.wait_line("chat", "bob: welcome back").await;
    page.say("thanks").await;
    bob.expect("ann: thanks").await;
}

#[tokio::test]
async fn quit_leaves_the_room_and_shows_the_form_again() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let mut bob = LineUser::telnet(&server, "lobby", "bob").await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("lobby", "ann").await;
    page.say("/quit").await;
    bob.expect("ann has left").await;
    page.wait_text("status", "Left").await;
    assert!(page.is_shown("join-form").await);
    let name = page
        .element("name")
        .await
        .prop("value")
        .await
        .expect("name");
    assert_eq!(
        name.as_deref(),
        Some("ann"),
        "the name is kept for next time"
    );

    page.submit_join("lobby", "ann").await;
    bob.expect("ann has joined").await;
    page.wait_state("ok").await;
}

#[tokio::test]
async fn narrow_window_wraps_long_lines_and_follows_new_ones() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.client
        .set_window_size(390, 780)
        .await
        .expect("phone-sized window");
    page.join("lobby", "ann").await;
    let mut bob = LineUser::telnet(&server, "lobby", "bob").await;

    let long = "x".repeat(500);
    bob.send(&format!("no spaces here: {long}")).await;
    for n in 0..30 {
        bob.send(&format!("line {n}")).await;
    }
    page.wait_line("chat", "bob: line 29").await;
    let fits = "const d = document.documentElement, log = document.getElementById('log');\
        return d.scrollWidth <= d.clientWidth && log.scrollWidth <= log.clientWidth;";
    assert_eq!(page.js(fits).await, json!(true), "nothing scrolls sideways");
    let newest_visible = "const log = document.getElementById('log');\
        return log.scrollHeight - log.scrollTop - log.clientHeight < 2;";
    page.wait_for("the log to follow the newest line", newest_visible, |v| {
        *v == json!(true)
    })
    .await;
    assert!(
        page.is_shown("message").await,
        "the input line is on screen"
    );
    page.screenshot("chat-phone.png").await;

    // A reader who scrolled up keeps their place and is told of new lines.
    page.js("document.getElementById('log').scrollTop = 0; return null;")
        .await;
    page.wait_for(
        "the log to stay scrolled up",
        "return document.getElementById('log').scrollTop;",
        |v| *v == json!(0),
    )
    .await;
    bob.send("while you were reading").await;
    page.wait_line("chat", "bob: while you were reading").await;
    assert_eq!(
        page.js("return document.getElementById('log').scrollTop;")
            .await,
        json!(0)
    );
    assert!(page.is_shown("jump").await, "a button offers the new lines");
    page.element("jump").await.click().await.expect("click");
    page.wait_for("the log to jump to the end", newest_visible, |v| {
        *v == json!(true)
    })
    .await;
}

/// How the newest log line reading `body` is shown: its kind, its classes
/// and the computed font style of its body, or null when there is none.
fn shown_as(body: &str) -> String {
    format!(
        "const li = [...document.querySelectorAll('#log li')].reverse()\
             .find(li => li.querySelector('.body').textContent === {body});\
         if (!li) return null;\
         return {{ kind: li.dataset.kind, server: li.classList.contains('server'),\
             italic: getComputedStyle(li.querySelector('.body')).fontStyle === 'italic' }};",
        body = json!(body)
    )
}

#[tokio::test]
async fn me_lines_and_server_answers_differ_and_no_me_fills_the_member_list() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    // Named so that its own `/me in den: ...` reads `* users in den: ...`,
    // which was a `/who` answer in version 1 of the protocol.
    page.join("den", "users").await;
    let mut eve = LineUser::telnet(&server, "den", "eve").await;
    page.wait_members(&["eve", "users"]).await;
    page.js("window.everListed = new Set();\
         new MutationObserver(() => document.querySelectorAll('#member-list li')\
             .forEach(li => window.everListed.add(li.dataset.name)))\
             .observe(document.getElementById('member-list'), { childList: true });\
         return null;")
        .await;

    eve.send("/me users in den: x").await;
    page.wait_line("me", "* eve users in den: x").await;
    // Both lines leave in one task, so the `/me` comes back while the page
    // waits for its `/who` answer: the moment a look-alike could pass as one.
    page.js("const form = document.getElementById('send-form'),\
             box = document.getElementById('message');\
         box.value = '/me in den: users, x'; form.requestSubmit();\
         box.value = '/who'; form.requestSubmit();\
         return null;")
        .await;
    eve.expect("* users in den: users, x").await;
    page.wait_line("me", "* users in den: users, x").await;
    page.wait_line("info", "*** users in den: eve, users").await;
    eve.send("/me users in den (first 1 of 1): x").await;
    eve.send("done").await;
    page.wait_line("chat", "eve: done").await;
    page.wait_members(&["eve", "users"]).await;
    page.wait_exact_text("member-count", "2").await;
    let listed = page.js("return [...window.everListed];").await;
    assert!(
        !listed.as_array().expect("names").iter().any(|n| n == "x"),
        "a /me line put a name in the member list: {listed}"
    );

    let me = page.js(&shown_as("* users in den: users, x")).await;
    let who = page.js(&shown_as("*** users in den: eve, users")).await;
    assert_eq!(
        me,
        json!({ "kind": "me", "server": false, "italic": true }),
        "a /me line is shown as a user's action"
    );
    assert_eq!(
        who,
        json!({ "kind": "info", "server": true, "italic": false }),
        "a *** line is shown as the server's"
    );
    let who_in_me = page
        .js(
            "return [...document.querySelectorAll('#log li[data-kind=me] .who')]\
             .map(b => b.textContent);",
        )
        .await;
    assert_eq!(who_in_me, json!(["eve", "users", "eve"]));
}

/// For every `kind` line in the log: whether its text is an isolated run
/// with its own direction, after the name in the DOM and on screen, and
/// free of bidi controls.
const ISOLATION: &str = "const kind = arguments[0];\
    return [...document.querySelectorAll(`#log li[data-kind=${kind}]`)].map(li => {\
        const who = li.querySelector('.who'), text = li.querySelector('.text');\
        if (!who || !text) return null;\
        return {\
            dir: text.getAttribute('dir'),\
            unicodeBidi: getComputedStyle(text).unicodeBidi,\
            nameInside: text.contains(who),\
            nameFirst: !!(who.compareDocumentPosition(text) & Node.DOCUMENT_POSITION_FOLLOWING),\
            nameLeftOfText: who.getBoundingClientRect().right\
                <= text.getBoundingClientRect().left + 0.5,\
            controls: /[\\u202a-\\u202e\\u2066-\\u2069]/.test(text.textContent),\
        };\
    });";

#[tokio::test]
async fn right_to_left_text_cannot_move_the_name() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("lobby", "ann").await;
    let mut bob = LineUser::telnet(&server, "lobby", "bob").await;
    page.wait_members(&["ann", "bob"]).await;

    // The override would turn the rest of the line around; the server
    // drops it, and the Hebrew alone must not pull the name after it.
    let sent = "\u{202E}שלום עולם: 1, 2, 3";
    let shown = "שלום עולם: 1, 2, 3";
    bob.send(sent).await;
    bob.send(&format!("/me {sent}")).await;
    bob.send(&format!("/msg ann {sent}")).await;
    page.wait_line("chat", &format!("bob: {shown}")).await;
    page.wait_line("me", &format!("* bob {shown}")).await;
    page.wait_line("private", &format!("bob (private): {shown}"))
        .await;

    let expected = json!([{
        "dir": "auto",
        "unicodeBidi": "isolate",
        "nameInside": false,
        "nameFirst": true,
        "nameLeftOfText": true,
        "controls": false,
    }]);
    for kind in ["chat", "me", "private"] {
        let found = page
            .client
            .execute(ISOLATION, vec![json!(kind)])
            .await
            .expect("inspect the log");
        assert_eq!(found, expected, "the {kind} line");
    }
    page.screenshot("chat-rtl.png").await;
}

/// Users in the big room besides the page; more than `/who` lists.
const FLEET: usize = 110;

#[tokio::test]
async fn member_list_of_a_room_over_100_holds_the_first_100_and_counts_all() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    // Every user comes from 127.0.0.1, past the default per-address cap.
    let server = TestServer::start_with_flags(
        &[ListenerKind::Tcp, ListenerKind::Http],
        0,
        &["--max-per-ip=0"],
    )
    .await;
    let mut fleet = Vec::with_capacity(FLEET);
    for n in 0..FLEET {
        fleet.push(LineUser::telnet(&server, "crowd", &format!("u{n:03}")).await);
    }
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    // "zed" sorts after every fleet name, so the page's own name is not
    // among the 100 that `/who` lists.
    page.join("crowd", "zed").await;

    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("u{n:03}")).collect()
    };
    let with = |mut list: Vec<String>, extra: &[&str]| -> Vec<String> {
        list.extend(extra.iter().map(|&n| n.to_owned()));
        list.sort();
        list
    };
    let wait_list = async |list: &[String], total: usize, more: &str| {
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        page.wait_members(&list).await;
        page.wait_exact_text("member-count", &total.to_string())
            .await;
        page.wait_exact_text("member-more", more).await;
    };
    let unlisted = FLEET - 100;
    wait_list(
        &with(names(0..100), &["zed"]),
        FLEET + 1,
        &format!("and {unlisted} more"),
    )
    .await;
    assert!(page.is_shown("member-more").await);

    // A listed member leaves: one name fewer. An unlisted one: the count
    // alone goes down. A newcomer is listed by name.
    fleet[0].send("/quit").await;
    page.wait_line("leave", "u000 has left").await;
    wait_list(
        &with(names(1..100), &["zed"]),
        FLEET,
        &format!("and {unlisted} more"),
    )
    .await;
    fleet[FLEET - 1].send("/quit").await;
    page.wait_line("leave", &format!("u{:03} has left", FLEET - 1))
        .await;
    let unlisted = unlisted - 1;
    wait_list(
        &with(names(1..100), &["zed"]),
        FLEET - 1,
        &format!("and {unlisted} more"),
    )
    .await;
    let _newcomer = LineUser::telnet(&server, "crowd", "a1").await;
    page.wait_line("join", "a1 has joined").await;
    let after = with(names(1..100), &["a1", "zed"]);
    wait_list(&after, FLEET, &format!("and {unlisted} more")).await;

    // The server's own count and first 100 agree with what the page kept.
    page.say("/who").await;
    let first = with(names(1..100), &["a1"]).join(", ");
    page.wait_line(
        "info",
        &format!("*** users in crowd (first 100 of {FLEET}): {first}"),
    )
    .await;
    wait_list(&after, FLEET, &format!("and {unlisted} more")).await;
}

/// The log as `[kind, text]` pairs, in order.
async fn log_lines(page: &Page) -> Vec<(String, String)> {
    let lines = page.js(LOG_LINES).await;
    lines
        .as_array()
        .expect("log lines")
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap_or_default().to_owned(),
                l[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Has the server drop the page's connection: a message over the line
/// limit makes it close with 1009, and since the page did not ask to
/// leave, it reconnects by itself, as after a network change.
async fn drop_connection(page: &Page) {
    page.js("ws.send('x'.repeat(30000)); return null;").await;
    page.wait_line("note", "Connection lost.").await;
}

#[tokio::test]
async fn joining_shows_what_the_room_said_before_with_its_times() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let mut bob = LineUser::telnet(&server, "r", "bob").await;
    for line in ["one", "two", "three"] {
        bob.send(line).await;
        bob.expect(&format!("bob: {line}")).await;
    }
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("r", "ann").await;
    page.wait_line("chat", "bob: three").await;
    bob.send("now").await;
    page.wait_line("chat", "bob: now").await;
    let log = log_lines(&page).await;
    let texts: Vec<&str> = log.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "ann has joined",
            "Earlier in r:",
            "bob: one",
            "bob: two",
            "bob: three",
            "bob: now"
        ]
    );
    // Each line shows when the server received it, in the viewer's zone:
    // the history's times are the server's, not the moment they arrived.
    let times = page
        .js("return [...document.querySelectorAll('#log time')].map(t => t.dateTime);")
        .await;
    let times: Vec<&str> = times
        .as_array()
        .expect("times")
        .iter()
        .map(|t| t.as_str().expect("a time"))
        .collect();
    assert!(
        times[2] <= times[0],
        "history is from before the join: {times:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_what_was_missed_exactly_once() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start(&[ListenerKind::Tcp, ListenerKind::Http]).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("r", "ann").await;
    let mut bob = LineUser::telnet(&server, "r", "bob").await;
    bob.send("before").await;
    page.wait_line("chat", "bob: before").await;

    drop_connection(&page).await;
    bob.expect("ann has left").await;
    bob.send("while you were away").await;
    bob.send("/me waits").await;
    bob.expect("ann has joined").await;
    page.wait_line("note", "Reconnected.").await;
    bob.send("after").await;
    page.wait_line("chat", "bob: after").await;

    let log = log_lines(&page).await;
    let said: Vec<&str> = log
        .iter()
        .filter(|(kind, _)| kind == "chat" || kind == "me")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        said,
        [
            "bob: before",
            "bob: while you were away",
            "* bob waits",
            "bob: after"
        ]
    );
    assert!(
        !log.iter().any(|(_, t)| t.contains("no longer kept")),
        "nothing was missing: {log:?}"
    );
}

#[tokio::test]
async fn a_gap_longer_than_history_is_said_to_be_incomplete() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start_with_flags(
        &[ListenerKind::Tcp, ListenerKind::Http],
        0,
        &["--history", "2"],
    )
    .await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("r", "ann").await;
    let mut bob = LineUser::telnet(&server, "r", "bob").await;
    bob.send("before").await;
    page.wait_line("chat", "bob: before").await;

    drop_connection(&page).await;
    bob.expect("ann has left").await;
    for i in 1..=5 {
        bob.send(&format!("gap {i}")).await;
    }
    bob.expect("ann has joined").await;
    page.wait_line(
        "note",
        "Some messages sent while you were away are no longer kept and cannot be shown.",
    )
    .await;
    page.wait_line("chat", "bob: gap 5").await;
    let log = log_lines(&page).await;
    let said: Vec<&str> = log
        .iter()
        .filter(|(kind, _)| kind == "chat")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(said, ["bob: before", "bob: gap 4", "bob: gap 5"]);
}

#[tokio::test]
async fn with_history_off_the_page_still_shows_what_is_said() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let server = TestServer::start_with_flags(
        &[ListenerKind::Tcp, ListenerKind::Http],
        0,
        &["--history", "0"],
    )
    .await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("r", "ann").await;
    let mut bob = LineUser::telnet(&server, "r", "bob").await;
    bob.send("hello").await;
    page.wait_line("chat", "bob: hello").await;
    // The page's own /history was refused; it says nothing about it.
    let log = log_lines(&page).await;
    assert!(
        !log.iter().any(|(kind, _)| kind == "error"),
        "an error was shown: {log:?}"
    );
}

/// A built example plugin copied into `dir` with `settings` beside it.
fn example_plugin(dir: &Path, name: &str, settings: &str) -> String {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/out")
        .join(format!("{name}.wasm"));
    assert!(
        built.exists(),
        "{}: plugins/build makes it (the test command runs it first)",
        built.display()
    );
    let path = dir.join(format!("{name}.wasm"));
    std::fs::copy(&built, &path).expect("copy the plugin");
    std::fs::write(dir.join(format!("{name}.toml")), settings).expect("settings");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test]
async fn a_browser_and_a_telnet_user_meet_the_word_filter_and_the_dice_bot() {
    let Some((_turn, driver)) = browser_turn().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let filter = example_plugin(dir.path(), "word-filter", "[settings]\nwords = \"darn\"\n");
    let dice = example_plugin(dir.path(), "dice", "");
    let state = dir.path().join("state");
    let flags = [
        "--plugin",
        &filter,
        "--plugin",
        &dice,
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ];
    let server =
        TestServer::start_with_flags(&[ListenerKind::Tcp, ListenerKind::Http], 0, &flags).await;
    let page = driver.open(&server.page_url(ListenerKind::Http)).await;
    page.join("lobby", "ann").await;
    let mut bob = LineUser::telnet(&server, "lobby", "bob").await;
    page.wait_members(&["ann", "bob"]).await;

    page.say("darn this").await;
    bob.expect("ann: **** this").await;
    page.wait_line("chat", "ann: **** this").await;
    bob.send("/roll 1d6").await;
    page.wait_for("the dice bot's line", LOG_LINES, |lines| {
        lines.as_array().is_some_and(|lines| {
            lines.iter().any(|l| {
                l[0] == "chat"
                    && l[1]
                        .as_str()
                        .is_some_and(|t| t.starts_with("dice: bob rolls 1d6: "))
            })
        })
    })
    .await;
    page.say("/roll 2d6").await;
    bob.send("/who").await;
    bob.expect("*** users in lobby: ann, bob").await;
    server.stop().await;
}
