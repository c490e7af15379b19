//! The `chatgate-load` binary: parse the command line, size the runtime,
//! run one scenario or the suite.

use std::process::ExitCode;

use chatgate_load::cli::{Cli, Command};
use chatgate_load::{app, suite};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Suite(suite) = &cli.command {
        // Pinned before the runtime exists, so every thread inherits it.
        if let Err(e) = suite::pin_self(suite.generator_core) {
            eprintln!(
                "chatgate-load: warning: cannot pin to core {}: {e}",
                suite.generator_core
            );
        }
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 20_000 => {
            eprintln!("chatgate-load: open-file limit is {limit}; large runs may fail");
        }
        Ok(_) => {}
        Err(e) => eprintln!("chatgate-load: cannot raise the open-file limit: {e}"),
    }
    let threads = cli
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Suite(args) => suite::run(&args).await.map(|_| true),
            command => app::run(command).await.map(|report| report.is_clean()),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chatgate-load: the run saw loss, reordering or errors");
            ExitCode::from(2)
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("chatgate-load: {message}");
    ExitCode::FAILURE
}
