//! The `custody` command line: run a node, or a local cluster of several in
//! one process, or ask a running node.
//!
//! Built with the default feature `cli`; the code is in [`cli`].

// The CLI is a driver: it reads the clock and waits in real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
