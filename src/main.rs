//! The `chatgate` binary: parse the command line, start logging, run.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use chatgate::config::Tool;
use chatgate::{Config, Server};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(tool) = &config.command {
        return run_tool(tool);
    }
    init_logging(config.verbose);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Signal handlers go in before the first `listening` line, so a client
    // that reacts to that line can already stop the server cleanly.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let server = Server::bind(config).await?;
    if let Some(certificates) = server.certificates() {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match certificates.reload() {
                    Ok(()) => tracing::info!("certificate reloaded"),
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate reload failed; keeping the old one")
                    }
                }
            }
        });
    }
    let mut stdout = std::io::stdout().lock();
    for (kind, addr) in server.local_addrs() {
        writeln!(stdout, "listening {} {addr}", kind.as_str())?;
    }
    if let Some(addr) = server.admin_addr() {
        writeln!(stdout, "listening admin {addr}")?;
    }
    stdout.flush()?;
    drop(stdout);
    server
        .run(async {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await;
    Ok(())
}

fn run_tool(tool: &Tool) -> ExitCode {
    match tool {
        Tool::HashPassword => {
            let password = if std::io::stdin().is_terminal() {
                rpassword::prompt_password("password: ")
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            };
            let password = match password {
                Ok(p) => p.trim_end_matches(['\r', '\n']).to_owned(),
                Err(e) => return fail(&format!("cannot read the password: {e}")),
            };
            if password.is_empty() {
                return fail("the password is empty");
            }
            match chatgate::operators::hash_password(&password) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot hash the password: {e}")),
            }
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Lifts the soft open-file limit to the hard one, so that the connection
/// cap, not the OS, is what a busy server meets.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("chatgate: {message}");
    ExitCode::FAILURE
}
