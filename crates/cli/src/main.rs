//! `meshfleet`: parse → options → call → print. Only this file chooses the exit code.

mod cli;
mod cmd;
mod ctx;
mod fsutil;
mod output;
mod progress;
mod simproc;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::ctx::{Ctx, Exit, Invalid};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with success; usage errors go to stderr.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    let ctx = Ctx::new(&cli.global);
    match cmd::run(&ctx, cli.command) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::Failed) => ExitCode::from(1),
        Ok(Exit::Invalid) => ExitCode::from(2),
        Err(e) => {
            let invalid = e.downcast_ref::<Invalid>().is_some();
            ctx.error(&format!("{e:#}"));
            ExitCode::from(if invalid { 2 } else { 1 })
        }
    }
}

/// Diagnostic logs (the libraries' `tracing` events) go to stderr only when asked for with
/// `MESHFLEET_LOG` (an env-filter such as `debug` or `meshfleet_sim=trace`), so the progress
/// lines users read stay uncluttered by default.
fn init_logging() {
    let Ok(filter) = std::env::var("MESHFLEET_LOG") else {
        return;
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: ignoring MESHFLEET_LOG=`{filter}`: {e}");
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
}
