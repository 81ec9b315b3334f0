//! The `skyscale-agent` binary: read the configuration, run the agent, map the outcome to an
//! exit status. Diagnostics go to stderr; stdout carries nothing but frames.

use std::process::ExitCode;

fn main() -> ExitCode {
    match skyscale_agent::Config::from_env().and_then(skyscale_agent::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyscale-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
