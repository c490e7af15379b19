//! SIGHUP on a real server process: the configuration file and the bans
//! file are read again; operators, limits and bans change at once, and a
//! setting that needs a restart is logged as such.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use common::{Client, ServerLines, WELCOME, error};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `NAME:HASH` for `--operator`, with argon2's smallest costs.
fn operator(name: &str, password: &str) -> String {
    let params = Params::new(8, 1, 1, None).expect("params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"reload test salt").expect("salt");
    let hash = argon2
        .hash_password(password.as_bytes(), &salt)
        .expect("hash");
    format!("{name}:{hash}")
}

#[tokio::test]
async fn sighup_applies_operators_limits_and_bans_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("chatgate.toml");
    let state = dir.path().join("state");
    let write_config = |extra: &str| {
        let text = format!(
            "tcp = \"127.0.0.1:0\"\ntls = \"off\"\nhttp = \"off\"\nhttps = \"off\"\nstate-dir = \"{}\"\n{extra}",
            state.display()
        );
        std::fs::write(&config, text).expect("write config");
    };
    write_config(&format!("operator = [\"{}\"]\n", operator("root", "first")));
    let mut process = Command::new(env!("CARGO_BIN_EXE_chatgate"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatgate");
    let mut stdout = BufReader::new(process.stdout.take().expect("stdout")).lines();
    let mut log = BufReader::new(process.stderr.take().expect("stderr")).lines();
    let line = stdout.next_line().await.expect("read").expect("a line");
    let addr: SocketAddr = line
        .strip_prefix("listening tcp ")
        .expect("listening tcp")
        .parse()
        .expect("address");

    let mut first = Client::connect_from(addr, Ipv4Addr::new(127, 0, 0, 2)).await;
    first.expect_lines(&WELCOME).await;
    write_config(&format!(
        "operator = [\"{}\"]\nmax-per-ip = 1\nhistory = 5\n",
        operator("boss", "second")
    ));
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(
        state.join("bans.json"),
        r#"{"version": 1, "bans": [{"target": "127.0.0.9", "by": "root", "reason": "edited by hand"}]}"#,
    )
    .expect("write bans");
    let pid =
        rustix::process::Pid::from_raw(process.id().expect("pid") as i32).expect("a live process");
    let hup = || {
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
    };
    hup();
    let restart = common::log_until(&mut log, "take effect only after a restart").await;
    assert!(restart.contains("history"), "{restart}");
    assert!(!restart.contains("max-per-ip"), "{restart}");

    // The new operator, and only the new one.
    let mut other = Client::connect_from(addr, Ipv4Addr::new(127, 0, 0, 3)).await;
    other.expect_lines(&WELCOME).await;
    other.send_line("/oper boss second").await;
    other.expect_line("*** you are now an operator").await;
    // The new limit: 127.0.0.2 already holds its one connection.
    let mut second = Client::connect_from(addr, Ipv4Addr::new(127, 0, 0, 2)).await;
    second
        .expect_line(&error("too many connections from your address"))
        .await;
    // The ban written into the file.
    let mut banned = Client::connect_from(addr, Ipv4Addr::new(127, 0, 0, 9)).await;
    banned.expect_line(&error("banned: edited by hand")).await;
    other.send_line("/bans").await;
    other
        .expect_line("*** bans: 127.0.0.9 (until unbanned)")
        .await;

    // Back to the history the server runs with: nothing needs a restart
    // any more. The next reload (a new rate) shows it: no restart line
    // comes between the two.
    write_config(&format!(
        "operator = [\"{}\"]\nmax-per-ip = 1\n",
        operator("boss", "second")
    ));
    hup();
    common::log_until(&mut log, "settings reloaded").await;
    write_config(&format!(
        "operator = [\"{}\"]\nmax-per-ip = 1\nrate = 7\n",
        operator("boss", "second")
    ));
    hup();
    let lines = common::log_lines_until(&mut log, "settings reloaded").await;
    assert!(lines.iter().all(|l| !l.contains("restart")), "{lines:#?}");
    assert!(
        lines.last().is_some_and(|l| l.contains("rate")),
        "{lines:#?}"
    );
    first.send_line("/quit").await;
}
