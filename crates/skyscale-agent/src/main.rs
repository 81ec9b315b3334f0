//! The `skyscale-agent` binary: read the configuration, run the agent, map the outcome to an
//! exit status. Diagnostics go to stderr; stdout carries nothing but frames.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Not dumpable: the function runs as the agent's own uid, and a dumpable agent would let
    // it open `/proc/1/mem` (and `environ`, `fd/`), ptrace-style access that a seccomp
    // filter cannot see because it is plain `open` and `read`. The runtime it starts is
    // dumpable again after its `execve`.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("skyscale-agent: cannot make itself non-dumpable: {e}");
        return ExitCode::FAILURE;
    }
    match skyscale_agent::Config::from_env().and_then(skyscale_agent::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyscale-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
