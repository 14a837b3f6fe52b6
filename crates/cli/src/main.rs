//! `meshfleet`: parse → options → call → print. Only this file chooses the exit code.

mod cli;
mod cmd;
mod ctx;
mod fsutil;
mod output;

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
