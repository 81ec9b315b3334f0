//! `skyscale`: the command-line tool for the Skyscale `/v1` API.
//!
//! This file only parses arguments, runs the command and turns a failure into one
//! `error: ...` line on stderr and a non-zero exit status.

mod cli;
mod commands;
mod input;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => output::report_error(&err),
    }
}
