//! The `chatgate` binary: load the settings, start logging, run; or run
//! one of the tools.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use chatgate::Server;
use chatgate::config::load::{self, LoadError, Loaded};
use chatgate::config::{LogFormat, Tool, render};
use chatgate::server::RELOADABLE;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let loaded = match load::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        // Clap prints its own errors, help and version, with its exit status.
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => return fail(&e.to_string()),
    };
    if loaded.config.command.is_some() {
        return run_tool(&loaded);
    }
    init_logging(loaded.config.verbose, loaded.config.log_format);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    // Signal handlers go in before the first `listening` line, so a client
    // that reacts to that line can already stop the server cleanly.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let server = Server::bind(config).await?;
    // SIGHUP reads the settings again, from the same command line, the
    // environment and the --config file, and applies what can change.
    let reloader = server.reloader();
    tokio::spawn(async move {
        // What a reload changes is compared with what is in effect: the
        // last settings read for what a reload applies, the first for
        // what only a restart would.
        let started = loaded.clone();
        let mut running = loaded;
        while hangup.recv().await.is_some() {
            match load::load(std::env::args_os()) {
                Ok(newer) => {
                    let reloadable = |k: &String| RELOADABLE.contains(&k.as_str());
                    let mut changed: Vec<String> = running
                        .changed_keys(&newer)
                        .into_iter()
                        .filter(reloadable)
                        .collect();
                    changed.extend(
                        started
                            .changed_keys(&newer)
                            .into_iter()
                            .filter(|k| !reloadable(k)),
                    );
                    reloader.reload(&newer.config, &changed);
                    running = newer;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "settings not reloaded; keeping the running ones")
                }
            }
        }
    });
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

fn run_tool(loaded: &Loaded) -> ExitCode {
    let Some(tool) = &loaded.config.command else {
        return ExitCode::SUCCESS;
    };
    match tool {
        Tool::CheckConfig => match Server::check(&loaded.config) {
            Ok(()) => print(&loaded.to_toml()),
            Err(e) => fail(&format!("{:#}", anyhow::Error::from(e))),
        },
        Tool::PrintDefaultConfig => print(&render::default_file()),
        Tool::CheckPlugin {
            path,
            calls,
            budget_ms,
            memory_mib,
        } => {
            let limits = chatgate::plugins::Limits {
                memory: (*memory_mib as usize).saturating_mul(1 << 20),
                budget: std::time::Duration::from_millis(*budget_ms),
            };
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(chatgate::plugins::check(path, limits, *calls))
                });
            match report {
                Ok(text) => print(&text),
                Err(e) => fail(&format!("{e:#}")),
            }
        }
        Tool::Completions { shell } => {
            // Into memory first: written to stdout straight, a failed
            // write (a full disk, a closed pipe) would panic.
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut load::command(), "chatgate", &mut out);
            print(&String::from_utf8_lossy(&out))
        }
        Tool::Admin(command) => {
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|runtime| runtime.block_on(chatgate::admin::client::run(command)));
            match answer {
                Ok(text) => print(&(text + "\n")),
                Err(e) => fail(&e),
            }
        }
        Tool::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(load::command()).render(&mut out) {
                Ok(()) => print(&String::from_utf8_lossy(&out)),
                Err(e) => fail(&format!("cannot write the man page: {e}")),
            }
        }
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
            if password.contains(char::is_whitespace) {
                return fail("a password cannot hold blanks: /oper takes it as one word");
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

fn init_logging(verbose: bool, format: LogFormat) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Collectors read each line as one object; colour codes would
        // break it.
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Lifts the soft open-file limit to the hard one, so that the connection
/// cap, not the OS, is what a busy server meets.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is a failure, not a
/// panic.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write to stdout: {e}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("chatgate: {message}");
    ExitCode::FAILURE
}
